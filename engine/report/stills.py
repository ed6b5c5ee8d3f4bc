"""A case at the evaluated resolution: the still, pokes, pins, static masks, the moving region
and the poke patches, in the pixels every engine renders and every number is measured in.

The still is resized so that its longer side is the case's resolution (area-averaged down,
bicubic up: a 176 x 144 video frame is evaluated at 512 as an artist would plane it), then
treated as 8-bit RGB. Pokes, pins and masks scale with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine import frames as frames_io
from engine.errors import JobError
from engine.report.cases import Case
from engine.video import iter_frames
from engine.warp import DEFAULT_FALLOFF

# The poke model's poke patch is 5 x 5 of its 64-px square; following is measured over the
# same share of the still (the largest centred square's side / 64 * 5), at least 5 px.
PATCH_SHARE = 5 / 64
# The default moving region: a disc of this share of the shorter side around each poke's start,
# the warp engine's default fall-off radius (about the size of a part: a head, a branch).
DEFAULT_REGION = DEFAULT_FALLOFF


@dataclass
class Scene:
    still: np.ndarray                               # H x W x 3 uint8 RGB
    pokes: list[tuple[float, float, float, float]]  # (x, y, dx, dy), evaluated pixels
    pins: list[tuple[float, float, float]]          # (x, y, radius)
    static: np.ndarray | None                       # H x W float32 in [0, 1], pins and masks
    region: np.ndarray                              # H x W bool, the moving region
    patches: list[tuple[int, int, int, int]]        # (x0, y0, x1, y1) per poke, end exclusive
    scale: float                                    # evaluated pixels per source pixel
    # motion masks (H x W float32 in [0, 1]) and their labels, for engines that move regions
    motion: list[tuple[np.ndarray, str]] = field(default_factory=list)


def read_source(case: Case) -> np.ndarray:
    """The case's picture at its own size, 8-bit RGB."""
    if case.still is not None:
        pixels = frames_io.read_image(case.still)
        return cv2.cvtColor(frames_io.to_display(pixels), cv2.COLOR_BGR2RGB)
    for frame in iter_frames(case.video, start=case.frame - 1, stop=case.frame):
        return frame
    raise JobError(f"case {case.name!r}: video {case.video} has fewer than {case.frame} frames; "
                   "pick a frame number inside the clip (1-based)")


def scene_at(case: Case, source: np.ndarray, resolution: int) -> Scene:
    """The case with its longer side at `resolution` pixels."""
    height, width = source.shape[:2]
    factor = resolution / max(width, height)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    sx, sy = new_w / width, new_h / height
    scale = math.sqrt(sx * sy)
    for number, (x, y, _, _) in enumerate(case.pokes, 1):
        if not (0 <= x <= width and 0 <= y <= height):
            raise JobError(f"case {case.name!r} poke {number} starts at ({x:g}, {y:g}), outside "
                           f"the {width}x{height} still; pokes are in the still's pixels")
    if factor < 1:
        still = frames_io.resize(source, new_w, new_h)
    else:
        still = cv2.resize(source, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    pokes = [(x * sx, y * sy, dx * sx, dy * sy) for x, y, dx, dy in case.pokes]
    pins = [(x * sx, y * sy, r * scale) for x, y, r in case.pins]

    static = None
    for path in case.masks:
        values = _mask_at(path, width, height, new_w, new_h, f"case {case.name!r} mask")
        static = values if static is None else np.maximum(static, values)
    if pins:
        discs = np.zeros((new_h, new_w), np.float32)
        for x, y, radius in pins:
            cv2.circle(discs, _point(x, y), max(1, round(radius)), 1.0, -1, cv2.LINE_AA)
        static = discs if static is None else np.maximum(static, discs)

    motion = [(_mask_at(path, width, height, new_w, new_h,
                        f"case {case.name!r} motion mask {number}"), label)
              for number, (path, label) in enumerate(case.motion, 1)]
    for number, (values, _) in enumerate(motion, 1):
        if not (values > 0.5).any():
            raise JobError(f"case {case.name!r} motion mask {number} is empty at {new_w} x "
                           f"{new_h}; draw a larger region or evaluate at a higher resolution")

    if case.region_person:
        from engine.face.segmentation import person_mask

        region = person_mask(cv2.cvtColor(frames_io.to_display(still),
                                          cv2.COLOR_BGR2RGB)) > 0.5
    elif case.region_motion:
        region = np.max([values for values, _ in motion], axis=0) > 0.5
    elif case.region_mask is not None:
        region = _mask_at(case.region_mask, width, height, new_w, new_h,
                          f"case {case.name!r} region mask") > 0.5
    else:
        radius = (case.region_radius * scale if case.region_radius
                  else DEFAULT_REGION * min(new_w, new_h))
        discs = np.zeros((new_h, new_w), np.uint8)
        for x, y, _, _ in pokes:
            cv2.circle(discs, _point(x, y), max(1, round(radius)), 1, -1)
        region = discs > 0
    if region.all() or not region.any():
        raise JobError(f"case {case.name!r}: the moving region covers "
                       f"{'the whole still' if region.any() else 'nothing'}, so leakage and "
                       "still-area fidelity cannot be measured; use a smaller region radius or "
                       "a region mask with both black and white")

    half = max(5, round(PATCH_SHARE * min(new_w, new_h))) // 2
    patches = []
    for x, y, _, _ in pokes:
        column, row = min(int(x), new_w - 1), min(int(y), new_h - 1)
        patches.append((max(0, column - half), max(0, row - half),
                        min(new_w, column + half + 1), min(new_h, row + half + 1)))
    return Scene(still, pokes, pins, static, region, patches, scale, motion)


def write_inputs(scene: Scene, folder: Path, still: np.ndarray | None = None
                 ) -> tuple[Path, list[Path], list[tuple[Path, str]]]:
    """still.png (the scene's still, or `still` in its place: the stylized one), static.png
    (when there are pins or masks) and motion_N.png (one per motion mask) for the jobs:
    (still, static masks, [(motion mask, label)])."""
    folder.mkdir(parents=True, exist_ok=True)
    still_path = folder / "still.png"
    frames_io.write_image(still_path, scene.still if still is None else still, "PNG8")
    motion = []
    for number, (values, label) in enumerate(scene.motion, 1):
        path = folder / f"motion_{number}.png"
        _write_mask(path, values)
        motion.append((path, label))
    if scene.static is None:
        return still_path, [], motion
    mask_path = folder / "static.png"
    _write_mask(mask_path, scene.static)
    return still_path, [mask_path], motion


def _write_mask(path: Path, values: np.ndarray) -> None:
    # as 8-bit samples: a float array would be taken for linear light and sRGB-encoded
    frames_io.write_image(path, frames_io.from_float(values[..., None], np.uint8), "PNG8")


def _mask_at(path: Path, width: int, height: int, new_w: int, new_h: int,
             name: str) -> np.ndarray:
    values = frames_io.read_mask(path, width, height, name=name)
    return cv2.resize(values, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def _point(x: float, y: float) -> tuple[int, int]:
    return int(round(x - 0.5)), int(round(y - 0.5))
