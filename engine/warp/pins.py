"""Static masks -> a pin map: 1 where pixels must not move, feathered to 0 outside.

The feather lies *outside* the drawn shape: everything the artist enclosed stays exactly still
(bit-identical to the still in every frame), and motion fades in over `feather` pixels beyond
the outline instead of stopping at a hard edge. Pixels at least half covered by a mask count as
inside; the ramp is a smoothstep of the distance to the nearest inside pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engine.render import smoothstep

PIN_RADIUS_SHARE = 0.02  # a pin's radius, of the shorter side, when its stroke has no width


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


def pin_discs(pins: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray | None:
    """[H, W] pin map of pins (x, y, radius) in working pixels: 1 inside each disc, a smooth
    fall-off over as far again outside. Radius 0 (a click drawn with no width) takes
    PIN_RADIUS_SHARE of the shorter side. The
    poke and Dynamic Texture engines' pins (a click without a drag)."""
    if not pins:
        return None
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    out = np.zeros((height, width), np.float32)
    for x, y, radius in pins:
        radius = radius if radius > 0 else PIN_RADIUS_SHARE * min(width, height)
        distance = np.hypot(xs - x, ys - y) / max(radius, 0.5)
        np.maximum(out, 1.0 - smoothstep(distance, 1.0, 2.0), out=out)
    return out
