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
Landscapes (landscape_numbers; engines that move motion masks), per motion region: unexplained
change and drift coherence inside it; for a drift, the mean consecutive-frame flow over the
region's interior (more than the engine's edge band, 4 % of the shorter side, inside its edge)
against the exemplar's measured velocity (or the arrows that start in the region):
|mean flow| / the asked speed and the cosine of the two directions; for a sway, the mean
|flow| and the |cosine| of the flow's principal axis to the exemplar's (or the arrows') axis
(metrics.sway); sharpness inside the region; the edge seam along the region's boundary
(metrics.person_edge_seam with the region as the mask); the loop seam of a looping clip in the
region (metrics.loop_seam_error: the wrap against the largest neighbouring step, and against
their mean); and per clip whether every frame is the still bit for bit
outside every motion mask (metrics.held_identity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.flow import dis_flow, to_grey
from engine.metrics import (background_leakage, clip_flows, colour_shift, drift_coherence,
                            edge_similarity, face_structure, flow_histograms, furthest_from_one,
                            held_identity, layout_fidelity, loop_seam_error, orientation_shift,
                            person_edge_seam, poke_following, sway, unexplained_change)
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
    return {  # None without pokes (a case of motion masks alone)
        "poke_cosine": float(np.mean([c for c, _ in following])) if following else None,
        "poke_magnitude_ratio": float(np.mean([r for _, r in following])) if following else None,
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


@dataclass(frozen=True)
class Target:
    """A motion region of a case and what its exemplar (or its arrows) ask of it, in the
    evaluated clip's pixels."""
    mask: np.ndarray                  # H x W bool: the motion mask > 0.5, less static masks/pins
    kind: str                         # "drift" or "oscillate": the exemplar's measured kind
    direction: tuple[float, float]    # unit: the drift's direction, or the sway's axis
    speed: float | None               # drift: px/frame; None for a sway
    steered: bool                     # arrows that start in the region set direction (speed)
    interior: np.ndarray | None = None  # H x W bool: where speed, direction and sway are read


def landscape_targets(scene: Scene, motions: list, frames: int, loop: bool) -> list[Target]:
    """A Target per motion mask of the scene (in order), from each mask's measured exemplar
    motion (`motions`, engine/dyntex/motion_field.py Motion, one per mask), as the motion-first
    engine scales it (motion_field's docstring): a drift's speed is motion.speed x the still's
    shorter side, px/frame. Arrows (the scene's pokes) steer the region they start in (the last
    mask holding the start at >= 0.5, as advect.py assigns them): a drift then moves along their
    mean vector at its length / steps px/frame (steps = frames when looping, frames - 1
    otherwise), a sway along their mean direction."""
    from engine.dyntex.motion_field import EDGE_BAND, region_side

    height, width = scene.still.shape[:2]
    side = region_side(width, height)
    steps = frames if loop else max(1, frames - 1)
    held = None if scene.static is None else scene.static >= 0.5
    arrows = [[] for _ in scene.motion]
    for x, y, dx, dy in scene.pokes:
        column, row = min(width - 1, int(x)), min(height - 1, int(y))
        owners = [i for i, (values, _) in enumerate(scene.motion) if values[row, column] >= 0.5]
        if owners:
            arrows[owners[-1]].append((dx, dy))
    targets = []
    for (values, _), motion, steering in zip(scene.motion, motions, arrows):
        mask = values > 0.5
        if held is not None:
            mask &= ~held
        direction, speed = tuple(motion.direction), None
        if motion.kind == "drift":
            speed = motion.speed * side
        if steering:
            vector = np.mean(steering, axis=0) / steps
            length = float(np.hypot(*vector))
            if length > 0:
                direction = (float(vector[0] / length), float(vector[1] / length))
            if motion.kind == "drift":
                speed = length
        targets.append(Target(mask, motion.kind, direction, speed, bool(steering),
                              _interior(mask, EDGE_BAND * side)))
    return targets


def _interior(mask: np.ndarray, band: float) -> np.ndarray:
    """The region's pixels more than `band` px inside its edge (the image border is not an
    edge); the whole region where none are. Next to the edge DIS blends the region's flow with
    the still beside it (a 1 px/frame drift of a 48 px square in a 64 px frame reads 0.84, of a
    192 px square in 256 px 0.95), and the engine slides a drift along the edge and fades a sway
    out there on purpose (motion_field.EDGE_BAND): neither is the region's speed."""
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    inside = depth > band
    return inside if inside.any() else mask


def landscape_numbers(frames: list[np.ndarray], still: np.ndarray, targets: list[Target],
                      outside: np.ndarray, loop: bool) -> dict:
    """The landscape numbers of one clip: {"regions": [per target], "outside": held_identity
    of every frame against the still where `outside` (no motion mask) is true}. A region
    that static masks and pins cover whole gets None for every number."""
    clip = np.stack(frames)
    flows = clip_flows(clip)
    generated = frames[1:]
    regions = []
    for target in targets:
        mask = target.mask
        row = {key: None for key in LANDSCAPE_KEYS}
        if not mask.any():
            regions.append(row)
            continue
        seam = person_edge_seam(still, generated, mask.astype(np.float32))
        row.update({
            "unexplained_change": unexplained_change(clip, mask),
            "drift_coherence": drift_coherence(None, mask, flows=flows),
            "sharpness": _ratio([laplacian_variance(f, mask) for f in generated],
                                laplacian_variance(still, mask)),
            "edge_seam": None if math.isnan(seam) else seam,
        })
        if loop:
            wrap = loop_seam_error(clip[:, mask])
            row["loop_seam"], row["loop_seam_mean"] = wrap["largest_ratio"], wrap["ratio"]
        interior = mask if target.interior is None else target.interior
        if target.kind == "drift":
            mean = flows[:, interior].mean(axis=(0, 1))
            row["speed"] = float(np.hypot(*mean))
            if row["speed"] > 0:
                row["direction_cosine"] = float(np.dot(mean, target.direction)) / row["speed"]
            else:
                row["direction_cosine"] = 0.0
            if target.speed:
                row["speed_ratio"] = row["speed"] / target.speed
        else:
            swing = sway(flows, interior)
            row["sway"] = swing["magnitude"]
            row["direction_cosine"] = abs(float(np.dot(swing["axis"], target.direction)))
        regions.append(row)
    return {"regions": regions, "outside": held_identity(still, frames, outside)}


# every number of a landscape region (None where not measured)
LANDSCAPE_KEYS = ("unexplained_change", "drift_coherence", "speed", "speed_ratio",
                  "direction_cosine", "sway", "sharpness", "edge_seam", "loop_seam",
                  "loop_seam_mean")


def landscape_summary(samples: list[dict]) -> dict:
    """Across samples: each region number's mean (None where a sample lacks it; the edge seam
    furthest from 1), outside the worst sample (most differing pixels, largest difference)."""
    regions = []
    for rows in zip(*(sample["regions"] for sample in samples)):
        summary = {}
        for key in LANDSCAPE_KEYS:
            values = [row[key] for row in rows]
            if any(v is None for v in values):
                summary[key] = None
            elif key == "edge_seam":
                summary[key] = furthest_from_one(values)
            else:
                summary[key] = float(np.mean(values))
        regions.append(summary)
    outside = [sample["outside"] for sample in samples]
    return {"regions": regions, "outside": {
        "pixels": max(o["pixels"] for o in outside),
        "max_difference": max(o["max_difference"] for o in outside),
        "identical": all(o["identical"] for o in outside)}}


def _ratio(values: list[float], reference: float) -> float | None:
    """mean(values) / reference; None when the still itself has no detail to compare with."""
    if reference <= 0 or not math.isfinite(reference):
        return None
    return float(np.mean(values)) / reference
