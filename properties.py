"""Blender properties: what the artist sets, stored where it belongs.

Per-plane settings (engine, frames, mask labels, the still to revert to) live on the plane
object, so they travel with it, undo with it and are saved in the .blend. The state of a running
bake (progress, last error) is runtime-only and lives on the window manager: it is not saved and
undo never rewinds it.
"""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

ENGINES = [
    ("WARP", "Warp", "Deterministic: pokes push the image, masks pin it; full resolution, instant"),
]

MASK_LABELS = [
    ("static", "Static", "Pixels inside the mask do not move"),
]

EASINGS = [
    ("ease_in_out", "Ease In/Out", "Motion starts and ends gently"),
    ("linear", "Linear", "Constant speed"),
]

OUTPUT_FORMATS = [
    ("PNG8", "PNG 8-bit", "Small files, enough for most stills"),
    ("PNG16", "PNG 16-bit", "No banding on smooth gradients"),
    ("EXR", "OpenEXR", "Float frames for compositing"),
]


def _is_grease_pencil(self, obj):
    return obj.type in {"GPENCIL", "GREASEPENCIL"}


class StillMotionMaskLabel(bpy.types.PropertyGroup):
    """Motion label of the i-th stroke of the Masks layer (by stroke order)."""

    label: EnumProperty(name="Motion", items=MASK_LABELS, default="static")


class StillMotionPlaneSettings(bpy.types.PropertyGroup):
    strokes: PointerProperty(
        name="Strokes",
        type=bpy.types.Object,
        poll=_is_grease_pencil,
        description="Grease-pencil object whose Pokes and Masks layers drive the bake",
    )
    engine: EnumProperty(name="Engine", items=ENGINES, default="WARP")
    frames: IntProperty(name="Frames", default=24, min=2, soft_max=250, max=10000)
    fps: IntProperty(name="FPS", default=24, min=1, max=240)
    seed: IntProperty(name="Seed", default=0, min=0)
    falloff: FloatProperty(
        name="Fall-off",
        description="Radius of each poke's influence in image pixels (0: from the stroke width)",
        default=0.0,
        min=0.0,
        soft_max=2000.0,
        subtype="PIXEL",
    )
    feather: FloatProperty(
        name="Mask Feather",
        description="Soft edge of static masks in image pixels",
        default=8.0,
        min=0.0,
        soft_max=200.0,
        subtype="PIXEL",
    )
    easing: EnumProperty(name="Easing", items=EASINGS, default="ease_in_out")
    loop: BoolProperty(
        name="Seamless Loop",
        description="Motion returns to the still so the clip loops without a jump",
        default=False,
    )
    output_format: EnumProperty(name="Format", items=OUTPUT_FORMATS, default="PNG8")
    preview_size: IntProperty(
        name="Preview Size",
        description="Longer side in pixels of a preview bake",
        default=256,
        min=32,
        max=2048,
    )
    mask_labels: CollectionProperty(type=StillMotionMaskLabel)
    mask_labels_index: IntProperty()
    # The still the plane showed before its first bake, so "Revert to Still" can bring it back.
    original_image: PointerProperty(type=bpy.types.Image)
    take: IntProperty(name="Take", description="Number of the last take baked", default=0, min=0)


class StillMotionRuntime(bpy.types.PropertyGroup):
    """State of the bake in progress, shown by the panel; never saved."""

    running: BoolProperty(default=False)
    plane_name: StringProperty()
    stage: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty()
    last_error: StringProperty()
    last_warning: StringProperty()


classes = (StillMotionMaskLabel, StillMotionPlaneSettings, StillMotionRuntime)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Object.stillmotion = PointerProperty(type=StillMotionPlaneSettings)
    bpy.types.WindowManager.stillmotion = PointerProperty(type=StillMotionRuntime)


def unregister():
    del bpy.types.WindowManager.stillmotion
    del bpy.types.Object.stillmotion
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
