"""The engines a case may name, and making one clip with one of them.

A clip is made exactly as a bake makes it: a job (docs/JOB.md) is built for it, parsed and
checked by engine/job.py, and handed to the `prepare` of the engine module the job runner uses
(engine/runner.py ENGINES); the frames are kept in memory instead of written. So the numbers are
those of what the artist gets, and nothing here knows how an engine works.

A case with a style gets its clips twice: without the style, and with it, the job carrying the
case's "style" and its still replaced by the stylized one exactly as the job runner's style stage
(engine/style/stage.py apply_style) replaces it: the whole still stylized once per case
(engine.style.stylize, at the evaluated resolution), kept to the job's masks with their feather
by the stage's own style_weights and compose. Only the stage's cache is left out, so the
seconds to stylize are the optimisation's and no user cache is written.

Adding an engine is one ENGINES entry: which job engine it is, the options a case may set (with
defaults) and how they become the job's engine section. The same job engine may appear under
several names, and a case may list one engine twice with different options and labels (two
`poke` models, for instance).
"""

from __future__ import annotations

import hashlib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.progress import Progress

PATH = "path"  # option kind: a file, relative to the case file, checked when the case is read


@dataclass(frozen=True)
class Engine:
    job_engine: str                                   # the job's "engine" (engine/runner.py)
    job_section: Callable[[dict, int, int], dict]     # (options, sample, samples) -> job keys
    options: dict[str, tuple[object, object]] = field(default_factory=dict)  # name: (kind, default)
    sampling: bool = False   # different samples give different clips (diversity is measured)
    # options that are lengths in the case's still pixels: scaled to the evaluated resolution
    lengths: tuple[str, ...] = ()
    # None: the prepare(job, device, progress) of the runner's module for job_engine; a test
    # may give its own
    prepare: Callable | None = None
    # its job gets the case's motion masks (labelled with their motion) besides the static ones
    motion_masks: bool = False


def _warp_section(options: dict, sample: int, samples: int) -> dict:
    return {"warp": {"falloff": options["falloff"], "feather": options["feather"]}}


def _poke_section(options: dict, sample: int, samples: int) -> dict:
    model = options["model"]
    return {"poke": {"model": None if model is None else str(model), "samples": samples,
                     "sample": sample, "temperature": options["temperature"],
                     "guide": options["guide"], "snap": options["snap"],
                     "background": options["background"], "compose": options["compose"]}}


def _dyntex_section(options: dict, sample: int, samples: int) -> dict:
    # "loop" is the job's own top-level key (docs/JOB.md); refine: two-stream iterations over
    # an advected clip (advect only); size and iterations: the two-stream method's working size
    # and iterations (and the refiner's size)
    return {"loop": options["loop"],
            "dyntex": {"method": options["method"], "refine": options["refine"],
                       "size": options["size"], "iterations": options["iterations"]}}


ENGINES: dict[str, Engine] = {
    "warp": Engine("warp", _warp_section, {"falloff": (float, 0.0), "feather": (float, 0.0)},
                   lengths=("falloff", "feather")),
    # model None: the shipped default (engine/job.py DEFAULT_POKE_MODEL)
    # guide/snap/background (docs/JOB.md) default on, as in the panel; off for iPOKE as published
    "poke": Engine("poke", _poke_section, {"model": (PATH, None), "temperature": (float, 1.0),
                                           "guide": (bool, True), "snap": (bool, True),
                                           "background": (bool, True),
                                           "compose": (str, "change")},
                   sampling=True),
    # the case's motion masks move (advect: motion first; "two-stream" works but takes minutes)
    # (defaults: the job's, engine/job.py DyntexSettings)
    "dyntex": Engine("dyntex", _dyntex_section, {"method": (str, "advect"),
                                                 "loop": (bool, False), "refine": (int, 0),
                                                 "size": (int, 256), "iterations": (int, 100)},
                     motion_masks=True),
}


class _Forward(Progress):
    """What an engine reports while it prepares a clip: warnings reach the user (tagged with
    the case and engine), its own stages would only interleave with the evaluation's."""

    def __init__(self, outer: Progress, where: str):
        super().__init__()
        self.outer, self.where = outer, where

    def emit(self, stage, done=None, total=None, **extra) -> None:
        if stage == "warning":
            self.outer.warning(f"{self.where}: {extra.get('message', '')}")


@dataclass(frozen=True)
class StyleInput:
    """A case's style at the evaluated resolution: the job's "style" values and the whole still
    stylized (engine.style.stylize), computed once per case."""
    painting: Path
    strength: float
    where: str              # "all" or "masks"
    feather: float          # evaluated pixels; 0 = the stage's automatic feather
    whole: np.ndarray       # the whole still stylized, like the still (H x W x 3 uint8 RGB)


@dataclass
class Clip:
    frames: list[np.ndarray]
    seconds: float                   # prepare and render, not the style stage
    still: np.ndarray | None = None  # with a style: the stylized still the engine moved
    weights: np.ndarray | None = None  # where the style applies (H x W in [0, 1]); None: all


def make_clip(engine: Engine, options: dict, still: Path, pokes, masks: list[Path],
              scale: float, frames: int, seed: int, sample: int, samples: int, device,
              work: Path, progress: Progress, where: str,
              motion: list[tuple[Path, str]] = (), style: StyleInput | None = None) -> Clip:
    """The frames of one clip (arrays like the still: H x W x 3 uint8 RGB here) and the
    seconds it took to prepare and render them (not counting writing files). `still`,
    `masks` (static) and `motion` ((mask, label); only engines with motion_masks get them)
    are files at the evaluated resolution, `pokes` (x, y, dx, dy) in its pixels, `scale` its
    pixels per case still pixel; `work` is a folder for the job file's output path and the
    stylized still. With `style`, the engine moves the stylized still (see the module's
    docstring)."""
    from engine import job as job_module
    from engine.runner import ENGINES as RUNNER_MODULES

    options = {key: (value * scale if key in engine.lengths and value is not None else value)
               for key, value in options.items()}
    data = {"version": job_module.VERSION, "engine": engine.job_engine, "image": str(still),
            "output": str(work / "never_written"), "frames": frames, "seed": seed,
            "device": device.type,
            "pokes": [{"start": [x, y], "end": [x + dx, y + dy]} for x, y, dx, dy in pokes],
            "masks": [{"path": str(path), "label": "static"} for path in masks]
            + [{"path": str(path), "label": label}
               for path, label in (motion if engine.motion_masks else ())],
            **engine.job_section(options, sample, samples)}
    if style is not None:
        data["style"] = {"image": str(style.painting), "strength": style.strength,
                         "where": style.where, "feather": style.feather}
    job = job_module.parse_job(data, work)
    job_module.check_files(job)
    styled = weights = None
    if job.style is not None:
        job, styled, weights = _stylized_job(job, style.whole, work)
    prepare = engine.prepare or importlib.import_module(RUNNER_MODULES[job.engine]).prepare
    started = time.perf_counter()
    clip = prepare(job, device, _Forward(progress, where))
    # a copy: an engine may hand out one array object for every unchanged frame
    rendered = [np.array(frame, copy=True) for frame in clip]
    seconds = time.perf_counter() - started
    if len(rendered) != frames:
        raise RuntimeError(f"{where} made {len(rendered)} frames, not {frames}")
    return Clip(rendered, seconds, styled, weights)


def _stylized_job(job, whole: np.ndarray, work: Path):
    """What engine/style/stage.py apply_style does to a job, from a stylized whole still: the
    job's still stylized where the style applies (its masks, feathered), written beside it, and
    the job pointed at it."""
    import dataclasses

    from engine import frames as frames_io
    from engine.style.stage import compose, style_region, style_weights

    still = frames_io.read_image(job.image)
    height, width = still.shape[:2]
    if whole.shape != still.shape:
        raise RuntimeError(f"the stylized still is {whole.shape}, the still {still.shape}")
    weights = style_weights(job, style_region(job, width, height))
    styled = compose(still, whole.astype(still.dtype), weights)
    path = work / f"styled_{hashlib.sha256(styled.tobytes()).hexdigest()[:16]}.png"
    if not path.is_file():
        frames_io.write_image(path, styled, "PNG8" if styled.dtype == np.uint8 else "PNG16")
    return dataclasses.replace(job, image=path), styled, weights
