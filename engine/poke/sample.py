"""Sampling a poke model: a still and pokes -> K clips, and a clip at the still's resolution.

    result = sample_clips(model, still, [(x, y, dx, dy)], samples=4, seed=0)
    frames = full_resolution_frames(still, result.clips[i], result.box, frames=24)

Pokes are (x, y, dx, dy) in the still's pixels (docs/JOB.md: x right, y down, origin at the
top-left corner, pixel centres at +0.5). The model sees a square of the still (the face box when
it was trained on face crops, else the largest centred square) at 64 px, exactly as training
saw its clips (engine/poke/data.py: INTER_AREA resize, 5x5 poke patches holding the vector in
64-px units). Sample i draws its noise from its own generator seeded with (seed, i), so one
sample can be regenerated alone (the bake after the artist picked it from the thumbnails) and
comes out as it did in the batch.

Full resolution: the model's frames are 64 px; upsampling them would blur the still. Instead
the generated *change* is upsampled into the crop box and added to the still; changes below a
soft threshold are dropped, so where the model does not move anything the frames are the
still, bit for bit. The change is measured against the decoder's own clip of "nothing moves"
(the still's square repeated, encoded, decoded: `PokeSamples.reference`), not against x0
itself: the autoencoder does not reproduce x0 exactly (64 px, PSNR ~24 dB early in training),
and against x0 that reconstruction error counts as change everywhere. Measured on carphone
with a partly trained small autoencoder: |decoded static clip - x0| has a median of 0.036
(colour units), which with a 3/255 threshold marks 98 % of the square as changed; against the
static reference a still region is exactly unchanged.

A motion-space model (issue 5) decodes flows instead of frames: its samples carry them
(`PokeSamples.motions`) and `clip_frames` renders them by warping the still at its own
resolution (engine/poke/motion.py); the 64-px `clips` are x0 carried along the same flows.

`prepare(job, device, progress)` is the job-file entry (engine/runner.py), engine "poke".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from engine import frames as frames_io
from engine.errors import JobError
from engine.poke import faces
from engine.poke.data import _fill_patches
from engine.render import smoothstep
from engine.warp.pins import pin_discs

# The same patch as training (DataConfig.patch) and the same border: training never centred a
# patch closer than `patch` pixels to the edge, so sampling keeps whole patches on the map.
PATCH = 5
# Soft threshold on the generated change, in [0, 1] colour units (max over channels): below
# LOW the still is kept exactly, above HIGH the change is taken whole, smooth in between. LOW
# sits above the decoder's reconstruction noise on still regions (a few 8-bit levels).
CHANGE_LOW = 3.0 / 255.0
CHANGE_HIGH = 12.0 / 255.0
THUMB_SIDE = 128


class PokeSamples(NamedTuple):
    clips: np.ndarray               # float32 [K, 11, 64, 64, 3] RGB in [0, 1]; x0 first
    box: tuple[int, int, int]       # (x, y, side) of the model's square in the still's pixels
    reference: np.ndarray           # float32 [11, 64, 64, 3]: the decoder's clip of x0 held
                                    # still (x0 first), what a change is measured against;
                                    # motion space: its flows [10, 2, 64, 64] for a still clip
    motions: np.ndarray | None = None  # motion space: forward flows [K, 10, 2, 64, 64]


# --------------------------------------------------------------------------------------------
# The model's input: square, 64 px, pokes as a map


def display_rgb(still: np.ndarray) -> np.ndarray:
    """uint8 sRGB RGB of any still (grey, RGBA over grey, 16-bit, linear float) - what the
    training videos were."""
    return cv2.cvtColor(frames_io.to_display(still), cv2.COLOR_BGR2RGB)


def input_box(rgb: np.ndarray, face_crop: bool, face_scale: float,
              warn: Callable[[str], None]) -> tuple[int, int, int]:
    """(x, y, side) of the square the model sees: the face box (as engine/poke/faces.py
    track_face makes it, from one frame) when the model was trained on face crops and a
    detector is installed, else the largest centred square."""
    height, width = rgb.shape[:2]
    centre = faces.centre_square(width, height)
    if not face_crop:
        return centre
    detector = faces.default_detector()
    if detector is None:
        warn("the model was trained on face crops but no face detector is installed "
             "(MediaPipe: run Install Engine; or the Haar cascade "
             f"{faces.CASCADE_NAME} via STILLMOTION_FACE_CASCADE); using the centred square")
        return centre
    found = detector(rgb)
    if not len(found):
        warn("no face found in the still; using the centred square (pokes outside it are "
             "ignored)")
        return centre
    fx, fy, fw, fh = (float(v) for v in found[np.argmax(found[:, 2] * found[:, 3])])
    side = int(round(min(fw * face_scale, width, height)))
    x = int(np.clip(round(fx + fw / 2 - side / 2), 0, width - side))
    y = int(np.clip(round(fy + fh / 2 - side / 2), 0, height - side))
    return x, y, side


def poke_map(pokes_px: Sequence[Sequence[float]], box: tuple[int, int, int], size: int = 64,
             patch: int = PATCH) -> tuple[np.ndarray, list[int]]:
    """The [2, size, size] poke map of pokes (x, y, dx, dy) in still pixels, and the indices
    of the pokes that landed in the box. A poke's 5x5 patch sits on the map pixel under (x, y)
    (moved inwards to keep the patch whole) and holds (dx, dy) in map pixels; later pokes
    overwrite earlier ones where patches overlap, as in training."""
    bx, by, side = box
    scale = size / side
    half = patch // 2
    centres, vectors, used = [], [], []
    for index, (x, y, dx, dy) in enumerate(pokes_px):
        u, v = (x - bx) * scale, (y - by) * scale
        if not (0.0 <= u < size and 0.0 <= v < size):
            continue
        column = min(max(int(math.floor(u)), half), size - 1 - half)
        row = min(max(int(math.floor(v)), half), size - 1 - half)
        centres.append((column, row))
        vectors.append((dx * scale, dy * scale))
        used.append(index)
    poke = _fill_patches((size, size), np.array(centres, np.int64).reshape(-1, 2),
                         np.array(vectors, np.float32).reshape(-1, 2), patch)
    return poke, used


def sample_generator(seed: int, index: int, redraw: int = 0) -> torch.Generator:
    """The CPU generator of sample `index`: a function of (seed, index) only (and of which
    redraw it is, when an earlier draw of that sample diverged; see reverse_finite)."""
    key = [int(seed) & 0xFFFFFFFF, int(index)] + ([int(redraw)] if redraw else [])
    state = np.random.SeedSequence(key).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


# How often a sample whose inverse pass diverged is drawn again before the job gives up, and
# what counts as diverged: the video latents the cINN models stay within a few units (mu of
# real clips), a diverged inverse lands orders of magnitude away (1e30 seen) or at inf/NaN.
REDRAWS = 8
DIVERGED = 1e3


def reverse_finite(model, noise: torch.Tensor, cond: torch.Tensor,
                   redraw: Callable[[int, int], torch.Tensor], temperature: float = 1.0,
                   warn: Callable[[str], None] | None = None) -> torch.Tensor:
    """z = cINN^-1(noise * temperature | cond), with every sample finite. The inverse of a deep
    flow can overflow for noise far in the tails (each of its transforms may scale by up to
    e^2): such a sample (non-finite, or beyond DIVERGED) is drawn again from redraw(row, attempt), deterministically, up to
    REDRAWS times."""
    def diverged(values: torch.Tensor) -> list[int]:
        flat = values.flatten(1)
        bad = ~torch.isfinite(flat).all(1) | (flat.abs().amax(1) > DIVERGED)
        return bad.nonzero().flatten().tolist()

    z = model.cinn.reverse(noise * temperature, cond)
    redrawn = set()
    for attempt in range(1, REDRAWS + 1):
        bad = diverged(z)
        if not bad:
            break
        redrawn.update(bad)
        fresh = torch.stack([redraw(row, attempt) for row in bad]).to(noise)
        z[bad] = model.cinn.reverse(fresh * temperature, cond[bad])
    else:
        if diverged(z):
            raise JobError(f"the poke model's inverse pass diverged {REDRAWS + 1} times for "
                           "one sample; lower the temperature, or retrain the model longer")
    if redrawn and warn is not None:
        warn(f"{len(redrawn)} sample(s) diverged in the model's inverse pass and were drawn "
             "again (same seed, same result next time)")
    return z


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample_clips(model, still_rgb: np.ndarray, pokes_px: Sequence[Sequence[float]],
                 samples: int, seed: int, temperature: float = 1.0,
                 indices: Sequence[int] | None = None,
                 warn: Callable[[str], None] | None = None,
                 pins_px: Sequence[Sequence[float]] = (), guide: bool = True) -> PokeSamples:
    """K clips of the model for a still (any sample type; see display_rgb) and pokes
    (x, y, dx, dy) in its pixels. `indices` picks which samples of the K to make (default
    all; a bake makes only the one the artist picked): clip j is sample indices[j].
    Motion-space models with `guide` land every poke's end point exactly and hold every pin
    (x, y) still (motion.guide_motion); pixel models only see the pokes."""
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    if samples < 1:
        raise JobError(f"samples must be at least 1, got {samples}")
    if not temperature > 0 or not math.isfinite(temperature):
        raise JobError(f"temperature must be a positive number, got {temperature}")
    indices = list(range(samples)) if indices is None else [int(i) for i in indices]
    if any(not 0 <= i < samples for i in indices):
        raise JobError(f"sample index {indices} is outside 0..{samples - 1}")
    if not pokes_px:
        raise JobError("no pokes: draw at least one arrow on the face to say what should move")
    rgb = display_rgb(still_rgb)
    config = model.config
    size = model.size
    box = input_box(rgb, config.face_crop, config.face_scale, warn)
    poke, used = poke_map(pokes_px, box, size)
    bx, by, side = box
    for index in sorted(set(range(len(pokes_px))) - set(used)):
        x, y = pokes_px[index][:2]
        warn(f"poke {index + 1} at ({x:g}, {y:g}) is outside the model's square "
             f"(x {bx}..{bx + side}, y {by}..{by + side}) and is ignored")
    if not used:
        raise JobError(f"no poke starts inside the square the model animates (x {bx}..{bx + side}"
                       f", y {by}..{by + side} in the still's pixels); start the arrows on the "
                       "face")
    x0 = cv2.resize(rgb[by:by + side, bx:bx + side], (size, size), interpolation=cv2.INTER_AREA)
    x0 = x0.astype(np.float32) / 255.0
    device = _model_device(model)
    x0_t = torch.from_numpy(x0).permute(2, 0, 1)[None].to(device) * 2.0 - 1.0
    poke_t = torch.from_numpy(poke)[None].to(device)
    cinn = model.cinn.config
    shape = (1, cinn.z_channels, cinn.z_size, cinn.z_size)
    noise = torch.cat([torch.randn(shape, generator=sample_generator(seed, i))
                       for i in indices]).to(device)
    count = len(indices)
    parts = box_part_layout(rgb, box, size, warn) if config.video.part_channels else None
    parts = None if parts is None else parts.to(device)
    h = model.condition(x0_t, poke_t, parts).expand(count, -1, -1, -1)
    z = reverse_finite(model, noise, h, lambda row, attempt: torch.randn(
        shape[1:], generator=sample_generator(seed, indices[row], attempt)), temperature, warn)
    generated = model.video_ae.decode(z, x0_t.expand(count, -1, -1, -1))
    if model.config.video.space == "motion":
        scale = size / side
        pokes64 = [((x - bx) * scale, (y - by) * scale, dx * scale, dy * scale)
                   for x, y, dx, dy in (pokes_px[i] for i in used)] if guide else []
        pins64 = [((x - bx) * scale, (y - by) * scale) for x, y, *_ in pins_px
                  if 0 <= (x - bx) * scale < size and 0 <= (y - by) * scale < size] \
            if guide else []
        return _motion_samples(model, x0, x0_t, generated, box, pokes64, pins64)
    clips = _with_x0(x0, generated)
    # "nothing moves" as this decoder renders it: the clip of x0 repeated, through the AE
    held = x0_t[:, None].expand(-1, model.config.video.clip_length, -1, -1, -1)
    mu, _ = model.video_ae.encode(held)
    reference = _with_x0(x0, model.video_ae.decode(mu, x0_t))[0]
    return PokeSamples(clips, box, reference)


def box_part_layout(rgb: np.ndarray, box: tuple[int, int, int], size: int,
                    warn: Callable[[str], None]) -> torch.Tensor | None:
    """[1, 7, size, size] facial-part layout of the model's square of the still (as training
    drew it for its crops), or None (with a warning) when no face is found there."""
    from engine.face.landmarks import detect_face
    from engine.face.parts import part_layout

    bx, by, side = box
    try:
        face = detect_face(rgb[by:by + side, bx:bx + side])
    except JobError as error:
        warn(f"this model reads facial parts, which are off: {error}")
        return None
    if face is None:
        warn("no face found in the model's square: sampling without the part layout")
        return None
    return torch.from_numpy(part_layout(face, size, size))[None]


def _motion_samples(model, x0, x0_t, generated, box, pokes64, pins64) -> PokeSamples:
    from engine.poke.motion import clean_motion, display_frames_64, guide_motion

    video = model.config.video
    # "nothing moves" as this decoder renders it: zero flows through the autoencoder
    still_motion = torch.zeros(1, video.frames, 2, video.resolution, video.resolution,
                               device=x0_t.device)
    mu, _ = model.video_ae.encode(still_motion)
    reference = model.video_ae.decode(mu, x0_t)[0].float().cpu().numpy()
    motions = np.stack([guide_motion(motion, pokes64, pins64, reference)
                        for motion in generated.float().cpu().numpy()])
    clips = np.stack([display_frames_64(x0, clean_motion(motion, reference))
                      for motion in motions])
    return PokeSamples(clips, box, reference, motions)


def _with_x0(x0: np.ndarray, generated: torch.Tensor) -> np.ndarray:
    """x0 [64, 64, 3] in [0, 1] and generated [K, T, 3, 64, 64] in [-1, 1] -> float32
    [K, T + 1, 64, 64, 3] in [0, 1], x0 first."""
    values = ((generated.float().clamp(-1, 1) + 1) * 0.5).permute(0, 1, 3, 4, 2).cpu().numpy()
    clips = np.concatenate([np.broadcast_to(x0, (len(values), 1, *x0.shape)), values], axis=1)
    return np.ascontiguousarray(clips, np.float32)


# --------------------------------------------------------------------------------------------
# Back to the still's resolution


def change_gate(change: np.ndarray, low: float = CHANGE_LOW, high: float = CHANGE_HIGH
                ) -> np.ndarray:
    """Per-pixel weight in [0, 1] of a change [..., H, W, 3]: 0 below `low` (max over the
    colour channels), 1 above `high`, smoothstep between."""
    return smoothstep(np.abs(change).max(axis=-1), low, high)


def frame_positions(count: int, clip_frames: int, loop: bool = False) -> np.ndarray:
    """Where in the generated clip (0 = x0 ... clip_frames - 1 = last) each of `count` output
    frames lies: evenly spaced (the model's own timing), or for a loop out and back
    ((1 - cos) / 2, so the motion turns smoothly and frame count + 1 would be frame 1)."""
    last = clip_frames - 1
    k = np.arange(count, dtype=np.float64)
    if loop:
        return last * (1.0 - np.cos(2.0 * np.pi * k / count)) / 2.0
    return last * k / max(count - 1, 1)


def blend_at(sequence: np.ndarray, position: float) -> np.ndarray:
    """The item of a sequence [T, ...] at a fractional position: linear between neighbours."""
    low_index = int(math.floor(position))
    high_index = min(low_index + 1, len(sequence) - 1)
    weight = np.float32(position - low_index)
    return sequence[low_index] * (1 - weight) + sequence[high_index] * weight


def _to_display_float(region: np.ndarray) -> np.ndarray:
    """Colour channels of a still region as sRGB float [0, 1] (the model's colour space)."""
    values = frames_io.to_float(region)
    colour = values[..., :3] if values.shape[2] >= 3 else values
    if region.dtype == np.float32:
        colour = frames_io.linear_to_srgb(colour)
    return colour


def _from_display_float(display: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Inverse of _to_display_float, alpha taken from the still."""
    display = np.clip(display, 0.0, 1.0)
    if region.dtype == np.float32:
        display = frames_io.srgb_to_linear(display)
    if region.shape[2] == 4:
        alpha = frames_io.to_float(region[..., 3:])
        display = np.concatenate([display, alpha], axis=2)
    return frames_io.from_float(display, region.dtype)


def full_resolution_frames(still: np.ndarray, clip64: np.ndarray, box: tuple[int, int, int],
                           frames: int | None = None, loop: bool = False,
                           pin: np.ndarray | None = None,
                           reference: np.ndarray | None = None, low: float = CHANGE_LOW,
                           high: float = CHANGE_HIGH) -> Iterator[np.ndarray]:
    """Frames of a generated clip [T, 64, 64, 3] (x0 first, [0, 1]) at the still's resolution
    and sample type, one at a time: the change frame_t - reference_t (soft-thresholded)
    upsampled into the crop box and added to the still. `reference` [T, 64, 64, 3] is
    PokeSamples.reference (default: x0 in every frame). `frames` resamples in time (linear
    between generated frames; default: the clip's own T). `pin` [H, W] in [0, 1] holds pixels
    still (static masks). Pixels with no change are the still's, bit for bit."""
    clip64 = np.asarray(clip64, np.float32)
    count = frames or len(clip64)
    changes = clip64 - (clip64[:1] if reference is None else np.asarray(reference, np.float32))
    changes[0] = 0.0  # frame 1 is the still
    changes *= change_gate(changes, low, high)[..., None]
    bx, by, side = box
    region = still[by:by + side, bx:bx + side]
    grey = still.shape[2] == 1
    display = None  # computed once, when some frame first changes something
    pin_region = None if pin is None else 1.0 - pin[by:by + side, bx:bx + side, None]
    for position in frame_positions(count, len(clip64), loop):
        change = blend_at(changes, position)
        if not change.any():
            yield still
            continue
        big = cv2.resize(change, (side, side), interpolation=cv2.INTER_CUBIC)
        if grey:
            big = big.mean(axis=2, keepdims=True)
        if pin_region is not None:
            big *= pin_region
        moved = np.abs(big).max(axis=2) > 0
        if not moved.any():
            yield still
            continue
        if display is None:
            display = _to_display_float(region)
        new_region = _from_display_float(display + big, region)
        frame = still.copy()
        frame[by:by + side, bx:bx + side] = np.where(moved[..., None], new_region, region)
        yield frame


def clip_frames(still: np.ndarray, result: PokeSamples, index: int, frames: int | None = None,
                loop: bool = False, pin: np.ndarray | None = None,
                compose: str = "change") -> Iterator[np.ndarray]:
    """Sample `index` of `result` at the still's resolution, frame by frame, in the model's
    own way: the pixel change added to the still, or (motion space) the still warped.
    compose "frames" (pixel models, for comparisons): iPOKE's own output, the generated 64-px
    frames upsampled over the model's square."""
    if compose == "frames" and result.motions is None:
        return upsampled_frames(still, result.clips[index], result.box, frames, loop)
    if result.motions is not None:
        from engine.poke.motion import motion_frames

        return motion_frames(still, result.motions[index], result.box, frames=frames,
                             loop=loop, pin=pin, reference=result.reference)
    return full_resolution_frames(still, result.clips[index], result.box, frames=frames,
                                  loop=loop, pin=pin, reference=result.reference)


def upsampled_frames(still: np.ndarray, clip64: np.ndarray, box: tuple[int, int, int],
                     frames: int | None = None, loop: bool = False) -> Iterator[np.ndarray]:
    """The generated frames themselves, bicubic-upsampled into the square (frame 1 stays the
    still): what the published method hands over, the baseline of the evaluation report."""
    bx, by, side = box
    region = still[by:by + side, bx:bx + side]
    count = frames or len(clip64)
    for number, position in enumerate(frame_positions(count, len(clip64), loop)):
        if number == 0:
            yield still
            continue
        frame64 = blend_at(clip64, position)
        big = cv2.resize(frame64, (side, side), interpolation=cv2.INTER_CUBIC)
        if still.shape[2] == 1:
            big = big.mean(axis=2, keepdims=True)
        out = still.copy()
        out[by:by + side, bx:bx + side] = _from_display_float(big, region)
        yield out


def last_frame(still: np.ndarray, result: PokeSamples, index: int,
               pin: np.ndarray | None = None) -> np.ndarray:
    """The sample's last frame at full resolution (for pickers and contact sheets)."""
    if result.motions is not None:
        from engine.poke.motion import motion_frames

        return list(motion_frames(still, result.motions[index][-1:], result.box, frames=2,
                                  pin=pin, reference=result.reference[-1:]))[-1]
    ends = [0, -1]
    return list(full_resolution_frames(still, result.clips[index][ends], result.box, frames=2,
                                       pin=pin, reference=result.reference[ends]))[-1]


def thumbnail(still: np.ndarray, result: PokeSamples, index: int, side: int = THUMB_SIDE,
              pin: np.ndarray | None = None) -> np.ndarray:
    """uint8 BGR picture of a sample for a picker: its last frame at full resolution, the
    model's square, `side` px."""
    last = last_frame(still, result, index, pin)
    bx, by, box_side = result.box
    crop = frames_io.to_display(last[by:by + box_side, bx:bx + box_side])
    interpolation = cv2.INTER_AREA if box_side > side else cv2.INTER_CUBIC
    return cv2.resize(crop, (side, side), interpolation=interpolation)


# --------------------------------------------------------------------------------------------
# Job file entry (engine/runner.py): engine "poke"


@dataclass
class NamedImages:
    """What a thumbnails job makes instead of frames: (file name, uint8 RGB picture)."""
    images: list[tuple[str, np.ndarray]]


class PokeClip:
    """The frames of one sample at full resolution, as the runner iterates them."""

    def __init__(self, still, result: PokeSamples, count, loop, pin, compose="change"):
        self.args = (still, result, 0)
        self.options = {"frames": count, "loop": loop, "pin": pin, "compose": compose}
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        return clip_frames(*self.args, **self.options)


def sample_name(index: int) -> str:
    return f"sample_{index:02d}"


def read_poke_still(job):
    """The checks every poke model makes, and the still at working size: (pixels, full width,
    full height, x scale, y scale, which pokes are pins)."""
    from engine.job import read_working_still

    if not job.pokes:
        raise JobError("the job has no pokes, so the model has nothing to follow; draw at "
                       "least one arrow on the face")
    still, width, height, sx, sy = read_working_still(job)
    is_pin = [p.is_pin(width, height) for p in job.pokes]
    if all(is_pin):
        raise JobError(f"the job has only pins ({len(is_pin)} clicks without a drag), so "
                       "nothing is asked to move; drag at least one arrow from a spot to where "
                       "it should go")
    return still, width, height, sx, sy, is_pin


def prepare(job, device, progress):
    from engine.job import read_motion_still
    from engine.poke.model import load_model

    from engine.poke.mesh.model import is_mesh_model

    settings = job.poke
    if is_mesh_model(settings.model_path()):
        from engine.poke.mesh.sample import prepare as prepare_mesh

        return prepare_mesh(job, device, progress)
    from engine.poke import parts as face_parts

    still, width, height, sx, sy, is_pin = read_poke_still(job)
    work_h, work_w = still.shape[:2]
    starts = [(p.start[0] * sx, p.start[1] * sy) for p in job.pokes]
    # The face and the person are found on the artist's still even when a style painted it.
    unstyled = read_motion_still(job, work_w, work_h)
    rgb = (display_rgb(still if unstyled is None else unstyled)
           if settings.snap or settings.background else None)
    if settings.snap:
        face = face_parts.find_face(rgb, progress.warning)
        driven = face_parts.snap_pokes(starts, is_pin, face)
        starts = [item.start for item in driven]
        progress.emit("parts", face=face is not None, pokes=[
            {"index": item.index, "part": item.part, "pin": item.pin,
             "start": [round(item.start[0] / sx, 2), round(item.start[1] / sy, 2)]}
            for item in driven])
    pokes = [(x, y, p.vector[0] * sx, p.vector[1] * sy)
             for (x, y), p, pinned in zip(starts, job.pokes, is_pin) if not pinned]
    pins = [(x, y, p.radius * math.sqrt(sx * sy))
            for (x, y), p, pinned in zip(starts, job.pokes, is_pin) if pinned]
    statics, moving = [], []
    for index, mask in enumerate(job.masks, 1):
        values = frames_io.read_mask(mask.path, width, height, name=f"mask {index}")
        values = cv2.resize(values, (work_w, work_h), interpolation=cv2.INTER_AREA)
        (statics if mask.label == "static" else moving).append(values)
    if moving and not settings.background:
        progress.warning(f"{len(moving)} mask(s) have motion labels, which the poke engine uses "
                         "only to free the background it holds (poke.background); ignored")
    pin = pin_discs(pins, work_w, work_h)
    hold = face_parts.background_hold(rgb, statics, moving, progress.warning) \
        if settings.background else None
    for values in ([hold] if hold is not None else statics):
        pin = values if pin is None else np.maximum(pin, values)
    model = load_model(settings.model_path(), device)
    progress.emit("sample", 0, 1)
    indices = None if settings.thumbnails else [settings.sample]
    # Motion is decided on the artist's still and moves the stylized one; only "frames" (the
    # published baseline, which pastes the model's own frames) must see the painted pixels.
    seen = still if unstyled is None or settings.compose == "frames" else unstyled
    result = sample_clips(model, seen, pokes, settings.samples, job.seed,
                          settings.temperature, indices=indices, warn=progress.warning,
                          pins_px=pins, guide=settings.guide)
    progress.emit("sample", 1, 1)
    if settings.thumbnails:
        return NamedImages([(f"{sample_name(i)}.png",
                             cv2.cvtColor(thumbnail(still, result, i, pin=pin),
                                          cv2.COLOR_BGR2RGB))
                            for i in range(len(result.clips))])
    return PokeClip(still, result, job.frames, job.loop, pin, settings.compose)


# --------------------------------------------------------------------------------------------
# `python -m engine sample-poke` (parser in engine/poke/commands.py)


def run_command(args, progress) -> int:
    import os

    from engine import preview
    from engine.device import resolve_device
    from engine.poke.model import load_model
    from engine.staging import staged_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out).absolute()
    if os.path.lexists(out):
        raise JobError(f"output folder already exists: {out}; choose a new --out")
    if args.frames and args.frames < 2:
        raise JobError(f"--frames must be at least 2 (got {args.frames})")
    if args.size == 64 and args.frames:
        raise JobError("--size 64 writes the model's own 11 frames; leave out --frames")
    model_path = Path(args.model)
    if not model_path.is_file():
        raise JobError(f"poke model not found: {model_path}; train one with `python -m engine "
                       "train-poke VIDEO --out MODEL.safetensors`")
    from engine.poke.mesh.model import is_mesh_model

    if is_mesh_model(model_path):
        return _run_mesh_command(args, progress, out, model_path)
    still = frames_io.read_image(args.image)
    model = load_model(model_path, resolve_device(args.device))
    progress.emit("sample", 0, args.samples)
    pins = [(x, y, 0.0) for x, y in args.pin]
    result = sample_clips(model, still, args.poke, args.samples, args.seed, args.temperature,
                          warn=progress.warning, pins_px=pins, guide=not args.no_guide)
    height, width = still.shape[:2]
    pin = pin_discs(pins, width, height)
    progress.emit("sample", args.samples, args.samples, box=list(result.box))
    bx, by, side = result.box
    rows = []
    with staged_folder(out) as partial:
        for index, clip in enumerate(result.clips):
            folder = partial / sample_name(index)
            folder.mkdir()
            if args.size == 64:
                pictures = (frames_io.from_float(frame, np.uint8) for frame in clip)
            else:
                pictures = clip_frames(still, result, index, frames=args.frames or None,
                                       pin=pin)
            row = []
            for number, pixels in enumerate(pictures, 1):
                frames_io.write_image(folder / f"frame_{number:04d}.png", pixels, "PNG8")
                square = pixels if args.size == 64 else pixels[by:by + side, bx:bx + side]
                thumb = cv2.resize(frames_io.to_display(square), (THUMB_SIDE, THUMB_SIDE),
                                   interpolation=cv2.INTER_AREA if square.shape[0] > THUMB_SIDE
                                   else cv2.INTER_NEAREST)
                row.append((number, thumb))
            rows.append(row)
            # the sample's last frame, for picking
            cv2.imencode(".png", row[-1][1])[1].tofile(partial / f"{sample_name(index)}.png")
            progress.emit("write", index + 1, len(result.clips), folder=str(out / folder.name))
        sheet = preview.contact_sheet([cell for row in rows for cell in row],
                                      columns=len(rows[0]))
        cv2.imencode(".png", sheet)[1].tofile(partial / "contact_sheet.png")
    progress.emit("done", len(rows), len(rows), output=str(out),
                  contact_sheet=str(out / "contact_sheet.png"), box=list(result.box))
    return 0


def _run_mesh_command(args, progress, out: Path, model_path: Path) -> int:
    """sample-poke with a face-mesh model: each sample is a poke job through the runner, so the
    frames are exactly what a bake of that sample writes."""
    from engine import preview
    from engine.job import Job, Poke, PokeSettings
    from engine.progress import Nested
    from engine.runner import run_job
    from engine.staging import staged_folder

    if args.size == 64:
        raise JobError("--size 64 is for pixel models' own 64-px clips; a face-mesh model "
                       "renders the still itself: leave out --size")
    if args.no_guide:
        raise JobError("--no-guide does not apply to a face-mesh model: its pokes land by "
                       "construction (a projection in code space), there is nothing to switch "
                       "off")
    image = Path(args.image).absolute()
    pokes = tuple(Poke((x, y), (x + dx, y + dy)) for x, y, dx, dy in args.poke) + \
        tuple(Poke((x, y), (x, y)) for x, y in args.pin)
    count = args.frames or 11
    rows = []
    with staged_folder(out) as partial:
        for index in range(args.samples):
            folder = partial / sample_name(index)
            job = Job(engine="poke", image=image, output=folder, frames=count, seed=args.seed,
                      device=args.device, pokes=pokes,
                      poke=PokeSettings(model=model_path.absolute(), samples=args.samples,
                                        sample=index, temperature=args.temperature))
            run_job(job, Nested(progress, "sample"))
            row = []
            for number in range(1, count + 1):
                pixels = frames_io.read_image(folder / job.frame_name(number))
                thumb = cv2.resize(frames_io.to_display(pixels), (THUMB_SIDE, THUMB_SIDE),
                                   interpolation=cv2.INTER_AREA)
                row.append((number, thumb))
            rows.append(row)
            cv2.imencode(".png", row[-1][1])[1].tofile(partial / f"{sample_name(index)}.png")
            progress.emit("write", index + 1, args.samples, folder=str(out / folder.name))
        sheet = preview.contact_sheet([cell for row in rows for cell in row],
                                      columns=len(rows[0]))
        cv2.imencode(".png", sheet)[1].tofile(partial / "contact_sheet.png")
    progress.emit("done", len(rows), len(rows), output=str(out),
                  contact_sheet=str(out / "contact_sheet.png"))
    return 0
