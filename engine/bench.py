"""`python -m engine bench warp`: time and peak memory of the warp engine on a synthetic job.

A size x size RGB still (procedural texture, so PNG compression has real work), two pokes, one
static mask, `frames` frames. Three timings, each the median of `repeat` runs:
  full          job file -> PNG frames on disk, exactly what `run` does (minus interpreter start)
  field+render  the frames in memory, no PNG encoding
  field         the drag field's backward flows only
Peak memory is the process's peak resident set (getrusage) above the level before the first run:
torch allocates outside Python's heap, so tracemalloc would not see it.
Last, a probe of bfloat16 resampling (faster on CPUs with AMX?) and its error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from engine import frames, render
from engine.device import resolve_device
from engine.job import load_job
from engine.progress import Silent
from engine.runner import run_job


def bench_warp(size: int = 1024, frames_count: int = 48, repeat: int = 3,
               device: str = "auto", out=print) -> dict:
    results = {"engine": "warp", "size": size, "frames": frames_count, "repeat": repeat,
               "device": str(resolve_device(device)), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="stillmotion-bench-") as tmp:
        job_path = _make_job(Path(tmp), size, frames_count, device)
        job = load_job(job_path)
        from engine import warp
        baseline = _peak_rss_mb()

        def full(run: int) -> None:
            run_job(dataclasses.replace(job, output=Path(tmp) / f"take_{run}"), Silent())

        def field_and_render(run: int) -> None:
            for _ in warp.prepare(job, resolve_device(device), Silent()):
                pass

        def field_only(run: int) -> None:
            clip = warp.prepare(job, resolve_device(device), Silent())
            for tau in clip.times:
                clip.field.flow(tau)

        for name, work in (("full", full), ("field+render", field_and_render),
                           ("field", field_only)):
            seconds = _median_time(work, repeat)
            results[name] = {"seconds": round(seconds, 3),
                             "ms_per_frame": round(1000 * seconds / frames_count, 1)}
            out(f"warp {size}x{size} x {frames_count} frames, {name:>12}: {seconds:6.2f} s "
                f"({1000 * seconds / frames_count:5.1f} ms/frame, median of {repeat})")
        results["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        results["peak_rss_above_start_mb"] = round(_peak_rss_mb() - baseline, 1)
        out(f"peak memory: {results['peak_rss_mb']:.0f} MB resident "
            f"({results['peak_rss_above_start_mb']:.0f} MB above the start; one {size}x{size} "
            f"RGB float frame is {size * size * 3 * 4 / 2 ** 20:.0f} MB)")
        results["bfloat16"] = _bf16_probe(size)
        probe = results["bfloat16"]
        out(f"bfloat16 resampling: {probe['bf16_ms']:.0f} ms vs float32 {probe['fp32_ms']:.0f} ms "
            f"per {size}x{size} frame, max error {probe['max_error_8bit']} 8-bit levels: "
            f"{probe['verdict']}")
    out(json.dumps(results))
    return results


def _make_job(folder: Path, size: int, frames_count: int, device: str) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    noise = cv2.GaussianBlur(rng.random((size, size, 3), dtype=np.float32), (0, 0), 2.0)
    texture = 0.5 + 0.25 * np.sin(2 * np.pi * (6 * x + 3 * y))[..., None] + 0.5 * (noise - 0.5)
    texture[..., 1] *= 0.5 + 0.5 * np.cos(2 * np.pi * 4 * y)
    frames.write_image(folder / "still.png", frames.from_float(texture, np.uint8), "PNG8")
    mask = np.zeros((size, size), np.uint8)
    mask[int(0.7 * size):, : int(0.4 * size)] = 255
    cv2.imencode(".png", mask)[1].tofile(folder / "mask.png")
    s = size / 1024
    job = {"version": 1, "engine": "warp", "image": "still.png", "output": "take",
           "frames": frames_count, "format": "PNG8", "device": device,
           "pokes": [{"start": [400 * s, 380 * s], "end": [470 * s, 330 * s], "radius": 180 * s},
                     {"start": [700 * s, 650 * s], "end": [690 * s, 720 * s], "radius": 120 * s}],
           "masks": [{"path": "mask.png", "label": "static"}],
           "warp": {"falloff": 150 * s, "feather": 8 * s}}
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def _median_time(work, repeat: int) -> float:
    times = []
    for run in range(repeat):
        start = time.perf_counter()
        work(run)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10  # bytes vs KiB


def _bf16_probe(size: int) -> dict:
    rng = np.random.default_rng(1)
    still = torch.from_numpy(cv2.GaussianBlur(rng.random((size, size, 3), dtype=np.float32),
                                              (0, 0), 1.5)).permute(2, 0, 1).contiguous()
    x, y = render.pixel_centres(size, size)
    src_x = x - 20 * torch.sin(y / 50)
    src_y = y - 10 * torch.cos(x / 70)
    timings, outputs = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        args = (still.to(dtype), src_x.to(dtype), src_y.to(dtype))
        render.sample(*args)  # warm-up
        start = time.perf_counter()
        outputs[dtype] = render.sample(*args).float()
        timings[dtype] = 1000 * (time.perf_counter() - start)
    # bfloat16 has 8 significant bits: pixel coordinates above 256 are rounded to whole pixels
    # or worse, so the error is in the geometry, not only in the colour.
    error = float((outputs[torch.bfloat16] - outputs[torch.float32]).abs().max()) * 255
    error = error if math.isfinite(error) else None
    faster = timings[torch.bfloat16] < timings[torch.float32]
    if error is None or error > 255:
        verdict = "not used: bfloat16 grid_sample returns wrong values (NaN / huge) here"
    elif not faster:
        verdict = "not used: slower and not exact"
    else:
        verdict = "not used: faster but not exact enough for 8/16-bit output"
    return {"fp32_ms": round(timings[torch.float32], 1),
            "bf16_ms": round(timings[torch.bfloat16], 1),
            "max_error_8bit": None if error is None else round(error, 1), "verdict": verdict}
