"""Quality measures (docs/ARCHITECTURE.md, "Quality measures"): one implementation for tests,
benchmarks and model cards.

Clips are arrays [T, H, W, C] (uint8, or float in [0, 1]); flows are H x W x 2 (dx, dy) in
pixels, forward, from engine/flow.dis_flow (the one optical-flow implementation); masks are
H x W, a pixel is inside where the mask is > 0.5.

  flow_histograms       DIS flow between consecutive frames -> magnitude histogram and
                        magnitude-weighted direction histogram (optionally inside a mask)
  histogram_intersection  sum(min(p, q)) of two normalised histograms, in [0, 1]
  motion_statistics     both intersections between two clips (a region and its exemplar)
  loop_seam_error       last->first difference against the neighbouring-frame differences (their
                        mean, and the largest)
  ssim / layout_fidelity  SSIM (Gaussian window) between frame 0 and the still, in a region
  background_leakage    mean flow magnitude outside the masks / inside them
  poke_following        cosine and magnitude ratio of the mean flow in a poke patch
  unexplained_change    motion vs flicker: what the DIS flow between frames does not explain
  drift_coherence       |mean flow| / mean |flow| over the whole clip, in a mask
  sway                  mean |flow| and the principal axis of the flow vectors, in a mask (an
                        oscillating region: how far and along which line it swings)
  held_identity         are the frames the still bit for bit where they must be (outside every
                        motion mask): differing pixels and the largest difference
  colour_shift          style: how far a region's Lab mean/std moved from the still's toward
                        the painting's (1 = the painting's colour statistics, 0 = unchanged)
  orientation_shift     style: the same ratio for brushwork, gradient orientation and
                        normalised magnitude histograms at one analysis scale
  edge_similarity       style: SSIM of the normalised Sobel edge maps of still and result
  face_structure        faces: the largest rigid-landmark residual (MediaPipe mesh, similarity
                        fit) of the still's face over the frames; 1.0 where the face is lost
  person_edge_seam      faces: length of edge lines in a band along the person's silhouette,
                        frame / still, of the frame furthest from 1 (a seam or doubled outline
                        > 1, blur < 1)
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.flow import dis_flow

ROUNDING = 1 / 255  # one 8-bit level: unexplained_change's dead zone

# Magnitude histogram range (pixels per frame): faster motion lands in the last bin. Both clips
# of a comparison must use the same bins, so the range is fixed rather than data-dependent.
MAGNITUDE_RANGE = 8.0
MAGNITUDE_BINS = 16
DIRECTION_BINS = 16


# --------------------------------------------------------------------------------------------
# Motion statistics


def clip_flows(clip, preset: str = "medium") -> np.ndarray:
    """DIS flow between each pair of consecutive frames: [T-1, H, W, 2]."""
    clip = _as_clip(clip)
    return np.stack([dis_flow(clip[t], clip[t + 1], preset) for t in range(len(clip) - 1)])


def flow_histograms(clip, bins: tuple[int, int] = (MAGNITUDE_BINS, DIRECTION_BINS),
                    mask=None, max_magnitude: float = MAGNITUDE_RANGE,
                    flows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Normalised histograms of the consecutive-frame DIS flow of `clip` (or of `flows`
    [N, H, W, 2] given directly):
      "magnitude": bins[0] bins over [0, max_magnitude] px/frame with edges
        max_magnitude * (i / bins[0])^2, larger values in the last bin, each pixel counts once;
      "direction": bins[1] bins, bin i centred on the angle -pi + 2 pi i / bins[1] of
        atan2(dy, dx) in image coordinates, y down (with 8 bins, 4 is right and 6 is down),
        each pixel weighted by its magnitude; all zeros for a still clip;
      "mean_magnitude": mean flow magnitude, px/frame.
    `mask` H x W (or [T, H, W], one per frame; the first T-1 are used) limits the pixels."""
    if flows is None:
        flows = clip_flows(clip)
    flows = np.asarray(flows, np.float32)
    if flows.ndim == 3:
        flows = flows[None]
    inside = _flow_mask(mask, flows.shape)
    magnitude = np.hypot(flows[..., 0], flows[..., 1])[inside]
    angle = np.arctan2(flows[..., 1], flows[..., 0])[inside]
    # Square-root spaced bins: fine where most natural motion is (fractions of a pixel per
    # frame), coarse for fast motion. Edge i is max_magnitude * (i / n)^2.
    scaled = np.sqrt(np.minimum(magnitude / max_magnitude, 1 - 1e-6))
    mag_hist, _ = np.histogram(scaled, bins=bins[0], range=(0.0, 1.0))
    # Bins centred on -pi + 2 pi i / n (bin n/2 is "right", 3n/4 "down"): motion along an
    # axis falls in the middle of a bin, not on an edge.
    half_bin = np.pi / bins[1]
    angle = np.mod(angle + np.pi + half_bin, 2 * np.pi)
    dir_hist, _ = np.histogram(angle, bins=bins[1], range=(0.0, 2 * np.pi), weights=magnitude)
    return {"magnitude": _normalised(mag_hist), "direction": _normalised(dir_hist),
            "mean_magnitude": float(magnitude.mean()) if magnitude.size else 0.0}


def histogram_intersection(h1, h2) -> float:
    """sum(min(p, q)) of the two histograms, each normalised to sum 1: 1 for equal shapes, 0 for
    disjoint ones. Two empty (all-zero) histograms count as equal (1), one empty as 0."""
    p, q = np.asarray(h1, np.float64).ravel(), np.asarray(h2, np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"histograms have different bins: {p.size} vs {q.size}")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        return 1.0 if sp <= 0 and sq <= 0 else 0.0
    return float(np.minimum(p / sp, q / sq).sum())


def motion_statistics(clip_a, clip_b, mask_a=None, mask_b=None,
                      bins: tuple[int, int] = (MAGNITUDE_BINS, DIRECTION_BINS)) -> dict:
    """Histogram intersections of DIS flow magnitude and direction between two clips (e.g. a
    synthesized region and its exemplar), each optionally inside its own mask:
    {"magnitude": x, "direction": y}, both in [0, 1], 1 = same statistics. Magnitudes are in
    pixels per frame, so compare clips at the same scale."""
    a = flow_histograms(clip_a, bins, mask_a)
    b = flow_histograms(clip_b, bins, mask_b)
    return {"magnitude": histogram_intersection(a["magnitude"], b["magnitude"]),
            "direction": histogram_intersection(a["direction"], b["direction"])}


def loop_seam_error(clip) -> dict[str, float]:
    """How visible the wrap from the last frame back to the first is: "seam" = mean absolute
    difference last -> first, "neighbour" = mean over t of the mean absolute difference
    t -> t+1, "ratio" = seam / neighbour (about 1 for a seamless loop of steady motion, >> 1
    for a jump), "largest" = the largest of those t -> t+1 differences, "largest_ratio" =
    seam / largest (<= 1: the wrap is no larger a step than one the clip takes anyway). The
    second reads motion whose speed varies (a sway passes its turning points slowly, a loop
    cross-fade period makes every period's wrap a little larger) without calling a steady
    part of it a seam. Values in the clip's units ([0, 1] for float clips, 0..255 for uint8)."""
    clip = np.asarray(clip)
    if len(clip) < 2:
        raise ValueError("a loop needs at least 2 frames")
    values = clip.astype(np.float32)
    seam = float(np.abs(values[-1] - values[0]).mean())
    steps = np.abs(np.diff(values, axis=0)).reshape(len(values) - 1, -1).mean(axis=1)
    neighbour, largest = float(steps.mean()), float(steps.max())

    def ratio(reference: float) -> float:
        if reference > 0:
            return seam / reference
        return 0.0 if seam == 0 else float("inf")

    return {"seam": seam, "neighbour": neighbour, "ratio": ratio(neighbour),
            "largest": largest, "largest_ratio": ratio(largest)}


def unexplained_change(clip, mask=None, preset: str = "medium",
                       rounding: float = ROUNDING) -> float:
    """Motion vs flicker: for each pair t -> t+1, frame t warped onto frame t+1 by the DIS flow
    between them (the flow from t+1 back to t, so that warped(q) = frame_t(q + flow(q)) samples
    frame t where the content of q came from; cv2.remap, bilinear, borders repeated), then
    mean |frame t+1 - warped| / mean |frame t+1 - frame t| over the mask's pixels and channels,
    each absolute difference less `rounding` (clamped at 0); the mean over the pairs that change
    by more than that at all. A drifting texture is about 0.3 (what is left is resampling and
    DIS's own error), real footage about 0.5, noise or colour flicker about 1 (nothing moves,
    so the flow explains nothing). 0 for a clip in which nothing changes.

    `rounding` (in [0, 1] units) is the dead zone: two 8-bit frames carry up to half a level of
    rounding each, so a one-level difference between them is what storing motion in 8 bits
    makes, not flicker. Without it a featureless region (a smooth sky drifting along its own
    gradient, which changes by a fraction of a level a frame) measures the rounding, about
    0.55-0.7 even for an exact drift. 0 counts every difference."""
    values = _as_clip(clip)
    values = values.astype(np.float32) * (1 / 255.0 if values.dtype == np.uint8 else 1.0)
    if values.ndim == 3:
        values = values[..., None]
    height, width = values.shape[1:3]
    inside = np.ones((height, width), bool) if mask is None else _mask(mask, (height, width))
    if not inside.any():
        raise ValueError("the mask is empty")
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    dead = rounding + 1e-6 if rounding > 0 else 0.0  # a level k/255 in float32 is off by ~6e-8
    ratios = []
    for before, after in zip(values[:-1], values[1:]):
        change = float(np.maximum(np.abs(after - before)[inside] - dead, 0).mean())
        if change == 0:
            continue
        back = dis_flow(after, before, preset)  # content at q in t+1 was at q + back(q) in t
        warped = cv2.remap(before, xs + back[..., 0], ys + back[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).reshape(before.shape)
        left = float(np.maximum(np.abs(after - warped)[inside] - dead, 0).mean())
        ratios.append(left / change)
    return float(np.mean(ratios)) if ratios else 0.0


def drift_coherence(clip, mask=None, flows: np.ndarray | None = None) -> float:
    """|mean flow| / mean |flow| of the consecutive-frame DIS flow, pooled over every pair and
    every pixel in the mask: about 1 for a steady drift (clouds, a river), near 0 for motion
    whose time mean is small against its size (grass swaying back and forth, flicker, noise).
    0 when nothing moves."""
    if flows is None:
        flows = clip_flows(clip)
    flows = np.asarray(flows, np.float32)
    if flows.ndim == 3:
        flows = flows[None]
    vectors = flows[_flow_mask(mask, flows.shape)]
    if vectors.size == 0:
        raise ValueError("the mask is empty")
    magnitude = float(np.hypot(vectors[:, 0], vectors[:, 1]).mean())
    if magnitude == 0:
        return 0.0
    return float(np.hypot(*vectors.mean(axis=0, dtype=np.float64))) / magnitude


def sway(flows: np.ndarray, mask=None) -> dict:
    """How an oscillating region swings, from consecutive-frame flows [N, H, W, 2] (clip_flows):
    "magnitude" = mean |flow| over every pair and every pixel in the mask (px/frame), "axis" =
    the unit principal direction of those flow vectors (the eigenvector of their second-moment
    matrix about zero with the largest eigenvalue, x >= 0: a sway has no sign), (1, 0) when
    nothing moves. Compare axes with |cosine|."""
    flows = np.asarray(flows, np.float32)
    if flows.ndim == 3:
        flows = flows[None]
    vectors = flows[_flow_mask(mask, flows.shape)].astype(np.float64)
    if vectors.size == 0:
        raise ValueError("the mask is empty")
    magnitude = float(np.hypot(vectors[:, 0], vectors[:, 1]).mean())
    if magnitude == 0:
        return {"magnitude": 0.0, "axis": (1.0, 0.0)}
    _, axes = np.linalg.eigh(vectors.T @ vectors / len(vectors))
    axis = axes[:, -1] * (1.0 if axes[0, -1] >= 0 else -1.0)
    return {"magnitude": magnitude, "axis": (float(axis[0]), float(axis[1]))}


def held_identity(still, frames, held) -> dict:
    """Are the frames the still, bit for bit, on the pixels of `held` (H x W bool, e.g. outside
    every motion mask)? "pixels" = the most held pixels that differ from the still (in any
    channel) in one frame, "max_difference" = the largest absolute difference of a held sample
    over all frames (in the pictures' own units: 0..255 for uint8), "identical" = no held pixel
    differs in any frame. Pictures compared as they are: no conversion, no tolerance."""
    still = np.asarray(still)
    held = np.asarray(held, bool)
    if held.shape != still.shape[:2]:
        raise ValueError(f"the held mask is {held.shape}, the still {still.shape[:2]}")
    reference = still[held]
    pixels, largest = 0, 0.0
    for frame in frames:
        frame = np.asarray(frame)
        if frame.shape != still.shape:
            raise ValueError(f"a frame is {frame.shape}, the still {still.shape}")
        values = frame[held]
        differ = values != reference
        if differ.any():
            count = int((differ.reshape(len(values), -1).any(axis=1)).sum())
            pixels = max(pixels, count)
            change = np.abs(values.astype(np.float64) - reference.astype(np.float64))
            largest = max(largest, float(change.max()))
    return {"pixels": pixels, "max_difference": largest, "identical": pixels == 0}


# --------------------------------------------------------------------------------------------
# Layout fidelity


def ssim_map(a, b, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004) of two images of the same size, H x W (mean over
    channels): local means, variances and covariance under a Gaussian window (sigma 1.5,
    11 x 11, cv2.GaussianBlur, borders reflected), C1 = (0.01 L)^2, C2 = (0.03 L)^2 with
    L = 1 (images are compared as floats in [0, 1])."""
    x, y = _as_unit_float(a), _as_unit_float(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}")
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(v):
        return cv2.GaussianBlur(v, (11, 11), sigma, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(s.shape[0], s.shape[1], -1).mean(axis=2)


def layout_fidelity(frame0, still, mask=None) -> float:
    """Mean SSIM between frame 0 and the still inside `mask` (whole image without one)."""
    s = ssim_map(frame0, still)
    if mask is None:
        return float(s.mean())
    inside = _mask(mask, s.shape)
    if not inside.any():
        raise ValueError("the mask is empty")
    return float(s[inside].mean())


def ssim(a, b) -> float:
    return layout_fidelity(a, b)


# --------------------------------------------------------------------------------------------
# Style: how much of the painting a stylized still took on, and whether it is still the picture
#
# colour_shift and orientation_shift are the same ratio over two different statistics S:
#     shift = (d(S(still), S(painting)) - d(S(result), S(painting))) / d(S(still), S(painting))
# 1: the region now has the painting's statistics; 0: as far from them as the still was; < 0:
# moved away from them. A ratio rather than the distance itself, because paintings differ in
# how far they are from a given still: the ratio says how much of the way the style went.
# Colour (Lab moments) and brushwork (gradient histograms, contrast normalised) are separated so
# that a plain colour transfer scores high on the first and near 0 on the second.

# Below these the still already has the painting's statistics: there is no way to go, and the
# ratio (a difference of two tiny distances over a tiny distance) would be noise, so it is nan.
COLOUR_TOLERANCE = 0.5        # Lab units (a just-noticeable colour difference is about 2.3)
ORIENTATION_TOLERANCE = 0.01  # histogram distance, in [0, 1]
# Brushwork is compared with every picture resized so its longer side is this many pixels:
# gradient orientations and the spread of gradient magnitudes depend on the scale they are
# measured at (a 4000 px scan of a painting has strokes tens of pixels wide, a 512 px still
# edges a few pixels wide), so the three pictures are measured as if seen at one size. 512 px is
# about the size a stylization works at (VGG features of Gatys-style transfer) and the size
# the evaluation renders at, large enough for strokes to span several pixels.
ANALYSIS_SIDE = 512
ORIENTATION_BINS = 18          # over [0, pi): 10 degrees each (a stroke has no sign)
EDGE_MAGNITUDE_BINS = 16       # over [0, EDGE_MAGNITUDE_RANGE] x the mean magnitude
EDGE_MAGNITUDE_RANGE = 4.0


def colour_shift(still, result, painting, mask=None) -> float:
    """How far the colour statistics of the region moved from the still's toward the
    painting's. Each picture (RGB, uint8/uint16/float in [0, 1]) is converted to Lab (OpenCV, on
    float RGB in [0, 1]); its statistics are the mean and standard deviation of L, a and b:
    inside `mask` (H x W, the still's size) for the still and the result (same size as the
    still), over the whole painting (any size). With d the Euclidean distance between these
    6-vectors (Lab units),
        shift = (d(still, painting) - d(result, painting)) / d(still, painting):
    1 = the region now has the painting's colour statistics (a Reinhard colour transfer is
    about 1), 0 = unchanged, < 0 = moved away from the painting's colours. Mean and spread are
    what a viewer reads as "the palette" of a region, and exactly what a colour transfer sets,
    so the measure is the share of that transfer a stylization made. nan when
    d(still, painting) < COLOUR_TOLERANCE (0.5 Lab units): the still already has the
    painting's statistics, there is no way to go, and the ratio would be noise."""
    still, result, inside = _style_pair(still, result, mask)
    target = _lab_moments(_rgb(painting), None)
    before = float(np.linalg.norm(_lab_moments(still, inside) - target))
    after = float(np.linalg.norm(_lab_moments(result, inside) - target))
    if before < COLOUR_TOLERANCE:
        return float("nan")
    return (before - after) / before


def orientation_shift(still, result, painting, mask=None) -> float:
    """How far the brushwork of the region moved from the still's toward the painting's: the
    ratio of colour_shift with a stroke statistic. Each picture is resized so its longer side
    is ANALYSIS_SIDE (512) px (area-averaged down, bilinear up; the mask with it), and of its
    luminance (Lab L / 100) the 3 x 3 Sobel gradient gives two normalised histograms, inside
    the mask for still and result, over the whole painting:
      orientation: ORIENTATION_BINS (18) bins over [0, pi) of the gradient's orientation, each
        pixel weighted by its gradient magnitude (the direction strokes and edges run in);
      magnitude: EDGE_MAGNITUDE_BINS (16) bins of the magnitude divided by its mean over the
        same pixels, over [0, 4] (larger in the last bin): how the gradient energy is spread,
        many comparable strokes or few strong edges, whatever the contrast.
    Distance = mean of (1 - histogram_intersection) of the two, in [0, 1], and
        shift = (d(still, painting) - d(result, painting)) / d(still, painting):
    1 = the region has the painting's stroke directions and texture, 0 = unchanged, < 0 =
    further from them. Magnitudes are normalised by their mean so that a contrast change,
    which colour_shift already counts, does not count as brushwork: a plain colour transfer
    scores near 0 here. nan when d(still, painting) < ORIENTATION_TOLERANCE (0.01)."""
    still, result, inside = _style_pair(still, result, mask)
    target = _stroke_histograms(_rgb(painting), None)
    reference = _stroke_histograms(still, inside)
    before = _stroke_distance(reference, target)
    after = _stroke_distance(_stroke_histograms(result, inside), target)
    if before < ORIENTATION_TOLERANCE:
        return float("nan")
    return (before - after) / before


def edge_similarity(still, result, mask=None) -> float:
    """Can an artist still tell the picture: SSIM (ssim_map) between the edge maps of the still
    and the result, inside `mask` when given. Both are resized so their longer side is
    ANALYSIS_SIDE (512) px; an edge map is the 3 x 3 Sobel gradient magnitude of the luminance
    (Lab L / 100) after a Gaussian blur of sigma 1 px (the picture's edges rather than pixel
    noise), divided by its own 99th percentile (inside the mask) and clipped to [0, 1], so that
    a global contrast or colour change leaves it as it was. 1 = the same edges where the still
    has them (identical pictures), near 0 = unrelated edges (another picture); a stylization
    that keeps the outlines and adds brush texture lands in between. SSIM rather than a
    correlation because it also compares the local contrast and structure of the edges, as the
    eye does."""
    still, result, inside = _style_pair(still, result, mask)
    size = _analysis_size(still.shape)
    keep = None if inside is None else _resized_mask(inside, size)
    maps = []
    for image in (still, result):
        grey = cv2.GaussianBlur(_luminance(_resized(image, size)), (0, 0), 1.0)
        edges = _sobel_magnitude(grey)
        top = float(np.percentile(edges if keep is None else edges[keep], 99))
        maps.append(np.clip(edges / top, 0, 1) if top > 1e-6 else np.zeros_like(edges))
    score = ssim_map(maps[0], maps[1])
    return float(score.mean() if keep is None else score[keep].mean())


def _style_pair(still, result, mask):
    still, result = _rgb(still), _rgb(result)
    if still.shape != result.shape:
        raise ValueError(f"the result must have the still's size: {result.shape[:2]} vs "
                         f"{still.shape[:2]}")
    inside = None if mask is None else _mask(mask, still.shape[:2])
    if inside is not None and not inside.any():
        raise ValueError("the mask is empty")
    return still, result, inside


def _rgb(image) -> np.ndarray:
    """H x W x 3 float32 RGB in [0, 1] (grey repeated, alpha dropped)."""
    image = np.clip(_as_unit_float(image), 0.0, 1.0)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"a picture is H x W (x C), got shape {image.shape}")
    if image.shape[2] in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _lab_moments(rgb: np.ndarray, inside) -> np.ndarray:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    if inside is not None:
        lab = lab[inside.ravel()]
    return np.concatenate([lab.mean(axis=0), lab.std(axis=0)])


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 0] / 100.0)


def _sobel_magnitude(grey: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return np.hypot(gx, gy)


def _analysis_size(shape) -> tuple[int, int]:
    """(width, height) with the longer side ANALYSIS_SIDE."""
    height, width = shape[:2]
    factor = ANALYSIS_SIDE / max(height, width)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _resized_mask(inside: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    resized = _resized(inside.astype(np.float32), size) > 0.5
    if not resized.any():
        raise ValueError("the mask is empty at the analysis scale; draw a larger region")
    return resized


def _stroke_histograms(rgb: np.ndarray, inside) -> tuple[np.ndarray, np.ndarray]:
    size = _analysis_size(rgb.shape)
    grey = _luminance(_resized(rgb, size))
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    if inside is not None:
        keep = _resized_mask(inside, size)
        magnitude, angle = magnitude[keep], angle[keep]
    magnitude, angle = magnitude.ravel(), angle.ravel()
    orientation, _ = np.histogram(angle, bins=ORIENTATION_BINS, range=(0.0, np.pi),
                                  weights=magnitude)
    mean = float(magnitude.mean()) if magnitude.size else 0.0
    if mean > 1e-8:
        scaled = np.minimum(magnitude / mean, EDGE_MAGNITUDE_RANGE * (1 - 1e-6))
        spread, _ = np.histogram(scaled, bins=EDGE_MAGNITUDE_BINS,
                                 range=(0.0, EDGE_MAGNITUDE_RANGE))
    else:  # a flat region: no strokes at all (all-zero histograms compare equal to each other)
        spread = np.zeros(EDGE_MAGNITUDE_BINS)
    return _normalised(orientation), _normalised(spread)


def _stroke_distance(a, b) -> float:
    return 0.5 * ((1 - histogram_intersection(a[0], b[0]))
                  + (1 - histogram_intersection(a[1], b[1])))


# --------------------------------------------------------------------------------------------
# Faces: does a moved face stay a face, and does the person sit in the background seamlessly

# A frame whose face MediaPipe no longer finds scores this: the residual of a face that is still
# a face stays near 0.02-0.08 and a melted one reaches 0.1-0.2 (DESIGN.md), so a vanished face
# counts as worse than any melted one rather than being skipped (skipping would reward melting a
# face beyond recognition).
FACE_LOST = 1.0
# Faces looked for per picture: the still's largest is the one measured, and in a frame the one
# nearest it, so a second person who comes and goes does not stand in for it.
FACE_CANDIDATES = 4
# Half-width of the band along the silhouette, as a share of the shorter side (at least
# SEAM_MIN_HALF px; 13 px at 512): a seam, halo or doubled outline lies within a few pixels of
# the edge, and the band must hold both outlines of a person a poke moved by a drag's length.
SEAM_BAND = 0.025
SEAM_MIN_HALF = 3
# Canny's hysteresis thresholds in the band, as shares of the still's 90th-percentile gradient
# there (its silhouette edge): low enough that an outline at half the contrast (a 50 % ghost)
# is a line, high enough that the background's faint texture and a model's noise are not.
SEAM_LOW, SEAM_HIGH = 0.15, 0.35


def face_structure(still, frames) -> float | None:
    """Do the frames keep the still's face a face: MediaPipe's face mesh on the still and on
    every frame (engine/face/landmarks.py detect_meshes); for the still's largest face, the
    frame's face nearest it (mean rigid landmark); engine/face/geometry.py rigid_residual (a
    similarity fitted on the landmarks that move with the skull, the largest residual over the
    still's inter-ocular distance); the maximum over the frames. ~0.02-0.08 for real head
    motion, 0.1-0.2 for a melted face. A frame in which the face is lost counts FACE_LOST
    (1.0), the worst there is: the result is capped at it. None when the still has no face.
    Pictures are RGB, uint8 or float in [0, 1]; needs mediapipe (requirements/face.txt; the
    JobError of a missing one says how to install it)."""
    from engine.face.geometry import RIGID, rigid_residual
    from engine.face.landmarks import detect_meshes

    faces = detect_meshes(still, FACE_CANDIDATES)
    if not faces:
        return None
    face = faces[0]
    centre = face[list(RIGID), :2].mean(0)
    worst = 0.0
    for frame in frames:
        found = detect_meshes(frame, FACE_CANDIDATES)
        if not found:
            return FACE_LOST
        nearest = min(found, key=lambda m: float(np.hypot(*(m[list(RIGID), :2].mean(0)
                                                             - centre))))
        worst = max(worst, rigid_residual(face, nearest))
    return min(worst, FACE_LOST)


def person_edge_seam(still, frames, person) -> float:
    """Is the person's edge as clean as in the still: in a band straddling the silhouette of
    `person` ([H, W] soft mask in [0, 1], the edge at 0.5; SEAM_BAND (2.5 %) of the shorter
    side, at least 3 px, each side), the length of edge lines in each frame over the still's,
    and of those ratios the one furthest from 1 (in log). Edge lines are Canny's (luminance,
    1 px Gaussian blur, 3 x 3 Sobel) with the same thresholds for every frame, SEAM_LOW and
    SEAM_HIGH of the still's 90th-percentile gradient in the band (its silhouette edge), so an
    outline at half the silhouette's contrast still counts. 1 = as many edge lines along the
    person as the still has; a seam line (an edge each side of it), a halo or a doubled outline
    adds lines (a second outline: about 2); blur or a smeared edge loses them (< 1). A length
    of lines rather than a sum of gradients because the sum cannot tell one edge from the same
    contrast split into two (a ghost), and a person moved a few pixels keeps its outline's
    length (the edge stays in the band). nan when the mask has no edge or the still has no
    edge line in the band: nothing to compare."""
    reference = _rgb(still)
    inside = np.asarray(person, np.float32)
    if inside.shape != reference.shape[:2]:
        raise ValueError(f"the person mask is {inside.shape}, the still {reference.shape[:2]}; "
                         "make the mask at the still's size")
    half = max(SEAM_MIN_HALF, round(SEAM_BAND * min(inside.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * half + 1, 2 * half + 1))
    binary = (inside > 0.5).astype(np.uint8)
    band = (cv2.dilate(binary, kernel) - cv2.erode(binary, kernel)) > 0
    if not band.any():
        return float("nan")

    def gradients(image):  # int16 Sobel of the 8-bit-scaled luminance, as cv2.Canny takes them
        grey = cv2.GaussianBlur(_luminance(_rgb(image)) * 255, (0, 0), 1.0)
        return [np.clip(np.round(cv2.Sobel(grey, cv2.CV_32F, dx, dy, ksize=3,
                                           borderType=cv2.BORDER_REFLECT)), -32768, 32767)
                .astype(np.int16) for dx, dy in ((1, 0), (0, 1))]

    dx, dy = gradients(reference)
    top = float(np.percentile(np.hypot(dx, dy, dtype=np.float32)[band], 90))
    low, high = SEAM_LOW * top, SEAM_HIGH * top

    def length(image):
        return int((cv2.Canny(*gradients(image), low, high, L2gradient=True)[band] > 0).sum())

    base = length(reference)
    if top <= 0 or base == 0:
        return float("nan")
    return furthest_from_one([length(frame) / base for frame in frames])


def furthest_from_one(ratios) -> float:
    """The ratio furthest from 1 in log terms (2 and 0.5 are as far): a seam and a blur are both
    a change of the edge; 1.0 for no ratios."""
    return max(ratios, key=lambda r: abs(np.log(max(r, 1e-12))), default=1.0)


# --------------------------------------------------------------------------------------------
# Masks and pokes


def background_leakage(flow, mask) -> float:
    """Mean flow magnitude outside the mask / inside it (0 = the background holds still).
    0 when nothing moves anywhere, inf when only the background moves."""
    flow = _hw2(flow)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    inside = _mask(mask, magnitude.shape)
    if inside.all() or not inside.any():
        raise ValueError("background leakage needs pixels both inside and outside the mask")
    moving, background = float(magnitude[inside].mean()), float(magnitude[~inside].mean())
    if moving == 0:
        return 0.0 if background == 0 else float("inf")
    return background / moving


def poke_following(flow, patch, requested) -> tuple[float, float]:
    """(cosine, magnitude ratio) between the mean flow over the poke patch and the requested
    (dx, dy). `patch` is an H x W mask or a box (x0, y0, x1, y1) in pixels (end exclusive);
    `flow` is usually dis_flow(first frame, last frame). Cosine 0 when either vector is 0."""
    flow = _hw2(flow)
    if isinstance(patch, (tuple, list)) and len(patch) == 4:
        x0, y0, x1, y1 = (int(v) for v in patch)
        region = flow[max(0, y0):y1, max(0, x0):x1].reshape(-1, 2)
    else:
        region = flow[_mask(patch, flow.shape[:2])]
    if region.size == 0:
        raise ValueError("the poke patch holds no pixels")
    mean = region.mean(axis=0).astype(np.float64)
    want = np.asarray(requested, np.float64)
    norm_mean, norm_want = float(np.hypot(*mean)), float(np.hypot(*want))
    if norm_want == 0:
        raise ValueError("the requested poke vector is zero")
    cosine = float(mean @ want / (norm_mean * norm_want)) if norm_mean > 0 else 0.0
    return cosine, norm_mean / norm_want


# --------------------------------------------------------------------------------------------
# Helpers


def _as_clip(clip) -> np.ndarray:
    clip = np.asarray(clip)
    if clip.ndim not in (3, 4) or len(clip) < 2:
        raise ValueError(f"a clip is [T >= 2, H, W(, C)], got shape {clip.shape}")
    return clip


def _as_unit_float(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32)


def _normalised(hist: np.ndarray) -> np.ndarray:
    hist = hist.astype(np.float64)
    total = hist.sum()
    return hist / total if total > 0 else hist


def _mask(mask, shape) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != tuple(shape):
        raise ValueError(f"mask is {mask.shape}, expected {tuple(shape)}")
    return mask > 0.5 if mask.dtype != bool else mask


def _flow_mask(mask, flows_shape) -> np.ndarray:
    n, h, w = flows_shape[:3]
    if mask is None:
        return np.ones((n, h, w), bool)
    mask = np.asarray(mask)
    if mask.ndim == 2:
        return np.broadcast_to(_mask(mask, (h, w)), (n, h, w))
    return np.stack([_mask(m, (h, w)) for m in mask[:n]])


def _hw2(flow) -> np.ndarray:
    """Flow as H x W x 2 (accepts the renderer's [2, H, W] too)."""
    flow = np.asarray(flow, np.float32)
    if flow.ndim == 3 and flow.shape[0] == 2 and flow.shape[2] != 2:
        flow = np.moveaxis(flow, 0, -1)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be H x W x 2, got {flow.shape}")
    return flow
