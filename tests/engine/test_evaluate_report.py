"""`python -m engine evaluate` (engine/report): case files, the report folder, and numbers that
mean what docs/EVALUATE.md says, on small synthetic stills, the warp engine, a tiny untrained
poke model and a still-only engine registered here."""

import dataclasses
import json
import math
import signal

import cv2
import numpy as np
import pytest
import torch
from conftest import save, texture

from engine import cli
from engine.errors import JobError
from engine.face import geometry, landmarks, segmentation
from engine.job import read_working_still
from engine.poke.model import PokeModel, PokeModelConfig, save_model
from engine.progress import Recorded
from engine.report import cases as cases_module
from engine.report import engines, evaluate, measures
from engine.report.stills import read_source, scene_at

POKE = [60.0, 45.0, 10.0, -5.0]  # source pixels of the 120 x 90 still: its centre


def hold_still(job, device, progress):
    """An engine that returns the still unchanged, every frame."""
    return [read_working_still(job)[0]] * job.frames


STILL_ONLY = engines.Engine("warp", lambda options, sample, samples: {}, prepare=hold_still)


def left_half(image):
    """A stand-in person mask: the left half of the picture."""
    mask = np.zeros(np.asarray(image).shape[:2], np.float32)
    mask[:, : mask.shape[1] // 2] = 1.0
    return mask


def no_face(image, max_faces=1, min_confidence=0.5):
    return []


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = PokeModel(PokeModelConfig.preset_named("tiny"))
    cinn = model.cinn.config
    model.cinn.train()  # one training-mode forward initialises the ActNorms, as training does
    with torch.no_grad():
        model.cinn(torch.randn(4, cinn.z_channels, cinn.z_size, cinn.z_size),
                   torch.randn(4, cinn.cond_channels, cinn.z_size, cinn.z_size))
    return save_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", model)


def write_cases(folder, engines_list, **case):
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "still.png").exists():
        # smoother than the texture alone: DIS finds a drag on it (it loses one on pixel noise)
        save(folder / "still.png", cv2.GaussianBlur(texture(90, 120, seed=3), (0, 0), 3))
    entry = {"name": "synthetic", "still": "still.png", "pokes": [POKE],
             "region": {"radius": 25}, **case}
    data = {"version": 1, "defaults": {"resolution": 96, "samples": 2, "seed": 0, "frames": 4,
                                       "engines": engines_list},
            "cases": [entry]}
    path = folder / "cases.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def evaluate_command(argv, progress):
    previous = signal.getsignal(signal.SIGTERM)  # the command installs its own handler
    try:
        args = cli._parser().parse_args(["evaluate", *argv])
        return args.command(args, progress)
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def report(tmp_path_factory, model_path):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("evaluate")
    cases = write_cases(folder, [
        # a fall-off beyond the drag's length (DIS misses drags as long as their radius)
        {"engine": "warp", "options": {"falloff": 30}},
        {"engine": "poke", "options": {"model": str(model_path)}},
        {"engine": "poke", "label": "poke cool", "options": {"model": str(model_path),
                                                             "temperature": 0.5}},
        {"engine": "still", "label": "still only"}],
        pins=[[15, 15, 6]])
    progress = Recorded()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(engines.ENGINES, "still", STILL_ONLY)
        # a person (so edge seam is measured) and no face (so face structure is blank), whatever
        # MediaPipe would make of the synthetic still
        patch.setattr(segmentation, "person_mask", left_half)
        patch.setattr(landmarks, "detect_meshes", no_face)
        assert evaluate_command(["--cases", str(cases), "--out", str(folder / "report")],
                                progress) == 0
    results = json.loads((folder / "report" / "results.json").read_text(encoding="utf-8"))
    rows = {run["label"]: run for run in results["cases"][0]["engines"]}
    return folder / "report", results, rows, progress.records


def test_report_files_are_written(report):
    out, results, rows, events = report
    index = (out / "index.md").read_text(encoding="utf-8")
    for label in ("warp", "poke", "poke cool", "still only"):
        assert f"| {label} |" in index
        for picture in rows[label]["pictures"].values():
            assert f"]({picture})" in index
            image = cv2.imread(str(out / picture))
            assert image is not None and image.shape[0] > 20 and image.shape[1] > 20
    assert cv2.imread(str(out / results["cases"][0]["picture"])) is not None
    # the same engine twice, with other options, is two rows with files of their own
    assert rows["poke"]["pictures"]["sheet"] != rows["poke cool"]["pictures"]["sheet"]
    assert rows["poke cool"]["options"]["temperature"] == 0.5
    assert sorted(p.name for p in out.parent.iterdir()) == ["cases.json", "report",
                                                            "still.png"]  # nothing partial
    steps = [e for e in events if e["stage"] == "evaluate"]
    assert [e["done"] for e in steps] == list(range(1, len(steps) + 1))
    assert all(e["total"] == len(steps) for e in steps)
    assert events[-1]["stage"] == "done" and events[-1]["report"] == str(out / "index.md")


def test_report_names_no_machine_path(report, tmp_path_factory):
    """The report is committed and read elsewhere: its paths are relative to the case file
    (sources, models) and the working folder (the command), even when given absolute."""
    out, results, rows, _ = report
    machine = str(tmp_path_factory.getbasetemp())
    for name in ("index.md", "results.json"):
        text = (out / name).read_text(encoding="utf-8")
        assert machine not in text, name
    assert results["cases"][0]["source"] == "still.png"
    model = rows["poke"]["options"]["model"]
    assert not model.startswith("/") and model.endswith("/tiny.safetensors")
    assert (out.parent / model).is_file()  # relative to the case file's folder


def test_numbers_are_finite_and_in_range(report):
    _, results, rows, _ = report
    case = results["cases"][0]
    assert case["size"] == [96, 72] and case["pokes"] == [[48.0, 36.0, 8.0, -4.0]]
    assert case["pokes_in_source"] == [POKE]
    for label, run in rows.items():
        summary = run["summary"]
        numbers = [v for k, v in summary.items() if k != "size_64" and v is not None]
        assert all(math.isfinite(v) for v in numbers), label
        assert -1 <= summary["poke_cosine"] <= 1, label
        assert summary["poke_magnitude_ratio"] >= 0 and summary["background_leakage"] >= 0
        # (an untrained model paints noise: far sharper than the still, so no upper bound)
        assert summary["sharpness"] > 0 and summary["sharpness_region"] > 0, label
        assert -1 <= summary["fidelity_min"] <= summary["fidelity_mean"] <= 1, label
        assert summary["seconds_per_clip"] > 0 and summary["seconds_per_clip_64"] > 0, label
        assert summary["size_64"] == [64, 48]
        assert len(run["samples"]) == (2 if run["engine"] == "poke" else 1)
        for side in ("inside", "outside"):
            for kind in ("magnitude", "direction"):
                values = np.array(run["histograms"][side][kind])
                assert np.all(values >= 0) and math.isclose(values.sum(), 1.0, abs_tol=1e-6) \
                    or values.sum() == 0
    # diversity only where samples differ by design, and there it is a spread in [0, 0.5]
    assert rows["warp"]["summary"]["diversity_region"] is None
    for label in ("poke", "poke cool"):
        assert 0 < rows[label]["summary"]["diversity_region"] <= 0.5
        assert 0 < rows[label]["summary"]["diversity_frame"] <= 0.5


def test_warp_follows_its_poke_and_holds_the_background(report):
    summary = report[2]["warp"]["summary"]
    assert summary["poke_cosine"] > 0.95
    assert summary["poke_magnitude_ratio"] > 0.5
    assert summary["background_leakage"] < 0.2
    assert summary["fidelity_min"] > 0.9


def test_still_only_engine_scores_as_the_still(report):
    summary = report[2]["still only"]["summary"]
    assert summary["sharpness"] == pytest.approx(1.0, abs=1e-9)
    assert summary["sharpness_region"] == pytest.approx(1.0, abs=1e-9)
    assert summary["fidelity_min"] == pytest.approx(1.0, abs=1e-6)
    assert summary["fidelity_mean"] == pytest.approx(1.0, abs=1e-6)
    assert summary["background_leakage"] == 0.0
    assert summary["poke_magnitude_ratio"] == 0.0


def test_face_columns_only_where_measured(report):
    """Poke rows get edge seam (the fixture's still has a person) and a blank face structure
    (no face); the other engines, on a still without a face, get neither."""
    out, results, rows, _ = report
    for label in ("poke", "poke cool"):
        summary = rows[label]["summary"]
        assert summary["face_structure"] is None
        seams = [sample["edge_seam"] for sample in rows[label]["samples"]]
        assert len(seams) == 2 and all(math.isfinite(v) and v > 0 for v in seams)
        assert summary["edge_seam"] == max(seams, key=lambda v: abs(math.log(v)))
    for label in ("warp", "still only"):
        assert rows[label]["summary"]["face_structure"] is None
        assert rows[label]["summary"]["edge_seam"] is None
        assert "edge_seam" not in rows[label]["samples"][0]
    index = (out / "index.md").read_text(encoding="utf-8")
    head = next(line for line in index.splitlines() if line.startswith("| case | engine |"))
    columns = [cell.strip() for cell in head.strip("|").split("|")]
    face, seam = columns.index("face structure"), columns.index("edge seam")
    for label, run in rows.items():
        row = next(line for line in index.splitlines()
                   if line.startswith(f"| synthetic | {label} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[face] == ""
        assert cells[seam] == ("" if run["engine"] != "poke"
                               else f"{run['summary']['edge_seam']:.3f}")


def test_face_columns_on_a_still_with_a_face(tmp_path, monkeypatch):
    """A still with a face: every engine is measured. A stand-in detector finds the still's
    face in any picture equal to the still and a melted one (a temple 0.3 inter-ocular
    distances down) in any other, so the engine that returns the still scores 0 and 1 and the
    one that moves it shows the melt."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    face = (rng.normal(0, 10, (geometry.MESH_POINTS, 3)) + [48, 36, 0]).astype(np.float32)
    face[[33, 133]], face[[362, 263]] = [38, 30, 0], [58, 30, 0]
    melted = face.copy()
    melted[geometry.RIGID[-1], 1] += 0.3 * geometry.interocular(face)
    stills = []

    def detector(image, max_faces=1, min_confidence=0.5):
        image = np.ascontiguousarray(image)
        if not stills:
            stills.append(image.copy())  # the first picture measured is the still
        same = image.shape == stills[0].shape and np.array_equal(image, stills[0])
        return [face if same else melted]

    monkeypatch.setattr(landmarks, "detect_meshes", detector)
    monkeypatch.setattr(segmentation, "person_mask", left_half)
    monkeypatch.setitem(engines.ENGINES, "still", STILL_ONLY)
    cases = write_cases(tmp_path, [{"engine": "warp", "options": {"falloff": 30}},
                                   {"engine": "still", "label": "still only"}], samples=1)
    assert evaluate_command(["--cases", str(cases), "--out", str(tmp_path / "report")],
                            Recorded()) == 0
    results = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))
    rows = {run["label"]: run["summary"] for run in results["cases"][0]["engines"]}
    assert rows["still only"]["face_structure"] == pytest.approx(0.0, abs=1e-9)
    assert rows["still only"]["edge_seam"] == 1.0
    assert rows["warp"]["face_structure"] == pytest.approx(0.3, abs=0.05)
    assert rows["warp"]["edge_seam"] is not None


def test_face_summary_takes_the_worst_sample():
    base = {"poke_cosine": 1.0, "poke_magnitude_ratio": 1.0, "background_leakage": 0.0,
            "sharpness": 1.0, "sharpness_region": 1.0, "fidelity_mean": 1.0,
            "fidelity_min": 1.0}
    samples = [{**base, "face_structure": 0.05, "edge_seam": 1.3},
               {**base, "face_structure": None, "edge_seam": 0.6},
               {**base, "face_structure": 0.12, "edge_seam": None}]
    row = measures.summary(samples)
    assert row["face_structure"] == 0.12 and row["edge_seam"] == 0.6
    row = measures.summary([base, base])
    assert row["face_structure"] is None and row["edge_seam"] is None


def test_pokes_pins_and_patches_scale_with_the_still(report):
    case = report[1]["cases"][0]  # 120 x 90 evaluated at 96 x 72: x 0.8
    assert case["pins"] == [[12.0, 12.0, pytest.approx(4.8)]]
    assert case["patches"] == [[45, 33, 52, 40]]  # 5/64 of the shorter side, at least 5 px


# --- the case file --------------------------------------------------------------------------


def test_bad_still_path_is_a_clear_error(tmp_path, capsys):
    cases = write_cases(tmp_path, ["warp"], still="no_such_still.png")
    code = cli.main(["evaluate", "--cases", str(cases), "--out", str(tmp_path / "report")])
    assert code == 2
    err = capsys.readouterr().err
    assert "case 'synthetic' still" in err and "not found" in err
    assert str(tmp_path / "no_such_still.png") in err and "fix the path" in err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("change, message", [
    ({"engines": ["dyntex_nope"]}, "not an engine the evaluation knows; use one of: warp, poke"),
    ({"engines": [{"engine": "poke", "options": {"model": "missing.safetensors"}}]},
     "option model: file not found"),
    ({"engines": [{"engine": "warp", "options": {"radius": 3}}]}, "unknown key 'radius'"),
    ({"engines": ["warp", "warp"]}, "two engines labelled 'warp'"),
    ({"pokes": [[10, 10, 0, 0]]}, "zero length"),
    ({"pokes": [[10, 10, 1]]}, r"must be \[x, y, dx, dy\]"),
    ({"region": {"radius": 1000}}, "covers the whole still"),
    ({"region": {"person": False}}, r"\{\"person\": true\}"),
    ({"video": "clip.mp4"}, "either \"still\""),
    ({"frames": 1}, "frames must be a whole number, at least 2"),
])
def test_case_file_mistakes_name_the_fix(tmp_path, change, message):
    cases = write_cases(tmp_path, ["warp"], **change)
    with pytest.raises(JobError, match=message):
        loaded = cases_module.load_cases(cases)
        scene_at(loaded[0], read_source(loaded[0]), loaded[0].resolution)


def test_person_region_is_the_person_mask(tmp_path, monkeypatch):
    monkeypatch.setattr(segmentation, "person_mask", left_half)
    loaded = cases_module.load_cases(write_cases(tmp_path, ["warp"], region={"person": True}))
    assert loaded[0].region_person
    scene = scene_at(loaded[0], read_source(loaded[0]), loaded[0].resolution)
    width = scene.region.shape[1]
    assert scene.region[:, : width // 2].all() and not scene.region[:, width // 2:].any()


def test_unknown_case_and_existing_output_are_refused(tmp_path):
    cases = write_cases(tmp_path, ["warp"])
    with pytest.raises(JobError, match="no case named other in .*; cases: synthetic"):
        cases_module.load_cases(cases, only=("other",))
    (tmp_path / "report").mkdir()
    with pytest.raises(JobError, match="already exists"):
        evaluate_command(["--cases", str(cases), "--out", str(tmp_path / "report")],
                         Recorded())


def test_video_frame_is_the_numbered_frame(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for level in (40, 120, 200):
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    cases = write_cases(tmp_path, ["warp"], still=None)
    data = json.loads(cases.read_text())
    del data["cases"][0]["still"]
    data["cases"][0].update(video="clip.avi", frame=2, pokes=[[32, 24, 4, 0]])
    cases.write_text(json.dumps(data))
    case = cases_module.load_cases(cases)[0]
    assert abs(float(read_source(case).mean()) - 120) < 8
    late = dataclasses.replace(case, frame=9)
    with pytest.raises(JobError, match="fewer than 9 frames"):
        read_source(late)


def test_laplacian_variance_sees_blur():
    sharp = texture(64, 64, seed=1)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert measures.laplacian_variance(blurred) < 0.5 * measures.laplacian_variance(sharp)


def test_default_case_file_reads(monkeypatch):
    """tools/eval_cases.json: its media come from `make media` (not in every test run)."""
    from conftest import REPO
    monkeypatch.setattr(cases_module, "_file", lambda value, folder, where, what:
                        folder / value)
    loaded = cases_module.load_cases(REPO / "tools" / "eval_cases.json")
    faces = ["faces_photo_mouth", "faces_photo_turn", "faces_closeup_eyelid",
             "faces_painting_mouth", "faces_cgi_turn", "faces_drawing_chin", "faces_small_turn"]
    landscapes = ["landscape_meadow", "landscape_water", "landscape_waterfall",
                  "landscape_painting"]
    at_defaults = [f"{name}_defaults" for name in landscapes]
    assert [c.name for c in loaded] == ["carphone_held_out", "carphone_two_pokes",
                                        "astronaut_unseen", "portrait_painting",
                                        "meadow_starry_advect", "astronaut_strokes_warp",
                                        "meadow_strokes_masks", *faces, *landscapes,
                                        *at_defaults, "landscape_sea_defaults"]
    # a calm sea at the defaults with the ripples, no arrow (the sea has no small case)
    sea = loaded.pop()
    assert sea.pokes == () and [label for _, label in sea.motion] == ["ripples"]
    assert sea.frames == 48 and sea.resolution == 1280 and sea.still.name == "landscape_sea.jpg"
    # the same landscapes moved at the bake's defaults (48 looping frames, full resolution)
    for case, plain in zip(loaded[-len(at_defaults):], loaded[-8:-4]):
        assert case.motion == plain.motion and case.frames == 48
        assert case.resolution == (752 if "painting" in case.name else 1280)
        assert [(r.label, r.options["method"], r.options["loop"], r.options["refine"])
                for r in case.engines] == [("advected (defaults)", "advect", True, 0)]
    loaded = loaded[:-len(at_defaults)]
    assert [r.engine for r in loaded[0].engines] == ["warp", "poke", "poke", "poke", "poke"]
    assert [len(c.pokes) for c in loaded] == [1, 2, 1, 1, 1, 1, 1] + [1] * (len(faces)
                                                                           + len(landscapes))
    # the held-out faces (`make media-faces`): none from a training clip; the poke engine with
    # the default model first, then each shipped model by name
    held_out = loaded[-len(faces) - len(landscapes):-len(landscapes)]
    assert not any(c.video or c.still.name in ("face.png",) for c in held_out)
    assert all(c.still.parent.name == "media" and c.still.name.startswith("faces_")
               and c.region_person and c.samples == 4 for c in held_out)
    for case in held_out:
        assert [r.engine for r in case.engines] == ["poke"] * 4
        assert [r.options["model"] and r.options["model"].name for r in case.engines] == [
            None, "poke_default.safetensors", "poke_motion.safetensors",
            "poke_faces.safetensors"]
    # the style cases: a landscape moved by dyntex, a portrait by warp, one styled in its masks
    styled = {c.name: c for c in loaded if c.style is not None}
    assert [styled[n].engines[0].engine for n in styled] == ["dyntex", "warp", "dyntex"]
    assert [styled[n].style.where for n in styled] == ["all", "all", "masks"]
    assert [label for _, label in styled["meadow_starry_advect"].motion] == ["clouds", "grass"]
    assert all(c.resolution <= 384 for c in styled.values())
    for name in ("meadow_sky.png", "meadow_grass.png", "strokes_painting.jpg"):
        assert (REPO / "tools" / "eval_media" / name).is_file()  # committed, not fetched
    # the landscapes (issue 15; `make media-landscapes`): each moves its committed motion masks
    # with dyntex three ways, looping: two-stream only, advected, advected + refined
    for case in loaded[-len(landscapes):]:
        assert case.region_motion and case.motion and case.samples == 1
        assert all((REPO / "tools" / "eval_media" / path.name).is_file() and
                   path.name.startswith("landscape_") for path, _ in case.motion)
        assert [(r.engine, r.label) for r in case.engines] == [
            ("dyntex", "two-stream"), ("dyntex", "advected"), ("dyntex", "advected + refined")]
        assert all(r.options["loop"] for r in case.engines)
        assert [r.options["method"] for r in case.engines] == ["two-stream", "advect", "advect"]
        assert case.engines[2].options["refine"] > 0 == case.engines[1].options["refine"]
    assert [label for c in loaded[-len(landscapes):] for _, label in c.motion] == [
        "clouds", "grass", "clouds", "water", "waterfall", "clouds"]
    meadow = loaded[-len(landscapes)]
    assert meadow.video.name == "bigbuckbunny.mp4" and meadow.frame == 1  # the whole frame
    assert loaded[0].frame == 101 and loaded[0].video.name == "carphone.mp4"
    assert evaluate.slug("poke (pixels)") == "poke_pixels"
