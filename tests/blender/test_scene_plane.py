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


# -- which Image Texture node is the picture (issue 16) ------------------------------------------


def _iap_plane(tmp_path, shader, name="still.png"):
    """An Images as Planes plane with the given shader (SHADELESS: the IAP_SHADELESS group
    mixed with a Transparent BSDF by the image's Alpha; EMISSION: Principled Emission Color)."""
    path = save_test_image(tmp_path / name, 16, 12)
    bpy.ops.image.import_as_mesh_planes(files=[{"name": path.name}],
                                        directory=str(path.parent) + os.sep, shader=shader,
                                        use_transparency=True)
    plane = bpy.context.active_object
    (node,) = [n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE"]
    return plane, plane.active_material, node


def _extra_image_node(tmp_path, mat, name, size=(6, 6)):
    """A second Image Texture node (its own picture file) in mat, not linked yet."""
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.name = name
    node.image = _load(save_test_image(tmp_path / f"{name}.png", *size))
    return node


def _mix_node(tree, kind):
    """A colour mix of the given kind: the newer ShaderNodeMix (RGBA) or the legacy MixRGB;
    returns (node, factor, a, b) sockets."""
    mix = tree.nodes.new(kind)
    if kind == "ShaderNodeMix":
        mix.data_type = "RGBA"
        ins = {s.identifier: s for s in mix.inputs}
        return mix, ins["Factor_Float"], ins["A_Color"], ins["B_Color"], mix.outputs["Result"]
    return mix, mix.inputs["Fac"], mix.inputs["Color1"], mix.inputs["Color2"], mix.outputs[0]


@pytest.mark.parametrize("shader, output", [("SHADELESS", "Alpha"), ("SHADELESS", "Color"),
                                            ("EMISSION", "Alpha")])
def test_imported_plane_with_a_second_image_on_the_mix_factor(sm, tmp_path, shader, output):
    """Images as Planes' shadeless setup (the image's Alpha mixes the IAP_SHADELESS group with
    a Transparent BSDF) with a matte image feeding that Mix Shader's Fac instead, or the
    emission setup with the matte on Alpha: the picture is still the image that feeds the
    colour, not the matte the walk meets first."""
    plane, mat, picture = _iap_plane(tmp_path, shader)
    links = mat.node_tree.links
    matte = _extra_image_node(tmp_path, mat, "Matte")
    if shader == "SHADELESS":
        (mix,) = [n for n in mat.node_tree.nodes if n.type == "MIX_SHADER"]
        links.new(matte.outputs[output], mix.inputs[0])  # replaces the picture's Alpha link
    else:
        (bsdf,) = [n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"]
        links.new(matte.outputs[output], bsdf.inputs["Alpha"])
    assert sm.plane.find_image_node(plane) == (mat, picture)
    target = sm.plane.find_target(plane)
    assert target.node == picture and target.image == picture.image
    assert target.size == (16, 12)
    found = sm.plane.find_picture(plane)
    assert found.node == picture and found.choices == [picture] and not found.ambiguous


@pytest.mark.parametrize("kind", ["ShaderNodeMix", "ShaderNodeMixRGB"])
def test_image_on_a_mix_nodes_factor_is_not_the_picture(sm, tmp_path, kind):
    """picture -> Mix A, a matte -> Mix Factor, Mix -> Base Color: the matte is a mask."""
    image = _load(save_test_image(tmp_path / "shown.png", 8, 8))
    plane, mat, picture = _hand_made_plane(image, link=False)
    tree = mat.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    matte = _extra_image_node(tmp_path, mat, "Matte")
    mix, factor, a, _b, result = _mix_node(tree, kind)
    tree.links.new(matte.outputs["Color"], factor)
    tree.links.new(picture.outputs["Color"], a)
    tree.links.new(result, bsdf.inputs["Base Color"])
    assert sm.plane.find_target(plane).node == picture
    assert sm.plane.find_picture(plane).choices == [picture]


@pytest.mark.parametrize("where", ["Roughness", "Normal", "Alpha"])
def test_image_on_roughness_or_normal_is_not_the_picture(sm, tmp_path, where):
    """The picture reaches Base Color through a colour node (one link further than the map on
    Roughness / Normal / Alpha, which the old nearest-first search took)."""
    image = _load(save_test_image(tmp_path / "shown.png", 8, 8))
    plane, mat, picture = _hand_made_plane(image, link=False)
    tree = mat.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    hue = tree.nodes.new("ShaderNodeHueSaturation")
    tree.links.new(picture.outputs["Color"], hue.inputs["Color"])
    tree.links.new(hue.outputs["Color"], bsdf.inputs["Base Color"])
    other = _extra_image_node(tmp_path, mat, "Map")
    if where == "Normal":
        normal_map = tree.nodes.new("ShaderNodeNormalMap")
        tree.links.new(other.outputs["Color"], normal_map.inputs["Color"])
        tree.links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
        # and one straight on Normal too (Blender takes a colour there)
        tree.links.new(_extra_image_node(tmp_path, mat, "Bump").outputs["Color"],
                       bsdf.inputs["Coat Normal"])
    else:
        tree.links.new(other.outputs["Color"], bsdf.inputs[where])
    assert sm.plane.find_target(plane).node == picture
    found = sm.plane.find_picture(plane)
    assert found.node == picture and found.choices == [picture] and not found.ambiguous


def test_picture_through_a_mix_shader_and_a_node_group(sm, tmp_path):
    """Shader inputs of a Mix Shader are followed both ways, and into a group; its Fac is not."""
    image = _load(save_test_image(tmp_path / "shown.png", 8, 8))
    plane, mat, picture = _hand_made_plane(image, link=False)
    tree = mat.node_tree
    output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
    group = bpy.data.node_groups.new("Tint", "ShaderNodeTree")
    group.interface.new_socket("Shader", in_out="OUTPUT", socket_type="NodeSocketShader")
    group.interface.new_socket("Paint", in_out="INPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Amount", in_out="INPUT", socket_type="NodeSocketColor")
    g_in, g_out = group.nodes.new("NodeGroupInput"), group.nodes.new("NodeGroupOutput")
    emission = group.nodes.new("ShaderNodeEmission")
    group.links.new(g_in.outputs[0], emission.inputs["Color"])
    group.links.new(g_in.outputs[1], emission.inputs["Strength"])  # not a colour input
    group.links.new(emission.outputs[0], g_out.inputs[0])
    node = tree.nodes.new("ShaderNodeGroup")
    node.node_tree = group
    mix = tree.nodes.new("ShaderNodeMixShader")
    tree.links.new(_extra_image_node(tmp_path, mat, "Fac").outputs["Color"], mix.inputs[0])
    tree.links.new(tree.nodes.new("ShaderNodeBsdfTransparent").outputs[0], mix.inputs[1])
    tree.links.new(node.outputs[0], mix.inputs[2])
    tree.links.new(picture.outputs["Color"], node.inputs[0])
    tree.links.new(_extra_image_node(tmp_path, mat, "Strength").outputs["Color"], node.inputs[1])
    tree.links.new(mix.outputs[0], output.inputs["Surface"])
    assert sm.plane.find_target(plane).node == picture
    assert sm.plane.picture_nodes(mat) == [picture]


def _two_pictures(tmp_path):
    """A hand-made plane whose Base Color is a Mix of two pictures: which one is meant?"""
    image = _load(save_test_image(tmp_path / "left.png", 8, 8))
    plane, mat, left = _hand_made_plane(image, link=False)
    left.name = "Left"
    tree = mat.node_tree
    right = _extra_image_node(tmp_path, mat, "Right", size=(10, 6))
    mix, _factor, a, b, result = _mix_node(tree, "ShaderNodeMix")
    tree.links.new(left.outputs["Color"], a)
    tree.links.new(right.outputs["Color"], b)
    tree.links.new(result, next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
                   .inputs["Base Color"])
    return plane, mat, left, right


def _label_text(log):
    """The panel's labels as one text (long messages are wrapped over several labels)."""
    return " ".join(entry[1] for entry in log if entry[0] == "label")


def test_two_pictures_must_be_picked(sm, tmp_path):
    """Two images mixed into Base Color: Bake refuses until the artist picks one under Picture
    in the panel; the pick is saved with the plane in the .blend."""
    from test_bake_operator import draw_panel

    main = importlib.import_module(ADDON + ".panels.main")
    plane, mat, left, right = _two_pictures(tmp_path)
    bpy.context.view_layer.objects.active = plane
    found = sm.plane.find_picture(plane)
    assert found.ambiguous and found.choices == [left, right]
    with pytest.raises(sm.errors.StillMotionError,
                       match=r"'Hand' has two picture nodes \('Left' and 'Right'\).*pick one "
                             "under Picture in the StillMotion panel"):
        sm.plane.find_target(plane)
    settings = plane.stillmotion
    assert settings.picture_node == ""
    log = draw_panel(type("M", (), {"main": main}))
    assert ("prop", "picture") in log
    assert "pick the one that shows your picture" in _label_text(log)

    # Bake says the same (the operator reports it; the panel shows it as the last error).
    with pytest.raises(RuntimeError, match="two picture nodes"):
        bpy.ops.stillmotion.bake()
    assert "pick one under Picture" in bpy.context.window_manager.stillmotion.last_error

    settings.picture = "Right"
    assert settings.picture_node == "Right" and settings.picture == "Right"
    found = sm.plane.find_picture(plane)
    assert found.node == right and not found.ambiguous and found.choices == [left, right]
    target = sm.plane.find_target(plane)
    assert target.node == right and target.image == right.image and target.size == (10, 6)
    log = draw_panel(type("M", (), {"main": main}))
    assert ("prop", "picture") in log  # still there, to change the pick
    assert "pick the one" not in _label_text(log)
    settings.picture = "Left"
    assert sm.plane.find_target(plane).node == left

    # Saved in the .blend with the plane.
    blend, name = tmp_path / "picked.blend", plane.name
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    plane = bpy.data.objects[name]
    assert plane.stillmotion.picture_node == "Left"
    assert sm.plane.find_target(plane).node.name == "Left"


def test_a_stale_pick_is_ambiguous_again(sm, tmp_path):
    """A pick naming a node that is gone (renamed, deleted) is no pick; with one picture left
    there is nothing to pick."""
    plane, mat, left, right = _two_pictures(tmp_path)
    plane.stillmotion.picture_node = "Right"
    right.name = "Renamed"
    assert sm.plane.find_picture(plane).ambiguous
    mat.node_tree.nodes.remove(right)
    found = sm.plane.find_picture(plane)
    assert found.node == left and not found.ambiguous
    assert sm.plane.find_target(plane).node == left


def test_the_take_goes_onto_the_picked_node(sm, tmp_path):
    """install_sequence shows the frames on the node find_target picked, and afterwards the
    still is still read from the same node (now showing the take)."""
    sequence = importlib.import_module(ADDON + ".scene.sequence")
    plane, mat, left, right = _two_pictures(tmp_path)
    still = right.image
    plane.stillmotion.picture = "Right"
    frames = tmp_path / "take_001"
    frames.mkdir()
    for i in (1, 2):
        save_test_image(frames / f"frame_{i:04d}.png", 10, 6)
    target = sm.plane.find_target(plane)
    image = sequence.install_sequence(plane, target, frames, 2, loop=False,
                                      scene=bpy.context.scene)
    assert right.image == image and left.image != image
    assert right.image.source == "SEQUENCE" and left.image.source == "FILE"
    assert plane.stillmotion.original_image == still
    again = sm.plane.find_target(plane)
    assert again.node == right and again.image == still


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


def test_a_bake_animates_and_replaces_the_picked_picture(sm, tmp_path):
    """Through the real engine: the Images as Planes shadeless plane of test_bake_flow with a
    matte on its Mix Shader's Fac and a second picture mixed into its colour, that one picked.
    The bake starts from the picked still and its take lands on that node; the matte and the
    other picture keep their images."""
    from test_bake_flow import make_scene

    session = importlib.import_module(ADDON + ".bake.session")
    plane = make_scene(tmp_path / "shot")
    mat = plane.active_material
    tree = mat.node_tree
    first = next(n for n in tree.nodes if n.type == "TEX_IMAGE")
    (group,) = [n for n in tree.nodes if n.type == "GROUP"]
    (mix_shader,) = [n for n in tree.nodes if n.type == "MIX_SHADER"]
    matte = _extra_image_node(tmp_path, mat, "Matte")
    tree.links.new(matte.outputs["Color"], mix_shader.inputs[0])
    overlay = _extra_image_node(tmp_path, mat, "Overlay", size=(64, 48))
    mix, _factor, a, b, result = _mix_node(tree, "ShaderNodeMixRGB")
    tree.links.new(first.outputs["Color"], a)
    tree.links.new(overlay.outputs["Color"], b)
    tree.links.new(result, group.inputs[0])
    images = {n.name: n.image for n in (first, matte, overlay)}
    with pytest.raises(sm.errors.StillMotionError, match="two picture nodes"):
        session.run_sync(bpy.context, plane)
    plane.stillmotion.picture = "Overlay"

    result = session.run_sync(bpy.context, plane)

    assert overlay.image.name == result.image and overlay.image.source == "SEQUENCE"
    assert plane.stillmotion.original_image == images["Overlay"]
    assert first.image == images[first.name] and matte.image == images["Matte"]
    assert sm.plane.find_target(plane).image == images["Overlay"]
