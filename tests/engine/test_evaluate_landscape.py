"""The Landscape table of `python -m engine evaluate` (docs/EVALUATE.md): a row per motion
region for engines that move motion masks, and the dyntex engine's options reaching its job.
A tiny still (96 x 64 at 64 px), the real motion-first engine, each exemplar measured once."""

import dataclasses
import functools
import json
import math

import cv2
import numpy as np
import pytest
import torch
from conftest import save, texture
from test_evaluate_report import evaluate_command

from engine.dyntex import motion_field
from engine.errors import JobError
from engine.face import landmarks
from engine.progress import Recorded
from engine.report import cases as cases_module
from engine.report import engines
from engine.report.stills import read_source, scene_at, write_inputs

HEADINGS = ("region", "motion", "unexplained", "coherence", "speed / asked (px/frame)",
            "speed ratio", "direction cos", "sway (px/frame)", "sharpness (region)",
            "edge seam", "loop seam", "outside", "s/clip")


def write_landscape_cases(folder, engines_list=("dyntex",), **changes):
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / "still.png", cv2.GaussianBlur(texture(64, 96, seed=4), (0, 0), 1.5))
    sky, grass = np.zeros((64, 96, 1), np.uint8), np.zeros((64, 96, 1), np.uint8)
    sky[:28], grass[40:] = 255, 255
    save(folder / "sky.png", sky)
    save(folder / "grass.png", grass)
    case = {"name": "meadow", "still": "still.png", "pokes": [[48, 12, 9, 0]],
            "motion": [{"mask": "sky.png", "label": "clouds"},
                       {"mask": "grass.png", "label": "grass"}],
            "region": {"motion": True}, "engines": list(engines_list), **changes}
    data = {"version": 1, "defaults": {"resolution": 64, "samples": 1, "frames": 4},
            "cases": [case]}
    path = folder / "cases.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def landscape_report(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("landscape")
    cases = write_landscape_cases(folder, [
        "dyntex", {"engine": "dyntex", "label": "advect loop", "options": {"loop": True}}])
    with pytest.MonkeyPatch.context() as patch:
        # every clip (and the report) measures the same two exemplars: once is enough here
        patch.setattr(motion_field, "load_motion", functools.lru_cache(motion_field.load_motion))
        patch.setattr(landmarks, "detect_meshes", lambda image, *args, **kwargs: [])
        assert evaluate_command(["--cases", str(cases), "--out", str(folder / "report")],
                                Recorded()) == 0
    out = folder / "report"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return out, results["cases"][0], (out / "index.md").read_text(encoding="utf-8")


def test_landscape_rows_per_engine_and_region(landscape_report):
    out, case, index = landscape_report
    assert "## Landscape" in index and "### meadow / landscape" in index
    head = next(line for line in index.splitlines() if line.startswith("| case | engine | region"))
    assert [cell.strip() for cell in head.strip("|").split("|")] == ["case", "engine", *HEADINGS]
    rows = [line for line in index.splitlines() if line.startswith("| meadow | ")
            and ("(sky.png)" in line or "(grass.png)" in line)]
    assert len(rows) == 4
    for run in case["engines"]:
        landscape = run["landscape"]
        assert landscape["loop"] == (run["label"] == "advect loop")
        # the motion-first engine leaves every pixel outside the masks the still's
        assert landscape["outside"] == {"pixels": 0, "max_difference": 0.0, "identical": True}
        clouds, grass = landscape["regions"]
        assert (clouds["mask"], clouds["label"], clouds["kind"]) == ("sky.png", "clouds", "drift")
        assert (grass["mask"], grass["label"], grass["kind"]) == ("grass.png", "grass",
                                                                 "oscillate")
        assert clouds["steered"] and not grass["steered"]
        # the arrow (9 px at 96 -> 6 px at 64) asks for its length per step
        steps = 4 if landscape["loop"] else 3
        assert clouds["expected_speed"] == pytest.approx(6 / steps)
        assert clouds["expected_direction"] == [1.0, 0.0]
        assert grass["expected_speed"] is None
        for region in (clouds, grass):
            for key in ("unexplained_change", "drift_coherence", "direction_cosine",
                        "sharpness", "edge_seam"):
                assert isinstance(region[key], float) and math.isfinite(region[key]), key
            assert (region["loop_seam"] is not None) == landscape["loop"]
        assert clouds["speed_ratio"] > 0 and clouds["direction_cosine"] > 0.5
        assert clouds["sway"] is None and clouds["speed"] > 0
        assert grass["speed_ratio"] is None and grass["speed"] is None and grass["sway"] >= 0
        assert f"| meadow | {run['label']} | clouds (sky.png) | drift, arrow |" in index
        assert f"| meadow | {run['label']} | grass (grass.png) | sway |" in index
        sample = run["samples"][0]["landscape"]
        assert len(sample["regions"]) == 2 and sample["outside"]["identical"]
    assert all(line.split("|")[-3].strip() == "identical" for line in rows)


def test_engines_without_motion_masks_have_no_landscape_rows(tmp_path):
    cases = write_landscape_cases(tmp_path, [{"engine": "warp", "options": {"falloff": 20}}],
                                  region={"radius": 20})
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(landmarks, "detect_meshes", lambda image, *args, **kwargs: [])
        assert evaluate_command(["--cases", str(cases), "--out", str(tmp_path / "report")],
                                Recorded()) == 0
    index = (tmp_path / "report" / "index.md").read_text(encoding="utf-8")
    results = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))
    assert "## Landscape" not in index
    assert "landscape" not in results["cases"][0]["engines"][0]


def test_dyntex_options_reach_the_job(tmp_path):
    """refine, size and iterations (and method, loop) become the job's dyntex keys, as parsed
    by engine/job.py: checked on the job the engine's prepare is handed."""
    cases = write_landscape_cases(tmp_path, [
        "dyntex", {"engine": "dyntex", "label": "refined", "options": {
            "refine": 3, "size": 128, "iterations": 7, "loop": True}},
        {"engine": "dyntex", "label": "two-stream", "options": {"method": "two-stream",
                                                               "iterations": 5}}])
    (case,) = cases_module.load_cases(cases)
    scene = scene_at(case, read_source(case), case.resolution)
    still, masks, motion = write_inputs(scene, tmp_path / "inputs")
    jobs = []

    def capture(job, device, progress):
        jobs.append(job)
        return [np.asarray(scene.still)] * job.frames

    engine = dataclasses.replace(engines.ENGINES["dyntex"], prepare=capture)
    for run in case.engines:
        engines.make_clip(engine, run.options, still, scene.pokes, masks, scene.scale,
                          case.frames, 0, 0, 1, torch.device("cpu"), tmp_path, Recorded(),
                          run.label, motion=motion)
    plain, refined, two_stream = jobs
    assert (plain.dyntex.method, plain.dyntex.refine, plain.dyntex.size,
            plain.dyntex.iterations, plain.loop) == ("advect", 0, 256, 100, False)
    assert (refined.dyntex.method, refined.dyntex.refine, refined.dyntex.size,
            refined.dyntex.iterations, refined.loop) == ("advect", 3, 128, 7, True)
    assert (two_stream.dyntex.method, two_stream.dyntex.refine,
            two_stream.dyntex.iterations) == ("two-stream", 0, 5)
    assert [m.label for m in refined.masks] == ["clouds", "grass"]


@pytest.mark.parametrize("options, message", [
    ({"refine": -1}, "option refine must not be negative"),
    ({"refine": 1.5}, "option refine must be a whole number"),
    ({"size": True}, "option size must be a whole number"),
    ({"iterations": "100"}, "option iterations must be a whole number"),
    ({"steps": 3}, "unknown key 'steps'"),
])
def test_dyntex_option_mistakes_name_the_fix(tmp_path, options, message):
    cases = write_landscape_cases(tmp_path, [{"engine": "dyntex", "options": options}])
    with pytest.raises(JobError, match=message):
        cases_module.load_cases(cases)


def test_a_case_of_motion_masks_needs_no_arrow(tmp_path):
    """Calm water or swaying grass move without any arrow: such a case loads with no pokes and
    its poke columns are n/a; a case with neither pokes nor motion masks is refused."""
    from engine.report import measures

    path = write_landscape_cases(tmp_path, pokes=[])
    (case,) = cases_module.load_cases(path)
    assert case.pokes == ()
    scene = scene_at(case, read_source(case), 64)
    numbers = measures.sample_numbers([scene.still, scene.still], scene)
    assert numbers["poke_cosine"] is None and numbers["poke_magnitude_ratio"] is None
    data = json.loads(path.read_text())
    del data["cases"][0]["motion"], data["cases"][0]["region"]
    path.write_text(json.dumps(data))
    with pytest.raises(JobError, match="has no pokes"):
        cases_module.load_cases(path)
