"""scene/plane.py: finding the still on an image plane, and handing it to the engine as a file."""

import importlib
import os

import bpy
import numpy as np
import pytest

from conftest import ADDON, import_image_plane, save_test_image


@pytest.fixture
def sm(addon):
    class Modules:
        plane = importlib.import_module(ADDON + ".scene.plane")
        raster = importlib.import_module(ADDON + ".scene.raster")
        errors = importlib.import_module(ADDON + ".scene.errors")

    return Modules


def _hand_made_plane(image, *, link=True):
    """A plane built by hand (not Import Images as Planes): primitive plane + node material."""
    bpy.ops.mesh.primitive_plane_add(size=2)
    plane = bpy.context.active_object
    mat = bpy.data.materials.new("Hand")
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    if link:
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    plane.data.materials.append(mat)
    return plane, mat, tex


def _pixels(image):
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)


def _load(path):
    return bpy.data.images.load(str(path), check_existing=False)


def _srgb_to_linear(v):
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


# -- find_target ------------------------------------------------------------------------------


def test_imported_plane_is_found(sm, tmp_path):
    path = save_test_image(tmp_path / "still.png", 40, 30)
    plane = import_image_plane(path)
    target = sm.plane.find_target(plane)
    assert target.plane == plane
    assert target.node.type == "TEX_IMAGE" and target.node.image == target.image
    assert target.material == plane.active_material
    assert target.size == (40, 30)
    assert sm.plane.export_still(target.image, tmp_path / "job") == path


def test_linked_node_is_preferred(sm, tmp_path):
    shown = _load(save_test_image(tmp_path / "shown.png", 8, 8))
    stray = _load(save_test_image(tmp_path / "stray.png", 4, 4))
    plane, mat, tex = _hand_made_plane(shown)
    other = mat.node_tree.nodes.new("ShaderNodeTexImage")  # not connected to anything
    other.image = stray
    mat.node_tree.nodes.active = other
    target = sm.plane.find_target(plane)
    assert target.node == tex and target.image == shown


@pytest.mark.parametrize(
    "case, words",
    [
        ("none", "Select the image plane"),
        ("empty", "not an image plane"),
        ("no_material", "has no material"),
        ("no_node", "no Image Texture node"),
        ("node_without_image", "has no image"),
        ("no_uv", "no UV map"),
    ],
)
def test_bad_targets_say_what_to_do(sm, tmp_path, case, words):
    image = _load(save_test_image(tmp_path / "s.png", 4, 4))
    if case == "none":
        obj = None
    elif case == "empty":
        obj = bpy.data.objects.new("Empty", None)
        bpy.context.scene.collection.objects.link(obj)
    elif case == "no_material":
        bpy.ops.mesh.primitive_plane_add()
        obj = bpy.context.active_object
    elif case == "no_node":
        obj, mat, tex = _hand_made_plane(image)
        mat.node_tree.nodes.remove(tex)
    elif case == "node_without_image":
        obj, mat, tex = _hand_made_plane(image)
        tex.image = None
    elif case == "no_uv":
        obj, _, _ = _hand_made_plane(image)
        obj.data.uv_layers.remove(obj.data.uv_layers[0])
    with pytest.raises(sm.errors.StillMotionError, match=words) as info:
        sm.plane.find_target(obj)
    assert ":" in str(info.value)  # every message goes on to say what to do


def test_missing_file(sm, tmp_path):
    path = save_test_image(tmp_path / "gone.png", 6, 6)
    plane = import_image_plane(path)
    os.remove(path)
    with pytest.raises(sm.errors.StillMotionError, match="missing.*Relink"):
        sm.plane.find_target(plane)


def test_unreadable_file(sm, tmp_path):
    path = save_test_image(tmp_path / "broken.png", 6, 6)
    plane = import_image_plane(path)
    path.write_bytes(b"not a picture" * 10)
    plane.active_material.node_tree.nodes["Image Texture"].image.reload()
    with pytest.raises(sm.errors.StillMotionError, match="cannot read"):
        sm.plane.find_target(plane)


def _fake_bake(tmp_path, plane, mark_take=True):
    """What a bake leaves on the node: an image sequence (scene/sequence.py's job)."""
    frames = tmp_path / "take_001"
    frames.mkdir()
    for i in (1, 2):
        save_test_image(frames / f"frame_{i:04d}.png", 12, 10)
    seq = _load(frames / "frame_0001.png")
    seq.source = "SEQUENCE"
    if mark_take:
        seq["stillmotion_take"] = 1
    node = sm_node(plane)
    plane.stillmotion.original_image = node.image
    node.image = seq
    return seq


def sm_node(plane):
    return next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")


def test_after_a_bake_the_original_still_is_found(sm, tmp_path):
    path = save_test_image(tmp_path / "still.png", 12, 10)
    plane = import_image_plane(path)
    still = sm_node(plane).image
    seq = _fake_bake(tmp_path, plane)
    target = sm.plane.find_target(plane)
    assert target.image == still and target.node.image == seq
    assert target.size == (12, 10)
    assert sm.plane.export_still(target.image, tmp_path / "job") == path


def test_sequence_without_still_is_refused(sm, tmp_path):
    plane = import_image_plane(save_test_image(tmp_path / "still.png", 12, 10))
    _fake_bake(tmp_path, plane, mark_take=False)
    plane.stillmotion.original_image = None
    with pytest.raises(sm.errors.StillMotionError, match="image sequence.*single picture"):
        sm.plane.find_target(plane)


def test_image_size_of_a_sequence(sm, tmp_path):
    plane = import_image_plane(save_test_image(tmp_path / "still.png", 12, 10))
    seq = _fake_bake(tmp_path, plane)
    assert tuple(seq.size) == (0, 0)  # the caveat: Blender has not decoded a frame
    n_images = len(bpy.data.images)
    assert sm.plane.image_size(seq) == (12, 10)
    assert len(bpy.data.images) == n_images


# -- export_still -----------------------------------------------------------------------------


def _snapshot(image):
    return (image.filepath, image.source, image.packed_file is not None, len(bpy.data.images),
            len(bpy.data.textures))


def test_non_ascii_path_passes_through(sm, tmp_path):
    folder = tmp_path / "Bïlder 画像"
    folder.mkdir()
    path = save_test_image(folder / "stïll ñ.png", 16, 8)
    plane = import_image_plane(path)
    target = sm.plane.find_target(plane)
    assert sm.plane.export_still(target.image, tmp_path / "jöb") == path


def test_blend_relative_path_is_made_absolute(sm, tmp_path):
    path = save_test_image(tmp_path / "rel.png", 8, 8)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    plane = import_image_plane(path)
    image = sm.plane.find_target(plane).image
    image.filepath = "//rel.png"
    out = sm.plane.export_still(image, tmp_path / "job")
    assert out.is_absolute() and out == path


def test_packed_image_exports_its_embedded_bytes(sm, tmp_path):
    path = save_test_image(tmp_path / "packed.png", 9, 7)
    original = path.read_bytes()
    plane = import_image_plane(path)
    image = sm.plane.find_target(plane).image
    image.pack()
    os.remove(path)  # packed: the file on disk is no longer needed
    target = sm.plane.find_target(plane)
    before = _snapshot(image)
    out = sm.plane.export_still(target.image, tmp_path / "job")
    assert out == tmp_path / "job" / "still.png"
    assert out.read_bytes() == original
    assert _snapshot(image) == before


@pytest.mark.parametrize("float_buffer", [False, True], ids=["byte", "float"])
def test_generated_image_exports_its_pixels(sm, tmp_path, float_buffer):
    image = bpy.data.images.new("Generated", 17, 5, alpha=True, float_buffer=float_buffer)
    image.generated_type = "COLOR_GRID"
    plane, _, _ = _hand_made_plane(image)
    target = sm.plane.find_target(plane)
    assert target.size == (17, 5)
    before = _snapshot(image)
    out = sm.plane.export_still(image, tmp_path / "job")
    assert _snapshot(image) == before  # no datablock added, image untouched
    assert out.name == "still.png"
    assert out.read_bytes()[24] == (16 if float_buffer else 8)  # PNG bit depth
    back = _load(out)
    try:
        got, want = _pixels(back)[..., :3], _pixels(image)[..., :3]
        if float_buffer:
            # 16-bit sRGB-encoded; Blender linearises it on load.
            np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=2e-4)
        else:
            np.testing.assert_array_equal(np.rint(got * 255), np.rint(want * 255))
    finally:
        bpy.data.images.remove(back)


def test_dirty_image_exports_the_edited_pixels(sm, tmp_path):
    path = save_test_image(tmp_path / "painted.png", 8, 8)
    plane = import_image_plane(path)
    image = sm.plane.find_target(plane).image
    painted = np.zeros((8, 8, 4), np.float32)
    painted[..., 0] = 1.0
    painted[..., 3] = 1.0
    image.pixels.foreach_set(painted.ravel())
    assert image.is_dirty
    out = sm.plane.export_still(image, tmp_path / "job")
    assert out != path and out.parent == tmp_path / "job"
    assert image.filepath == str(path) and image.is_dirty
    back = _load(out)
    try:
        np.testing.assert_array_equal(_pixels(back)[..., :3], painted[..., :3])
    finally:
        bpy.data.images.remove(back)


def test_unreadable_format_is_converted(sm, tmp_path):
    image = bpy.data.images.new("tga", 6, 4)
    image.generated_type = "COLOR_GRID"
    image.filepath_raw = str(tmp_path / "still.tga")
    image.file_format = "TARGA"
    image.save()
    bpy.data.images.remove(image)
    plane = import_image_plane(tmp_path / "still.tga")
    target = sm.plane.find_target(plane)
    out = sm.plane.export_still(target.image, tmp_path / "job")
    assert out == tmp_path / "job" / "still.png"


def _write_test_png(sm, path, kind):
    h, w = 6, 10
    ramp = np.linspace(0, 1, w * h).reshape(h, w)
    if kind == "gray":
        sm.raster.write_png(path, np.rint(ramp * 255).astype(np.uint8))
    elif kind == "rgba":
        rgba = np.rint(np.stack([ramp, 1 - ramp, ramp, 0.5 + ramp / 2], -1) * 255)
        sm.raster.write_png(path, rgba.astype(np.uint8))
    elif kind == "rgb16":
        rgb = np.rint(np.stack([ramp, 1 - ramp, ramp], -1) * 65535)
        sm.raster.write_png(path, rgb.astype(np.uint16))
    return path, (w, h)


@pytest.mark.parametrize("kind", ["gray", "rgba", "rgb16"])
def test_stills_of_every_kind_pass_through(sm, tmp_path, kind):
    path, size = _write_test_png(sm, tmp_path / f"{kind}.png", kind)
    data = path.read_bytes()
    plane = import_image_plane(path)
    target = sm.plane.find_target(plane)
    assert target.size == size
    assert sm.plane.export_still(target.image, tmp_path / "job") == path
    assert path.read_bytes() == data
    # Packed, the same bytes reach the engine: a 16-bit still stays 16-bit.
    target.image.pack()
    out = sm.plane.export_still(target.image, tmp_path / "job")
    assert out.read_bytes() == data


def test_one_pixel_image(sm, tmp_path):
    path = save_test_image(tmp_path / "dot.png", 1, 1)
    plane = import_image_plane(path)
    target = sm.plane.find_target(plane)
    assert target.size == (1, 1)
    generated = bpy.data.images.new("dot", 1, 1)
    out = sm.plane.export_still(generated, tmp_path / "job")
    back = _load(out)
    try:
        assert tuple(back.size) == (1, 1)
    finally:
        bpy.data.images.remove(back)
