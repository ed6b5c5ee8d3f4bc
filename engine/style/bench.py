"""`python -m engine bench style`: what the style stage costs, cold and cached.

For each size (default 1024 x 1024 and 1920 x 1080, the issue's two): the procedural landscape
(engine/bench.py) as the still and `brush_painting` as the painting, then

  stylize   seconds of the whole-picture optimisation (VGG loaded once beforehand, so this is
            the artist's wait on a first bake minus a one-off ~1 s model load)
  stage     a job's style stage from an empty cache (what `run` adds before an engine starts)
  cached    the same stage again: what a re-bake or a new take pays
  peak_mb   the process's peak resident memory so far (a high-water mark: a later, smaller
            size shows the earlier one's peak)

One run per size by default (a stylization takes tens of seconds; --repeat for a median). The
last line is the JSON summary (engine/bench.py summary_line).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engine import frames
from engine.bench import _peak_rss_mb, landscape, summary_line
from engine.progress import Silent

BUDGET_S = 60.0  # issue 18: a 1920 x 1080 still in at most a minute on the project's CPU


def brush_painting(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A procedural "painting", uint8 RGB: thick short strokes of a night palette laid along a
    swirling field, each stroke a little lighter along one side, like loaded paint. Not a real
    painting, but it has what the style stage transfers: a palette far from a photo's and
    strongly oriented brushwork at a scale of its own. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    palette = np.array([[22, 40, 96], [40, 80, 160], [70, 120, 190], [230, 200, 80],
                        [250, 235, 150], [20, 60, 50], [120, 160, 200]], np.float32)
    canvas = np.zeros((height, width, 3), np.float32)
    canvas[:] = palette[0]
    side = math.hypot(width, height)
    length, thickness = max(4, int(side * 0.03)), max(2, int(side * 0.006))
    centres = rng.random((3, 2)) * (width, height)
    count = int(width * height / (length * thickness) * 1.6)
    for x, y in rng.random((count, 2)) * (width, height):
        angle = sum(math.atan2(y - cy, x - cx) + math.pi / 2 for cx, cy in centres) / 3
        angle += 0.25 * rng.standard_normal()
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        band = (0.6 * y / height + 0.4 * rng.random()) * (len(palette) - 1)
        colour = palette[min(len(palette) - 1, int(band))] * (0.85 + 0.3 * rng.random())
        start, end = (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy))
        cv2.line(canvas, start, end, colour.tolist(), thickness, cv2.LINE_AA)
        shift = (int(round(-dy / length * thickness)), int(round(dx / length * thickness)))
        cv2.line(canvas, (start[0] + shift[0], start[1] + shift[1]),
                 (end[0] + shift[0], end[1] + shift[1]), np.minimum(colour * 1.25, 255).tolist(),
                 max(1, thickness // 3), cv2.LINE_AA)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def bench_style(sizes=((1024, 1024), (1920, 1080)), repeat: int = 1, device: str = "auto",
                out=print) -> dict:
    import torch

    from engine.device import resolve_device
    from engine.job import load_job
    from engine.style.gatys import StyleConfig, stylize_rgb
    from engine.style.stage import apply_style
    from engine.style import display_rgb_float
    from engine.vgg import load_vgg19

    dev = resolve_device(device)
    config = StyleConfig()
    results = {"bench": "style", "device": str(dev), "threads": torch.get_num_threads(),
               "area": config.area, "evaluations": list(config.evaluations), "sizes": []}
    vgg = load_vgg19(device=dev)
    painting = brush_painting()
    out(f"style stage on {dev} ({results['threads']} threads), finest level {config.area} px, "
        f"evaluations per level {config.evaluations}")
    out(f"{'size':>11} {'stylize s':>10} {'stage s':>8} {'cached s':>9} {'peak MB':>8}")
    previous_cache = os.environ.get("STILLMOTION_CACHE")
    for width, height in sizes:
        with tempfile.TemporaryDirectory(prefix="stillmotion-style-bench-") as tmp:
            folder = Path(tmp)
            os.environ["STILLMOTION_CACHE"] = str(folder / "cache")
            still, _ = landscape(width, height)
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                stylize_rgb(display_rgb_float(still), display_rgb_float(painting), 0.8, vgg,
                            config)
                times.append(time.perf_counter() - start)
            frames.write_image(folder / "still.png", still, "PNG8")
            frames.write_image(folder / "painting.png", painting, "PNG8")
            (folder / "job.json").write_text(json.dumps(
                {"version": 1, "engine": "warp", "image": "still.png", "output": "take",
                 "frames": 2, "pokes": [{"start": [width / 2, height / 2],
                                         "end": [width / 2 + 10, height / 2]}],
                 "style": {"image": "painting.png", "strength": 0.8}}))
            job = load_job(folder / "job.json")
            start = time.perf_counter()
            apply_style(job, dev, Silent())
            stage = time.perf_counter() - start
            start = time.perf_counter()
            apply_style(job, dev, Silent())
            cached = time.perf_counter() - start
            row = {"width": width, "height": height, "stylize_s": statistics.median(times),
                   "stage_s": stage, "cached_s": cached,
                   "peak_mb": _peak_rss_mb()}
            results["sizes"].append(row)
            out(f"{width:>5}x{height:<5} {row['stylize_s']:>10.1f} {stage:>8.1f} {cached:>9.2f} "
                f"{row['peak_mb']:>8.0f}")
    if previous_cache is None:
        os.environ.pop("STILLMOTION_CACHE", None)
    else:
        os.environ["STILLMOTION_CACHE"] = previous_cache
    out(json.dumps(results))
    by_size = {(r["width"], r["height"]): r for r in results["sizes"]}
    hd = by_size.get((1920, 1080))
    square = by_size.get((1024, 1024))
    out(summary_line(
        "style", budget_s=BUDGET_S,
        hd_stylize_s=hd["stylize_s"] if hd else None,
        hd_stage_s=hd["stage_s"] if hd else None,
        hd_cached_s=hd["cached_s"] if hd else None,
        square_stylize_s=square["stylize_s"] if square else None,
        hd_within_budget=(hd["stage_s"] <= BUDGET_S) if hd else None,
        cached_over_cold=(hd["cached_s"] / hd["stage_s"]) if hd else None))
    return results
