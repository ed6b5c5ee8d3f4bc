"""`python -m engine bench warp`: time and peak memory of the warp engine on a synthetic job.

A size x size RGB still (procedural texture, so PNG compression has real work), two pokes, one
static mask, `frames` frames. Three timings, each the median of `repeat` runs:
  full          job file -> PNG frames on disk, exactly what `run` does (minus interpreter start)
  field+render  the frames in memory, no PNG encoding
  field         the drag field's backward flows only
Peak memory is the process's peak resident set (getrusage) above the level before the first run:
torch allocates outside Python's heap, so tracemalloc would not see it.
Last, a probe of bfloat16 resampling (faster on CPUs with AMX?) and its error.

Every bench prints, in this order: readable tables, one JSON line with everything measured, and
last one summary line (`summary_line`): a JSON object of the headline figures and ratios, so a
script reads `tail -n 1`.
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
    full = results["full"]["seconds"]
    out(summary_line("warp", size=size, frames=frames_count, full_s=full,
                     ms_per_frame=results["full"]["ms_per_frame"],
                     field_share=_ratio(results["field"]["seconds"], full),
                     png_share=_ratio(full - results["field+render"]["seconds"], full),
                     peak_rss_mb=results["peak_rss_mb"],
                     bf16_over_fp32=_ratio(probe["bf16_ms"], probe["fp32_ms"])))
    return results


def summary_line(bench: str, **figures) -> str:
    """The last line of every bench: its headline figures and ratios, rounded to what a noisy
    shared machine can tell apart (3 significant digits), None where a figure was not measured."""
    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.3g}") if math.isfinite(value) else None
        return value
    return json.dumps({"summary": bench, **{key: rounded(v) for key, v in figures.items()}})


def _ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


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


# --- `python -m engine bench dyntex` -----------------------------------------------------------
#
# The dynamic-texture engine (engine/dyntex/synthesis.py) on the astronaut still (media/), upper
# half masked as `clouds`, `frames` frames. Two tables in one run:
#   per iteration  seconds per L-BFGS iteration (median over the iterations after the first) and
#                  peak memory, for every size x {fp32, bf16 VGG autocast}; a few iterations
#                  suffice: the clip, the networks and L-BFGS's history are all allocated by the
#                  end of the second iteration, so the peak is reached there
#   time to loss   at the smallest size, fp32: single-scale runs `target_iterations` L-BFGS
#                  iterations and its loss after them is the target; coarse-to-fine (2 levels,
#                  the same cap a level: the coarse level, at a quarter of the pixels, runs to
#                  its cap) runs until its working-size loss reaches that target, or reports
#                  that it did not. Wall seconds from the call to synthesize (loss set-up
#                  included) to the target.
# Both losses are normalised by the same reference at the working size (engine/dyntex/losses.py),
# so the target means the same in both runs.
# Peak memory: with isolate=True (the CLI) every configuration runs in its own process (forked from
# the bench after the imports), so getrusage's peak belongs to that configuration alone; "above
# start" is the peak minus the level after the networks, still and exemplar are loaded.
# In-process (isolate=False, the smoke test) the peak is the process's lifetime peak so far,
# reported as such.
#
# Advect against two-stream (issue 15): a third section in the same run.
#   advect         a whole job (job folder -> PNG frames, engine.runner.run_job as `run` does,
#                  minus interpreter start) with `dyntex.method: "advect"` and every other key at
#                  its default but `loop`: a 1920x1080 procedural landscape (`landscape`: sky,
#                  a lake, a meadow, static hills and a tree), three masks (clouds, water, grass),
#                  48 looping frames. Wall seconds (measuring the exemplars and building the
#                  fields, then the frames), seconds per frame, CPU seconds and peak memory (its
#                  own process when isolated).
#   two-stream     the same still, masks and loop with the default `dyntex` settings (working
#                  size 256, 100 L-BFGS iterations, 1 level) through the same job path, stopped
#                  after its second iteration: seconds per iteration (the gap between the first
#                  two, as above) x the job's iteration count is the estimate of the whole
#                  optimisation (set-up and frame writing left out, so it is low);
#                  two-stream estimate / advect seconds is the headline ratio. Timed at the
#                  advect frame count, or (two_stream_frames; the CLI's default, 8 and --quick 2)
#                  at fewer frames and scaled in proportion: every term of the loss is a sum over
#                  frames or pairs, and at 256x144 with three regions the optimisation holds
#                  about 0.8 GB a frame (9.3 GB at 12 frames), so 48 frames do not fit a 23 GB
#                  machine. The iteration's number of loss evaluations (L-BFGS's line search)
#                  varies, so one gap is a rough figure: measured 15 s at 2 frames, 52 s at 4,
#                  160 s at 8 and 355 s at 12 (a loaded machine) on one thread (docs/dyntex.md).
#   refine         the advect method's refiner (`dyntex.refine`): the advect job with refiner
#                  iterations, timed like two-stream (same frames, same scaling): the seconds
#                  each refiner iteration adds to an advect bake.

DYNTEX_MEDIA = Path(__file__).resolve().parent.parent / "media" / "astronaut.png"


class _Reached(Exception):
    """Raised from the synthesis callback to stop a run when the loss reaches the target."""


def dyntex_case(size: int, frames_count: int, iterations: int, bf16: bool = False,
                levels: int = 1, target: float | None = None, warmup: int = 2,
                device: str = "cpu", stop_after: int = 0) -> dict:
    """One configuration in this process: seconds per iteration, loss trace, peak memory, and
    (target given) the wall seconds until the working-size loss is <= target (None: not reached
    within `iterations` iterations per level). stop_after > 0: run L-BFGS with a 4x larger
    cap and stop after that many iterations, so its evaluation cap (1.25 x iterations) does not
    cut the timed iterations short."""
    from engine.dyntex.synthesis import Region, SynthesisConfig, load_networks, synthesize

    torch_device = resolve_device(device)
    still, mask = _dyntex_still()
    vgg, msoe = load_networks(None, None, torch_device, bf16=bf16)
    from engine.dyntex.exemplars import make_exemplar
    # at the working scale (the still is square: its side is `size`), as `dyntex` loads it
    exemplar = make_exemplar("clouds", frames=frames_count, size=max(32, size), seed=0)
    config = SynthesisConfig(frames=frames_count, size=size,
                             iterations=4 * stop_after if stop_after else iterations,
                             levels=levels, seed=0)
    baseline = _peak_rss_mb()
    stamps: list[tuple[int, float, float]] = []  # (step, seconds since start, loss)
    fine_from = config.iterations * (levels - 1)  # steps above this are at the working size
    reached = {}

    def callback(done, total, loss, preview):
        stamps.append((done, time.perf_counter() - start, loss))
        if target is not None and done > fine_from and loss <= target and not reached:
            reached["seconds"] = stamps[-1][1]
            reached["step"] = done
            raise _Reached
        if stop_after and len(stamps) >= stop_after:
            raise _Reached

    start = time.perf_counter()
    try:
        result = synthesize(still, [Region(mask=mask, exemplar=exemplar, name="clouds")], config,
                            vgg=vgg, msoe=msoe, device=torch_device, callback=callback)
        final = result.losses[-1]
    except _Reached:
        final = stamps[-1][2]
    seconds = time.perf_counter() - start
    fine = [s for s in stamps if s[0] > fine_from]
    gaps = [b[1] - a[1] for a, b in zip(fine, fine[1:])]
    per_iteration = statistics.median(gaps[warmup:] or gaps) if gaps else seconds
    peak = _peak_rss_mb()
    return {"size": size, "frames": frames_count, "dtype": "bf16" if bf16 else "fp32",
            "levels": levels, "iterations": len(stamps), "seconds": round(seconds, 3),
            "s_per_iteration": round(per_iteration, 4),
            "first_loss": round(stamps[0][2], 6) if stamps else None,
            "final_loss": round(final, 6),
            "peak_rss_mb": round(peak, 1), "peak_rss_above_start_mb": round(peak - baseline, 1),
            "seconds_to_target": None if "seconds" not in reached
            else round(reached["seconds"], 3),
            "target_step": reached.get("step")}


def _dyntex_still() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut (a procedural texture if media/ is missing) and its upper half as a mask."""
    if DYNTEX_MEDIA.is_file():
        still = frames.read_image(DYNTEX_MEDIA)[..., :3]
    else:
        rng = np.random.default_rng(0)
        size = 256
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        noise = cv2.GaussianBlur(rng.random((size, size, 3), dtype=np.float32), (0, 0), 2.0)
        texture = 0.5 + 0.25 * np.sin(2 * np.pi * (6 * x + 3 * y))[..., None] + 0.5 * (noise - .5)
        still = frames.from_float(np.clip(texture, 0, 1), np.uint8)
    mask = np.zeros(still.shape[:2], np.float32)
    mask[: still.shape[0] // 2] = 1.0
    return still, mask


def _run_case(isolate: bool, **kwargs) -> dict:
    """dyntex_case in this process, or (isolate) in a child forked from it, so getrusage's peak
    belongs to that configuration alone. Forked, not started afresh: a new interpreter spends
    ~30 s of a busy 2-core machine importing torch and torch._dynamo (which torch.optim pulls
    in), six times per bench; the fork inherits them. The parent has run no parallel torch
    operation (_prepare_fork), so the child's OpenMP pool starts clean."""
    if not isolate:
        return dyntex_case(**kwargs)
    status, value = run_forked(dyntex_case, **kwargs)
    if status != "ok":
        raise RuntimeError(f"bench case {kwargs} failed: {value}")
    return value


def run_forked(function, *args, **kwargs) -> tuple[str, object]:
    """function(*args, **kwargs) in a child forked from this process: ("ok", its result) or
    ("error", one line). Each bench row runs alone, so getrusage's peak RSS is that row's; the
    child inherits the imports (see _run_case for why not a fresh interpreter)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child():
        try:
            send.send(("ok", function(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            send.send(("error", f"{type(exc).__name__}: {exc}"))

    process = context.Process(target=child)
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        process.join()
        status, value = "error", (f"the process died (exit code {process.exitcode}; out of "
                                  "memory?)")
    process.join()
    return status, value


def _prepare_fork() -> None:
    """Import what every case needs once, before forking (see _run_case)."""
    import engine.dyntex.synthesis  # noqa: F401 - the import is the point
    torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo


ADVECT_REGIONS = (("sky", "clouds"), ("water", "water"), ("grass", "grass"))
REFINE_ITERATIONS = 100  # the refine job's: more than the bench runs before it stops it


def landscape(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """A procedural landscape (uint8 RGB, H x W x 3) and its region masks (uint8, 255 inside):
    sky with clouds above a ridge of hills, a lake, a meadow in front, a tree standing in all
    three (no mask covers the hills or the tree). The large shapes are drawn on coarse grids and
    scaled up, so every size is the same picture; deterministic for a seed."""
    rng = np.random.default_rng(seed)

    def noise(rows: int, cols: int) -> np.ndarray:  # unit std, smooth at rows x cols cells
        grid = rng.standard_normal((rows, cols)).astype(np.float32)
        up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        return up / max(float(up.std()), 1e-6)

    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (u + 0.5) / width, (v + 0.5) / height
    wave = lambda cycles, phase=0.0: np.sin(2 * np.pi * (cycles * u + phase))  # noqa: E731
    ridge = 0.40 + 0.035 * wave(1.3, 0.1) + 0.02 * wave(4.7)
    foot = 0.50 + 0.006 * wave(2.1)
    shore = 0.70 + 0.05 * wave(0.8, 0.3) + 0.015 * wave(6.0)
    aspect = width / height
    crown = np.hypot((u - 0.14) * aspect, (v - 0.27) / 1.1) < 0.15 + 0.02 * noise(9, 16)
    trunk = (np.abs(u - 0.14) * aspect < 0.018) & (v > 0.27) & (v < 0.80)
    tree = crown | trunk
    sky, hills = v < ridge, (v >= ridge) & (v < foot)
    water, grass = (v >= foot) & (v < shore), v >= shore
    clouds = np.clip((noise(6, 10) + 0.5 * noise(14, 24) - 0.3) / 1.2, 0, 1)[..., None]
    blue = (np.array([0.30, 0.50, 0.85], np.float32) * (1 - v[..., None])
            + np.array([0.75, 0.85, 0.95], np.float32) * v[..., None])
    sky_rgb = blue * (1 - clouds) + (0.93 - 0.15 * clouds) * clouds
    hill_rgb = np.array([0.22, 0.33, 0.30], np.float32) + 0.04 * noise(20, 40)[..., None]
    ripples = noise(140, 12)[..., None]  # long horizontal streaks
    water_rgb = (np.array([0.10, 0.30, 0.45], np.float32) + 0.05 * ripples
                 + 0.15 * np.clip(ripples - 1.2, 0, None))
    blades = noise(30, 400)[..., None] + 0.5 * noise(60, 800)[..., None]  # vertical streaks
    grass_rgb = (np.array([0.25, 0.52, 0.14], np.float32) * (1 + 0.15 * blades)
                 + 0.06 * noise(8, 14)[..., None])
    leaves = np.array([0.10, 0.25, 0.10], np.float32) * (1 + 0.3 * noise(40, 70)[..., None])
    tree_rgb = np.where(trunk[..., None], np.array([0.30, 0.20, 0.12], np.float32), leaves)
    rgb = np.select([tree[..., None], sky[..., None], hills[..., None], water[..., None]],
                    [tree_rgb, sky_rgb, hill_rgb, water_rgb], grass_rgb)
    rgb = rgb + 0.01 * rng.standard_normal(rgb.shape).astype(np.float32)  # film grain
    still = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    areas = {"sky": sky, "water": water, "grass": grass}
    masks = {name: np.where(areas[name] & ~tree, 255, 0).astype(np.uint8)
             for name, _ in ADVECT_REGIONS}
    return still, masks


def make_landscape_jobs(folder: Path, width: int, height: int, frames_count: int,
                        device: str, two_stream_frames: int | None = None) -> dict[str, Path]:
    """The advect bench's job folder: the landscape, its three masks and three job files that
    differ only in `dyntex` ({"advect": path, "two-stream": path, "refine": advect with
    REFINE_ITERATIONS refiner iterations, stopped by the bench after a few}) and, given
    two_stream_frames, in `frames` (two-stream and refine); every other key at its default but
    `loop` (true)."""
    still, masks = landscape(width, height)
    frames.write_image(folder / "still.png", still, "PNG8")
    for name, values in masks.items():
        cv2.imencode(".png", values)[1].tofile(folder / f"{name}.png")
    jobs = {}
    for name, count, dyntex in (
            ("advect", frames_count, {"method": "advect"}),
            ("two-stream", two_stream_frames or frames_count, {"method": "two-stream"}),
            ("refine", two_stream_frames or frames_count,
             {"method": "advect", "refine": REFINE_ITERATIONS})):
        job = {"version": 1, "engine": "dyntex", "image": "still.png",
               "output": f"take_{name}", "frames": count, "loop": True,
               "device": device,
               "masks": [{"path": f"{mask}.png", "label": label}
                         for mask, label in ADVECT_REGIONS],
               "dyntex": dyntex}
        jobs[name] = folder / f"job_{name}.json"
        jobs[name].write_text(json.dumps(job))
    return jobs


class _Timed(Silent):
    """Progress that keeps (stage, done, total, seconds since start, loss) of every record, and
    stops the run (raises _Reached) after `stop_after` iterations of `stage` (0: never)."""

    def __init__(self, stop_after: int = 0, stage: str = "synthesize"):
        super().__init__()
        self.start = time.perf_counter()
        self.stop_after = stop_after
        self.stage = stage
        self.records: list[tuple] = []

    def emit(self, stage, done=None, total=None, **extra) -> None:
        self.records.append((stage, done, total, time.perf_counter() - self.start,
                             extra.get("loss")))
        iterations = [r for r in self.records if r[0] == self.stage]
        if self.stop_after and len(iterations) >= self.stop_after:
            raise _Reached


def advect_case(job_path: Path) -> dict:
    """The advect job, whole (see the comment above), in this process: wall seconds, the share
    spent before the first frame (measuring, fields), CPU seconds and peak memory."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    baseline = _peak_rss_mb()
    progress = _Timed()
    job = load_job(job_path)
    run_job(job, progress)
    seconds = time.perf_counter() - progress.start
    after = resource.getrusage(resource.RUSAGE_SELF)
    prepared = next(r[3] for r in progress.records if r[0] == "load" and r[1] == 1)
    peak = _peak_rss_mb()
    still = frames.read_image(job.image)
    written = sorted(job.output.iterdir())
    return {"width": still.shape[1], "height": still.shape[0], "frames": job.frames,
            "regions": len(job.masks), "loop": job.loop, "files": len(written),
            "seconds": round(seconds, 3), "prepare_seconds": round(prepared, 3),
            "s_per_frame": round(seconds / job.frames, 4),
            "cpu_seconds": round(after.ru_utime + after.ru_stime
                                 - usage.ru_utime - usage.ru_stime, 3),
            "peak_rss_mb": round(peak, 1), "peak_rss_above_start_mb": round(peak - baseline, 1)}


def two_stream_case(job_path: Path, iterations: int = 1, warmup: int = 0,
                    frames_count: int | None = None, stage: str = "synthesize") -> dict:
    """The two-stream job (the same still and masks) in this process, stopped after
    warmup + iterations + 1 L-BFGS iterations: seconds per iteration (the median of the last
    `iterations` gaps between iterations), the job's iteration count, and the estimate of the
    whole optimisation, iterations x seconds per iteration. frames_count (given, and not the
    job's): seconds per iteration scaled from the job's frames to that many, in proportion
    (every term of the loss is a sum over frames or frame pairs). stage "refine": the same for
    the advect method's refiner (an advect job with dyntex.refine)."""
    from engine.dyntex.synthesis import working_size

    job = load_job(job_path)
    baseline = _peak_rss_mb()
    progress = _Timed(stop_after=warmup + iterations + 1, stage=stage)
    try:
        run_job(job, progress)
    except _Reached:
        pass
    stamps = [r for r in progress.records if r[0] == stage]
    gaps = [b[3] - a[3] for a, b in zip(stamps, stamps[1:])]
    measured = statistics.median(gaps[warmup:] or gaps)
    frames_count = frames_count or job.frames
    per_iteration = measured * frames_count / job.frames
    total = stamps[-1][2]  # the job's iterations x levels
    still = frames.read_image(job.image)
    work = working_size(still.shape[1], still.shape[0], job.dyntex.size)
    peak = _peak_rss_mb()
    return {"width": still.shape[1], "height": still.shape[0], "frames": frames_count,
            "measured_frames": job.frames, "measured_s_per_iteration": round(measured, 4),
            "regions": len(job.masks), "working_size": list(work),
            "timed_iterations": len(stamps), "s_per_iteration": round(per_iteration, 4),
            "to_first_iteration_s": round(stamps[0][3], 3),
            "job_iterations": total, "estimate_seconds": round(total * per_iteration, 1),
            "first_loss": round(stamps[0][4], 6),
            "peak_rss_mb": round(peak, 1), "peak_rss_above_start_mb": round(peak - baseline, 1)}


def _isolated(isolate: bool, function, *args, **kwargs):
    """function(*args, **kwargs) here, or (isolate) in a forked child (see _run_case)."""
    if not isolate:
        return function(*args, **kwargs)
    status, value = run_forked(function, *args, **kwargs)
    if status != "ok":
        raise RuntimeError(f"bench case {function.__name__} failed: {value}")
    return value


def bench_dyntex(sizes: tuple[int, ...] = (128, 256), frames_count: int = 12,
                 iterations: int = 1, target_iterations: int = 6, warmup: int = 0,
                 device: str = "cpu", isolate: bool = True,
                 advect_size: tuple[int, int] = (1920, 1080), advect_frames: int = 48,
                 two_stream_frames: int | None = None, out=print) -> dict:
    """The `bench dyntex` report (see the comment above): prints two tables (none when `sizes`
    is empty), the advect section (a width x height `advect_size` landscape, `advect_frames`
    frames; the two-stream run at `two_stream_frames`, None: the same, scaled to
    `advect_frames`), a JSON line and the summary line. Seconds per iteration are the median
    of `iterations` iterations after the first `warmup` + 1 (the first one's time is never a
    gap between two iterations, so it is always left out: it holds one-off allocations).

    Cost: one loss evaluation (forward + backward) of 12 frames at 128² is ~13 s of one busy
    core (VGG 6 s with the reflected border, MSOE 2.6 s, Grams the rest), four times that at
    256², and an early L-BFGS iteration takes 1-3 evaluations. The defaults (two iterations a
    configuration, a 6-iteration target) keep the two tables near 12 CPU-minutes: ~6 minutes on
    two idle cores. The advect section adds ~5 CPU-minutes at the CLI's defaults (the
    1920x1080 x 48 advect job ~30 s; two-stream timed at 8 frames: ~2 minutes of set-up and
    first iteration, then the timed one, ~160 s), ~1 with --quick."""
    if isolate:
        _prepare_fork()
    results = {"engine": "dyntex", "frames": frames_count, "sizes": list(sizes),
               "device": str(resolve_device(device)), "threads": torch.get_num_threads(),
               "still": DYNTEX_MEDIA.name if DYNTEX_MEDIA.is_file() else "procedural",
               "region": "upper half, clouds", "isolated_processes": isolate,
               "per_iteration": [], "time_to_loss": {}}
    if sizes:  # empty: the advect section alone
        memory_note = ("peak RSS of a process running that configuration alone" if isolate
                       else "in-process: peak RSS is the process's lifetime peak so far")
        out(f"dyntex bench: {frames_count} frames, {results['still']} upper half -> clouds, "
            f"L-BFGS, {results['device']}, {results['threads']} threads; {memory_note}")
        out(f"{'size':>6} {'dtype':>5} {'s/iter':>8} {'iters':>5} {'peak MB':>8} "
            f"{'above start':>11}")
        for size in sizes:
            for bf16 in (False, True):
                case = _run_case(isolate, size=size, frames_count=frames_count,
                                 iterations=iterations + warmup, bf16=bf16, warmup=warmup,
                                 device=device, stop_after=iterations + warmup + 1)
                results["per_iteration"].append(case)
                out(f"{size:>5}² {case['dtype']:>5} {case['s_per_iteration']:8.3f} "
                    f"{case['iterations']:>5} {case['peak_rss_mb']:8.0f} "
                    f"{case['peak_rss_above_start_mb']:11.0f}")
        size = min(sizes)
        single = _run_case(isolate, size=size, frames_count=frames_count,
                           iterations=target_iterations, device=device,
                           stop_after=target_iterations)
        target = single["final_loss"]  # the loss at its last (target_iterations-th) iteration
        single["seconds_to_target"] = single["seconds"]
        single["target_step"] = single["iterations"]
        c2f = _run_case(isolate, size=size, frames_count=frames_count,
                        iterations=target_iterations, levels=2, target=target, device=device)
        results["time_to_loss"] = {
            "size": size, "dtype": "fp32", "target_loss": target,
            "target_from": f"single-scale after {target_iterations} iterations",
            "coarse_to_fine_cap": f"{target_iterations} iterations a level",
            "single_scale": single, "coarse_to_fine": c2f}
        out(f"time to loss {target:.4f} at {size}² fp32 (single-scale's loss after "
            f"{target_iterations} iterations; start loss {single['first_loss']:.4f}):")
        for name, case in (("single-scale", single), ("coarse-to-fine (2 levels)", c2f)):
            if case["seconds_to_target"] is None:
                out(f"  {name:>26}: not reached in {target_iterations} iterations a level "
                    f"(loss {case['final_loss']:.4f}, {case['seconds']:.1f} s)")
            else:
                out(f"  {name:>26}: {case['seconds_to_target']:7.1f} s "
                    f"({case['iterations']} iterations counted over all levels, "
                    f"peak {case['peak_rss_mb']:.0f} MB)")
    results["advect"] = _advect_section(advect_size, advect_frames, two_stream_frames,
                                        iterations, warmup, device, isolate, out)
    out(json.dumps(results))
    out(_dyntex_summary(results))
    return results


def _advect_section(size: tuple[int, int], frames_count: int, two_stream_frames: int | None,
                    iterations: int, warmup: int, device: str, isolate: bool, out) -> dict:
    """Advect against two-stream at equal settings (see the comment above)."""
    width, height = size
    two_stream_frames = two_stream_frames or frames_count
    labels = ", ".join(label for _, label in ADVECT_REGIONS)
    out(f"advect vs two-stream: {width}x{height} procedural landscape, {frames_count} frames, "
        f"loop, {len(ADVECT_REGIONS)} regions ({labels}), every other job key at its default")
    with tempfile.TemporaryDirectory(prefix="stillmotion-bench-advect-") as tmp:
        jobs = _isolated(isolate, make_landscape_jobs, Path(tmp), width, height, frames_count,
                         device, two_stream_frames)
        advect = _isolated(isolate, advect_case, jobs["advect"])
        out(f"  advect, the whole job: {advect['seconds']:.1f} s "
            f"({advect['s_per_frame']:.2f} s/frame; {advect['prepare_seconds']:.1f} s of it "
            f"measuring motion and building fields), {advect['cpu_seconds']:.0f} CPU-s, "
            f"peak {advect['peak_rss_mb']:.0f} MB ({advect['peak_rss_above_start_mb']:.0f} MB "
            "above the start)")
        two = _isolated(isolate, two_stream_case, jobs["two-stream"], iterations=iterations,
                        warmup=warmup, frames_count=frames_count)
        refine = _isolated(isolate, two_stream_case, jobs["refine"], iterations=iterations,
                           warmup=warmup, frames_count=frames_count, stage="refine")
    work_w, work_h = two["working_size"]
    measured = two["measured_frames"]
    scaled = (f" at {measured} frames, x {frames_count}/{measured} for {frames_count} frames: "
              f"{two['s_per_iteration']:.2f} s/iteration" if measured != frames_count else "")
    out(f"  two-stream at {work_w}x{work_h} (its default working size): "
        f"{two['measured_s_per_iteration']:.2f} s/iteration{scaled} "
        f"({two['timed_iterations']} iterations run, the first after "
        f"{two['to_first_iteration_s']:.1f} s), peak {two['peak_rss_mb']:.0f} MB at "
        f"{measured} frames")
    out(f"  two-stream at the defaults would take ≈ {two['estimate_seconds']:.0f} s: "
        f"{two['job_iterations']} iterations × {two['s_per_iteration']:.2f} s/iteration "
        "(set-up and frame writing not counted)")
    ratio = _ratio(two["estimate_seconds"], advect["seconds"])
    out(f"  two-stream estimate / advect: {ratio:.0f}x" if ratio is not None else
        "  two-stream estimate / advect: not measured")
    scaled = (f" at {measured} frames, x {frames_count}/{measured} for {frames_count} frames: "
              f"{refine['s_per_iteration']:.2f} s/iteration" if measured != frames_count else "")
    out(f"  the advect method's refiner (dyntex.refine) at {work_w}x{work_h}: "
        f"{refine['measured_s_per_iteration']:.2f} s/iteration{scaled}, peak "
        f"{refine['peak_rss_mb']:.0f} MB at {measured} frames; a bake with refine N adds "
        f"≈ N × {refine['s_per_iteration']:.1f} s to advect's {advect['seconds']:.1f} s")
    return {"still": "procedural landscape", "size": [width, height], "frames": frames_count,
            "two_stream_measured_frames": two_stream_frames, "loop": True,
            "regions": [label for _, label in ADVECT_REGIONS],
            "advect": advect, "two_stream": two, "refine": refine,
            "two_stream_over_advect": None if ratio is None else round(ratio, 2)}


def _dyntex_summary(results: dict) -> str:
    per = {(c["size"], c["dtype"]): c["s_per_iteration"] for c in results["per_iteration"]}
    figures = {}
    for size in results["sizes"]:
        fp32, bf16 = per.get((size, "fp32")), per.get((size, "bf16"))
        figures[f"s_per_iteration_{size}"] = fp32
        figures[f"bf16_over_fp32_{size}"] = _ratio(bf16, fp32)
    ttl = results["time_to_loss"]
    if ttl:
        single = ttl["single_scale"]["seconds_to_target"]
        c2f = ttl["coarse_to_fine"]["seconds_to_target"]
        figures["seconds_to_loss_single"] = single
        figures["seconds_to_loss_coarse_to_fine"] = c2f  # None: not reached
        figures["coarse_to_fine_over_single"] = _ratio(c2f, single)
    section = results.get("advect")
    if section:
        advect, two = section["advect"], section["two_stream"]
        figures["advect_size"] = "x".join(str(side) for side in section["size"])
        figures["advect_frames"] = section["frames"]
        figures["advect_s"] = advect["seconds"]
        figures["advect_s_per_frame"] = advect["s_per_frame"]
        figures["advect_peak_mb"] = advect["peak_rss_mb"]
        figures["two_stream_s_per_iteration"] = two["s_per_iteration"]
        figures["two_stream_measured_frames"] = two["measured_frames"]
        figures["two_stream_estimate_s"] = two["estimate_seconds"]
        figures["two_stream_over_advect"] = _ratio(two["estimate_seconds"], advect["seconds"])
        figures["refine_s_per_iteration"] = section["refine"]["s_per_iteration"]
    # frames: the two tables' (None when they did not run)
    return summary_line("dyntex", frames=results["frames"] if results["sizes"] else None,
                        **figures)


# --- `python -m engine motion-stats --library` --------------------------------------------------
#
# The motion statistics (docs/ARCHITECTURE.md, quality measures) of a synthesized region against its exemplar, for every built-in
# exemplar, in one table. Per exemplar: the still is a frame of the same kind of texture drawn
# with another seed (so appearance is in reach and the table measures motion), the region is its
# central 3/4 box, and the clip is synthesized as `python -m engine dyntex --loop` would. Inside
# the region (eroded by 2 px, away from the static frame) against the exemplar at the same scale:
#   mag∩, dir∩   histogram intersections of DIS flow magnitude and direction (1 = same)
#   speed        mean DIS magnitude of the region / of the exemplar (1 = same speed)
#   seam         loop seam error of the region: last->first change / mean neighbouring change
# and, as the ceiling those numbers can reach, mag∩/dir∩ of a second exemplar clip of the same
# kind (another seed) against the first.


def library_case(name: str, size: int, frames_count: int, iterations: int, networks,
                 device: str = "cpu", seed: int = 0, weights=None) -> dict:
    """Synthesize one built-in exemplar's region and measure it (see the comment above)."""
    from engine import metrics
    from engine.dyntex.exemplars import make_exemplar
    from engine.dyntex.synthesis import Region, SynthesisConfig, synthesize

    exemplar = make_exemplar(name, frames_count, size, seed=seed, loop=True)
    still = frames.from_float(make_exemplar(name, 2, size, seed=seed + 1)[0], np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[size // 8:size - size // 8, size // 8:size - size // 8] = 1.0
    config = SynthesisConfig(frames=frames_count, size=size, iterations=iterations, loop=True,
                             seed=seed)
    if weights is not None:
        config.weights = weights
    vgg, msoe = networks
    result = synthesize(still, [Region(mask=mask, exemplar=exemplar, name=name)], config,
                        vgg=vgg, msoe=msoe, device=resolve_device(device))
    clip = result.work_frames()
    inner = cv2.erode((mask > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    region = metrics.flow_histograms(clip, mask=inner)
    target = metrics.flow_histograms(exemplar)
    other = metrics.flow_histograms(make_exemplar(name, frames_count, size, seed=seed + 2))
    speed = (region["mean_magnitude"] / target["mean_magnitude"]
             if target["mean_magnitude"] > 0 else float("nan"))
    return {"exemplar": name, "size": size, "frames": frames_count, "iterations": iterations,
            "magnitude": round(metrics.histogram_intersection(region["magnitude"],
                                                              target["magnitude"]), 3),
            "direction": round(metrics.histogram_intersection(region["direction"],
                                                              target["direction"]), 3),
            "speed_ratio": round(speed, 3),
            "region_px_per_frame": round(region["mean_magnitude"], 3),
            "exemplar_px_per_frame": round(target["mean_magnitude"], 3),
            "seam_ratio": round(metrics.loop_seam_error(clip[:, inner])["ratio"], 3),
            "exemplar_seam_ratio": round(metrics.loop_seam_error(exemplar)["ratio"], 3),
            "ceiling_magnitude": round(metrics.histogram_intersection(other["magnitude"],
                                                                      target["magnitude"]), 3),
            "ceiling_direction": round(metrics.histogram_intersection(other["direction"],
                                                                      target["direction"]), 3),
            "loss_start": round(result.losses[0], 4), "loss_end": round(result.losses[-1], 4),
            "seconds": round(result.seconds, 1)}


def library_motion_statistics(size: int = 128, frames_count: int = 8, iterations: int = 40,
                              names: tuple[str, ...] | None = None, networks=None,
                              device: str = "cpu", weights=None, out=print) -> dict:
    """The `motion-stats --library` report: one row per built-in exemplar, then a JSON line."""
    from engine.dyntex.exemplars import EXEMPLARS
    from engine.dyntex.synthesis import load_networks

    torch_device = resolve_device(device)
    networks = networks or load_networks(None, None, torch_device)
    names = tuple(names or EXEMPLARS)
    report = {"size": size, "frames": frames_count, "iterations": iterations,
              "device": str(torch_device), "rows": []}
    out(f"motion statistics: each built-in exemplar synthesized into the central 3/4 of a "
        f"{size}x{size} still of its kind, {frames_count} frames, loop, {iterations} L-BFGS "
        f"iterations; region vs exemplar (ceiling: a second exemplar clip vs the first)")
    out(f"{'exemplar':>10} {'mag∩':>6} {'dir∩':>6} {'speed':>6} {'px/f':>11} {'seam':>5} "
        f"{'ceiling mag∩/dir∩':>18} {'loss':>15} {'s':>6}")
    for name in names:
        row = library_case(name, size, frames_count, iterations, networks, device,
                           weights=weights)
        report["rows"].append(row)
        out(f"{name:>10} {row['magnitude']:6.3f} {row['direction']:6.3f} "
            f"{row['speed_ratio']:6.2f} {row['region_px_per_frame']:5.2f}/"
            f"{row['exemplar_px_per_frame']:<5.2f} {row['seam_ratio']:5.2f} "
            f"{row['ceiling_magnitude']:9.3f}/{row['ceiling_direction']:<8.3f} "
            f"{row['loss_start']:7.3f}->{row['loss_end']:<6.3f} {row['seconds']:6.1f}")
    out(json.dumps(report))
    return report
