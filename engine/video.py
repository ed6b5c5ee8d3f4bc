"""Reading video files: the one place clips are decoded, for every engine and trainer.

Frames come back as RGB uint8 arrays (H x W x 3), the same channel order as engine/frames.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine.errors import JobError


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise JobError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise JobError(f"cannot open video {path}: not a format this OpenCV decodes "
                       "(convert it to MP4/H.264 or a folder of PNG frames)")
    return capture


def video_info(path: str | os.PathLike) -> dict:
    """fps, frame count (as the container reports it; may be approximate), width, height."""
    capture = open_video(path)
    try:
        return {"fps": capture.get(cv2.CAP_PROP_FPS) or 0.0,
                "frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}
    finally:
        capture.release()


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None,
                stride: int = 1) -> Iterator[np.ndarray]:
    """RGB uint8 frames start, start+stride, ... < stop, decoded in order (seeking is
    unreliable in many containers, so frames before `start` are decoded and dropped)."""
    if stride < 1:
        raise ValueError("stride must be >= 1")
    capture = open_video(path)
    try:
        index = 0
        while stop is None or index < stop:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start and (index - start) % stride == 0:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def read_video(path: str | os.PathLike, start: int = 0, stop: int | None = None,
               stride: int = 1, min_frames: int = 1) -> np.ndarray:
    """All selected frames as T x H x W x 3 RGB uint8; a clip shorter than min_frames is an
    error that names the file."""
    frames = list(iter_frames(path, start, stop, stride))
    if len(frames) < min_frames:
        raise JobError(f"video {path} has {len(frames)} usable frames, at least {min_frames} "
                       "are needed; use a longer clip")
    return np.stack(frames)
