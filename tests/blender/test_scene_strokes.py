"""scene/strokes.py on every grease-pencil generation: the strokes object, stroke round trips
in world space, and projection of world points into image pixels."""

import importlib
import math

import bpy
import numpy as np
import pytest
from mathutils import Euler, Matrix, Vector

from conftest import ADDON, import_image_plane, save_test_image

LEGACY = bpy.app.version < (4, 3, 0)


@pytest.fixture
def st(addon):
    return importlib.import_module(ADDON + ".scene.strokes")


@pytest.fixture
def plane(addon, tmp_path):
    return import_image_plane(save_test_image(tmp_path / "still.png", 64, 32))


def _layer_names(gp_obj):
    return [layer.info if LEGACY else layer.name for layer in gp_obj.data.layers]


def _local_size(plane):
    co = np.array([v.co[:] for v in plane.data.vertices])
    return co[:, 0].max() - co[:, 0].min(), co[:, 1].max() - co[:, 1].min()


def _world(plane, local_xy, z=0.0):
    """Plane-local (x, y) -> world points, z in front of the surface."""
    bpy.context.view_layer.update()
    m = np.array(plane.matrix_world)
    xy = np.atleast_2d(np.asarray(local_xy, float))
    pts = np.c_[xy, np.full(len(xy), z), np.ones(len(xy))]
    return (pts @ m.T)[:, :3]


def _analytic_pixels(plane, local_xy, size):
    """Where Import Images as Planes puts a plane-local point in the image: u = x/w + 0.5,
    v = y/h + 0.5 (UV (0,0) at the bottom-left corner), then x = u·W, y = (1 − v)·H."""
    w, h = _local_size(plane)
    xy = np.atleast_2d(np.asarray(local_xy, float))
    u, v = xy[:, 0] / w + 0.5, xy[:, 1] / h + 0.5
    return np.stack([u * size[0], (1 - v) * size[1]], axis=1)


# -- the strokes object -------------------------------------------------------------------------


def test_strokes_object_per_version(st, plane):
    gp_obj = st.ensure_strokes_object(bpy.context, plane)
    assert gp_obj.name.startswith("StillMotion Strokes")
    if LEGACY:
        assert gp_obj.type == "GPENCIL" and type(gp_obj.data).__name__ == "GreasePencil"
    else:
        assert gp_obj.type == "GREASEPENCIL"
        expected = "GreasePencilv3" if bpy.app.version < (5, 0, 0) else "GreasePencil"
        assert type(gp_obj.data).__name__ == expected
    assert _layer_names(gp_obj) == ["Pokes", "Masks"]
    assert plane.stillmotion.strokes == gp_obj
    assert gp_obj.parent == plane
    assert set(gp_obj.users_collection) == set(plane.users_collection)
    assert gp_obj.show_in_front
    assert gp_obj.hide_render, "guide strokes must not appear in the final render"
    colors = {m.name: tuple(m.grease_pencil.color) for m in gp_obj.data.materials}
    assert colors["StillMotion Poke"][:3] == pytest.approx((1.0, 0.42, 0.0))
    assert colors["StillMotion Mask"][:3] == pytest.approx((0.0, 0.85, 1.0))
    ts = bpy.context.scene.tool_settings
    assert ts.gpencil_stroke_placement_view3d == "ORIGIN"
    assert ts.gpencil_sculpt.lock_axis == "AXIS_Z"


def test_strokes_object_is_reused_and_repaired(st, plane):
    first = st.ensure_strokes_object(bpy.context, plane)
    n_objects = len(bpy.data.objects)
    layer = first.data.layers["Masks"]
    first.data.layers.remove(layer)
    again = st.ensure_strokes_object(bpy.context, plane)
    assert again == first and len(bpy.data.objects) == n_objects
    assert _layer_names(again) == ["Pokes", "Masks"]
    assert len(again.data.materials) == 2


def test_strokes_object_lies_on_a_transformed_plane(st, plane):
    plane.location = (1.0, -2.0, 0.5)
    plane.rotation_euler = Euler((0.4, -0.9, 1.3))
    plane.scale = (2.0, 0.5, 3.0)
    gp_obj = st.ensure_strokes_object(bpy.context, plane)
    bpy.context.view_layer.update()
    gm, pm = gp_obj.matrix_world.copy(), plane.matrix_world.copy()
    normal = (pm.to_3x3().inverted().transposed() @ Vector((0, 0, 1))).normalized()
    # Local Z of the strokes object is the plane's normal; unit scale; origin on the surface
    # (within the small front offset).
    assert (gm.to_3x3() @ Vector((0, 0, 1))).normalized().dot(normal) == pytest.approx(1, abs=1e-6)
    assert gm.to_scale()[:] == pytest.approx((1, 1, 1), abs=1e-6)
    offset = (gm.translation - pm.translation).dot(normal)
    assert 0 < offset < 1e-2
    # It follows the plane.
    plane.location.x += 5
    bpy.context.view_layer.update()
    assert gp_obj.matrix_world.translation.x == pytest.approx(gm.translation.x + 5)


# -- strokes in and out -------------------------------------------------------------------------


def test_stroke_round_trip_in_world_space(st, plane):
    plane.location = (0.3, 0.2, -1.0)
    plane.rotation_euler = Euler((1.1, 0.2, -0.4))
    gp_obj = st.ensure_strokes_object(bpy.context, plane)
    pts = _world(plane, [(0, 0), (0.2, 0.1), (0.4, 0.3)], z=0.001)
    st.add_stroke(gp_obj, "Pokes", pts, radius=0.05)
    loop = _world(plane, [(-0.5, -0.2), (0.1, -0.2), (0.1, 0.2)], z=0.001)
    st.add_stroke(gp_obj, "Masks", loop, radius=0.01)
    st.add_stroke(gp_obj, "Masks", loop[::-1], radius=0.01, cyclic=False)
    pokes = st.read_stroke_data(gp_obj, "Pokes")
    masks = st.read_stroke_data(gp_obj, "Masks")
    assert len(pokes) == 1 and len(masks) == 2
    np.testing.assert_allclose(pokes[0].points, pts, atol=1e-5)
    np.testing.assert_allclose(pokes[0].radii, 0.05, rtol=1e-4)
    assert not pokes[0].cyclic
    assert masks[0].cyclic and not masks[1].cyclic  # masks close by default
    np.testing.assert_allclose(masks[1].points, loop[::-1], atol=1e-5)
    assert [s.index for s in masks] == [0, 1]
    assert len(st.read_strokes(gp_obj, "Pokes")) == 1


def test_layer_transform_is_applied(st, plane):
    gp_obj = st.ensure_strokes_object(bpy.context, plane)
    layer = gp_obj.data.layers["Pokes"]
    if LEGACY:
        layer.location = (0.1, 0.2, 0.0)
        layer.rotation = (0, 0, 0.5)
    else:
        layer.translation = (0.1, 0.2, 0.0)
        layer.rotation = (0, 0, 0.5)
    pts = _world(plane, [(0, 0), (0.3, 0.1)], z=0.001)
    st.add_stroke(gp_obj, "Pokes", pts)
    np.testing.assert_allclose(st.read_strokes(gp_obj, "Pokes")[0], pts, atol=1e-5)
    # Stored coordinates are layer-local: world = object world × layer matrix × local.
    stored = st.read_strokes(gp_obj, "Pokes")[0]
    m = np.array(gp_obj.matrix_world) @ np.array(
        layer.matrix_layer if LEGACY else layer.matrix_local)
    if LEGACY:
        co = np.array([p.co[:] for p in layer.frames[0].strokes[0].points])
    else:
        co = np.array([p.position[:] for p in layer.frames[0].drawing.strokes[0].points])
    np.testing.assert_allclose(np.c_[co, np.ones(len(co))] @ m.T[:, :3], stored, atol=1e-5)


def test_hidden_layer_and_frames(st, plane):
    gp_obj = st.ensure_strokes_object(bpy.context, plane)
    scene = bpy.context.scene
    scene.frame_set(1)
    st.add_stroke(gp_obj, "Pokes", _world(plane, [(0, 0), (0.2, 0)]))
    scene.frame_set(20)  # the keyframe at 1 holds
    assert len(st.read_strokes(gp_obj, "Pokes")) == 1
    assert st.read_strokes(gp_obj, "Pokes", frame=0) == []  # before the first keyframe
    gp_obj.data.layers["Pokes"].hide = True
    assert st.read_strokes(gp_obj, "Pokes") == []
    assert len(st.read_stroke_data(gp_obj, "Pokes", include_hidden=True)) == 1
    assert st.read_strokes(gp_obj, "Nonexistent") == []


# -- projection -------------------------------------------------------------------------------


def test_projection_on_imported_plane_is_exact(st, plane):
    size = (64, 32)
    local = np.array([(0, 0), (0.9, 0.45), (-1.0, -0.5), (0.37, -0.21), (1.0, 0.5)])
    pixels, inside = st.project_to_image(plane, size, _world(plane, local, z=0.01))
    np.testing.assert_allclose(pixels, _analytic_pixels(plane, local, size), atol=1e-3)
    assert inside.all()
    # Top-left corner of the picture is pixel (0, 0); centre is (W/2, H/2).
    np.testing.assert_allclose(pixels[2], (0, 32), atol=1e-4)
    np.testing.assert_allclose(pixels[0], (32, 16), atol=1e-4)


def test_projection_on_moved_rotated_scaled_plane(st, plane):
    plane.location = (3.0, -1.0, 2.0)
    plane.rotation_euler = Euler((0.7, -0.3, 2.1))
    plane.scale = (1.7, 0.6, 2.5)  # non-uniform
    size = (64, 32)
    rng = np.random.default_rng(3)
    local = rng.uniform((-1, -0.5), (1, 0.5), (50, 2))
    pixels, inside = st.project_to_image(plane, size, _world(plane, local, z=0.05))
    np.testing.assert_allclose(pixels, _analytic_pixels(plane, local, size), atol=1e-3)
    assert inside.all()


def test_points_off_the_plane_extrapolate_and_are_flagged(st, plane):
    size = (64, 32)
    local = np.array([(1.5, 0), (-1.2, 0.7), (0, -0.9), (0.5, 0.2)])
    pixels, inside = st.project_to_image(plane, size, _world(plane, local, z=0.01))
    assert inside.tolist() == [False, False, False, True]
    # Off the plane the image's pixel grid simply continues.
    np.testing.assert_allclose(pixels, _analytic_pixels(plane, local, size), atol=1e-3)


def test_projection_through_a_hand_made_mesh_with_rotated_uvs(st, addon):
    """A subdivided plane whose UVs are rotated 90°: the general (BVH + barycentric) path."""
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=3, y_subdivisions=4, size=2)
    grid = bpy.context.active_object
    uv = grid.data.uv_layers.active.data
    for loop in grid.data.loops:
        x, y = grid.data.vertices[loop.vertex_index].co.xy
        uv[loop.index].uv = ((y + 1) / 2, 1 - (x + 1) / 2)  # u from y, v from -x
    grid.matrix_world = Matrix.Translation((0, 0, 1)) @ Euler((0.5, 0.5, 0)).to_matrix().to_4x4()
    size = (100, 80)
    local = np.array([(0.1, 0.2), (-0.7, 0.6), (0.95, -0.95)])
    pixels, inside = st.project_to_image(grid, size, _world(grid, local, z=0.02))
    u = (local[:, 1] + 1) / 2
    v = 1 - (local[:, 0] + 1) / 2
    np.testing.assert_allclose(pixels, np.stack([u * 100, (1 - v) * 80], 1), atol=1e-3)
    assert inside.all()


def test_pixels_per_unit(st, plane):
    projector = st.PlaneProjector(plane, (64, 32))
    _, _, tris = projector.project(_world(plane, [(0, 0)]))
    w, _ = _local_size(plane)
    assert projector.pixels_per_unit(tris)[0] == pytest.approx(64 / w)
    assert math.isfinite(projector.pixels_per_unit(tris)[0])
