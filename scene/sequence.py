"""Baked frames -> image-sequence texture on the plane's own Image Texture node, and back.

The bake replaces the image on the SAME node the still was on, so whatever the artist built
around it (mapping, colour ramps, the shader) keeps working. The still is remembered on the plane
(`plane.stillmotion.original_image`, a counted reference, so it survives while unused) for
"Revert to Still".

Frame mapping (docs/ARCHITECTURE.md, Blender notes; checked with Cycles renders): file number =
clamp(scene_frame - frame_start + 1, <= frame_duration) + frame_offset. With frame_start = the
scene's first frame and frame_offset = 0, the first scene frame shows frame_0001; after the last
file the texture holds it, or starts over when cyclic.
"""

import pathlib

import bpy

from .errors import StillMotionError

# Custom property on images this module creates: marks a take (and which one), so a take is
# never mistaken for the artist's still.
TAKE_KEY = "stillmotion_take"
FRAME_GLOB = "frame_0001.*"


def is_take_image(image):
    return image is not None and image.get(TAKE_KEY) is not None


def first_frame_file(frames_dir):
    """frames_dir/frame_0001.<png|exr>, or StillMotionError when the bake left no frames."""
    frames_dir = pathlib.Path(frames_dir)
    found = sorted(p for p in frames_dir.glob(FRAME_GLOB) if p.suffix.lower() in {".png", ".exr"})
    if not found:
        raise StillMotionError(f"No frames in {frames_dir}: the bake did not finish; bake again")
    return found[0]


def count_frames(frames_dir, suffix):
    return sum(1 for _ in pathlib.Path(frames_dir).glob(f"frame_[0-9][0-9][0-9][0-9]*{suffix}"))


def install_sequence(plane, target, frames_dir, n_frames, *, loop, scene, name=None,
                     filepath=None):
    """Show the baked frames on target.node as an image sequence; returns the new Image.

    plane: the mesh object; target: scene.plane.Target(plane, material, node, image) found for it;
    frames_dir: the finished take folder (frame_0001.* ...); n_frames: how many frames it holds.
    filepath: how the image should refer to frame_0001 (e.g. blend-relative); default absolute.
    """
    first = first_frame_file(frames_dir)
    if n_frames < 1:
        raise StillMotionError(f"No frames in {frames_dir}: bake again")
    node = target.node
    previous = node.image
    settings = plane.stillmotion
    # Remember the still on the first bake, or when the artist put a new still on the node since.
    if previous is not None and not is_take_image(previous):
        settings.original_image = previous
    still = settings.original_image

    try:
        image = bpy.data.images.load(str(first), check_existing=False)
    except RuntimeError as exc:
        raise StillMotionError(f"Cannot load the baked frame {first}: {exc}") from None
    image.name = name or f"{plane.name} {pathlib.Path(frames_dir).name}"
    image[TAKE_KEY] = pathlib.Path(frames_dir).name
    if filepath:
        image.filepath = filepath
    _match_still(image, still, first.suffix.lower())
    image.source = "SEQUENCE"

    node.image = image
    user = node.image_user
    user.frame_start = scene.frame_start
    user.frame_offset = 0
    user.frame_duration = n_frames
    user.use_cyclic = bool(loop)
    # Sequences need auto refresh to follow the timeline in the viewport (Import Images as
    # Planes forces it for the same reason).
    user.use_auto_refresh = True

    _drop_if_unused(previous)
    return image


def _match_still(image, still, suffix):
    """Colour space and alpha of the frames, from the still they were made from.

    The engine (engine/frames.py) writes PNG frames sRGB-encoded and EXR frames linear,
    converting when the still's data is the other kind. So: PNG frames of an 8/16-bit still keep
    the still's colour space (same encoding); PNG frames of a float still are sRGB; EXR frames
    keep Blender's default for float files (the scene linear space), or a float still's own
    linear space. Non-Color is never right for a picture.
    """
    if still is None:
        return
    colorspace = still.colorspace_settings.name
    if suffix == ".exr":
        if still.is_float and colorspace and colorspace != "Non-Color":
            _set_colorspace(image, colorspace)
        return
    _set_colorspace(image, "sRGB" if still.is_float else colorspace)
    image.alpha_mode = still.alpha_mode


def _set_colorspace(image, name):
    if not name:
        return
    try:
        image.colorspace_settings.name = name
    except TypeError:
        pass  # a name from another OCIO config: keep Blender's default for the file


def _drop_if_unused(image):
    """A previous take nobody shows any more is removed from the .blend (its files stay on disk
    so it can be loaded again); an artist's image is never removed."""
    if image is not None and is_take_image(image) and image.users == 0:
        bpy.data.images.remove(image)


def take_nodes(plane):
    """Image Texture nodes in the plane's materials that currently show a take."""
    found = []
    for slot in plane.material_slots:
        material = slot.material
        if material is None or material.node_tree is None:
            continue
        for node in material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and is_take_image(node.image):
                found.append(node)
    return found


def revert_to_still(plane):
    """Put the remembered still back on every node of the plane that shows a take; returns the
    number of nodes changed. Take images nobody shows any more leave the .blend (files stay)."""
    still = plane.stillmotion.original_image
    if still is None:
        raise StillMotionError(f"{plane.name} has not been baked: there is no still to go back to")
    changed = 0
    for node in take_nodes(plane):
        previous = node.image
        node.image = still
        user = node.image_user
        user.frame_start = 1
        user.frame_offset = 0
        user.frame_duration = 1
        user.use_cyclic = False
        user.use_auto_refresh = False
        _drop_if_unused(previous)
        changed += 1
    return changed
