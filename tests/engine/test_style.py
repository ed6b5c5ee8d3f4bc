"""The style stage (engine/style/): what the job promises an artist, on small stills.

Stills are 96 px, so the whole stage is one 96 x 96 level (gatys.level_sizes) and a
stylization takes a couple of seconds with the real VGG-19 (converted once per module)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from engine import frames, metrics
from engine.errors import JobError
from engine.job import load_job
from engine.progress import Recorded, Silent
from engine.runner import run_job
from engine.style import check_painting, stylize
from engine.style import gatys, stage
from engine.style.bench import brush_painting

from conftest import engine_env, json_lines, run_engine, save, terminate_when, texture, \
    write_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 96


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One engine cache for the module: VGG-19 is converted into it once; the style files in it
    are removed before each test (`fresh`)."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("STILLMOTION_CACHE")
    os.environ["STILLMOTION_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("STILLMOTION_CACHE", None)
    else:
        os.environ["STILLMOTION_CACHE"] = previous


@pytest.fixture
def fresh(cache):
    shutil.rmtree(cache / "style", ignore_errors=True)
    return cache


def _painting(folder, pixels=None, name="painting.png"):
    return save(folder / name, brush_painting(160, 120) if pixels is None else pixels)


def _style_job(folder, still=None, style=None, mask_images=(), **fields):
    still = texture(SIZE, SIZE) if still is None else still
    _painting(folder)
    fields.setdefault("pokes", [{"start": [48, 48], "end": [52, 48]}])
    return write_job(folder, still, mask_images=mask_images,
                     style={"image": "painting.png", "strength": 0.8, **(style or {})}, **fields)


def _frames(folder):
    return [frames.read_image(p) for p in sorted(folder.glob("frame_*.png"))]


# --------------------------------------------------------------------------------------------
# The job key


@pytest.mark.parametrize("style, message", [
    ({"image": "painting.png", "strength": 1.5}, "style.strength must be from 0"),
    ({"image": "painting.png", "strength": -0.1}, "style.strength must be from 0"),
    ({"image": "painting.png", "where": "sky"}, "style.where 'sky' is not known"),
    ({"image": "painting.png", "feather": -2}, "style.feather must be a finite number >= 0"),
    ({"image": ""}, "style.image must not be empty"),
    ({"strength": 0.5}, "style.image must not be empty"),
    ("painting.png", "job key \"style\" must be an object"),
])
def test_bad_style_keys_are_refused_with_the_key_named(tmp_path, style, message):
    _painting(tmp_path)
    path = write_job(tmp_path, texture(SIZE, SIZE), style=style)
    with pytest.raises(JobError, match=message.replace("(", r"\(")):
        load_job(path)


def test_style_is_read_for_every_engine(tmp_path):
    for engine in ("warp", "dyntex", "poke"):
        _painting(tmp_path)
        job = load_job(write_job(tmp_path, texture(SIZE, SIZE), engine=engine,
                                 style={"image": "painting.png", "strength": 0.3,
                                        "where": "masks", "feather": 4}))
        assert job.style.image == tmp_path / "painting.png"
        assert (job.style.strength, job.style.where, job.style.feather) == (0.3, "masks", 4.0)


def test_missing_painting_is_refused_before_anything_runs(tmp_path):
    path = write_job(tmp_path, texture(SIZE, SIZE), style={"image": "nowhere.png"})
    with pytest.raises(JobError, match="style painting not found: .*nowhere.png"):
        load_job(path)


# --------------------------------------------------------------------------------------------
# Paintings the stage cannot use: one clear line each, exit 2


@pytest.mark.parametrize("kind, message", [
    ("grey", "is one flat colour"),
    ("one-pixel", "is only 1x1"),
    ("huge", "larger than 8192 px on a side"),
    ("unreadable", "cannot use the style painting"),
])
def test_paintings_that_carry_no_style_get_one_clear_line(tmp_path, fresh, kind, message):
    job_path = _style_job(tmp_path, pokes=[{"start": [48, 48], "end": [52, 48]}])
    painting = tmp_path / "painting.png"
    if kind == "grey":
        save(painting, np.full((64, 64, 3), 128, np.uint8))
    elif kind == "one-pixel":
        save(painting, np.full((1, 1, 3), 200, np.uint8))
    elif kind == "huge":
        save(painting, np.zeros((16, 8200, 3), np.uint8) + np.arange(8200, dtype=np.uint8)[
            None, :, None])
    else:
        painting.write_bytes(b"this is not a picture")
    result = run_engine("run", str(job_path))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [r for r in json_lines(result.stdout) if r["stage"] == "error"]
    assert len(errors) == 1 and message in errors[0]["message"], result.stdout
    assert "\n" not in errors[0]["message"]
    assert not (tmp_path / "out").exists()


def test_a_greyscale_painting_with_brushwork_is_accepted():
    grey = brush_painting(96, 96).mean(axis=2, keepdims=True).astype(np.uint8)
    check_painting(grey, "charcoal.png")  # a drawing in one ink is a style, not a flat colour


# --------------------------------------------------------------------------------------------
# What the artist sees


def test_strength_zero_is_bit_identical_to_no_style(tmp_path, fresh):
    plain = write_job(tmp_path / "plain", texture(SIZE, SIZE),
                      pokes=[{"start": [48, 48], "end": [60, 40]}])
    styled = _style_job(tmp_path / "styled", style={"strength": 0.0},
                        pokes=[{"start": [48, 48], "end": [60, 40]}])
    run_job(load_job(plain), Silent())
    run_job(load_job(styled), Silent())
    a = _frames(tmp_path / "plain" / "out" / "take_001")
    b = _frames(tmp_path / "styled" / "out" / "take_001")
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not (fresh / "style").exists()  # nothing computed, nothing cached
    still = texture(SIZE, SIZE)
    assert stylize(still, brush_painting(64, 64), 0.0) is still


def test_style_moves_the_still_toward_the_painting_and_keeps_its_edges(tmp_path, fresh):
    still = frames.read_image(save(tmp_path / "still.png", texture(SIZE, SIZE, seed=3)))
    painting = brush_painting(160, 120)
    half = stylize(still, painting, 0.5)
    full = stylize(still, painting, 1.0)
    assert half.shape == still.shape and half.dtype == still.dtype
    shift_half = metrics.colour_shift(still, half, painting)
    shift_full = metrics.colour_shift(still, full, painting)
    assert 0.3 < shift_half < shift_full, (shift_half, shift_full)
    assert shift_full > 0.5
    assert metrics.orientation_shift(still, full, painting) > 0.1
    assert metrics.edge_similarity(still, half) > 0.3


def test_every_engine_moves_the_stylized_still(tmp_path, fresh):
    """Warp's first frame (no motion yet) is the stylized still, not the still."""
    job_path = _style_job(tmp_path, pokes=[{"start": [48, 48], "end": [60, 40]}])
    records = Recorded()
    job = load_job(job_path)
    run_job(job, records)
    first = _frames(tmp_path / "out" / "take_001")[0]
    stylized = frames.read_image(stage.apply_style(job, "cpu", Silent()).image)
    still = frames.read_image(job.image)
    assert np.array_equal(first, stylized)
    assert np.abs(first.astype(int) - still.astype(int)).mean() > 5
    styles = [r for r in records.records if r["stage"] == "style"]
    assert styles[0]["done"] == 0 and styles[-1]["done"] == styles[-1]["total"] > 1


def test_masks_leave_every_pixel_outside_them_bit_identical(tmp_path, fresh):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[20:70, 30:90] = 255
    job_path = _style_job(tmp_path, style={"where": "masks", "feather": 6},
                          mask_images=[mask])
    job = load_job(job_path)
    stylized = frames.read_image(stage.apply_style(job, "cpu", Silent()).image)
    still = frames.read_image(job.image)
    outside = mask == 0
    assert np.array_equal(stylized[outside], still[outside])
    core = np.zeros_like(outside)
    core[30:60, 40:80] = True  # deeper inside than the feather
    assert np.abs(stylized[core].astype(int) - still[core].astype(int)).mean() > 5


def test_masks_without_any_mask_are_refused(tmp_path, fresh):
    job = load_job(_style_job(tmp_path, style={"where": "masks"}))
    with pytest.raises(JobError, match="draw a closed outline on the Masks layer"):
        stage.apply_style(job, "cpu", Silent())


def test_a_rebake_pays_nothing_and_is_identical(tmp_path, fresh, monkeypatch):
    job = load_job(_style_job(tmp_path))
    first = frames.read_image(stage.apply_style(job, "cpu", Silent()).image)

    def no_second_optimisation(*args, **kwargs):
        raise AssertionError("the cached stylization was computed again")

    monkeypatch.setattr(gatys, "stylize_rgb", no_second_optimisation)
    records = Recorded()
    again = frames.read_image(stage.apply_style(job, "cpu", records).image)
    assert np.array_equal(first, again)
    assert records.records == [{"stage": "style", "done": 1, "total": 1, "cached": True}]
    # "masks": another feather re-composites the cached stylization, no optimisation ...
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:48] = 255
    monkeypatch.undo()
    masked = load_job(_style_job(tmp_path / "masked", style={"where": "masks", "feather": 2},
                                 mask_images=[mask]))
    shutil.copyfile(job.image, masked.image)
    stage.apply_style(masked, "cpu", Silent())
    monkeypatch.setattr(gatys, "stylize_rgb", no_second_optimisation)
    softer = load_job(_style_job(tmp_path / "softer", style={"where": "masks", "feather": 9},
                                 mask_images=[mask]))
    shutil.copyfile(job.image, softer.image)
    stage.apply_style(softer, "cpu", Silent())
    # ... while another mask is another stylization: its region's colours are matched.
    mask[:48] = 0
    mask[48:] = 255
    lower = load_job(_style_job(tmp_path / "lower", style={"where": "masks"}, mask_images=[mask]))
    shutil.copyfile(job.image, lower.image)
    with pytest.raises(AssertionError, match="computed again"):
        stage.apply_style(lower, "cpu", Silent())
    # Another strength is another stylization.
    stronger = json.loads((tmp_path / "job.json").read_text())
    stronger["style"]["strength"] = 0.9
    (tmp_path / "job.json").write_text(json.dumps(stronger))
    with pytest.raises(AssertionError, match="computed again"):
        stage.apply_style(load_job(tmp_path / "job.json"), "cpu", Silent())


@pytest.mark.parametrize("channels, dtype, fmt", [(4, np.uint8, "PNG8"), (3, np.uint16, "PNG8"),
                                                  (1, np.uint8, "PNG8"),
                                                  (3, np.float32, "EXR")])
def test_the_stylized_still_keeps_sample_type_channels_and_alpha(tmp_path, fresh, channels,
                                                                 dtype, fmt):
    still = texture(SIZE, SIZE, channels=channels, dtype=dtype)
    if channels == 4:
        still[:, :SIZE // 2, 3] = 0  # a transparent half
    name = "still.exr" if fmt == "EXR" else "still.png"
    save(tmp_path / name, still, "EXR" if fmt == "EXR" else "PNG8")
    _painting(tmp_path)
    job_path = write_job(tmp_path, None, image=name,
                         pokes=[{"start": [48, 48], "end": [52, 48]}],
                         style={"image": "painting.png", "strength": 0.8})
    job = load_job(job_path)
    original = frames.read_image(job.image)
    result = frames.read_image(stage.apply_style(job, "cpu", Silent()).image)
    assert result.shape == original.shape and result.dtype == original.dtype
    if channels == 4:
        assert np.array_equal(result[:, :, 3], original[:, :, 3])


def test_level_sizes_cost_the_same_whatever_the_still():
    config = gatys.StyleConfig()
    for width, height in ((1920, 1080), (1024, 1024), (4000, 3000), (600, 2400)):
        sizes = gatys.level_sizes(width, height, config)
        finest = sizes[-1][0] * sizes[-1][1]
        assert abs(finest - config.area) / config.area < 0.02
        assert abs(sizes[-1][0] / sizes[-1][1] - width / height) < 0.02
    assert gatys.level_sizes(96, 96, config) == [(96, 96)]  # never above the still's size


def test_stylize_command_writes_the_stylized_still_and_never_overwrites(tmp_path, fresh):
    still = save(tmp_path / "still.png", texture(SIZE, SIZE, seed=5))
    painting = _painting(tmp_path)
    out = tmp_path / "styled.png"
    result = run_engine("stylize", str(still), str(painting), "--out", str(out),
                        "--strength", "0.6", "--device", "cpu", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = json_lines(result.stdout)
    assert lines[-1] == {"stage": "done", "output": str(out)}
    assert any(r["stage"] == "style" for r in lines)
    styled = frames.read_image(out)
    original = frames.read_image(still)
    assert styled.shape == original.shape
    assert metrics.colour_shift(original, styled, brush_painting(160, 120)) > 0.3
    again = run_engine("stylize", str(still), str(painting), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert np.array_equal(frames.read_image(out), styled)


def test_faces_decide_motion_on_the_artists_still_and_move_the_stylized_one(tmp_path, fresh,
                                                                            monkeypatch):
    """The poke model (and the face finder) look at the photo, not at brushstrokes; the frames
    it renders are the stylized still moved."""
    from conftest import tiny_poke_model
    from engine.poke import sample
    from engine.poke.model import save_model

    model = save_model(tmp_path / "tiny.safetensors", tiny_poke_model())
    job_path = _style_job(tmp_path, engine="poke",
                          pokes=[{"start": [48, 48], "end": [54, 45]}],
                          poke={"model": str(model), "samples": 1, "snap": False,
                                "background": False})
    seen = {}
    real = sample.sample_clips

    def recording(model, still, *args, **kwargs):
        seen["still"] = still
        return real(model, still, *args, **kwargs)

    monkeypatch.setattr(sample, "sample_clips", recording)
    job = load_job(job_path)
    run_job(job, Silent())
    original = frames.read_image(job.image)
    assert np.array_equal(seen["still"], original)
    first = _frames(tmp_path / "out" / "take_001")[0]
    stylized = frames.read_image(stage.apply_style(job, "cpu", Silent()).image)
    assert np.array_equal(first, stylized)  # frame 1 of the poke engine is its still


def test_cancel_during_the_style_stage_leaves_no_take_and_nothing_half_cached(tmp_path, fresh):
    job_path = _style_job(tmp_path, still=texture(256, 256),
                          pokes=[{"start": [128, 128], "end": [140, 120]}])
    env = engine_env()
    env["STILLMOTION_CACHE"] = os.environ["STILLMOTION_CACHE"]
    result = terminate_when(lambda r: r["stage"] == "style" and r["done"] >= 2,  # under way
                            "run", str(job_path), env=env)
    assert result.returncode == 143
    assert json_lines(result.stdout)[-1]["stage"] == "cancelled"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    left = list((fresh / "style").iterdir()) if (fresh / "style").exists() else []
    assert left == []
