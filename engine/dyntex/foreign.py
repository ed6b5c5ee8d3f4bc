"""Content a drifting region should not carry: what an artist's quick mask takes in at its edge
(the twigs of a tree, a ridge under the sky, a rock at a river's bank) and that does not look
like the region.

Drawn as closed strokes, a sky mask rarely follows a tree's foliage pixel for pixel; whatever it
takes in drifts off with the clouds as debris (seen on Big Buck Bunny's frame 0: twigs and a
piece of the horizon slid across the sky). The region's own look is read from its deep interior (its
pixels further from the mask's edge than half the furthest one, and than the edge band; the
image border is not an edge): a histogram of their CIELAB colours. A pixel of the region whose colour that histogram (and its
neighbouring bins) has almost never seen is foreign; foreign pixels that form a patch touching
the edge band are held like a `static` mask (engine/dyntex/advect.py: they stay the still, the
drift fades towards them and slides past, and they are not in the canvas the region drifts).
Foreign patches deep inside (a bird, a darker cloud) are left to move: only an edge can be a
mask's mistake.
"""

from __future__ import annotations

import cv2
import numpy as np


BINS = (10, 16, 16)             # CIELAB L, a, b bins over their ranges
RANGES = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))
RARE = 2e-4                     # share of the interior under which a colour (3x3x3 bins) is unseen
MIN_INTERIOR = 400              # pixels: a smaller interior says too little about the region
DEEP = 0.5                      # of the region's largest distance to its edge: its deep interior
GROW = 2                        # pixels a held patch is grown by (its anti-aliased rim)


def foreign_content(still: np.ndarray, mask: np.ndarray, band: float) -> np.ndarray | None:
    """The pixels of a region (mask >= 0.5) to hold, bool [H, W], or None when there are none
    (or the interior is too small to tell). still: the picture [H, W, C] in its own type; band:
    the edge band in pixels."""
    inside = mask >= 0.5
    core = inside.astype(np.uint8)
    padded = cv2.copyMakeBorder(core, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # the deep interior: a rough mask's edge strays into its neighbours by more than the band
    interior = distance > max(band, DEEP * float(distance.max()))
    if interior.sum() < MIN_INTERIOR:
        return None
    lab = _lab(still)
    index = _bins(lab)
    seen = np.bincount(index[interior], minlength=int(np.prod(BINS))).reshape(BINS)
    seen = seen.astype(np.float32) / float(interior.sum())
    # a colour counts as seen when it or a neighbouring bin was: the histogram's bins are coarse
    near = np.pad(seen, 1)
    near = np.max([near[i:i + BINS[0], j:j + BINS[1], k:k + BINS[2]]
                   for i in range(3) for j in range(3) for k in range(3)], axis=0)
    unseen = (near.reshape(-1)[index] < RARE) & inside
    if not unseen.any():
        return None
    unseen = cv2.morphologyEx(unseen.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels = cv2.connectedComponents(unseen, connectivity=8)
    edge = inside & ~interior
    touching = np.unique(labels[edge & (labels > 0)])
    if touching.size == 0:
        return None
    held = np.isin(labels, touching).astype(np.uint8)
    held = cv2.dilate(held, np.ones((2 * GROW + 1, 2 * GROW + 1), np.uint8)) > 0
    return held & inside


def _lab(still: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 CIELAB of a still's colour (synthesis.display_float's sRGB)."""
    from engine.dyntex.synthesis import display_float

    return cv2.cvtColor(display_float(still), cv2.COLOR_RGB2Lab)


def _bins(lab: np.ndarray) -> np.ndarray:
    """The flat histogram bin of every pixel [H, W] (int64)."""
    index = np.zeros(lab.shape[:2], np.int64)
    for axis, (count, (low, high)) in enumerate(zip(BINS, RANGES)):
        position = ((lab[..., axis] - low) / (high - low) * count).astype(np.int64)
        index = index * count + np.clip(position, 0, count - 1)
    return index
