"""Optical flow with OpenCV's DIS: the one implementation every engine and trainer uses
(poke extraction, MSOE training targets, motion statistics, evaluation).

Flow is H x W x 2 float32 (dx, dy) in pixels of the frames given, forward: the content at p in
frame a is at p + flow(p) in frame b.
"""

from __future__ import annotations

import cv2
import numpy as np

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
           "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def to_grey(frame: np.ndarray) -> np.ndarray:
    """uint8 greyscale of an RGB(A)/grey uint8 or float [0, 1] frame."""
    if frame.dtype != np.uint8:
        frame = np.clip(np.asarray(frame, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame[:, :, :3], cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame)


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from frame a to frame b (same size, any of the types to_grey takes)."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"frames differ in size: {a.shape[:2]} vs {b.shape[:2]}")
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    return dis.calc(to_grey(a), to_grey(b), None)


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Flow resampled to width x height, its vectors scaled to the new pixel units."""
    h, w = flow.shape[:2]
    interpolation = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    out = cv2.resize(flow, (width, height), interpolation=interpolation)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    return out
