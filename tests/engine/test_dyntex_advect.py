"""Motion first for Dynamic Texture (`dyntex.method: "advect"`, engine/dyntex/motion_field.py,
advect.py): the loop closes, pixels outside the masks are the still, arrows steer a drift, static
masks hold inside a moving region, the result moves instead of flickering, and bad input is one
clear line.

Small stills (96 x 64) and few frames; each job measures its exemplars (128 px, 24 frames: about
half a second each), so the jobs are few and shared where a test only reads them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import save, texture, write_job
from engine.dyntex import prepare
from engine.dyntex.motion_field import Motion, load_motion, measure
from engine.dyntex.exemplars import make_exemplar
from engine.errors import JobError
from engine.flow import dis_flow
from engine.job import load_job
from engine.metrics import drift_coherence, unexplained_change
from engine.progress import Recorded

H, W = 64, 96


# tensors this small gain nothing from threads, and lose a lot to a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _box(r0, r1, c0, c1):
    mask = np.zeros((H, W), np.uint8)
    mask[r0:r1, c0:c1] = 255
    return mask


def _job(folder, masks, still=None, **fields):
    """job.json with masks [(uint8 mask, label)] and dyntex.method advect."""
    entries = []
    folder.mkdir(parents=True, exist_ok=True)
    for index, (mask, label) in enumerate(masks):
        save(folder / f"mask_{index}.png", mask[:, :, None])
        entries.append({"path": f"mask_{index}.png", "label": label})
    dyntex = {"method": "advect", **fields.pop("dyntex", {})}
    return write_job(folder, texture(H, W, seed=3) if still is None else still,
                     engine="dyntex", masks=entries, dyntex=dyntex, **fields)


def _prepare(path, progress=None):
    return prepare(load_job(path), "cpu", progress or Recorded())


def _frames(clip, count=None):
    return np.stack([clip.frame(t) for t in range(count if count is not None else len(clip))])


@pytest.fixture(scope="module")
def looped(tmp_path_factory):
    """Clouds drifting over the top (with a static square inside) and grass swaying below."""
    folder = tmp_path_factory.mktemp("looped")
    static = _box(8, 20, 40, 56)
    path = _job(folder, [(_box(0, 30, 0, W), "clouds"), (_box(38, H, 10, 86), "grass"),
                         (static, "static")], frames=12, loop=True)
    progress = Recorded()
    clip = _prepare(path, progress)
    return clip, progress, _frames(clip, 13)


def test_the_loop_closes_and_frames_in_between_move(looped):
    clip, _, frames = looped
    still = clip.still
    assert np.abs(frames[12].astype(int) - frames[0]).max() <= 1  # frame N+1 = frame 1
    assert np.array_equal(frames[0], still)  # frame 1 is the still
    top, bottom = slice(0, 30), slice(38, H)
    for t in (3, 6, 9):
        assert np.abs(frames[t, top].astype(int) - still[top]).mean() > 2
        assert np.abs(frames[t, bottom].astype(int) - still[bottom]).mean() > 2
    assert [region.field.kind for region in clip.regions] == ["drift", "oscillate"]


@pytest.mark.parametrize("loop", [False, True])
def test_frame_1_is_the_still_with_mask_corners_inside_the_picture(tmp_path, loop):
    """An arrow steers a box that touches no image border: its corners once took a rounding
    step from the backward layer on frame 1 (found by the add-on's bake test)."""
    y, x = np.mgrid[0:H, 0:W]  # a 16-px checker over a ramp: a share of a moved layer shows
    still = np.dstack([((x // 16 + y // 16) % 2) * 204 + 26, x * 2, y]).astype(np.uint8)
    path = _job(tmp_path, [(_box(2, 18, 2, 62), "clouds")], still, frames=6, loop=loop,
                pokes=[{"start": [20.0, 10.0], "end": [35.0, 10.0]}])
    clip = _prepare(path)
    assert np.array_equal(clip.frame(0), clip.still)
    assert np.array_equal(clip.frame(6), clip.still) is loop  # frame N+1 when looping


def test_pixels_outside_every_mask_are_the_still_bit_for_bit(looped):
    clip, _, frames = looped
    outside = np.ones((H, W), bool)
    outside[0:30] = False
    outside[38:, 10:86] = False
    for frame in frames:
        assert frame.dtype == clip.still.dtype
        assert np.array_equal(frame[outside], clip.still[outside])


def test_a_static_mask_inside_a_drifting_region_holds(looped):
    clip, _, frames = looped
    for frame in frames:
        assert np.array_equal(frame[8:20, 40:56], clip.still[8:20, 40:56])


def test_progress_names_the_stages(looped):
    _, progress, _ = looped
    stages = [(r["stage"], r["done"], r["total"]) for r in progress.records]
    assert stages == [("measure", 0, 2), ("measure", 1, 2), ("measure", 2, 2),
                      ("field", 0, 2), ("field", 1, 2), ("field", 2, 2)]


def test_the_drift_moves_and_the_sway_oscillates(looped):
    clip, _, frames = looped
    sky = np.zeros((H, W), bool)
    sky[4:26, 8:88] = True
    sky[4:24, 36:60] = False  # the static square and its fade
    clouds = clip.regions[0].field
    # (Not unexplained_change: at 0.4 px/frame over a 12-frame loop the loop's cross-fade
    # changes pixels as much as the motion does; see the next test.)
    assert drift_coherence(frames[:12], sky) > 0.8
    mean = np.mean([dis_flow(a, b)[sky].mean(axis=0) for a, b in zip(frames[:11], frames[1:12])],
                   axis=0)
    cosine = mean @ clouds.motion.direction / np.hypot(*mean)
    assert cosine > 0.95  # the exemplar's direction (right, a little down)
    grass = np.zeros((H, W), bool)
    grass[42:60, 16:80] = True
    assert drift_coherence(frames[:12], grass) < 0.5


def test_unexplained_change_is_low_for_the_drift_and_high_for_noise(tmp_path):
    path = _job(tmp_path, [(_box(4, 60, 4, 92), "clouds")], frames=16, loop=False,
                pokes=[{"start": [48.0, 32.0], "end": [48.0 + 1.5 * 15, 32.0 - 0.5 * 15]}])
    frames = _frames(_prepare(path))
    inside = _box(14, 50, 14, 82) > 0
    assert unexplained_change(frames, inside) < 0.4
    # The same region boiling instead: the still plus new noise in every frame.
    rng = np.random.default_rng(0)
    noise = np.clip(frames[:1].astype(np.float32) + rng.normal(0, 12, frames.shape), 0, 255)
    assert unexplained_change(noise.astype(np.uint8), inside) > 0.8


@pytest.mark.parametrize("loop", [False, True])
def test_an_arrow_sets_the_drift_direction(tmp_path, loop):
    """Clouds drift right by themselves; an arrow up and to the left turns them."""
    frames_count = 12
    arrow = np.array([-1.0, -0.6])
    steps = frames_count if loop else frames_count - 1
    end = np.array([48.0, 32.0]) + arrow * 1.2 * steps
    path = _job(tmp_path, [(_box(0, H, 0, W), "clouds")], frames=frames_count, loop=loop,
                pokes=[{"start": [48.0, 32.0], "end": end.tolist()}])
    clip = _prepare(path)
    field = clip.regions[0].field
    assert field.speed == pytest.approx(1.2 * np.hypot(*arrow), rel=0.01)
    frames = _frames(clip)
    inside = _box(12, 52, 12, 84) > 0
    flows = [dis_flow(a, b)[inside].mean(axis=0) for a, b in zip(frames[:-1], frames[1:])]
    mean = np.mean(flows, axis=0)
    cosine = mean @ arrow / (np.hypot(*mean) * np.hypot(*arrow))
    assert cosine >= 0.95, (mean, arrow)
    assert 0.6 < np.hypot(*mean) / (1.2 * np.hypot(*arrow)) < 1.3


def test_a_pin_holds_its_disc(tmp_path):
    path = _job(tmp_path, [(_box(0, H, 0, W), "clouds")], frames=8, loop=True,
                pokes=[{"start": [30.0, 30.0], "end": [30.0, 30.0], "radius": 6.0},
                       {"start": [60.0, 30.0], "end": [80.0, 30.0]}])
    clip = _prepare(path)
    ys, xs = np.mgrid[0:H, 0:W]
    disc = (xs + 0.5 - 30) ** 2 + (ys + 0.5 - 30) ** 2 < 5.5 ** 2
    moved = 0
    for t in range(8):
        frame = clip.frame(t)
        assert np.abs(frame[disc].astype(int) - clip.still[disc]).max() <= 1
        moved += np.abs(frame[:, 70:].astype(int) - clip.still[:, 70:]).mean()
    assert moved > 5


def test_a_16_bit_rgba_still_keeps_its_type_and_alpha(tmp_path):
    still = texture(H, W, 4, np.uint16, seed=5)
    still[..., 3] = 40000
    path = _job(tmp_path, [(_box(0, 40, 0, W), "water")], still=still, frames=4, loop=True)
    clip = _prepare(path)
    frame = clip.frame(2)
    assert frame.dtype == np.uint16 and frame.shape == still.shape
    assert np.abs(frame[..., 3].astype(int) - 40000).max() <= 1
    assert np.array_equal(frame[40:], still[40:])


def test_default_method_is_advect_and_unknown_methods_are_listed(tmp_path):
    path = _job(tmp_path, [(_box(0, 30, 0, W), "clouds")])
    data = json.loads(path.read_text())
    del data["dyntex"]["method"]
    path.write_text(json.dumps(data))
    assert load_job(path).dyntex.method == "advect"
    data["dyntex"]["method"] = "two-stream"  # the research method stays selectable
    path.write_text(json.dumps(data))
    assert load_job(path).dyntex.method == "two-stream"
    data["dyntex"]["method"] = "warp"
    path.write_text(json.dumps(data))
    with pytest.raises(JobError, match=r"dyntex.method 'warp' is not known; use one of: "
                                       r"two-stream, advect"):
        load_job(path)


def test_bad_inputs_are_one_clear_line(tmp_path):
    one = tmp_path / "one_frame"
    one.mkdir()
    save(one / "frame_0001.png", texture(32, 32))
    cases = [
        ([(_box(0, 30, 0, W), str(one))], {}, r"has 1 frame, at least 2 are needed"),
        ([(_box(0, 30, 0, W), "lava.mp4")], {},
         r"mask 1 has label .*lava.mp4.*neither a built-in motion \(water, clouds, grass, "
         r"waterfall, ripples\) nor an existing video file"),
        ([(_box(0, 30, 0, W), "static")], {}, r"the job has no motion mask"),
        ([(_box(0, 30, 0, W), "clouds")], {"pokes": [{"start": [10.0, 50.0], "end": [20.0, 50.0]}]},
         r"poke 1 starts at \(10, 50\), outside every motion mask; .*start it inside"),
        ([(np.zeros((H, W), np.uint8), "clouds")], {}, r"mask 1 .* is empty"),
    ]
    for index, (masks, fields, message) in enumerate(cases):
        path = _job(tmp_path / f"case{index}", masks, **fields)
        with pytest.raises(JobError, match=message) as error:
            _prepare(path)
        assert "\n" not in str(error.value)


def test_a_bad_job_exits_2_with_one_line(tmp_path):
    from conftest import run_engine

    path = _job(tmp_path, [(_box(0, 30, 0, W), "clouds")],
                pokes=[{"start": [10.0, 50.0], "end": [20.0, 50.0]}])
    done = run_engine("run", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith("error: poke 1 starts at (10, 50), outside every motion mask")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_runner_writes_the_frames(tmp_path, keep_sigterm):
    from engine.runner import run_job
    from engine import frames as frames_io

    path = _job(tmp_path, [(_box(0, 30, 0, W), "waterfall")], frames=4, loop=True)
    progress = Recorded()
    out = run_job(load_job(path), progress)
    written = sorted(out.glob("frame_*.png"))
    assert len(written) == 4
    still = frames_io.read_image(tmp_path / "still.png")
    assert np.array_equal(frames_io.read_image(written[0]), still)
    assert np.array_equal(frames_io.read_image(written[2])[30:], still[30:])
    stages = [r["stage"] for r in progress.records]
    assert stages.count("render") == 4 and "measure" in stages and "field" in stages


def test_measured_motion_of_the_built_ins():
    """The library's drifts drift, grass sways (the kind decides the method's path)."""
    clouds = measure(make_exemplar("clouds", 24, 128, 0, True), wraps=True)
    assert clouds.kind == "drift" and clouds.coherence > 0.9
    assert clouds.direction[0] > 0.9  # the clouds' wind is (1, 0.15)
    assert clouds.speed * 128 == pytest.approx(0.8, abs=0.15)
    grass = measure(make_exemplar("grass", 24, 128, 0, True), wraps=True)
    assert grass.kind == "oscillate" and grass.coherence < 0.2
    assert grass.period == 24 and grass.amplitude > 0
    assert isinstance(grass, Motion)
    # calm water: the reflection sways along the waves' run (towards the camera, down the
    # screen) and the waves travel that way; only it recedes towards the horizon
    ripples = load_motion("ripples", 1)
    assert ripples.kind == "oscillate" and ripples.coherence < 0.5 and ripples.receding
    assert abs(ripples.direction[1]) > 0.95 and abs(ripples.wave[1]) > 5 * abs(ripples.wave[0])
    assert ripples.period == 24 and ripples.amplitude * 128 > 0.5
    assert not load_motion("grass", 1).receding


def test_ripples_recede_towards_the_top_and_hold_the_reflection_in_place(tmp_path):
    """A calm-water region: frame N+1 is frame 1, nothing outside moves, the waves wobble the
    water near its bottom edge more than near its top (the horizon), and the water does not
    travel: the clip's mean flow is small against its size."""
    region = _box(16, H, 0, W)
    clip = _prepare(_job(tmp_path, [(region, "ripples")], frames=24, loop=True))
    frames = _frames(clip, 25)
    assert np.array_equal(frames[0], clip.still)
    assert np.abs(frames[24].astype(int) - frames[0]).max() <= 1
    assert np.array_equal(frames[:, :16], np.broadcast_to(clip.still[:16], frames[:, :16].shape))
    change = np.abs(frames[1:24].astype(int) - frames[0]).mean(axis=(0, 2, 3))
    near, far = change[48:60].mean(), change[20:32].mean()
    assert near > 1.5 * far > 0
    flows = np.stack([dis_flow(frames[t], frames[t + 1]) for t in range(24)])[:, 20:60]
    assert drift_coherence(None, flows=flows) < 0.3


def test_the_loop_blend_keeps_the_detail_and_a_layer_blended_with_itself():
    import torch

    from engine.dyntex.advect import blend_layers

    generator = torch.Generator().manual_seed(0)
    detail_f = torch.randn(3, 20000, generator=generator)
    detail_b = torch.randn(3, 20000, generator=generator)
    low = torch.full((3, 20000), 0.5)
    half = torch.full((1, 20000), 0.5)
    far = torch.full((1, 20000), 400.0)  # sources 20 px apart: unrelated detail
    mixed = blend_layers(low + detail_f, low + detail_b, low, low, half, half, far)
    assert float((mixed - low).std()) == pytest.approx(1.0, abs=0.03)  # linear: 0.71
    same = blend_layers(low + detail_f, low + detail_f, low, low, half, half, far * 0)
    assert torch.allclose(same, low + detail_f, atol=1e-5)
    ends = blend_layers(low + detail_f, low + detail_b, low, low, half * 2, half * 0, far)
    assert torch.allclose(ends, low + detail_f, atol=1e-6)


def test_a_tree_the_sky_mask_took_in_at_its_edge_holds_and_a_cloud_inside_drifts(tmp_path):
    rng = np.random.default_rng(4)
    height, width = 96, 160
    sky = np.empty((height, width, 3), np.float32)
    sky[...] = np.array([0.35, 0.55, 0.9], np.float32)  # blue sky, a gentle gradient, grain
    sky *= (1.0 - 0.2 * np.linspace(0, 1, height, dtype=np.float32))[:, None, None]
    sky += 0.01 * rng.standard_normal(sky.shape).astype(np.float32)
    still = (np.clip(sky, 0, 1) * 255).astype(np.uint8)
    still[30:50, 90:116] = (240, 240, 245)                     # a cloud deep inside
    still[:, :30] = (30, 70, 25)                               # a tree, the mask's left part
    rows, cols = np.mgrid[0:height, 0:30]
    still[:, :30][(rows * 7 + cols * 13) % 5 == 0] = (60, 110, 40)
    mask = np.zeros((height, width), np.uint8)
    mask[:, 10:] = 255                                         # drawn 20 px into the tree
    progress = Recorded()
    clip = _prepare(_job(tmp_path, [(mask, "clouds")], still=still, frames=12, loop=True),
                    progress)
    frames = _frames(clip)
    for frame in frames:
        assert np.array_equal(frame[:, :30], still[:, :30])    # the tree holds
    assert not np.array_equal(frames[6][28:52, 60:150], still[28:52, 60:150])  # the sky moves
    warnings = [r["message"] for r in progress.records if r["stage"] == "warning"]
    assert any("held still" in message and "mask 1" in message for message in warnings)


@pytest.mark.parametrize("across", [True, False])
def test_a_drift_that_runs_out_of_its_region_blends_over_a_shorter_period(tmp_path, across):
    """A lake band 24 px high drifting 60 px down over the clip runs out of its own content
    within a few frames: the blend restarts every whole fraction of the clip, and the loop
    still closes; drifting 16 px along the band it keeps the whole clip."""
    end = [48.0, 44.0 + 60.0] if across else [48.0 + 16.0, 44.0]
    clip = _prepare(_job(tmp_path, [(_box(32, 56, 0, W), "water")], frames=24, loop=True,
                         pokes=[{"start": [48.0, 44.0], "end": end}]))
    period = clip.regions[0].period
    if across:
        assert 6 <= period < 24 and (24 / period) == round(24 / period)
    else:
        assert period == 24
    assert np.array_equal(clip.frame(24), clip.still)
    frames = _frames(clip, 24)
    assert not np.array_equal(frames[int(period // 2)], clip.still)
