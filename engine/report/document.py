"""index.md and results.json of a report folder, from the results object evaluate.py builds
(results.json holds it whole; index.md shows the tables and pictures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

COLUMNS = (  # (key in an engine's summary, column heading)
    ("poke_cosine", "poke cos"),
    ("poke_magnitude_ratio", "poke mag. ratio"),
    ("background_leakage", "leakage"),
    ("diversity_region", "diversity"),
    ("sharpness", "sharpness"),
    ("sharpness_region", "sharpness (region)"),
    ("fidelity_min", "fidelity min"),
    ("fidelity_mean", "fidelity mean"),
    ("face_structure", "face structure"),
    ("edge_seam", "edge seam"),
    ("seconds_per_clip_64", "s/clip 64"),
    ("seconds_per_clip", "s/clip"),
)

# Measured only for some rows (poke engines, stills with a face): blank where not measured,
# rather than n/a, which elsewhere means a measure that could not be taken.
BLANK_WHEN_NONE = {"face_structure", "edge_seam"}

STYLE_COLUMNS = (  # (key in an engine's "style", column heading)
    ("colour_shift", "colour shift"),
    ("orientation_shift", "orientation shift"),
    ("edge_similarity", "edge similarity"),
    ("unexplained_change_style", "unexplained (style)"),
    ("unexplained_change_plain", "unexplained (no style)"),
    ("unexplained_change_difference", "difference"),
)

LANDSCAPE_HEAD = ("region", "motion", "unexplained", "coherence", "speed / asked (px/frame)",
                  "speed ratio", "direction cos", "sway (px/frame)", "sharpness (region)",
                  "edge seam", "loop seam", "outside", "s/clip")


def write_results(results: dict, path: Path) -> None:
    """Strict JSON: an infinite number (leakage when only the background moved) becomes null."""
    path.write_text(json.dumps(_finite(results), indent=1, allow_nan=False) + "\n",
                    encoding="utf-8")


def write_index(results: dict, path: Path) -> None:
    lines = ["# StillMotion evaluation report", "",
             f"`{results['command']}` (in the folder that holds this report)", "",
             f"{results['started']}, {results['device']}, torch threads {results['threads']}; "
             f"{results['seconds']:.0f} s wall in all. Every number is in `results.json`; the "
             "measures are defined in docs/EVALUATE.md.", "",
             "Poke cos / mag. ratio: DIS flow first -> last frame over each poke's patch "
             "(1 / 1 = as asked). Leakage: mean flow magnitude outside the moving region / "
             "inside (0 = the background holds still). Diversity: per-pixel std across samples "
             "in the moving region (colour in [0, 1]). Sharpness: Laplacian variance of the "
             "generated frames / of the still (whole frame; and inside the moving region). "
             "Fidelity: SSIM outside the moving region, every generated frame against the "
             "still. Face structure: MediaPipe face mesh of the still's face in every frame, the "
             "largest residual of a similarity fitted on the landmarks that move with the "
             "skull, over the inter-ocular distance (real head motion 0.02-0.08, a melted face "
             "0.1-0.2, 1 = the face was lost); the worst frame and sample. Edge seam: length "
             "of edge lines in a band along the person's silhouette, frame / still (1 = as "
             "the still; a seam, halo or doubled outline > 1, a smeared edge < 1); the frame "
             "and sample furthest from 1. Both blank where not measured (only poke engines "
             "and stills with a face are). s/clip: seconds to prepare and render one clip, "
             "with the still's longer side at 64 px and at the case's resolution.", "",
             "## Summary", ""]
    lines += _table(results["cases"], with_case=True)
    styled = [case for case in results["cases"] if case.get("style")]
    if styled:
        lines += ["", "## Style", "",
                  "Cases with a style: the still is stylized once (engine.style.stylize, at the "
                  "evaluated resolution; s to stylize) and every engine moves the stylized still. "
                  "Colour shift / orientation shift: how far the stylized area's Lab mean and "
                  "std / gradient orientation and magnitude histograms moved from the still's "
                  "toward the painting's (1 = the painting's, 0 = unchanged). Edge similarity: "
                  "SSIM of the still's and the stylized still's edge maps (1 = the same "
                  "edges). Unexplained: motion vs flicker in the moving region (0.3 a clean "
                  "drift, 1 flicker), of the bake with the style and without; the difference "
                  "should stay at or below +0.05 (no more flicker than without style).", ""]
        lines += _style_table(styled)
    landscapes = [case for case in results["cases"]
                  if any(run.get("landscape") for run in case["engines"])]
    if landscapes:
        lines += ["", "## Landscape", "",
                  "Engines that move motion masks, a row per motion region (its mask > 0.5 at "
                  "the evaluated resolution, static masks and pins taken out). Unexplained: "
                  "motion vs flicker in the region (a clean drift about 0.3, real footage 0.5, "
                  "flicker 1; aim <= 0.5). Coherence: |mean flow| / mean |flow| (a drift near "
                  "1, aim >= 0.8; a sway near 0). Speed / asked: the mean consecutive-frame DIS "
                  "flow over the region's interior (more than 4 % of the shorter side inside "
                  "its edge) against the exemplar's measured speed x the still's shorter side, "
                  "or an arrow's length / steps when an arrow starts in the region (motion "
                  "\"arrow\"); speed ratio their quotient (aim 0.8-1.25), direction cos the "
                  "cosine of the two directions (for a sway: |cos| of the flow's principal axis "
                  "to the sway axis). Sway: mean |flow| over the interior of an oscillating "
                  "region. Sharpness: Laplacian variance in the region, generated frames / "
                  "still (aim >= 0.9). Edge seam: edge lines in a band along the region's "
                  "boundary, frame / still, the frame furthest from 1 (1 = no seam). Loop seam "
                  "(looping clips): the step last -> first frame over the mean neighbouring "
                  "step in the region (<= 1: no visible seam). Outside: every frame against the "
                  "still outside every motion mask, bit for bit (identical, or the most "
                  "differing pixels in a frame and the largest difference, 0-255).", ""]
        lines += _landscape_table(landscapes)
    for case in results["cases"]:
        w, h = case["size"]
        lines += ["", f"## {case['name']}", "",
                  f"{case['source']}, evaluated at {w} x {h}; {case['samples']} sample(s), seed "
                  f"{case['seed']}, {case['frames']} frames. Pokes (x, y, dx, dy; evaluated "
                  f"pixels): {', '.join(_poke(p) for p in case['pokes']) or 'none'}. "
                  f"Moving region: {case['region']} ({100 * case['region_share']:.1f} % of "
                  "the still).", "",
                  f"![{case['name']}: pokes (red), patches (green), moving region (yellow), pins "
                  f"(cyan)]({case['picture']})", ""]
        lines += _table([case], with_case=False)
        if case.get("style"):
            style = case["style"]
            lines += ["", f"### {case['name']} / style", "",
                      f"Painting {style['painting']} ({style['painting_size'][0]} x "
                      f"{style['painting_size'][1]}), strength {style['strength']:g}, where "
                      f"{style['where']}, stylized in {style['seconds']:.1f} s. A row per "
                      "engine: the still, the painting, the stylized still the engine moved, "
                      "frames of its stylized bake.", ""]
            lines += _style_table([case], with_case=False)
            lines += ["", f"![style contact sheet]({style['sheet']})"]
        if any(run.get("landscape") for run in case["engines"]):
            lines += ["", f"### {case['name']} / landscape", ""]
            lines += _landscape_table([case], with_case=False)
        for run in case["engines"]:
            options = ", ".join(f"{k}={v}" for k, v in run["options"].items()) or "defaults"
            lines += ["", f"### {case['name']} / {run['label']}", "",
                      f"engine `{run['engine']}` ({options}). Contact sheet: one row per sample "
                      "(at most 4), frames evenly spaced from the first (the still) to the "
                      "last, cropped around the moving region, then |last - still| x 4 of the "
                      "whole frame.", "",
                      f"![contact sheet]({run['pictures']['sheet']})", "",
                      f"![flow histograms]({run['pictures']['histograms']})"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _table(cases: list[dict], with_case: bool) -> list[str]:
    head = (["case"] if with_case else []) + ["engine"] + [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        for run in case["engines"]:
            cells = ([case["name"]] if with_case else []) + [run["label"]]
            cells += ["" if key in BLANK_WHEN_NONE and run["summary"].get(key) is None
                      else _number(run["summary"].get(key)) for key, _ in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _style_table(cases: list[dict], with_case: bool = True) -> list[str]:
    head = (["case"] if with_case else []) + ["engine", "painting", "strength", "where"] \
        + [title for _, title in STYLE_COLUMNS] + ["s to stylize"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        style = case["style"]
        for run in case["engines"]:
            cells = ([case["name"]] if with_case else []) + [
                run["label"], style["painting"], f"{style['strength']:g}", style["where"]]
            cells += [_number(run["style"].get(key)) for key, _ in STYLE_COLUMNS]
            cells.append(f"{style['seconds']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _landscape_table(cases: list[dict], with_case: bool = True) -> list[str]:
    head = (["case"] if with_case else []) + ["engine", *LANDSCAPE_HEAD]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        for run in case["engines"]:
            landscape = run.get("landscape")
            if not landscape:
                continue
            outside = landscape["outside"]
            outside = ("identical" if outside["identical"] else
                       f"{outside['pixels']} px, max {outside['max_difference']:g}")
            for region in landscape["regions"]:
                drift = region["kind"] == "drift"
                motion = ("drift" if drift else "sway") + (", arrow" if region["steered"]
                                                           else "")
                speed = ""
                if drift:
                    speed = _number(region["speed"]) + " / " + _number(region["expected_speed"])
                cells = ([case["name"]] if with_case else []) + [
                    run["label"], f"{region['label']} ({Path(region['mask']).name})", motion,
                    _number(region["unexplained_change"]), _number(region["drift_coherence"]),
                    speed, _number(region["speed_ratio"]) if drift else "",
                    _number(region["direction_cosine"]),
                    "" if drift else _number(region["sway"]),
                    _number(region["sharpness"]), _number(region["edge_seam"]),
                    _number(region["loop_seam"]) if landscape["loop"] else "",
                    outside, _number(run["summary"].get("seconds_per_clip"))]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def _poke(poke) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in poke) + ")"


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
