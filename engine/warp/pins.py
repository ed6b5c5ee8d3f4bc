"""Static masks -> a pin map: 1 where pixels must not move, feathered to 0 outside.

The feather lies *outside* the drawn shape: everything the artist enclosed stays exactly still
(bit-identical to the still in every frame), and motion fades in over `feather` pixels beyond
the outline instead of stopping at a hard edge. Pixels at least half covered by a mask count as
inside; the ramp is a smoothstep of the distance to the nearest inside pixel.
"""

from __future__ import annotations

import cv2
import numpy as np


def pin_map(masks: list[np.ndarray], feather: float) -> np.ndarray | None:
    """Union of the masks (H x W float in [0, 1]) feathered outward; None when nothing is pinned."""
    if not masks:
        return None
    coverage = np.maximum.reduce([np.clip(m, 0.0, 1.0) for m in masks]).astype(np.float32)
    inside = coverage >= 0.5
    if not inside.any():
        return coverage if coverage.any() else None
    if feather <= 0:
        return np.where(inside, 1.0, coverage).astype(np.float32)
    outside = (~inside).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    t = np.clip(distance / feather, 0.0, 1.0)
    ramp = 1.0 - t * t * (3.0 - 2.0 * t)
    return np.maximum(ramp, coverage).astype(np.float32)
