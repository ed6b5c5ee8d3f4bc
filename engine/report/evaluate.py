"""`python -m engine evaluate`: cases -> clips -> numbers and pictures -> one report folder.

    report/index.md                   tables and pictures (Markdown)
    report/results.json               every number (per sample too) and histogram
    report/<case>/case.png            the still with pokes, patches, pins and moving region
    report/<case>/<engine>_sheet.png  contact sheet; <engine>_flow.png flow histograms
    report/<case>/style_sheet.png     a case with a style: still, painting, stylized still and
                                      frames of the stylized bake, a row per engine

The folder is staged and renamed into place when complete (engine/staging.py), so a failed or
stopped evaluation leaves no half report. Every clip is made through the job runner's engine
entry (engines.make_clip). Time per clip is measured at the case's resolution (every sample)
and with the still's longer side at 64 px (sample 0, after one untimed run at 64 px that pays
for imports and first-call set-up). A case with a style is stylized once (timed) and every
engine's clips are made a second time from the stylized still (engines.make_clip), for the
style table. Face structure and edge seam (MediaPipe) are measured for poke engines, and for
every engine when the still has a face; the other rows leave them blank. Engines that move
motion masks get the landscape numbers of each motion region (measures.landscape_numbers),
against each mask's exemplar motion measured once per case (engine/dyntex/motion_field.py
load_motion, with the case's seed).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engine.errors import JobError
from engine.progress import Progress
from engine.report import document, measures, pictures
from engine.report.cases import MAX_SAMPLES, MOTION_WORDS, Case, load_cases, relative_path
from engine.report.engines import ENGINES, StyleInput, make_clip
from engine.report.stills import read_source, scene_at, write_inputs

TIMING_SIDE = 64


def run(args, progress: Progress) -> int:
    import torch

    from engine.device import resolve_device
    from engine.staging import raise_on_sigterm, staged_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out).absolute()
    if os.path.lexists(out):
        raise JobError(f"output folder already exists: {out}; choose a new --out (a report is "
                       "never overwritten)")
    cases = [_override(case, args) for case in load_cases(args.cases, tuple(args.only or ()))]
    device = resolve_device(args.device)
    raise_on_sigterm()
    results = {"command": _command(args), "device": str(device),
               "started": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"), "threads": torch.get_num_threads(),
               "cases": []}
    counter = _Counter(progress, sum(_clips(case) for case in cases))
    started = time.monotonic()
    with staged_folder(out) as partial, tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        for case in cases:
            results["cases"].append(evaluate_case(case, partial, Path(work), device, counter))
        results["seconds"] = time.monotonic() - started
        progress.emit("write", output=str(out))
        document.write_results(results, partial / "results.json")
        document.write_index(results, partial / "index.md")
    progress.emit("done", output=str(out), report=str(out / "index.md"),
                  results=str(out / "results.json"), seconds=round(results["seconds"], 1))
    return 0


def _clips(case: Case) -> int:
    """Progress steps of a case: per engine two 64 px runs and its samples, and with a style
    the stylization and the samples again."""
    samples = [case.samples if ENGINES[run.engine].sampling else 1 for run in case.engines]
    return sum(samples) + 2 * len(samples) + (1 + sum(samples) if case.style else 0)


def evaluate_case(case: Case, report: Path, work: Path, device, counter) -> dict:
    source = read_source(case)
    scene = scene_at(case, source, case.resolution)
    small = scene_at(case, source, TIMING_SIDE)
    name = slug(case.name)
    folder = report / name
    folder.mkdir()
    _write_png(folder / "case.png", pictures.case_picture(scene))
    still, masks, motion = write_inputs(scene, work / name / "full")
    small_still, small_masks, small_motion = write_inputs(small, work / name / "small")
    style = painting = None
    if case.style is not None:
        style, painting, style_seconds = _stylize(case, scene, device, counter)
    faces = _Faces(scene.still, counter.progress, case.name)
    landscape = _Landscape(case, scene)
    height, width = scene.still.shape[:2]
    result = {
        "name": case.name, "source": case.source, "resolution": case.resolution,
        "size": [width, height], "samples": case.samples, "seed": case.seed,
        "frames": case.frames, "pokes": [list(p) for p in scene.pokes],
        "pokes_in_source": [list(p) for p in case.pokes], "pins": [list(p) for p in scene.pins],
        "patches": [list(p) for p in scene.patches],
        "region": ("the person (MediaPipe person mask)" if case.region_person else
                   "the motion masks" if case.region_motion else
                   f"mask {relative_path(case.region_mask, case.folder)}" if case.region_mask
                   else "discs around the pokes"), "region_share": float(scene.region.mean()),
        "motion": [{"mask": relative_path(path, case.folder),
                    "label": label if label in MOTION_WORDS else relative_path(Path(label),
                                                                               case.folder)}
                   for path, label in case.motion],
        "picture": f"{name}/case.png", "engines": []}
    if style is not None:
        result["style"] = {
            "painting": relative_path(case.style.image, case.folder),
            "painting_size": list(painting.shape[1::-1]), "strength": case.style.strength,
            "where": case.style.where, "feather": style.feather, "seconds": style_seconds,
            "sheet": f"{name}/style_sheet.png"}
        style_rows = []
    for run in case.engines:
        engine = ENGINES[run.engine]
        count = case.samples if engine.sampling else 1
        where = f"{case.name}/{run.label}"

        def clip(sample, at_full=True, styled=None):
            at = scene if at_full else small
            return make_clip(engine, run.options, still if at_full else small_still, at.pokes,
                             masks if at_full else small_masks, at.scale, case.frames,
                             case.seed, sample, count, device, work / name, counter.progress,
                             where, motion=motion if at_full else small_motion, style=styled)

        for timed in (False, True):  # the first pays for imports and first-call set-up
            seconds_64 = clip(0, at_full=False).seconds
            counter.step(case.name, run.label, "64 px" + (" (timed)" if timed else " (warm-up)"))
        clips, numbers = [], []
        person = faces.person(run.engine)
        loop = bool(run.options.get("loop"))
        targets = landscape.targets(loop) if engine.motion_masks else None
        for sample in range(count):
            made = clip(sample)
            numbers.append({**measures.sample_numbers(made.frames, scene),
                            "seconds": made.seconds})
            if person is not None:
                numbers[-1].update(measures.face_numbers(made.frames, scene.still, person))
            if targets is not None:
                numbers[-1]["landscape"] = measures.landscape_numbers(
                    made.frames, scene.still, targets, landscape.outside, loop)
            clips.append(made.frames)
            counter.step(case.name, run.label, f"sample {sample + 1} of {count}")
        summary = measures.summary(numbers)
        spread = measures.diversity(clips, scene.region)
        summary["diversity_region"] = spread["region"] if spread else None
        summary["diversity_frame"] = spread["frame"] if spread else None
        summary["seconds_per_clip"] = float(np.mean([n["seconds"] for n in numbers]))
        summary["seconds_per_clip_64"] = seconds_64
        summary["size_64"] = list(small.still.shape[1::-1])
        histograms = measures.histograms(clips, scene.region)
        files = {"sheet": f"{name}/{slug(run.label)}_sheet.png",
                 "histograms": f"{name}/{slug(run.label)}_flow.png"}
        _write_png(report / files["sheet"], pictures.sheet(clips, scene.still, scene.region))
        _write_png(report / files["histograms"], pictures.histogram_picture(histograms))
        row = {
            "label": run.label, "engine": run.engine, "sampling": engine.sampling,
            "options": {k: (relative_path(v, case.folder) if isinstance(v, Path) else v)
                        for k, v in run.options.items()},
            "summary": summary, "samples": numbers, "histograms": histograms,
            "pictures": files}
        if targets is not None:
            row["landscape"] = landscape.row(
                targets, measures.landscape_summary([n["landscape"] for n in numbers]), loop,
                result["motion"])
        if style is not None:
            styled_clips = []
            for sample in range(count):
                made = clip(sample, styled=style)
                styled_clips.append(made.frames)
                counter.step(case.name, run.label, f"stylized sample {sample + 1} of {count}")
            row["style"] = measures.style_numbers(scene.still, made.still, painting, made.weights,
                                                  clips, styled_clips, scene.region)
            style_rows.append((run.label, made.still, styled_clips[0]))
            del styled_clips
        result["engines"].append(row)
    if style is not None:
        _write_png(report / result["style"]["sheet"],
                   pictures.style_sheet(scene.still, painting, style_rows))
    return result


class _Landscape:
    """The motion regions of a case for the landscape numbers: each motion mask's exemplar
    motion (measured once per case, once per label) and the pixels outside every motion mask
    (those a motion-mask engine must leave bit for bit: the job's masks cover a pixel at
    >= 0.5, and the masks the jobs get are the scene's, written as 8-bit PNGs)."""

    def __init__(self, case: Case, scene):
        self.case, self.scene = case, scene
        self.motions = None
        self.outside = (np.all([np.round(values * 255) < 128 for values, _ in scene.motion],
                               axis=0) if scene.motion else None)

    def targets(self, loop: bool) -> list:
        from engine.dyntex.motion_field import load_motion

        if self.motions is None:
            known = {}
            for index, (_, label) in enumerate(self.scene.motion, 1):
                if label not in known:
                    known[label] = load_motion(label, index, self.case.seed)
            self.motions = [known[label] for _, label in self.scene.motion]
        return measures.landscape_targets(self.scene, self.motions, self.case.frames, loop)

    def row(self, targets: list, summary: dict, loop: bool, names: list[dict]) -> dict:
        """The engine's "landscape" in results.json: per region its mask, label, kind, what was
        asked (px/frame) and its numbers; outside; whether the clip loops."""
        regions = []
        for target, numbers, name in zip(targets, summary["regions"], names):
            regions.append({
                **name, "kind": target.kind, "steered": target.steered,
                "share": float(target.mask.mean()),
                "expected_direction": list(target.direction),
                "expected_speed": target.speed, **numbers})
        return {"loop": loop, "regions": regions, "outside": summary["outside"]}


class _Faces:
    """Whether a case x engine gets the face columns, and the still's person mask for them,
    each found once per case: poke engines always (faces are what they are for), any other
    engine when the still has a face. Without mediapipe the columns stay blank, with one
    warning, as a bake without it goes on without facial parts."""

    def __init__(self, still: np.ndarray, progress: Progress, case: str):
        self.still, self.progress, self.case = still, progress, case
        self.has_face: bool | None = None
        self.mask: np.ndarray | None = None
        self.missing = False

    def person(self, engine: str) -> np.ndarray | None:
        """The still's person mask when this engine's rows are measured, else None."""
        if self.missing:
            return None
        try:
            from engine.face.landmarks import detect_meshes
            from engine.face.segmentation import person_mask

            if engine != "poke" and self.has_face is None:
                self.has_face = bool(detect_meshes(self.still))
            if engine != "poke" and not self.has_face:
                return None
            if self.mask is None:
                self.mask = person_mask(self.still)
        except JobError as error:
            self.missing = True
            self.progress.warning(f"{self.case}: face structure and edge seam are left blank: "
                                  f"{error}")
            return None
        return self.mask


def _stylize(case: Case, scene, device, counter) -> tuple[StyleInput, np.ndarray, float]:
    """The case's still stylized once, whole, at the evaluated resolution (engine.style
    .stylize, timed), and the painting as RGB pixels."""
    from engine.style import display_rgb_float, read_painting, stylize

    painting = read_painting(case.style.image)
    region = None
    if case.style.where == "masks":  # the masks every engine's job may hold: static and motion
        parts = [mask for mask, _ in scene.motion]
        parts += [scene.static] if scene.static is not None else []
        region = np.maximum.reduce(parts) if parts else None
    started = time.perf_counter()
    whole = stylize(scene.still, painting, case.style.strength, device=device, region=region)
    seconds = time.perf_counter() - started
    counter.step(case.name, "style", "stylize")
    painting_rgb = (display_rgb_float(painting) * 255 + 0.5).astype(np.uint8)
    style = StyleInput(painting=case.style.image, strength=case.style.strength,
                       where=case.style.where, feather=case.style.feather * scene.scale,
                       whole=whole)
    return style, painting_rgb, seconds


def slug(text: str) -> str:
    """A file name made of the text's safe characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


class _Counter:
    """Progress lines: one per clip made, numbered over the whole evaluation."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def step(self, case: str, engine: str, what: str) -> None:
        self.done += 1
        self.progress.emit("evaluate", self.done, self.total, case=case, engine=engine,
                           clip=what)


def _override(case: Case, args) -> Case:
    changes = {key: value for key, value in (("resolution", args.resolution),
                                             ("samples", args.samples), ("frames", args.frames))
               if value}
    if (changes.get("resolution", 16) < 16 or changes.get("frames", 2) < 2
            or not 1 <= changes.get("samples", 1) <= MAX_SAMPLES):
        raise JobError(f"--resolution must be at least 16, --frames at least 2 and --samples "
                       f"1..{MAX_SAMPLES}")
    return dataclasses.replace(case, **changes)


def _command(args) -> str:
    """The command as run in the folder that holds the report, its paths relative to there:
    the report is committed and read on other machines, so it names no machine folder."""
    out = Path(args.out).absolute()
    words = ["python -m engine evaluate", "--cases",
             relative_path(Path(args.cases).absolute(), out.parent), "--out", out.name]
    for flag in ("resolution", "samples", "frames"):
        if getattr(args, flag):
            words += [f"--{flag}", str(getattr(args, flag))]
    for name in args.only or ():
        words += ["--only", name]
    return " ".join(words)


def _write_png(path: Path, picture: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", picture)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name}")
    try:
        data.tofile(path)
    except OSError as exc:
        raise JobError(f"cannot write {path}: {exc.strerror or exc}; check the disk and that "
                       "the report folder is writable") from None
