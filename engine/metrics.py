"""Quality measures (docs/ARCHITECTURE.md, "Quality measures"): one implementation for tests,
benchmarks and model cards.

Clips are arrays [T, H, W, C] (uint8, or float in [0, 1]); flows are H x W x 2 (dx, dy) in
pixels, forward, from engine/flow.dis_flow (the one optical-flow implementation); masks are
H x W, a pixel is inside where the mask is > 0.5.

  flow_histograms       DIS flow between consecutive frames -> magnitude histogram and
                        magnitude-weighted direction histogram (optionally inside a mask)
  histogram_intersection  sum(min(p, q)) of two normalised histograms, in [0, 1]
  motion_statistics     both intersections between two clips (a region and its exemplar)
  loop_seam_error       last->first difference against the mean neighbouring-frame difference
  ssim / layout_fidelity  SSIM (Gaussian window) between frame 0 and the still, in a region
  background_leakage    mean flow magnitude outside the masks / inside them
  poke_following        cosine and magnitude ratio of the mean flow in a poke patch
  unexplained_change    motion vs flicker: what the DIS flow between frames does not explain
  drift_coherence       |mean flow| / mean |flow| over the whole clip, in a mask
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.flow import dis_flow

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
    t -> t+1, "ratio" = seam / neighbour (about 1 for a seamless loop, >> 1 for a jump).
    Values in the clip's units ([0, 1] for float clips, 0..255 for uint8)."""
    clip = np.asarray(clip)
    if len(clip) < 2:
        raise ValueError("a loop needs at least 2 frames")
    values = clip.astype(np.float32)
    seam = float(np.abs(values[-1] - values[0]).mean())
    neighbour = float(np.abs(np.diff(values, axis=0)).mean())
    if neighbour > 0:
        ratio = seam / neighbour
    else:
        ratio = 0.0 if seam == 0 else float("inf")
    return {"seam": seam, "neighbour": neighbour, "ratio": ratio}


def unexplained_change(clip, mask=None, preset: str = "medium") -> float:
    """Motion vs flicker: for each pair t -> t+1, frame t warped onto frame t+1 by the DIS flow
    between them (the flow from t+1 back to t, so that warped(q) = frame_t(q + flow(q)) samples
    frame t where the content of q came from; cv2.remap, bilinear, borders repeated), then
    mean |frame t+1 - warped| / mean |frame t+1 - frame t| over the mask's pixels and channels;
    the mean over the pairs that change at all. A drifting texture is about 0.3 (what is left is
    resampling and DIS's own error), real footage about 0.5, noise or colour flicker about 1
    (nothing moves, so the flow explains nothing). 0 for a clip in which nothing changes."""
    values = _as_clip(clip)
    values = values.astype(np.float32) * (1 / 255.0 if values.dtype == np.uint8 else 1.0)
    if values.ndim == 3:
        values = values[..., None]
    height, width = values.shape[1:3]
    inside = np.ones((height, width), bool) if mask is None else _mask(mask, (height, width))
    if not inside.any():
        raise ValueError("the mask is empty")
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    ratios = []
    for before, after in zip(values[:-1], values[1:]):
        change = float(np.abs(after - before)[inside].mean())
        if change == 0:
            continue
        back = dis_flow(after, before, preset)  # content at q in t+1 was at q + back(q) in t
        warped = cv2.remap(before, xs + back[..., 0], ys + back[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).reshape(before.shape)
        ratios.append(float(np.abs(after - warped)[inside].mean()) / change)
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
