"""The numbers of one case x engine (docs/EVALUATE.md has the definitions). The measuring is
engine/metrics.py's; this module only decides which frames, flows and regions it gets.

Per sample (a clip of T frames, frame 0 the still's place; "generated" = frames 1..T-1):
  poke following   DIS flow frame 0 -> last frame, mean over each poke's patch: cosine to the
                   poke and magnitude ratio (metrics.poke_following), mean over the pokes
  leakage          the same flow: mean magnitude outside the moving region / inside
                   (metrics.background_leakage)
  sharpness        mean over generated frames of the variance of the Laplacian of the grey
                   frame / that of the still; over the whole frame and inside the moving region
  fidelity         SSIM outside the moving region between each generated frame and the still
                   (metrics.layout_fidelity): min and mean
Across samples: diversity, the per-pixel std of the generated frames across samples (colour
values in [0, 1], mean over frames and channels), averaged inside the moving region and over
the frame; flow histograms of consecutive-frame DIS flow (metrics.flow_histograms) inside and
outside the moving region.
Faces (face_numbers; poke engines, and any engine on a still with a face): face structure, the
rigid-landmark residual of the still's face in every frame (metrics.face_structure, 1.0 where
the face is lost; None without a face), and edge seam, edge lines along the person's silhouette
frame / still (metrics.person_edge_seam, the frame furthest from 1); across samples the largest
face structure and the edge seam furthest from 1.
A case with a style (style_numbers): colour and orientation shift of the stylized still toward
the painting inside the stylized area (metrics.colour_shift, orientation_shift), edge similarity
of still and stylized still (metrics.edge_similarity), and the unexplained change
(metrics.unexplained_change) in the moving region of the bake with the style and without it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.flow import dis_flow, to_grey
from engine.metrics import (background_leakage, clip_flows, colour_shift, edge_similarity,
                            face_structure, flow_histograms, furthest_from_one, layout_fidelity,
                            orientation_shift, person_edge_seam, poke_following,
                            unexplained_change)
from engine.report.stills import Scene


def laplacian_variance(image: np.ndarray, region: np.ndarray | None = None) -> float:
    """Variance of the 3 x 3 Laplacian of the grey image in [0, 1] (inside `region`)."""
    grey = to_grey(image).astype(np.float32) / 255.0
    response = cv2.Laplacian(grey, cv2.CV_32F)
    return float(response[region].var() if region is not None else response.var())


def sample_numbers(frames: list[np.ndarray], scene: Scene) -> dict:
    still, region = scene.still, scene.region
    flow = dis_flow(frames[0], frames[-1])
    following = [poke_following(flow, patch, (dx, dy))
                 for patch, (_, _, dx, dy) in zip(scene.patches, scene.pokes)]
    generated = frames[1:]
    fidelity = [layout_fidelity(frame, still, ~region) for frame in generated]
    return {
        "poke_cosine": float(np.mean([c for c, _ in following])),
        "poke_magnitude_ratio": float(np.mean([r for _, r in following])),
        "per_poke": [{"cosine": c, "magnitude_ratio": r} for c, r in following],
        "background_leakage": background_leakage(flow, region),
        "sharpness": _ratio([laplacian_variance(f) for f in generated],
                            laplacian_variance(still)),
        "sharpness_region": _ratio([laplacian_variance(f, region) for f in generated],
                                   laplacian_variance(still, region)),
        "fidelity_min": float(min(fidelity)),
        "fidelity_mean": float(np.mean(fidelity)),
    }


def face_numbers(frames: list[np.ndarray], still: np.ndarray, person: np.ndarray) -> dict:
    """Face structure and edge seam of one sample; None where there is nothing to measure (no
    face in the still, no person edge)."""
    seam = person_edge_seam(still, frames, person)
    return {"face_structure": face_structure(still, frames),
            "edge_seam": None if math.isnan(seam) else seam}


def diversity(clips: list[list[np.ndarray]], region: np.ndarray) -> dict | None:
    """Per-pixel std across samples; None with fewer than two samples."""
    if len(clips) < 2:
        return None
    spread = np.zeros(region.shape, np.float64)
    generated = len(clips[0]) - 1
    for t in range(1, len(clips[0])):  # one frame time at a time: memory O(samples x frame)
        values = np.stack([clip[t] for clip in clips]).astype(np.float32) / 255.0
        spread += values.std(axis=0).mean(axis=2)
    spread /= generated
    return {"region": float(spread[region].mean()), "frame": float(spread.mean())}


def histograms(clips: list[list[np.ndarray]], region: np.ndarray) -> dict:
    """Consecutive-frame flow histograms of all samples, inside and outside the region."""
    flows = np.concatenate([clip_flows(np.stack(clip)) for clip in clips])
    result = {}
    for name, mask in (("inside", region), ("outside", ~region)):
        h = flow_histograms(None, flows=flows, mask=mask)
        result[name] = {"magnitude": h["magnitude"].tolist(), "direction": h["direction"].tolist(),
                        "mean_magnitude": h["mean_magnitude"]}
    return result


def summary(samples: list[dict]) -> dict:
    """The row of the table: means over samples (fidelity_min: the minimum; face structure the
    largest and edge seam the one furthest from 1, None where not measured)."""
    def mean(key):
        values = [s[key] for s in samples]
        if any(v is None for v in values):
            return None
        return float(np.mean(values))  # inf stays inf (leakage when only the background moved)

    row = {key: mean(key) for key in ("poke_cosine", "poke_magnitude_ratio",
                                      "background_leakage", "sharpness", "sharpness_region",
                                      "fidelity_mean")}
    row["fidelity_min"] = float(min(s["fidelity_min"] for s in samples))
    # the worst sample, as each measure takes the worst frame; None where none was measured
    structure = [s["face_structure"] for s in samples if s.get("face_structure") is not None]
    seams = [s["edge_seam"] for s in samples if s.get("edge_seam") is not None]
    row["face_structure"] = max(structure) if structure else None
    row["edge_seam"] = furthest_from_one(seams) if seams else None
    return row


def style_numbers(still: np.ndarray, styled: np.ndarray, painting: np.ndarray,
                  weights: np.ndarray | None, plain: list[list[np.ndarray]],
                  stylized: list[list[np.ndarray]], region: np.ndarray) -> dict:
    """The style row of a case x engine. The stylized area is where the style weight is at
    least 0.5 (the whole still for where "all"); unexplained change is the mean over samples,
    in the moving region, of the clips without (`plain`) and with (`stylized`) the style."""
    area = None if weights is None else weights >= 0.5
    if area is not None and not area.any():
        raise ValueError("the stylized area is empty at the evaluated resolution")
    plain_change = float(np.mean([unexplained_change(np.stack(c), region) for c in plain]))
    styled_change = float(np.mean([unexplained_change(np.stack(c), region) for c in stylized]))
    return {
        "colour_shift": colour_shift(still, styled, painting, area),
        "orientation_shift": orientation_shift(still, styled, painting, area),
        "edge_similarity": edge_similarity(still, styled),
        "unexplained_change_style": styled_change,
        "unexplained_change_plain": plain_change,
        "unexplained_change_difference": styled_change - plain_change,
        "stylized_share": 1.0 if area is None else float(area.mean()),
    }


def _ratio(values: list[float], reference: float) -> float | None:
    """mean(values) / reference; None when the still itself has no detail to compare with."""
    if reference <= 0 or not math.isfinite(reference):
        return None
    return float(np.mean(values)) / reference
