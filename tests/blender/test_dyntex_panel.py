"""The Dynamic Texture engine on the Blender side: properties -> job.json ("dyntex" block with
its method, labels, clip paths, arrows, pins and the refiner for Motion (advect), style image
and λ for Two-stream), the errors an artist can fix, the panel for both engines and both methods, the
Previews, and a tiny bake of each method (and of advect refined) through the real engine
process."""

import json
import pathlib
import types

import bpy
import numpy as np
import pytest

from conftest import save_test_image
from test_bake_flow import HEIGHT, WIDTH, image_node, make_plane, pixel_to_world
from test_bake_operator import RecordingLayout, draw_panel

SKY = [(2.0, 2.0), (62.0, 2.0), (62.0, 18.0), (2.0, 18.0)]  # image pixels, y down
GROUND = [(2.0, 28.0), (62.0, 28.0), (62.0, 46.0), (2.0, 46.0)]
POKE = [(10.0, 24.0), (20.0, 24.0)]  # between the two masks
ARROW = [(20.0, 10.0), (35.0, 10.0)]  # inside the sky, 15 px to the right
PIN = [(40.0, 36.0), (40.0, 36.0)]  # a click without a drag, on the ground


@pytest.fixture
def sm(addon):
    from bl_ext.user_default.stillmotion.panels import main
    from bl_ext.user_default.stillmotion.scene import errors, job, strokes

    return types.SimpleNamespace(job=job, strokes=strokes, errors=errors, main=main)


def landscape(sm, folder, *labels, poke=False, method=None):
    """A 64 x 48 plane with a sky and a ground mask (labels in that order) on DYNTEX (method:
    "TWO_STREAM", or None for the default, Motion (advect))."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plane = make_plane(folder)
    gp = sm.strokes.ensure_strokes_object(bpy.context, plane)
    for outline in (SKY, GROUND)[:len(labels)]:
        sm.strokes.add_stroke(gp, "Masks", [pixel_to_world(plane, p) for p in outline])
    if poke:
        sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in POKE])
    settings = plane.stillmotion
    settings.engine = "DYNTEX"
    if method is not None:
        settings.dyntex.method = method
    for label in labels:
        settings.mask_labels.add().label = label
    return plane


def write(sm, plane, tmp_path, **kwargs):
    return sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001", **kwargs)


def test_defaults_are_the_engines(sm, tmp_path):
    """New properties (and so old .blend files, which lack them) read as docs/JOB.md's
    defaults; a new mask is static and the warp engine stays the default."""
    plane = make_plane(tmp_path)
    settings = plane.stillmotion
    dyn = settings.dyntex
    assert settings.engine == "WARP"
    assert dyn.method == "ADVECT"  # motion first; two-stream is the research method
    methods = {i.identifier: i.value for i in dyn.bl_rna.properties["method"].enum_items}
    assert methods == {"ADVECT": 0, "TWO_STREAM": 1}  # saved files store the number
    assert (dyn.size, dyn.iterations, dyn.levels, dyn.optimizer) == (256, 100, 1, "LBFGS")
    assert dyn.refine == 0  # engine/job.py DyntexSettings.refine: no refiner
    refine = dyn.bl_rna.properties["refine"]
    assert (refine.hard_min, refine.hard_max) == (0, 50)
    assert "two-stream iteration" in refine.description
    lambdas = (dyn.lambda_style, dyn.lambda_l2, dyn.lambda_app, dyn.lambda_dyn,
               dyn.lambda_paint)
    assert lambdas == pytest.approx((1.0, 0.0, 1.0, 1.0, 0.1))
    assert dyn.style_image is None
    item = settings.mask_labels.add()
    assert item.label == "static" and item.clip_path == ""
    labels = {i.identifier: i.value for i in item.bl_rna.properties["label"].enum_items}
    # Saved files store the number: static must stay 0.
    assert labels == {"static": 0, "water": 1, "clouds": 2, "grass": 3, "waterfall": 4,
                      "clip": 5, "ripples": 6}


def test_default_job_is_advect_with_arrows_and_pins(sm, tmp_path):
    """Motion (advect) writes only the method (the two-stream settings mean nothing to it),
    and the pokes with the warp engine's pixel conventions: an arrow inside the sky steers it,
    a click without a drag is a pin."""
    plane = landscape(sm, tmp_path, "clouds", "grass")
    gp = plane.stillmotion.strokes
    for stroke in (ARROW, PIN):
        sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in stroke])
    plane.stillmotion.dyntex.size = 40  # a two-stream Working Size too small for this still
    plan = write(sm, plane, tmp_path)
    job = json.loads(plan.job_path.read_text(encoding="utf-8"))
    assert job == plan.job
    assert job["engine"] == "dyntex" and job["dyntex"] == {"method": "advect"}
    assert [m["label"] for m in job["masks"]] == ["clouds", "grass"]
    arrow, pin = job["pokes"]
    assert arrow["start"] == pytest.approx(ARROW[0], abs=0.01)
    assert arrow["end"] == pytest.approx(ARROW[1], abs=0.01)
    assert pin["start"] == pytest.approx(PIN[0], abs=0.01) == pin["end"]
    assert plan.poke_strokes == [1, 2]
    assert not any("poke" in w for w in plan.warnings)

    # Its Preview is scaled like Warp's, not capped like two-stream's.
    plane.stillmotion.frames, plane.stillmotion.preview_size = 24, 32
    preview = write(sm, plane, tmp_path, preview=True).job
    assert (preview["frames"], preview["max_size"]) == (24, 32)
    assert preview["dyntex"] == {"method": "advect"}

    # A style image is a two-stream setting: not exported, with a warning.
    plane.stillmotion.dyntex.style_image = bpy.data.images.new("painting", 4, 4)
    plan = write(sm, plane, tmp_path)
    assert plan.job["dyntex"] == {"method": "advect"}
    assert not (plan.job_path.parent / "style.png").exists()
    assert any("'painting' is not used by Motion (advect)" in w for w in plan.warnings)


def test_calm_water_is_ripples_in_the_job(sm, tmp_path):
    """Ripples (calm water) is its own label, saved as its own number after Clip File, and
    reaches the job as the engine's built-in name."""
    plane = landscape(sm, tmp_path, "ripples", "clouds")
    plan = write(sm, plane, tmp_path)
    assert [m["label"] for m in plan.job["masks"]] == ["ripples", "clouds"]
    assert not plan.warnings


def test_advect_refine_writes_iterations_and_size(sm, tmp_path):
    """Refine Iterations above 0 adds the refiner's iterations and the Working Size it runs
    at to the advect job; 0 (the default) writes nothing new; a Preview never refines."""
    plane = landscape(sm, tmp_path, "clouds", "grass")
    dyn = plane.stillmotion.dyntex
    assert write(sm, plane, tmp_path).job["dyntex"] == {"method": "advect"}
    dyn.refine, dyn.size = 3, 128
    plan = write(sm, plane, tmp_path)
    assert plan.job["dyntex"] == {"method": "advect", "refine": 3, "size": 128}
    assert json.loads(plan.job_path.read_text(encoding="utf-8")) == plan.job
    dyn.size = 256  # the default, larger than this 64 x 48 still: the engine never scales up
    assert write(sm, plane, tmp_path).job["dyntex"] == {"method": "advect", "refine": 3,
                                                        "size": 256}
    # The two-stream settings stay out: the refiner reads the engine's defaults for them.
    dyn.iterations, dyn.lambda_dyn = 7, 5.0
    assert set(write(sm, plane, tmp_path).job["dyntex"]) == {"method", "refine", "size"}

    # A Preview stays fast: no refiner, scaled to Preview Size as before.
    plane.stillmotion.preview_size = 32
    preview = write(sm, plane, tmp_path, preview=True).job
    assert preview["dyntex"] == {"method": "advect"} and preview["max_size"] == 32

    # A Working Size the motion network cannot use is refused for a refining bake only.
    dyn.size = 40
    with pytest.raises(sm.errors.StillMotionError, match="set Working Size to at least 42"):
        write(sm, plane, tmp_path)
    assert write(sm, plane, tmp_path, preview=True).job["dyntex"] == {"method": "advect"}
    dyn.refine = 0
    assert write(sm, plane, tmp_path).job["dyntex"] == {"method": "advect"}


def test_advect_arrow_outside_every_motion_mask_is_refused(sm, tmp_path):
    """An arrow steers the region it starts in; between the masks (or on a static one) it
    steers nothing, so the bake stops before the engine, naming the artist's stroke."""
    plane = landscape(sm, tmp_path, "clouds", "static", poke=True)
    gp = plane.stillmotion.strokes
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in ARROW])
    with pytest.raises(sm.errors.StillMotionError,
                       match="Poke 1 starts outside every motion mask: with Motion"):
        write(sm, plane, tmp_path)
    # On the static ground too; a click there is a pin and fine.
    plane = landscape(sm, tmp_path / "ground", "clouds", "static")
    gp = plane.stillmotion.strokes
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in PIN])
    assert len(write(sm, plane, tmp_path).job["pokes"]) == 1
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in
                                        [(30.0, 36.0), (40.0, 40.0)]])
    with pytest.raises(sm.errors.StillMotionError, match="Poke 2 starts outside"):
        write(sm, plane, tmp_path)


def test_dyntex_job_has_labels_clip_style_and_lambdas(sm, tmp_path):
    plane = landscape(sm, tmp_path, "clouds", "clip", poke=True, method="TWO_STREAM")
    clip = tmp_path / "river clip.mp4"
    clip.write_bytes(b"not decoded on the Blender side")
    settings = plane.stillmotion
    settings.mask_labels[1].clip_path = str(clip)
    settings.frames, settings.loop, settings.seed = 12, True, 3
    dyn = settings.dyntex
    dyn.size, dyn.iterations, dyn.levels, dyn.optimizer = 128, 40, 2, "ADAM"
    dyn.lambda_style, dyn.lambda_l2, dyn.lambda_app = 0.5, 0.1, 2.0
    dyn.lambda_dyn, dyn.lambda_paint, dyn.motion_contrast = 20.0, 0.3, 0.25
    painting = bpy.data.images.new("painting", 8, 8)  # generated: exported into the job
    painting.generated_color = (0.9, 0.5, 0.1, 1.0)
    dyn.style_image = painting

    plan = write(sm, plane, tmp_path)
    job = json.loads(plan.job_path.read_text(encoding="utf-8"))
    assert job == plan.job
    assert job["engine"] == "dyntex" and job["frames"] == 12 and job["loop"] is True
    assert job["max_size"] == 0 and job["seed"] == 3
    assert [m["label"] for m in job["masks"]] == ["clouds", str(clip.resolve())]
    assert job["pokes"] == []
    assert any("1 poke is not used by Two-stream synthesis" in w for w in plan.warnings)
    assert job["dyntex"] == {
        "method": "two-stream", "size": 128, "iterations": 40, "levels": 2, "optimizer": "adam",
        "lambda_style": 0.5, "lambda_l2": pytest.approx(0.1), "lambda_app": 2.0,
        "lambda_dyn": 20.0, "lambda_paint": pytest.approx(0.3), "motion_contrast": 0.25,
        "style": "style.png"}
    style = bpy.data.images.load(str(plan.job_path.parent / "style.png"))
    assert tuple(style.size) == (8, 8)
    px = np.empty(8 * 8 * style.channels, np.float32)
    style.pixels.foreach_get(px)
    assert px[:3] == pytest.approx([0.9, 0.5, 0.1], abs=0.01)

    # A style image that is a plain file is named by its own path, untouched.
    still_file = save_test_image(tmp_path / "van gogh.png", 16, 16)
    dyn.style_image = bpy.data.images.load(str(still_file))
    assert write(sm, plane, tmp_path).job["dyntex"]["style"] == str(still_file)


def test_clip_path_is_relative_to_the_blend(sm, tmp_path):
    plane = landscape(sm, tmp_path, "clip")  # (either method: the masks are the same)
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "frame_0001.png").write_bytes(b"")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    plane = bpy.data.objects[plane.name]
    plane.stillmotion.mask_labels[0].clip_path = "//clips"  # a folder of frames
    job = write(sm, plane, tmp_path).job
    assert job["masks"][0]["label"] == str((tmp_path / "clips").resolve())


def test_preview_caps_size_frames_and_iterations(sm, tmp_path):
    plane = landscape(sm, tmp_path, "water", method="TWO_STREAM")
    settings = plane.stillmotion
    settings.frames = 24
    settings.dyntex.size, settings.dyntex.iterations, settings.dyntex.levels = 512, 300, 3
    full = write(sm, plane, tmp_path).job
    preview = write(sm, plane, tmp_path, preview=True).job
    cap = sm.job.DYNTEX_PREVIEW
    assert (full["frames"], full["dyntex"]["size"], full["dyntex"]["iterations"]) == (24, 512, 300)
    assert preview["frames"] == cap["frames"] < full["frames"]
    assert preview["dyntex"]["size"] == cap["size"] < full["dyntex"]["size"]
    assert preview["dyntex"]["iterations"] == cap["iterations"] < 300
    assert preview["dyntex"]["levels"] == 1
    settings.preview_size = 32  # the warp engine's setting (hidden for dyntex): no effect here
    preview = write(sm, plane, tmp_path, preview=True).job
    assert preview["max_size"] == 0 and preview["dyntex"]["size"] == cap["size"]
    # Settings already below the caps are kept.
    settings.frames, settings.dyntex.iterations, settings.dyntex.size = 3, 2, 64
    preview = write(sm, plane, tmp_path, preview=True).job
    assert (preview["frames"], preview["dyntex"]["iterations"], preview["dyntex"]["size"]) == \
        (3, 2, 64)


def test_working_size_keeps_32_pixels_on_the_shorter_side(sm, tmp_path):
    assert sm.job.min_working_size(64, 48) == 42  # round(48 * 42 / 64) = 32
    assert sm.job.min_working_size(400, 40) == 315  # round(31.5) = 32, as the engine rounds
    assert sm.job.min_working_size(40, 40) == 32
    with pytest.raises(sm.errors.StillMotionError, match="needs at least 32 on each side"):
        sm.job.min_working_size(100, 20)
    plane = landscape(sm, tmp_path, "grass", method="TWO_STREAM")
    plane.stillmotion.dyntex.size = 40
    with pytest.raises(sm.errors.StillMotionError, match="set Working Size to at least 42"):
        write(sm, plane, tmp_path)
    # A preview raises its cap instead of failing.
    assert write(sm, plane, tmp_path, preview=True).job["dyntex"]["size"] == 42
    plane.stillmotion.dyntex.size = 42
    assert write(sm, plane, tmp_path).job["dyntex"]["size"] == 42


@pytest.mark.parametrize("case, words", [
    ("clip_unset", "Mask 2 is labelled Clip File but has no clip: pick a video file"),
    ("clip_missing", "The clip of mask 2 is missing: .*gone.mp4. Pick an existing"),
    ("only_static", "moves only masks with a motion label, and none has one: label a mask"),
    ("only_pokes", "has no masks on its Masks layer at frame 1: draw a closed outline"),
    ("no_strokes_object", "no strokes yet: click Add Strokes, then draw closed masks"),
])
def test_dyntex_errors_say_what_to_do(sm, tmp_path, case, words):
    if case == "clip_unset":
        plane = landscape(sm, tmp_path, "clouds", "clip")
    elif case == "clip_missing":
        plane = landscape(sm, tmp_path, "clouds", "clip")
        plane.stillmotion.mask_labels[1].clip_path = str(tmp_path / "gone.mp4")
    elif case == "only_static":
        plane = landscape(sm, tmp_path, "static", "static")
    elif case == "only_pokes":
        plane = landscape(sm, tmp_path, poke=True)
    else:
        plane = make_plane(tmp_path)
        plane.stillmotion.engine = "DYNTEX"
    with pytest.raises(sm.errors.StillMotionError, match=words):
        write(sm, plane, tmp_path)
    assert not (tmp_path / "job" / "job.json").exists()


def test_style_unused_without_painting_weight(sm, tmp_path):
    plane = landscape(sm, tmp_path, "water", method="TWO_STREAM")
    dyn = plane.stillmotion.dyntex
    dyn.style_image = bpy.data.images.new("painting", 4, 4)
    dyn.lambda_paint = 0.0
    plan = write(sm, plane, tmp_path)
    assert plan.job["dyntex"]["style"] is None
    assert not (plan.job_path.parent / "style.png").exists()
    assert any("'painting' is not used because Style Stream (λ7) is 0" in w
               for w in plan.warnings)


def test_warp_leaves_motion_masks_out(sm, tmp_path):
    plane = landscape(sm, tmp_path, "water", "static", poke=True)
    plane.stillmotion.engine = "WARP"
    plan = write(sm, plane, tmp_path)
    assert plan.job["masks"] == [{"path": "mask_000.png", "label": "static"}]
    assert "dyntex" not in plan.job and len(plan.job["pokes"]) == 1
    assert any("mask 1 has a motion label" in w for w in plan.warnings)
    # A clip label without a clip is no error for warp: the mask is left out anyway.
    plane.stillmotion.mask_labels[0].label = "clip"
    assert len(write(sm, plane, tmp_path).job["masks"]) == 1


def test_panel_draws_both_engines(sm, tmp_path):
    plane = landscape(sm, tmp_path, "clouds", "clip")
    bpy.context.view_layer.objects.active = plane
    modules = types.SimpleNamespace(main=sm.main)

    plane.stillmotion.engine = "WARP"
    log = draw_panel(modules)
    drawn = {entry[1] for entry in log}
    assert {"engine", "falloff", "feather", "easing", "loop", "preview_size"} <= drawn
    assert "lambda_dyn" not in drawn
    # (style_image here is the Style every engine shows, test_style_panel.py; the two-stream
    # style stream comes with its label)
    assert ("label", "Style Stream (two-stream)") not in log

    # Motion (advect), the default: a short panel, no two-stream settings.
    plane.stillmotion.engine = "DYNTEX"
    log = draw_panel(modules)
    drawn = {entry[1] for entry in log}
    assert {"engine", "frames", "loop", "method", "preview_size",
            "STILLMOTION_PT_motion_library"} <= drawn
    assert ("label", "Style Stream (two-stream)") not in log
    two_stream_only = {"STILLMOTION_PT_dyntex_advanced", "size", "iterations",
                       "levels", "optimizer", "lambda_style", "lambda_l2", "lambda_app",
                       "lambda_dyn", "motion_contrast", "lambda_paint"}
    assert not two_stream_only & drawn
    assert not {"falloff", "feather", "easing"} & drawn
    assert any(e[0] == "label" and e[1].startswith("An arrow on the Pokes layer steers")
               for e in log)
    assert not any(e[0] == "label" and e[1].startswith("Preview: ≤") for e in log)
    # Its refiner: Refine Iterations, and the Working Size it runs at once it is above 0.
    assert "refine" in drawn
    assert not any(e[0] == "label" and e[1].startswith("Each refine iteration") for e in log)
    plane.stillmotion.dyntex.refine = 2
    log = draw_panel(modules)
    drawn = {entry[1] for entry in log}
    assert {"refine", "size", "preview_size"} <= drawn
    assert not (two_stream_only - {"size"}) & drawn
    assert any(e[0] == "label" and e[1].startswith("Each refine iteration") for e in log)
    plane.stillmotion.dyntex.refine = 0

    plane.stillmotion.dyntex.method = "TWO_STREAM"
    log = draw_panel(modules)
    drawn = {entry[1] for entry in log}
    assert {"engine", "frames", "loop", "method", "style_image", "image.open",
            "STILLMOTION_PT_dyntex_advanced", "size", "iterations", "levels", "optimizer",
            "lambda_style", "lambda_l2", "lambda_app", "lambda_dyn", "motion_contrast",
            "lambda_paint"} <= drawn
    assert not {"falloff", "feather", "easing", "preview_size", "refine"} & drawn
    assert "Advanced" in [e[1] for e in log if e[0] == "label"]
    assert ("label", "Style Stream (two-stream)") in log
    assert any(e[0] == "label" and e[1].startswith("Preview: ≤96 px, 6 frames") for e in log)

    # The mask list row shows the clip path only for a Clip File label.
    ui_list = sm.main.STILLMOTION_UL_mask_labels
    for item, expected in zip(plane.stillmotion.mask_labels, (False, True)):
        row_log = []
        ui_list.draw_item(None, bpy.context, RecordingLayout(row_log), None, item, 0, None, "",
                          0)
        assert (("prop", "clip_path") in row_log) is expected


def test_tiny_dyntex_bake_through_the_engine(sm, tmp_path):
    """The whole path with the real engine process, Two-stream synthesis: 2 frames, 2
    iterations at 42 px. Pixels outside the motion mask stay the still; the plane then shows
    the sequence."""
    from bl_ext.user_default.stillmotion.bake import session

    plane = landscape(sm, tmp_path, "clouds", method="TWO_STREAM")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    plane = bpy.data.objects[plane.name]
    settings = plane.stillmotion
    settings.frames = 2
    settings.dyntex.size, settings.dyntex.iterations = 42, 2

    result = session.run_sync(bpy.context, plane, timeout=300)
    assert result.frames == 2 and not result.preview
    assert image_node(plane).image.source == "SEQUENCE"
    still = _pixels(tmp_path / "still.png")
    outside = np.ones(still.shape[:2], bool)
    outside[0:20, 0:64] = False  # the sky mask and its anti-aliased edge
    moved = False
    for n in (1, 2):
        frame = _pixels(pathlib.Path(result.output) / f"frame_{n:04d}.png")
        assert frame.shape == still.shape
        assert np.array_equal(frame[outside], still[outside])
        moved |= not np.array_equal(frame, still)
    assert moved, "the clouds region should change"


def _sky_with_arrow(sm, tmp_path):
    """The landscape plane, its sky labelled clouds and an ARROW on Pokes, saved (a bake needs
    a saved file)."""
    plane = landscape(sm, tmp_path, "clouds")
    gp = plane.stillmotion.strokes
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in ARROW])
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    return bpy.data.objects[plane.name]


def _still_outside_the_sky(tmp_path, result):
    """The still and the bake's frames, checked: frame 1 is the still, and outside the sky
    mask every frame is the still."""
    still = _pixels(tmp_path / "still.png")
    outside = np.ones(still.shape[:2], bool)
    outside[2:18, 2:62] = False  # the sky mask (pixel centres inside its outline)
    frames = [_pixels(pathlib.Path(result.output) / f"frame_{n:04d}.png")
              for n in range(1, result.frames + 1)]
    assert np.array_equal(frames[0], still)
    for frame in frames:
        assert frame.shape == still.shape
        assert np.array_equal(frame[outside], still[outside])
    return still, frames


def test_tiny_advect_bake_through_the_engine(sm, tmp_path):
    """The whole path with the real engine process and the panel's defaults (Motion (advect)):
    6 frames of the 64 x 48 still at full resolution, the sky labelled clouds and steered by an
    arrow 15 px to the right. The sky's content arrives 15 px right on the last frame; pixels
    outside the sky mask are the still in every frame; frame 1 is the still."""
    from bl_ext.user_default.stillmotion.bake import session

    plane = _sky_with_arrow(sm, tmp_path)
    plane.stillmotion.frames = 6

    result = session.run_sync(bpy.context, plane, timeout=300)
    assert result.frames == 6 and not result.preview
    assert image_node(plane).image.source == "SEQUENCE"
    still, frames = _still_outside_the_sky(tmp_path, result)
    # Inside, away from the mask's edges: the last frame is the still moved right by the arrow.
    rows, cols = slice(6, 14), slice(24, 56)
    inside = frames[-1][rows, cols].astype(float)

    def error(shift):
        return np.abs(inside - still[rows, cols.start - shift:cols.stop - shift]).mean()

    best = min(range(0, 21), key=error)
    assert abs(best - 15) <= 2, [round(error(s), 1) for s in range(21)]
    assert error(best) < 0.25 * error(0)


def test_tiny_refined_advect_bake_through_the_engine(sm, tmp_path, monkeypatch):
    """Refine Iterations reaches the real engine: 3 frames of the sky moved by an arrow, then
    1 refine iteration at 42 px. The engine reports its refine stage; frame 1 is the still and
    pixels outside the sky mask are the still in every frame."""
    from bl_ext.user_default.stillmotion.bake import session

    plane = _sky_with_arrow(sm, tmp_path)
    settings = plane.stillmotion
    settings.frames = 3
    settings.dyntex.refine, settings.dyntex.size = 1, 42
    stages = set()
    apply_event = session.BakeSession._apply_event

    def record(self, runtime, event):  # every progress line, however many one poll reads
        stages.add(event.get("stage"))
        return apply_event(self, runtime, event)

    monkeypatch.setattr(session.BakeSession, "_apply_event", record)
    result = session.run_sync(bpy.context, plane, timeout=300)
    assert result.frames == 3 and not result.preview
    assert "refine" in stages, stages
    _still_outside_the_sky(tmp_path, result)


def _pixels(path):
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = image.size
        buf = np.empty(w * h * image.channels, np.float32)
        image.pixels.foreach_get(buf)
        return np.rint(buf.reshape(h, w, image.channels)[::-1, :, :3] * 255).astype(np.uint8)
    finally:
        bpy.data.images.remove(image)


assert WIDTH == 64 and HEIGHT == 48  # the outlines above are drawn for this still


# -- motion library thumbnails ----------------------------------------------------------------

FAKE_EXEMPLAR = """
import pathlib, struct, sys, zlib
args = sys.argv[1:]
assert args[:3] == ["-m", "engine", "exemplar"], args
out = pathlib.Path(args[args.index("--out") + 1])
out.mkdir(parents=True)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\\0" + bytes([40, 90, 200]) * 4 for _ in range(4))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
if args[3] != "waterfall":
    (out / "thumbnail.png").write_bytes(png)
print('{"stage": "done"}')
"""


@pytest.fixture
def library(addon):
    import shutil

    from bl_ext.user_default.stillmotion.bake import library

    shutil.rmtree(library.library_folder(), ignore_errors=True)
    return library


def library_panel(sm, tmp_path):
    plane = landscape(sm, tmp_path, "water")
    bpy.context.view_layer.objects.active = plane
    return draw_panel(types.SimpleNamespace(main=sm.main))


def test_motion_library_thumbnails_in_the_panel(sm, library, tmp_path):
    from test_bake_operator import use_engine

    log = library_panel(sm, tmp_path)
    assert ("operator", "stillmotion.motion_library") in log
    assert not [e for e in log if e[0] == "icon"]

    use_engine(tmp_path, FAKE_EXEMPLAR)  # makes every thumbnail but the waterfall's
    with pytest.raises(RuntimeError, match=r"\(waterfall: the engine wrote no thumbnail\)"):
        bpy.ops.stillmotion.motion_library()
    assert library.missing_names() == ["waterfall"]
    log = library_panel(sm, tmp_path)
    icons = [e for e in log if e[0] == "icon"]
    assert len(icons) == 4  # (icon ids are 0 here: background mode has no icon system)
    assert sorted(library.icons()) == ["clouds", "grass", "ripples", "water"]
    assert [e[1] for e in log if e[0] == "label" and e[1] in {"Water", "Clouds", "Grass"}] == \
        ["Water", "Clouds", "Grass"]
    assert ("operator", "stillmotion.motion_library") in log  # one is still missing


def test_motion_library_thumbnail_from_the_real_engine(sm, library, tmp_path):
    """Only the clouds are missing, so the real `python -m engine exemplar` makes one."""
    for name in ("water", "grass", "waterfall", "ripples"):
        folder = library.library_folder() / name
        folder.mkdir(parents=True)
        save_test_image(folder / "thumbnail.png", 8, 8)
    assert library.missing_names() == ["clouds"]
    assert bpy.ops.stillmotion.motion_library() == {"FINISHED"}
    assert library.missing_names() == []
    thumbnail = bpy.data.images.load(str(library.thumbnail_path("clouds")))
    assert tuple(thumbnail.size) == (96, 96)
    log = library_panel(sm, tmp_path)
    assert len([e for e in log if e[0] == "icon"]) == 5
    assert ("operator", "stillmotion.motion_library") not in log


def test_preview_button_bakes_the_capped_job(sm, tmp_path):
    """Preview goes through the same session as Bake; for dyntex the engine gets the capped
    job (the stand-in engine writes as many frames as the job asks for)."""
    from bl_ext.user_default.stillmotion.bake import session
    from test_bake_operator import COPY_ENGINE, use_engine

    plane = landscape(sm, tmp_path, "water", method="TWO_STREAM")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    plane = bpy.data.objects[plane.name]
    plane.stillmotion.frames = 24
    use_engine(tmp_path, COPY_ENGINE)
    result = session.run_sync(bpy.context, plane, preview=True, timeout=60)
    assert result.preview and result.frames == sm.job.DYNTEX_PREVIEW["frames"]
    assert plane.stillmotion.take == 0  # a preview is not a take
    # Motion (advect) is fast enough to preview every frame (at Preview Size, like Warp).
    plane.stillmotion.dyntex.method = "ADVECT"
    result = session.run_sync(bpy.context, plane, preview=True, timeout=60)
    assert result.preview and result.frames == 24
