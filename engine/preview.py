"""A quick look at baked frames without Blender: preview.mp4 and contact_sheet.png.

The clip is MPEG-4 Part 2 ('mp4v' through OpenCV's FFmpeg backend, which every opencv-python
wheel has); if this OpenCV cannot write it, an animated GIF (OpenCV's own encoder) instead.
Frames are read one at a time, so memory stays O(one frame) for any clip length.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from engine import frames
from engine.errors import JobError

MAX_CLIP_SIDE = 1280  # preview clips are for looking, not for quality
THUMB_WIDTH = 256
MAX_THUMBS = 24
COLUMNS = 6


def frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.glob("frame_*") if p.suffix.lower() in (".png", ".exr"))
    if not files:
        raise JobError(f"no frames (frame_0001.png or .exr ...) in {folder}; bake first")
    return files


def write_preview(frames_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  fps: float = 24.0) -> dict[str, Path]:
    """Write the clip and the contact sheet into out_dir; returns their paths."""
    folder = Path(frames_dir)
    if not folder.is_dir():
        raise JobError(f"frames folder not found: {folder}")
    if not fps > 0:
        raise JobError(f"--fps must be positive, got {fps}")
    files = frame_files(folder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    thumbs_at = set(np.linspace(0, len(files) - 1, min(MAX_THUMBS, len(files))).round().astype(int))
    thumbs: list[tuple[int, np.ndarray]] = []
    clip = _ClipWriter(out, fps)
    try:
        for index, path in enumerate(files):
            image = frames.to_display(frames.read_image(path))
            clip.add(image)
            if index in thumbs_at:
                thumbs.append((_frame_number(path, index), _fit(image, THUMB_WIDTH)))
    finally:
        clip_path = clip.close()
    sheet_path = out / "contact_sheet.png"
    _write_png(sheet_path, contact_sheet(thumbs))
    return {"preview": clip_path, "contact_sheet": sheet_path}


def contact_sheet(thumbs: list[tuple[int, np.ndarray]], columns: int = COLUMNS) -> np.ndarray:
    """A grid of BGR thumbnails (all the same size), each labelled with its frame number."""
    columns = min(columns, len(thumbs))
    rows = math.ceil(len(thumbs) / columns)
    height, width = thumbs[0][1].shape[:2]
    gap = 4
    sheet = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 32, np.uint8)
    for slot, (number, thumb) in enumerate(thumbs):
        y = gap + (slot // columns) * (height + gap)
        x = gap + (slot % columns) * (width + gap)
        tile = thumb.copy()
        label = str(number)
        scale = max(0.4, width / 400)
        org = (4, int(18 * scale) + 4)
        # Dark outline under white text: readable on any picture.
        cv2.putText(tile, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        sheet[y:y + height, x:x + width] = tile
    return sheet


class _ClipWriter:
    """MP4 when OpenCV can, else animated GIF; the frame size is fixed by the first frame."""

    def __init__(self, out: Path, fps: float):
        self.out, self.fps = out, fps
        self.size: tuple[int, int] | None = None
        self.video: cv2.VideoWriter | None = None
        self.gif_frames: list[np.ndarray] | None = None
        self.path = out / "preview.mp4"

    def add(self, image: np.ndarray) -> None:
        if self.size is None:
            self.size = _clip_size(image.shape[1], image.shape[0])
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                         self.fps, self.size)
            if not self.video.isOpened():
                self.video, self.gif_frames = None, []
                self.path = self.out / "preview.gif"
        image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.video is not None:
            self.video.write(image)
        else:
            self.gif_frames.append(image)

    def close(self) -> Path:
        if self.video is not None:
            self.video.release()
        elif self.gif_frames:
            animation = cv2.Animation()
            animation.frames = self.gif_frames
            animation.durations = [max(1, round(1000 / self.fps))] * len(self.gif_frames)
            animation.loop_count = 0
            if not cv2.imwriteanimation(str(self.path), animation):
                raise JobError(f"this OpenCV can write neither MP4 nor GIF to {self.path}")
        return self.path


def _clip_size(width: int, height: int) -> tuple[int, int]:
    # Codecs want even sides, and tiny stills are scaled up so players show something.
    factor = min(1.0, MAX_CLIP_SIDE / max(width, height))
    factor = max(factor, 64 / min(width, height)) if min(width, height) < 64 else factor
    return (max(2, 2 * round(width * factor / 2)), max(2, 2 * round(height * factor / 2)))


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    interpolation = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _frame_number(path: Path, index: int) -> int:
    digits = path.stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else index + 1


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode the contact sheet")
    buffer.tofile(path)
