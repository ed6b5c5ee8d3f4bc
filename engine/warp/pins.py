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
    """Union of the masks (H x W float32 in [0, 1]) feathered outward; None when nothing is
    pinned. Works in place, in the first mask's memory (at 8K one such map is 130 MB): the
    masks given are consumed."""
    if not masks:
        return None
    coverage = masks[0]
    for mask in masks[1:]:
        np.maximum(coverage, mask, out=coverage)
    np.clip(coverage, 0.0, 1.0, out=coverage)
    inside = coverage >= 0.5
    if not inside.any():
        return coverage if coverage.any() else None
    if feather <= 0:
        coverage[inside] = 1.0
        return coverage
    distance = cv2.distanceTransform((~inside).view(np.uint8), cv2.DIST_L2,
                                     cv2.DIST_MASK_PRECISE)
    del inside
    t = distance
    np.multiply(t, 1.0 / feather, out=t)
    np.clip(t, 0.0, 1.0, out=t)
    square = t * t
    np.multiply(t, -2.0, out=t)
    np.add(t, 3.0, out=t)
    np.multiply(t, square, out=t)  # smoothstep(t) = t^2 (3 - 2t)
    del square
    np.subtract(1.0, t, out=t)  # the ramp: 1 at the outline, 0 at `feather` pixels out
    np.maximum(t, coverage, out=t)
    return t
