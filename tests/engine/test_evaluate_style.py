"""Style cases of `python -m engine evaluate` (docs/EVALUATE.md): a case with a "style" is
stylized once, every engine also bakes the stylized still, and the report gets a style table
and a contact sheet per case. Tiny pictures and a synthetic striped painting; the stylization
is the real one (engine.style), so the test needs the VGG-19 weights."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from conftest import save, texture
from test_evaluate_report import evaluate_command

from engine.errors import JobError
from engine.progress import Recorded
from engine.report import cases as cases_module

STYLE_KEYS = ("colour_shift", "orientation_shift", "edge_similarity",
              "unexplained_change_style", "unexplained_change_plain",
              "unexplained_change_difference")
HEADINGS = ("colour shift", "orientation shift", "edge similarity", "unexplained (style)",
            "unexplained (no style)", "difference", "s to stylize")


def _painting():
    """Night blue and yellow in 45-degree stripes: a palette and a direction the still lacks."""
    ys, xs = np.mgrid[0:64, 0:64]
    value = (0.5 + 0.5 * np.sin(2 * np.pi * (xs + ys) / 7))[..., None]
    dark, light = np.float32([30, 40, 120]), np.float32([230, 200, 60])
    return (dark + value * (light - dark)).astype(np.uint8)


def write_style_cases(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / "still.png", cv2.GaussianBlur(texture(90, 120, seed=3), (0, 0), 3))
    save(folder / "painting.png", _painting())
    sky = np.zeros((90, 120, 1), np.uint8)
    sky[:40] = 255
    save(folder / "sky.png", sky)
    cases = [
        {"name": "portrait", "still": "still.png", "pokes": [[60, 45, 10, -5]],
         "region": {"radius": 25}, "engines": [{"engine": "warp", "options": {"falloff": 30}}],
         "style": {"image": "painting.png", "strength": 0.8}},
        {"name": "landscape", "still": "still.png", "pokes": [[60, 20, 12, 0]],
         "motion": [{"mask": "sky.png", "label": "clouds"}], "region": {"motion": True},
         "engines": ["dyntex"],
         "style": {"image": "painting.png", "strength": 0.8, "where": "masks", "feather": 2}},
    ]
    cases[0].update(changes)
    data = {"version": 1, "defaults": {"resolution": 64, "samples": 1, "frames": 3},
            "cases": cases}
    path = folder / "cases.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def style_report(tmp_path_factory):
    from engine.vgg import load_vgg19

    try:
        load_vgg19()
    except JobError:
        pytest.skip("VGG-19 weights not installed (make media / tools/fetch_media.py)")
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("style")
    cases = write_style_cases(folder)
    progress = Recorded()
    assert evaluate_command(["--cases", str(cases), "--out", str(folder / "report")],
                            progress) == 0
    results = json.loads((folder / "report" / "results.json").read_text(encoding="utf-8"))
    return folder / "report", {case["name"]: case for case in results["cases"]}, progress.records


def test_style_table_holds_finite_numbers(style_report):
    out, cases, events = style_report
    index = (out / "index.md").read_text(encoding="utf-8")
    assert "## Style" in index
    head = next(line for line in index.splitlines()
                if line.startswith("| case | engine | painting"))
    for heading in HEADINGS:
        assert f"| {heading} |" in head + " |"
    for name in ("portrait", "landscape"):
        style = cases[name]["style"]
        assert style["seconds"] > 0 and style["painting"] == "painting.png"
        assert style["painting_size"] == [64, 64] and style["strength"] == 0.8
        (run,) = cases[name]["engines"]
        numbers = run["style"]
        assert all(isinstance(numbers[key], float) and math.isfinite(numbers[key])
                   for key in STYLE_KEYS), numbers
        # the striped painting's palette is far from the still's: the stylization moves toward it
        assert numbers["colour_shift"] > 0.2
        assert -1 <= numbers["edge_similarity"] <= 1
        assert numbers["unexplained_change_difference"] == pytest.approx(
            numbers["unexplained_change_style"] - numbers["unexplained_change_plain"])
        assert f"| {name} | {run['label']} | painting.png | 0.8 |" in index
    assert cases["portrait"]["engines"][0]["style"]["stylized_share"] == 1.0
    # where "masks": only the sky (40 of 90 rows, less the feather) is stylized
    assert 0.2 < cases["landscape"]["engines"][0]["style"]["stylized_share"] < 0.45
    assert cases["landscape"]["motion"] == [{"mask": "sky.png", "label": "clouds"}]
    steps = [e for e in events if e["stage"] == "evaluate"]
    assert [e["done"] for e in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["total"] == len(steps)
    assert sum(e["clip"] == "stylize" for e in steps) == 2


def test_style_contact_sheet_is_written(style_report):
    out, cases, _ = style_report
    index = (out / "index.md").read_text(encoding="utf-8")
    for name in ("portrait", "landscape"):
        sheet = cases[name]["style"]["sheet"]
        assert sheet == f"{name}/style_sheet.png" and f"]({sheet})" in index
        picture = cv2.imread(str(out / sheet))
        # one row: still, painting, stylized still, frames 1..3 of the stylized bake
        assert picture is not None and picture.shape[1] > 6 * picture.shape[0] > 0


def test_masks_style_keeps_the_still_outside_them(style_report):
    """The landscape's stylized bake moves a still that is the still's own below the sky: its
    first frame (the stylized still) differs from the plain still only inside the mask."""
    out, cases, _ = style_report
    sheet = cv2.imread(str(out / cases["landscape"]["style"]["sheet"]))
    cell = (sheet.shape[1] - 4) // 6
    still, stylized = sheet[4:-4, 4:cell], sheet[4:-4, 2 * cell + 4:3 * cell]
    rows, columns = still.shape[:2]
    right = slice(int(0.7 * columns), columns)  # clear of the cells' labels (top left)
    lower = slice(int(0.6 * rows), rows)  # below the sky mask (rows 0..40 of 90)
    upper = slice(int(0.05 * rows), int(0.35 * rows))  # inside it
    difference = np.abs(still.astype(int) - stylized.astype(int))
    assert difference[lower].mean() < 2
    assert difference[upper, right].mean() > 10


@pytest.mark.parametrize("change, message", [
    ({"style": {"image": "painting.png", "strength": 0}}, r"strength must be in \(0, 1\]"),
    ({"style": {"image": "missing.png"}}, "painting not found"),
    ({"style": {"image": "painting.png", "brush": 3}}, "unknown key 'brush'"),
    ({"style": {"image": "painting.png", "where": "sky"}}, "where must be \"all\""),
    ({"style": {"image": "painting.png", "where": "masks"}},
     "the job of engine 'warp' has no masks"),
    ({"style": "painting.png"}, "style must be an object"),
    ({"engines": ["dyntex"]}, "moves motion masks and the case has none"),
    ({"region": {"motion": True}}, "needs motion masks"),
    ({"motion": [{"mask": "sky.png", "label": "lava"}]}, "motion clip .* not found"),
    ({"motion": [{"mask": "sky.png"}]}, "must be {\"mask\""),
])
def test_style_and_motion_mistakes_name_the_fix(tmp_path, change, message):
    with pytest.raises(JobError, match=message):
        cases_module.load_cases(write_style_cases(tmp_path, **change))
