"""scene/job.py: plane + strokes made through the API -> job.json, masks and still, per
docs/JOB.md; and every bad input the scene side must refuse with a helpful message."""

import importlib
import json

import bpy
import numpy as np
import pytest
from mathutils import Euler

from conftest import ADDON, import_image_plane, save_test_image

W, H = 64, 32


@pytest.fixture
def sm(addon):
    class Modules:
        job = importlib.import_module(ADDON + ".scene.job")
        strokes = importlib.import_module(ADDON + ".scene.strokes")
        errors = importlib.import_module(ADDON + ".scene.errors")

    return Modules


@pytest.fixture
def scene(sm, tmp_path):
    """An imported 64×32 plane with its strokes object."""
    plane = import_image_plane(save_test_image(tmp_path / "still.png", W, H))
    gp_obj = sm.strokes.ensure_strokes_object(bpy.context, plane)
    return plane, gp_obj


def _local_size(plane):
    co = np.array([v.co[:] for v in plane.data.vertices])
    return co[:, 0].max() - co[:, 0].min(), co[:, 1].max() - co[:, 1].min()


def _world(plane, local_xy, z=0.001):
    bpy.context.view_layer.update()
    m = np.array(plane.matrix_world)
    xy = np.atleast_2d(np.asarray(local_xy, float))
    return (np.c_[xy, np.full(len(xy), z), np.ones(len(xy))] @ m.T)[:, :3]


def _to_local(plane, pixel_xy, size=(W, H)):
    """Image pixel -> plane-local (x, y) on an imported plane (inverse of the UV mapping)."""
    w, h = _local_size(plane)
    p = np.atleast_2d(np.asarray(pixel_xy, float))
    return np.stack([(p[:, 0] / size[0] - 0.5) * w, (0.5 - p[:, 1] / size[1]) * h], axis=1)


def _poke(sm, plane, gp_obj, start_px, end_px, n=5, size=(W, H), **kw):
    px = np.linspace(start_px, end_px, n)
    sm.strokes.add_stroke(gp_obj, "Pokes", _world(plane, _to_local(plane, px, size)), **kw)


def _mask(sm, plane, gp_obj, corners_px, **kw):
    sm.strokes.add_stroke(gp_obj, "Masks", _world(plane, _to_local(plane, corners_px)), **kw)


def _write(sm, plane, tmp_path, **kw):
    return sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001", **kw)


def _read_mask(path):
    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = img.size
        buf = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(buf)
        return np.rint(buf.reshape(h, w, 4)[::-1, :, 0] * 255).astype(np.uint8)
    finally:
        bpy.data.images.remove(img)


# -- the expected job -------------------------------------------------------------------------


def test_job_from_imported_plane(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (20.3, 10.7), (30.1, 5.2))
    _poke(sm, plane, gp_obj, (50.0, 25.0), (44.5, 27.25))
    _mask(sm, plane, gp_obj, [(8, 4), (24, 4), (24, 20), (8, 20)])
    settings = plane.stillmotion
    settings.frames, settings.fps, settings.seed, settings.loop = 12, 30, 7, True
    plan = _write(sm, plane, tmp_path)
    job = json.loads(plan.job_path.read_text(encoding="utf-8"))
    assert job == plan.job and plan.warnings == [] and plan.image_size == (W, H)
    assert set(job) == {"version", "engine", "image", "output", "frames", "fps", "seed", "loop",
                        "easing", "format", "max_size", "device", "pokes", "masks", "warp"}
    assert job["version"] == 1 and job["engine"] == "warp"
    assert job["frames"] == 12 and job["fps"] == 30 and job["seed"] == 7 and job["loop"] is True
    assert job["max_size"] == 0 and job["device"] == "auto" and job["format"] == "PNG8"
    assert job["image"] == str(tmp_path / "still.png")
    assert job["output"] == str(tmp_path / "out" / "take_001")
    starts = np.array([p["start"] for p in job["pokes"]])
    ends = np.array([p["end"] for p in job["pokes"]])
    np.testing.assert_allclose(starts, [(20.3, 10.7), (50.0, 25.0)], atol=0.5)
    np.testing.assert_allclose(ends, [(30.1, 5.2), (44.5, 27.25)], atol=0.5)
    np.testing.assert_allclose(starts, [(20.3, 10.7), (50.0, 25.0)], atol=1e-3)  # in fact
    assert job["masks"] == [{"path": "mask_000.png", "label": "static"}]
    mask = _read_mask(plan.job_path.parent / "mask_000.png")
    assert mask.shape == (H, W)
    assert (mask == 255).sum() == 16 * 16 and mask[4:20, 8:24].all()
    assert job["warp"]["feather"] == 8.0


def test_job_on_moved_rotated_scaled_plane(sm, scene, tmp_path):
    plane, gp_obj = scene
    plane.location = (2.0, -3.0, 1.5)
    plane.rotation_euler = Euler((0.9, 0.4, -2.2))
    plane.scale = (1.5, 0.75, 2.0)
    bpy.context.view_layer.update()
    _poke(sm, plane, gp_obj, (12.25, 3.5), (61.0, 30.0))
    _mask(sm, plane, gp_obj, [(40, 8), (56, 8), (56, 24), (40, 24)])
    job = _write(sm, plane, tmp_path).job
    np.testing.assert_allclose(job["pokes"][0]["start"], (12.25, 3.5), atol=1e-3)
    np.testing.assert_allclose(job["pokes"][0]["end"], (61.0, 30.0), atol=1e-3)
    mask = _read_mask(tmp_path / "job" / "mask_000.png")
    assert (mask > 0).sum() == 256 and mask[8:24, 40:56].all()


def test_strokes_follow_the_plane(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    plane.location = (4, 5, 6)
    plane.rotation_euler = Euler((0.3, 0.2, 0.1))
    job = _write(sm, plane, tmp_path).job
    np.testing.assert_allclose(job["pokes"][0]["start"], (10, 10), atol=1e-3)


def test_falloff_from_setting_or_stroke_width(sm, scene, tmp_path):
    plane, gp_obj = scene
    w, _ = _local_size(plane)
    _poke(sm, plane, gp_obj, (10, 10), (20, 12), radius=0.1)  # 0.2 wide
    job = _write(sm, plane, tmp_path).job
    assert job["pokes"][0]["radius"] == pytest.approx(0.2 * W / w, rel=1e-3)
    plane.stillmotion.falloff = 40.0
    job = _write(sm, plane, tmp_path).job
    assert job["pokes"][0]["radius"] == 0.0 and job["warp"]["falloff"] == 40.0


def test_mask_labels_and_preview(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    _mask(sm, plane, gp_obj, [(2, 2), (10, 2), (10, 10)])
    _mask(sm, plane, gp_obj, [(30, 2), (40, 2), (40, 10)])
    plane.stillmotion.mask_labels.add()  # only the first mask has a label set
    plane.stillmotion.preview_size = 48
    job = _write(sm, plane, tmp_path, preview=True, device="cpu").job
    assert [m["label"] for m in job["masks"]] == ["static", "static"]
    assert [m["path"] for m in job["masks"]] == ["mask_000.png", "mask_001.png"]
    assert job["max_size"] == 48 and job["device"] == "cpu"


def test_mask_closed_by_ending_near_its_start(sm, scene, tmp_path):
    plane, gp_obj = scene
    # Not cyclic, but the last point is 1 px from the first (of ~60 px drawn): closed.
    _mask(sm, plane, gp_obj, [(8, 4), (24, 4), (24, 20), (8, 20), (8, 5)], cyclic=False)
    plan = _write(sm, plane, tmp_path)
    assert len(plan.job["masks"]) == 1
    assert any("no pokes" in w for w in plan.warnings)


def test_symmetric_figure_eight_mask_is_judged_by_the_pixels_it_fills(sm, scene, tmp_path):
    """The two loops of a symmetric 8 turn opposite ways: the signed area of the outline is 0,
    yet the mask covers both loops (nonzero fill), so it is a region and not a line."""
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    eight = np.stack([32 + 24 * np.sin(t), 16 + 12 * np.sin(t) * np.cos(t)], axis=1)
    raster = importlib.import_module(ADDON + ".scene.raster")
    assert abs(raster.polygon_area(eight)) < 1e-9
    _mask(sm, plane, gp_obj, eight)
    plan = _write(sm, plane, tmp_path)
    assert plan.job["masks"] == [{"path": "mask_000.png", "label": "static"}]
    assert plan.warnings == []
    mask = _read_mask(tmp_path / "job" / "mask_000.png") == 255
    left, right = mask[:, :32].sum(), mask[:, 32:].sum()
    assert 150 < left < 240 and 150 < right < 240  # each loop about 192 px²
    assert abs(int(left) - int(right)) <= 4
    np.testing.assert_array_equal(mask[16, 12:18], True)  # inside each loop...
    np.testing.assert_array_equal(mask[16, 46:52], True)
    assert not mask[:, :8].any() and not mask[:, 57:].any()  # ...and nothing beyond them


def test_strokes_off_the_plane_are_clipped_with_a_count(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))  # kept
    _poke(sm, plane, gp_obj, (60, 16), (80, 16))  # ends off the picture: kept
    _poke(sm, plane, gp_obj, (-10, 5), (5, 5))  # starts off the picture: ignored
    _mask(sm, plane, gp_obj, [(100, 100), (120, 100), (120, 120)])  # off: ignored
    _mask(sm, plane, gp_obj, [(56, -8), (72, -8), (72, 8), (56, 8)])  # partly: clipped
    plan = _write(sm, plane, tmp_path)
    assert plan.warnings[0] == "2 strokes outside the plane were ignored"
    assert len(plan.job["pokes"]) == 2 and len(plan.job["masks"]) == 1
    np.testing.assert_allclose(plan.job["pokes"][1]["end"], (80, 16), atol=1e-3)
    mask = _read_mask(tmp_path / "job" / "mask_000.png")
    assert (mask > 0).sum() == 8 * 8 and mask[0:8, 56:64].all()


def test_one_stroke_outside_is_singular(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    _poke(sm, plane, gp_obj, (70, 10), (80, 12))
    assert _write(sm, plane, tmp_path).warnings == ["1 stroke outside the plane was ignored"]


def test_mask_around_the_whole_picture(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    _mask(sm, plane, gp_obj, [(-5, -5), (70, -5), (70, 40), (-5, 40)])
    plan = _write(sm, plane, tmp_path)
    assert plan.warnings == []
    assert (_read_mask(tmp_path / "job" / "mask_000.png") == 255).all()


def test_hidden_layer_is_reported(sm, scene, tmp_path):
    plane, gp_obj = scene
    _poke(sm, plane, gp_obj, (10, 10), (20, 12))
    _mask(sm, plane, gp_obj, [(2, 2), (10, 2), (10, 10)])
    gp_obj.data.layers["Masks"].hide = True
    plan = _write(sm, plane, tmp_path)
    assert plan.job["masks"] == []
    assert any("Masks layer is hidden" in w for w in plan.warnings)


# -- image sizes and kinds --------------------------------------------------------------------


def test_one_pixel_image(sm, tmp_path):
    plane = import_image_plane(save_test_image(tmp_path / "dot.png", 1, 1))
    gp_obj = sm.strokes.ensure_strokes_object(bpy.context, plane)
    w, h = _local_size(plane)
    _poke(sm, plane, gp_obj, (0.5, 0.5), (0.9, 0.1), size=(1, 1))
    sm.strokes.add_stroke(gp_obj, "Masks", _world(plane, [(-w, -h), (w, -h), (w, h), (-w, h)]))
    plan = _write(sm, plane, tmp_path)
    np.testing.assert_allclose(plan.job["pokes"][0]["start"], (0.5, 0.5), atol=1e-4)
    assert _read_mask(tmp_path / "job" / "mask_000.png").tolist() == [[255]]


def test_8k_image(sm, tmp_path):
    raster = importlib.import_module(ADDON + ".scene.raster")
    path = raster.write_png(tmp_path / "big.png", np.full((4320, 7680, 3), 90, np.uint8))
    plane = import_image_plane(path)
    gp_obj = sm.strokes.ensure_strokes_object(bpy.context, plane)
    size = (7680, 4320)
    theta = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([3840 + 2000 * np.cos(theta), 2160 + 2000 * np.sin(theta)], axis=1)
    sm.strokes.add_stroke(gp_obj, "Masks", _world(plane, _to_local(plane, circle, size)))
    pts = np.linspace((1000.25, 800.75), (1500, 900), 4)
    sm.strokes.add_stroke(gp_obj, "Pokes", _world(plane, _to_local(plane, pts, size)))
    plan = _write(sm, plane, tmp_path)
    assert plan.image_size == size
    np.testing.assert_allclose(plan.job["pokes"][0]["start"], (1000.25, 800.75), atol=0.01)
    mask_file = tmp_path / "job" / "mask_000.png"
    assert mask_file.stat().st_size < 2_000_000


def test_generated_still_is_exported_into_the_job(sm, tmp_path):
    image = bpy.data.images.new("Generated", 32, 16)
    image.generated_type = "UV_GRID"
    bpy.ops.mesh.primitive_plane_add(size=2)
    plane = bpy.context.active_object
    mat = bpy.data.materials.new("M")
    if mat.node_tree is None:
        mat.use_nodes = True
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    plane.data.materials.append(mat)
    gp_obj = sm.strokes.ensure_strokes_object(bpy.context, plane)
    # The primitive plane spans -1..1 with UVs 0..1: pixel (8, 4) is at local (-0.5, 0.5).
    sm.strokes.add_stroke(gp_obj, "Pokes", _world(plane, [(-0.5, 0.5), (0, 0)]))
    plan = _write(sm, plane, tmp_path / "jöb ü")
    assert plan.job["image"] == "still.png"
    assert (plan.job_path.parent / "still.png").is_file()
    np.testing.assert_allclose(plan.job["pokes"][0]["start"], (8, 4), atol=1e-3)
    np.testing.assert_allclose(plan.job["pokes"][0]["end"], (16, 8), atol=1e-3)


# -- bad input --------------------------------------------------------------------------------


def test_no_strokes_object(sm, tmp_path):
    plane = import_image_plane(save_test_image(tmp_path / "still.png", W, H))
    with pytest.raises(sm.errors.StillMotionError, match="no strokes yet.*Add Strokes"):
        _write(sm, plane, tmp_path)


def test_no_strokes_at_all(sm, scene, tmp_path):
    plane, _ = scene
    with pytest.raises(sm.errors.StillMotionError, match="no strokes on its Pokes or Masks"):
        _write(sm, plane, tmp_path)


@pytest.mark.parametrize(
    "case, words",
    [
        ("one_point_poke", "Poke 1 is a single point: draw"),
        ("zero_length_poke", "Poke 1 ends where it starts"),
        ("two_point_mask", "Mask 1 has only 2 points"),
        ("open_mask", r"Mask 1 is not closed \(its ends are \d+% of its length apart\)"),
        ("flat_mask", "Mask 1 encloses no area"),
        ("there_and_back_mask", "Mask 1 encloses no area"),
        ("nan", "Poke 1 has invalid coordinates"),
        ("inf_mask", "Mask 1 has invalid coordinates"),
        ("all_off", "None of the 2 strokes lies on the picture"),
    ],
)
def test_bad_strokes_say_what_to_do(sm, scene, tmp_path, case, words):
    plane, gp_obj = scene
    add = sm.strokes.add_stroke
    if case == "one_point_poke":
        add(gp_obj, "Pokes", _world(plane, [(0, 0)]))
    elif case == "zero_length_poke":
        add(gp_obj, "Pokes", _world(plane, [(0.1, 0.1), (0.3, 0.2), (0.1, 0.1)]))
    elif case == "two_point_mask":
        add(gp_obj, "Masks", _world(plane, [(0, 0), (0.2, 0.2)]))
    elif case == "open_mask":
        _mask(sm, plane, gp_obj, [(8, 4), (24, 4), (24, 20), (8, 20)], cyclic=False)
    elif case == "flat_mask":
        _mask(sm, plane, gp_obj, [(8, 4), (24, 4), (16, 4)])
    elif case == "there_and_back_mask":  # a slanted line drawn twice fills no pixel
        _mask(sm, plane, gp_obj, [(8, 4), (20, 10), (40, 20), (20, 10)])
    elif case == "nan":
        pts = _world(plane, [(0, 0), (0.2, 0.1)])
        pts[1, 0] = np.nan
        add(gp_obj, "Pokes", pts)
    elif case == "inf_mask":
        pts = _world(plane, [(0, 0), (0.2, 0.1), (0.2, 0.3)])
        pts[2, 1] = np.inf
        add(gp_obj, "Masks", pts)
    elif case == "all_off":
        _poke(sm, plane, gp_obj, (-30, 5), (-20, 5))
        _mask(sm, plane, gp_obj, [(100, 100), (120, 100), (120, 120)])
    with pytest.raises(sm.errors.StillMotionError, match=words) as info:
        _write(sm, plane, tmp_path)
    assert ":" in str(info.value)
    assert not (tmp_path / "job" / "job.json").exists()


def test_bad_target_comes_first(sm, tmp_path):
    with pytest.raises(sm.errors.StillMotionError, match="Select the image plane"):
        _write(sm, None, tmp_path)
