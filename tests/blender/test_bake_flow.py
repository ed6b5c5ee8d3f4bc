"""A bake through the real engine process, as the Bake button runs it (background mode).

Scene: a 64 x 48 colour checker on an image plane, one poke pushing the left part to the right
and one static mask over the right part, 4 frames. Small on purpose: the Blender suite runs once
per supported Blender version.
"""

import hashlib
import os
import pathlib

import bpy
import numpy as np
import pytest

from conftest import save_test_image

WIDTH, HEIGHT = 64, 48
FRAMES = 4
POKE = ((16.0, 24.0), (26.0, 24.0))  # image pixels, y down: push the left part right by 10 px
MASK = [(40.0, 6.0), (60.0, 6.0), (60.0, 42.0), (40.0, 42.0)]  # static: the right part
POKED = (slice(16, 32), slice(10, 30))  # rows, cols (top-down) where the poke moves pixels
PINNED = (slice(12, 36), slice(46, 56))  # well inside the mask, past its feathered edge


def pixel_to_world(plane, xy):
    """Image pixel (x right, y down) -> world point on an Import-as-Planes plane."""
    from mathutils import Vector

    xs = [v.co.x for v in plane.data.vertices]
    ys = [v.co.y for v in plane.data.vertices]
    u, v = xy[0] / WIDTH, 1.0 - xy[1] / HEIGHT
    local = Vector((min(xs) + u * (max(xs) - min(xs)), min(ys) + v * (max(ys) - min(ys)), 0.0))
    return plane.matrix_world @ local


def make_plane(folder, name="still.png", size=(WIDTH, HEIGHT)):
    still = save_test_image(pathlib.Path(folder) / name, *size)
    bpy.ops.image.import_as_mesh_planes(
        files=[{"name": still.name}], directory=str(still.parent) + os.sep, shader="SHADELESS")
    return bpy.context.active_object


def make_scene(folder, *, frames=FRAMES, with_mask=True, name="still.png", size=(WIDTH, HEIGHT)):
    """Plane + strokes; the .blend is saved into folder so takes land in //stillmotion/."""
    from bl_ext.user_default.stillmotion.scene import strokes

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plane = make_plane(folder, name, size)
    settings = plane.stillmotion
    settings.frames = frames
    settings.falloff = 12.0
    settings.feather = 2.0
    settings.easing = "linear"
    gp = strokes.ensure_strokes_object(bpy.context, plane)
    strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in POKE])
    if with_mask:
        strokes.add_stroke(gp, "Masks", [pixel_to_world(plane, p) for p in MASK])
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "shot.blend"))
    return bpy.data.objects[plane.name]


def image_node(plane):
    (node,) = [n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE"]
    return node


def folder_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(folder).rglob("*")):
        digest.update(path.name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def session(addon):
    from bl_ext.user_default.stillmotion.bake import session

    return session


def test_bake_rebake_and_revert(session, tmp_path):
    plane = make_scene(tmp_path / "Prøject")
    node = image_node(plane)
    still = node.image
    scene = bpy.context.scene
    runtime = bpy.context.window_manager.stillmotion
    runtime.last_error = "from an earlier failed bake"  # a good bake clears it

    result = session.run_sync(bpy.context, plane)

    take1 = tmp_path / "Prøject" / "stillmotion" / plane.name / "take_001"
    assert pathlib.Path(result.output) == take1
    assert (result.take, result.number, result.frames, result.preview) == ("take_001", 1, 4, False)
    assert sorted(p.name for p in take1.iterdir()) == [f"frame_{i:04d}.png" for i in range(1, 5)]
    assert node.image.name == result.image and node.image.source == "SEQUENCE"
    assert node.image.filepath == "//stillmotion/" + plane.name + "/take_001/frame_0001.png"
    assert node.image.colorspace_settings.name == still.colorspace_settings.name
    user = node.image_user
    assert (user.frame_start, user.frame_offset, user.frame_duration) == (scene.frame_start, 0, 4)
    assert user.use_cyclic is False and user.use_auto_refresh is True
    assert plane.stillmotion.original_image == still
    assert plane.stillmotion.take == 1
    assert not runtime.running and runtime.stage == "done" and runtime.progress == 1.0
    assert runtime.last_error == ""
    assert not session.is_running()

    # A second take: new folder, the first one untouched, the node follows the new settings.
    take1_digest = folder_digest(take1)
    first_image = node.image.name
    plane.stillmotion.frames = 3
    plane.stillmotion.loop = True
    scene.frame_start = 10
    result2 = session.run_sync(bpy.context, plane)
    assert result2.take == "take_002" and result2.frames == 3
    assert folder_digest(take1) == take1_digest
    assert node.image.name == result2.image != first_image
    assert first_image not in bpy.data.images  # nobody showed it any more; its files stay
    user = node.image_user
    assert (user.frame_start, user.frame_duration, user.use_cyclic) == (10, 3, True)
    assert plane.stillmotion.original_image == still  # the still, not take 1
    assert plane.stillmotion.take == 2

    # Revert to Still: the operator (the plane is found even with the strokes object active).
    assert bpy.ops.stillmotion.revert_to_still() == {"FINISHED"}
    assert node.image == still
    assert (user.frame_start, user.frame_duration, user.use_cyclic) == (1, 1, False)
    assert result2.image not in bpy.data.images
    assert sorted(p.name for p in take1.parent.iterdir()) == ["take_001", "take_002"]


def test_preview_operator_in_background_mode(session, tmp_path):
    """Bake button, Preview, in background mode: non-ASCII names, EXR frames, a warning."""
    from bl_ext.user_default.stillmotion.scene import strokes

    plane = make_scene(tmp_path / "Prøject", name="Ölgemälde 日本.png")
    assert plane.name == "Ölgemälde 日本"
    settings = plane.stillmotion
    settings.preview_size = 32
    settings.output_format = "EXR"
    off_plane = [pixel_to_world(plane, (-200.0, -200.0)), pixel_to_world(plane, (-150.0, -200.0))]
    strokes.add_stroke(settings.strokes, "Pokes", off_plane)
    bpy.context.view_layer.objects.active = plane
    assert bpy.ops.stillmotion.bake(preview=True) == {"FINISHED"}  # runs synchronously

    runtime = bpy.context.window_manager.stillmotion
    assert "1 stroke outside the plane was ignored" in runtime.last_warning
    node = image_node(plane)
    preview = tmp_path / "Prøject" / "stillmotion" / plane.name / "preview_001"
    frames = sorted(preview.iterdir())
    assert [p.name for p in frames] == [f"frame_{i:04d}.exr" for i in range(1, FRAMES + 1)]
    probe = bpy.data.images.load(str(frames[0]), check_existing=False)
    assert tuple(probe.size) == (32, 24)  # the longer side scaled to Preview Size
    linear_default = probe.colorspace_settings.name  # what Blender gives a float file
    bpy.data.images.remove(probe)
    image = node.image
    assert image.source == "SEQUENCE" and node.image_user.frame_duration == FRAMES
    assert image.colorspace_settings.name == linear_default != "Non-Color"
    assert image.colorspace_settings.name != settings.original_image.colorspace_settings.name
    assert settings.take == 0  # a preview is not a take
    assert not (preview.parent / "take_001").exists()


def _setup_camera(plane):
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("TestCamera")
    cam_data.type = "ORTHO"
    xs = [v.co.x for v in plane.data.vertices]
    cam_data.ortho_scale = max(xs) - min(xs)
    cam = bpy.data.objects.new("TestCamera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = plane.matrix_world.translation + plane.matrix_world.to_3x3().col[2] * 2.0
    cam.rotation_euler = plane.matrix_world.to_euler()
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01  # one texel per pixel, no blur across the poke's edge
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"


def _render(folder, frame):
    scene = bpy.context.scene
    scene.frame_set(frame)
    scene.render.filepath = str(folder / f"render_{frame:04d}.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath, check_existing=False)
    pixels = np.empty(WIDTH * HEIGHT * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return np.flipud(pixels.reshape(HEIGHT, WIDTH, 4))[..., :3]  # top row first


def test_cycles_render_moves_at_the_poke_and_not_in_the_mask(session, tmp_path):
    plane = make_scene(tmp_path)
    session.run_sync(bpy.context, plane)
    _setup_camera(plane)

    first = _render(tmp_path, 1)
    last = _render(tmp_path, FRAMES)
    held = _render(tmp_path, FRAMES + 3)  # past the end: the last frame holds (not cyclic)

    moved = np.abs(last[POKED] - first[POKED]).max()
    assert moved > 0.2, f"the poked region did not change between frames ({moved})"
    assert np.array_equal(last[PINNED], first[PINNED]), "pixels inside the static mask moved"
    assert np.array_equal(held, last)
    # The render shows the texture, not magenta "missing image" pixels.
    assert not np.all(np.isclose(first.reshape(-1, 3), [1.0, 0.0, 1.0], atol=0.02), axis=1).any()
