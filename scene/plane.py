"""The target of a bake: the image plane, its Image Texture node and the still it shows.

A plane is any mesh whose material has an Image Texture node with an image: what the built-in
File › Import › Images as Planes makes, or one built by hand. The picture is the node that
feeds the shader's colour (find_picture); when two or more do, the artist picks one under Picture
in the panel (``plane.stillmotion.picture_node``). After a bake the node shows the
baked image sequence; the still it came from is kept in ``plane.stillmotion.original_image``,
and that still (not the baked frames) is what every later bake starts from.
"""

import os
import pathlib
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import raster
from .errors import StillMotionError

# Custom property scene/sequence.py puts on the images it creates for a take.
_TAKE_KEY = "stillmotion_take"

# Still formats the engine's reader (OpenCV) opens; anything else is converted to PNG.
ENGINE_READABLE = {
    ".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".exr",
    ".hdr", ".pic", ".pbm", ".pgm", ".ppm", ".pnm", ".pfm", ".jp2", ".sr", ".ras",
}

# Leading bytes of the formats an embedded (packed) file may hold -> extension to save it with.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
    (b"v/1\x01", ".exr"),
    (b"#?RADIANCE", ".hdr"),
    (b"#?RGBE", ".hdr"),
)


@dataclass
class Target:
    """What a bake reads and later changes.

    image is the still to animate: the node's own image, or after a bake (when the node shows
    the baked sequence) the original still. uv_map names the UV layer the node samples with
    ("" = the mesh's render UV map)."""

    plane: bpy.types.Object
    material: bpy.types.Material
    node: bpy.types.Node
    image: bpy.types.Image
    size: tuple = (0, 0)
    uv_map: str = ""
    notes: list = field(default_factory=list)


def is_take_image(image) -> bool:
    """True for an image a bake made (a baked sequence), never for the artist's still."""
    return image is not None and (image.get(_TAKE_KEY) is not None or image.source == "SEQUENCE")


def image_filepath(image) -> pathlib.Path:
    """Absolute path of the image's file (library-relative paths resolved), normalised."""
    path = bpy.path.abspath(image.filepath, library=image.library)
    return pathlib.Path(os.path.normpath(path))


def missing_file(image):
    """The path to show the artist when `image` should come from a file that is not there
    (neither packed into the .blend nor edited in Blender), else None."""
    if image.source in {"FILE", "SEQUENCE"} and image.packed_file is None and not image.is_dirty:
        if not image.filepath or not image_filepath(image).is_file():
            return image.filepath or "(no file path)"
    return None


def unreadable(image):
    """Blender read no pixels of `image` (a damaged file, a format it does not open)."""
    width, height = image_size(image)[:2]
    return width <= 0 or height <= 0


def image_size(image) -> tuple:
    """(width, height) in pixels, or (0, 0) when the image cannot be read.

    Image.size is (0, 0) for an image sequence until Blender decodes a frame for display, and
    the API has no way to make it decode one, so for a sequence (or any file image that reports
    no size) the file the image points at is loaded into a throw-away datablock and measured."""
    w, h = (int(v) for v in image.size)
    if w > 0 and h > 0:
        return w, h
    if image.source == "GENERATED":
        return int(image.generated_width), int(image.generated_height)
    if image.source not in {"FILE", "SEQUENCE"} or image.packed_file is not None:
        return w, h
    path = image_filepath(image)
    if not path.is_file():
        return 0, 0
    probe = None
    try:
        probe = bpy.data.images.load(str(path), check_existing=False)
        return tuple(int(v) for v in probe.size)
    except RuntimeError:
        return 0, 0
    finally:
        if probe is not None:
            bpy.data.images.remove(probe)


def _upstream_nodes(output_node):
    """Nodes feeding output_node, nearest first (breadth-first along links)."""
    seen, order, queue = set(), [], [output_node]
    while queue:
        node = queue.pop(0)
        for socket in node.inputs:
            for link in socket.links:
                src = link.from_node
                if src.name not in seen:
                    seen.add(src.name)
                    order.append(src)
                    queue.append(src)
    return order


def _active_output(tree, kind="OUTPUT_MATERIAL"):
    outputs = [n for n in tree.nodes if n.type == kind]
    for node in outputs:
        if node.is_active_output:
            return node
    return outputs[0] if outputs else None


# -- which Image Texture node is the picture -----------------------------------------------------
#
# The picture is the Image Texture node whose Color output reaches a colour input of the shader
# the active Material Output shows: Principled Base Color or Emission Color, the Color of a
# Diffuse, Emission or Background shader, through Mix Shader / Add Shader shader inputs, node
# groups (Images as Planes' shadeless group), reroutes and the colour inputs of colour nodes
# (A/B of a Mix, Color1/Color2 of a legacy MixRGB, Hue/Saturation's Color ...). Factor, Alpha,
# Normal, Roughness and the like are never followed: an image there is a mask or a map.

# Colour inputs of a shader node that carry the colour it shows ("Emission": Principled < 4.0).
_SHADER_COLOUR_INPUTS = {"Base Color", "Color", "Emission Color", "Emission"}


def _links_into(socket):
    return [link for link in socket.links
            if link.is_valid and not getattr(link, "is_muted", False)]


def _mix_operand(socket):
    """A or B of a Mix node, whatever its data type (A_Color, B_Float ... ; name "A"/"B")."""
    return socket.name in {"A", "B"} or socket.identifier.split("_")[0] in {"A", "B"}


def _inputs_followed(node, out_socket, strict):
    """The inputs of node through which its output out_socket carries the picture."""
    if node.mute:
        return [link.from_socket for link in node.internal_links
                if link.to_socket.identifier == out_socket.identifier]
    if node.type == "REROUTE":
        return list(node.inputs[:1])
    inputs = [s for s in node.inputs if getattr(s, "enabled", True)]
    if out_socket.type == "SHADER":
        return [s for s in inputs if s.type == "SHADER"
                or (s.type == "RGBA" and s.name in _SHADER_COLOUR_INPUTS)]
    if not strict:
        return inputs
    if node.type == "MIX":
        return [s for s in inputs if _mix_operand(s)]
    return [s for s in inputs if s.type == "RGBA"]


def _group_inputs_reaching(tree, identifier, strict):
    """Identifiers of a node group's inputs that reach its output `identifier` as colour."""
    output = _active_output(tree, "GROUP_OUTPUT") if tree is not None else None
    inputs = output.inputs if output is not None else []
    socket = next((s for s in inputs if s.identifier == identifier), None)
    reached = []
    if socket is not None:
        _walk(socket, [], reached, set(), strict)
    return reached


def _walk(socket, hits, group_inputs, seen, strict):
    """Follow the links into socket. Image Texture nodes reached through their Color output go
    to hits (any output when not strict); Group Input outputs reached, to group_inputs."""
    for link in _links_into(socket):
        node, out = link.from_node, link.from_socket
        key = (node.as_pointer(), out.identifier)
        if key in seen:
            continue
        seen.add(key)
        if node.type == "TEX_IMAGE":
            if not node.mute and (out.identifier == "Color" or not strict):
                hits.append(node)
        elif node.type == "GROUP_INPUT":
            group_inputs.append(out.identifier)
        elif node.type == "GROUP" and not node.mute:
            for identifier in _group_inputs_reaching(node.node_tree, out.identifier, strict):
                inner = next((s for s in node.inputs if s.identifier == identifier), None)
                if inner is not None:
                    _walk(inner, hits, group_inputs, seen, strict)
        else:
            for inner in _inputs_followed(node, out, strict):
                _walk(inner, hits, group_inputs, seen, strict)


def _shader_images(material, strict=True):
    """Image Texture nodes of the material's own tree that feed the colour its active Material
    Output's Surface shows (strict), or that feed that colour through any input (not strict:
    through a Color Ramp's Fac, say), in the order the shader reaches them."""
    tree = material.node_tree if material is not None else None
    output = _active_output(tree) if tree is not None else None
    surface = output.inputs.get("Surface") if output is not None else None
    if surface is None:
        return []
    hits = []
    _walk(surface, hits, [], set(), strict)
    own = {n.as_pointer() for n in tree.nodes}
    return [n for n in hits if n.as_pointer() in own]  # not the nodes inside groups


def picture_nodes(material):
    """The Image Texture nodes of the material that show its colour (see above), in the order
    the shader reaches them; more than one with an image means the artist has to pick."""
    return _shader_images(material, strict=True)


def _image_nodes(material):
    """Image Texture nodes of a material, those that show its colour first, then those linked
    into its shader (nearest first), then the rest."""
    tree = material.node_tree if material is not None else None
    if tree is None:
        return []
    nodes = [n for n in tree.nodes if n.type == "TEX_IMAGE"]
    output = _active_output(tree)
    linked = [n for n in _upstream_nodes(output) if n.type == "TEX_IMAGE"] if output else []
    ordered = []
    for node in _shader_images(material, strict=False) + linked + nodes:
        if node not in ordered:
            ordered.append(node)
    return ordered


def _materials(obj):
    """The object's materials, the active one first, without repeats or empty slots."""
    found = []
    active = obj.active_material
    if active is not None:
        found.append(active)
    for slot in obj.material_slots:
        if slot.material is not None and slot.material not in found:
            found.append(slot.material)
    return found


@dataclass
class Picture:
    """Which Image Texture node of a plane shows its picture.

    choices: the picture nodes (with an image) of material to pick from; more than one and
    none picked (obj.stillmotion.picture_node) is ambiguous: node is then the first of them,
    and Bake refuses until the artist picks."""

    material: object = None
    node: object = None
    choices: list = field(default_factory=list)
    ambiguous: bool = False


def find_picture(obj) -> Picture:
    """The plane's picture node, by role: in the first material (the active one first) with a
    picture node holding an image, the one the artist picked (obj.stillmotion.picture_node) or
    the only one. Only when no material has such a node: the first Image Texture node with an
    image of a material without picture nodes (linked into the shader first); a node without
    an image comes last."""
    if obj is None:
        return Picture()
    settings = getattr(obj, "stillmotion", None)
    picked = settings.picture_node if settings is not None else ""
    materials = _materials(obj)
    for material in materials:
        choices = [n for n in picture_nodes(material) if n.image is not None]
        if choices:
            node = next((n for n in choices if n.name == picked), None)
            if node is not None:
                return Picture(material, node, choices)
            return Picture(material, choices[0], choices, ambiguous=len(choices) > 1)
    first_empty = None
    for material in materials:
        pictures = picture_nodes(material)
        nodes = pictures or _image_nodes(material)
        with_image = [n for n in nodes if n.image is not None]
        if with_image and not pictures:
            return Picture(material, with_image[0], with_image[:1])
        if nodes and first_empty is None:
            first_empty = Picture(material, nodes[0])
    return first_empty or Picture()


def ambiguity_message(picture) -> str:
    """What Bake says when picture.ambiguous: which nodes, and where to pick one."""
    names = [f"'{n.name}'" for n in picture.choices]
    count = {2: "two", 3: "three", 4: "four"}.get(len(names), str(len(names)))
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    return (f"The material '{picture.material.name}' has {count} picture nodes ({listed}) "
            "that feed its colour: pick one under Picture in the StillMotion panel")


def find_image_node(obj):
    """(material, node) of the Image Texture node the plane shows, or (None, None): the
    picture node of find_picture (the first one when the artist has yet to pick)."""
    picture = find_picture(obj)
    return picture.material, picture.node


def has_image(obj) -> bool:
    """Cheap check for operator polls: a mesh with an Image Texture node holding an image."""
    if obj is None or obj.type != "MESH":
        return False
    _, node = find_image_node(obj)
    return node is not None and node.image is not None


def plane_of(obj):
    """The plane a StillMotion command acts on: obj itself when it is a mesh, or, while the
    artist draws on a strokes object, the mesh whose strokes it is."""
    if obj is None:
        return None
    if obj.type == "MESH":
        return obj
    if obj.type in {"GPENCIL", "GREASEPENCIL"}:
        for candidate in bpy.data.objects:
            if candidate.type == "MESH" and candidate.stillmotion.strokes == obj:
                return candidate
    return None


def _uv_map_of(node):
    """UV layer name the node samples with ("" = default) and a note when it is not plain UVs."""
    vector = node.inputs.get("Vector")
    if vector is None or not vector.is_linked:
        return "", None
    src = vector.links[0].from_node
    if src.type == "UVMAP":
        return src.uv_map, None
    if src.type == "TEX_COORD" and vector.links[0].from_socket.name == "UV":
        return "", None
    return "", (f"the Image Texture node's Vector input comes from '{src.name}'; StillMotion "
                "places strokes by the plain UV map, so they may land off where the picture "
                "shows them")


def find_target(obj) -> Target:
    """The bake target of obj (normally context.active_object). Raises StillMotionError with
    what to do when obj is not a usable image plane."""
    if obj is None:
        raise StillMotionError(
            "Select the image plane first: click the plane that shows your picture")
    if obj.type != "MESH":
        raise StillMotionError(
            f"'{obj.name}' is a {obj.type.replace('_', ' ').lower()} object, not an image plane: "
            "select the plane that shows your picture (File › Import › Images as Planes "
            "makes one)")
    if len(obj.data.polygons) == 0:
        raise StillMotionError(
            f"'{obj.name}' has no faces to show a picture on: select the image plane")
    materials = _materials(obj)
    if not materials:
        raise StillMotionError(
            f"'{obj.name}' has no material: import your picture with File › Import › Images as "
            "Planes, or give the plane a material with an Image Texture node")
    picture = find_picture(obj)
    material, node = picture.material, picture.node
    if node is None:
        raise StillMotionError(
            f"The material '{materials[0].name}' has no Image Texture node: add one "
            "(Shift A › Texture › Image Texture), open your picture in it and connect it to "
            "the shader")
    if picture.ambiguous:
        raise StillMotionError(ambiguity_message(picture))
    settings = obj.stillmotion
    shown = node.image
    if shown is None:
        raise StillMotionError(
            f"The Image Texture node '{node.name}' in '{material.name}' has no image: open "
            "your picture in it")
    still = shown
    if is_take_image(shown):
        # The node shows a bake; animate the still it was made from, not the baked frames.
        still = settings.original_image
        if still is None:
            kind = "a baked take" if shown.get(_TAKE_KEY) is not None else "an image sequence"
            raise StillMotionError(
                f"The plane shows {kind} ('{shown.name}') and StillMotion does not know the "
                "still it came from: open a single picture in the Image Texture node")
    if still.source == "MOVIE":
        raise StillMotionError(
            f"'{still.name}' is a movie: StillMotion animates a still picture; open a single "
            "image in the Image Texture node")
    if still.source == "TILED":
        raise StillMotionError(
            f"'{still.name}' is a UDIM tiled image: open a single picture (one tile) in the "
            "Image Texture node")
    if still.source == "VIEWER":
        raise StillMotionError(
            f"'{still.name}' is a viewer image: save it as a file and open that in the Image "
            "Texture node")
    shown_path = missing_file(still)
    if shown_path is not None:
        raise StillMotionError(
            f"The picture file of '{still.name}' is missing: {shown_path}. Relink it "
            "(Image Editor › Image › Replace) or pack it into the .blend "
            "(File › External Data › Pack Resources)")
    size = image_size(still)  # once: for a sequence it loads a frame
    if size[0] <= 0 or size[1] <= 0:
        where = f" ({still.filepath})" if still.filepath else ""
        raise StillMotionError(
            f"Blender cannot read the picture '{still.name}'{where}: the file may be damaged "
            "or in a format Blender does not open; save it as PNG or JPEG and open it again")
    uv_map, note = _uv_map_of(node)
    mesh_uvs = obj.data.uv_layers
    if len(mesh_uvs) == 0:
        raise StillMotionError(
            f"'{obj.name}' has no UV map, so StillMotion cannot tell where the picture lies on "
            "it: unwrap it (Edit Mode, U › Unwrap) or import the picture with Images as Planes")
    if uv_map and mesh_uvs.get(uv_map) is None:
        raise StillMotionError(
            f"The UV Map node feeding '{node.name}' names '{uv_map}', which '{obj.name}' does "
            "not have: pick one of its UV maps in that node")
    return Target(obj, material, node, still, size, uv_map, [note] if note else [])


# -- handing the still to the engine -------------------------------------------------------------


def _sniff(data: bytes):
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def _clear_old_exports(dest: pathlib.Path, stem: str):
    for old in dest.glob(f"{stem}.*"):
        if old.is_file():
            old.unlink()


def _srgb_encode(linear):
    """Scene-linear -> sRGB transfer function (IEC 61966-2-1), for float images saved as PNG."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _pixels_top_down(image):
    """The image's pixels as float32 (H, W, C), top row first. Byte images give their stored
    values / 255 exactly; float images their scene-linear, premultiplied buffer."""
    w, h = image_size(image)
    channels = int(image.channels)
    buf = np.empty(w * h * channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, channels)[::-1]


def _write_pixels_png(image, path: pathlib.Path) -> pathlib.Path:
    px = np.array(_pixels_top_down(image))  # a copy: edited in place below
    channels = px.shape[2]
    if channels == 1:
        px = np.repeat(px, 3, axis=2)
    elif channels == 2:
        px = np.concatenate([np.repeat(px[..., :1], 3, axis=2), px[..., 1:]], axis=2)
    if image.is_float:
        if px.shape[2] == 4:
            # Blender keeps float buffers premultiplied; PNG stores straight alpha.
            alpha = px[..., 3:4]
            np.divide(px[..., :3], alpha, out=px[..., :3], where=(alpha > 0) & (alpha < 1))
        if not image.colorspace_settings.is_data:
            px[..., :3] = _srgb_encode(px[..., :3])
        full = 65535
        out = np.rint(np.clip(px, 0.0, 1.0) * full).astype(np.uint16)
    else:
        full = 255
        out = np.rint(np.clip(px, 0.0, 1.0) * full).astype(np.uint8)
    if out.shape[2] == 4 and (out[..., 3] == full).all():
        out = out[..., :3]  # opaque: plain RGB is simpler for every reader
    return raster.write_png(path, np.ascontiguousarray(out))


def export_still(image, dest_dir) -> pathlib.Path:
    """The plane's still for the engine: export_image(image, dest_dir, "still")."""
    return export_image(image, dest_dir, "still")


def export_image(image, dest_dir, stem) -> pathlib.Path:
    """A file the engine can read that holds exactly the pixels the artist sees.

    - a plain file on disk, not edited since loading, in a format the engine reads: its own
      absolute path, untouched (16-bit PNGs, EXRs and the like keep every bit);
    - a packed (embedded) picture, not edited: its embedded bytes, written as
      dest_dir/<stem>.<ext>;
    - a generated or edited (dirty) picture, or a format the engine cannot read: its pixels,
      written as dest_dir/<stem>.png (8-bit; 16-bit sRGB-encoded for float images).

    Nothing is added to bpy.data and the image itself (filepath, source, packing) is not
    changed: the pixels are copied out with foreach_get and encoded here, because Image.save
    would turn a generated image into a file image and colour-manages float images."""
    dest = pathlib.Path(dest_dir)
    packed = image.packed_file
    if image.source == "FILE" and packed is None and not image.is_dirty:
        path = image_filepath(image)
        if not path.is_file():
            raise StillMotionError(
                f"The picture file of '{image.name}' is missing: {image.filepath}. Relink it "
                "or pack it into the .blend")
        if path.suffix.lower() in ENGINE_READABLE:
            return path
    dest.mkdir(parents=True, exist_ok=True)
    _clear_old_exports(dest, stem)
    if packed is not None and not image.is_dirty:
        data = packed.data
        ext = _sniff(data)
        if ext is not None:
            path = dest / f"{stem}{ext}"
            path.write_bytes(data)
            return path
    if image_size(image)[0] <= 0:
        raise StillMotionError(
            f"Blender cannot read the picture '{image.name}': open it again or pick another")
    return _write_pixels_png(image, dest / f"{stem}.png")
