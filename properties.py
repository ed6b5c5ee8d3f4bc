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
    ("DYNTEX", "Dynamic Texture",
     "Landscapes: each labelled mask (water, clouds, grass, ...) moves like its motion "
     "exemplar, arrows steer it, everything else stays the still"),
    # Appended, so files saved before it existed keep reading WARP and DYNTEX.
    ("POKE", "Sampled (iPOKE)",
     "Faces and bodies: a trained poke model draws several plausible clips for the same pokes; "
     "pick one of the thumbnails, then bake it"),
]

# Explicit numbers: an enum is saved in the .blend as its number, so a file saved before a label
# existed still reads its masks as the labels they had.
CLIP_LABEL = "clip"
MASK_LABELS = [
    ("static", "Static", "Pixels inside the mask do not move", 0),
    ("water", "Water", "Dynamic Texture: flowing water (a river, a lake running to its shore) "
     "from the motion library: the surface and what it reflects travel", 1),
    ("clouds", "Clouds", "Dynamic Texture: drifting clouds from the motion library", 2),
    ("grass", "Grass", "Dynamic Texture: grass or foliage in the wind from the motion library", 3),
    ("waterfall", "Waterfall", "Dynamic Texture: falling water from the motion library", 4),
    (CLIP_LABEL, "Clip File", "Dynamic Texture: moves like a video file (or a folder of frames) "
     "you pick", 5),
    ("ripples", "Ripples", "Dynamic Texture: calm water from the motion library: the reflection "
     "stays, small waves wobble it, smaller towards the mask's top edge (the horizon)", 6),
]

# How the Dynamic Texture engine makes its frames (the job's dyntex.method, scene/job.py
# DYNTEX_METHODS). Explicit numbers: saved files store them; a file saved before the choice
# existed reads ADVECT, the method an artist gets.
DYNTEX_METHODS = [
    ("ADVECT", "Motion (advect)",
     "Moves the still's own pixels along each region's measured motion at full resolution; "
     "arrows on the Pokes layer steer the region they start in, a click pins. Fast", 0),
    ("TWO_STREAM", "Two-stream synthesis (research)",
     "Synthesises every frame by optimisation (VGG and MSOE statistics) at a working size; "
     "slow (minutes to hours)", 1),
]

# Where the Style painting goes (the job's style.where, scene/job.py STYLE_WHERE). Explicit
# numbers: saved files store them.
STYLE_WHERE = [
    ("ALL", "Whole Picture", "The whole still takes on the painting's look", 0),
    ("MASKS", "Masked Regions",
     "Only inside the masks takes on the painting's look (every mask for Dynamic Texture; "
     "the Static masks, the ones they use, for Warp and Sampled), with a soft edge of Feather "
     "pixels; the rest stays the still", 1),
]

OPTIMIZERS = [
    ("LBFGS", "L-BFGS", "The paper's optimiser: fewest iterations for a given quality"),
    ("ADAM", "Adam", "Cheaper steps, needs more of them"),
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


# Blender 4.5+ warns about "//" (blend-relative) paths unless the property says it takes them;
# 4.2 does not know the option.
_BLEND_RELATIVE_PATH = ({"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0)
                        else set())


def _is_grease_pencil(self, obj):
    return obj.type in {"GPENCIL", "GREASEPENCIL"}


def _is_single_picture(self, image):
    """A painting is one picture: not a movie, an image sequence (a take), UDIM tiles or a
    render/viewer result."""
    return image.source in {"FILE", "GENERATED"}


class StillMotionMaskLabel(bpy.types.PropertyGroup):
    """Motion label of the i-th stroke of the Masks layer (by stroke order)."""

    label: EnumProperty(name="Motion", items=MASK_LABELS, default="static")
    clip_path: StringProperty(
        name="Clip",
        description="Video file or folder of frames whose motion this region copies",
        subtype="FILE_PATH",
        options=_BLEND_RELATIVE_PATH,
    )


class StillMotionDyntexSettings(bpy.types.PropertyGroup):
    """Dynamic Texture engine settings (docs/JOB.md, "dyntex"); defaults are the engine's.
    Everything but method and refine configures the two-stream method only; refine is Motion
    (advect)'s refiner, which also reads Working Size (size)."""

    method: EnumProperty(name="Method", items=DYNTEX_METHODS, default="ADVECT")
    refine: IntProperty(
        name="Refine Iterations",
        description="Motion (advect) only: two-stream iterations started from the advected "
                    "clip at Working Size, adding what moving the still's pixels cannot "
                    "(clouds changing shape, sparkle on water); their change is added to each "
                    "full-resolution frame inside the regions (frame 1 and everything outside "
                    "stay the still). Slow: each iteration costs about one two-stream "
                    "iteration (tens of seconds to minutes for 48 frames at 256 px on a "
                    "laptop CPU). 0: none. A Preview never refines",
        default=0, min=0, max=50,
    )
    style_image: PointerProperty(
        name="Style Stream",
        type=bpy.types.Image,
        description="Two-stream synthesis only (research): a painting whose statistics the "
                    "optimiser matches inside the moving regions, as a third stream (weight: "
                    "Style Stream λ7). For a painted look with any engine use Style instead",
    )
    size: IntProperty(
        name="Working Size",
        description="Longer side in pixels the motion is synthesised at (Two-stream, and "
                    "Motion (advect)'s Refine Iterations); frames are written at the still's "
                    "resolution. Time grows with its square",
        default=256, min=32, soft_max=512, max=2048, subtype="PIXEL",
    )
    iterations: IntProperty(
        name="Iterations", description="Optimiser steps per level (and per region)",
        default=100, min=1, soft_max=500, max=10000,
    )
    levels: IntProperty(
        name="Levels", description="Coarse-to-fine pyramid levels (1: working size only)",
        default=1, min=1, max=4,
    )
    optimizer: EnumProperty(name="Optimizer", items=OPTIMIZERS, default="LBFGS")
    lambda_style: FloatProperty(
        name="Appearance Style (λ3)",
        description="Keeps the still's own texture statistics (Gram matrices) inside each "
                    "region",
        default=1.0, min=0.0, soft_max=10.0,
    )
    lambda_l2: FloatProperty(
        name="Layout L2 (λ4)",
        description="Keeps the still's layout inside the region (features, not only "
                    "statistics); 0.1 suits clouds and wheat, rivers and waterfalls like more",
        default=0.0, min=0.0, soft_max=10.0,
    )
    lambda_app: FloatProperty(
        name="Appearance (λ5)", description="Weight of the appearance term (λ3 + λ4 together)",
        default=1.0, min=0.0, soft_max=10.0,
    )
    lambda_dyn: FloatProperty(
        name="Dynamics (λ6)", description="Weight of the motion term (MSOE statistics of the "
                                          "exemplar clip); the research report used 10, "
                                          "which here lets motion override appearance "
                                          "(docs/dyntex.md)",
        default=1.0, min=0.0, soft_max=100.0,
    )
    motion_contrast: FloatProperty(
        name="Motion Contrast", description="Share of the motion term that compares motion "
                                            "with the frame held still: keeps a flat sky from "
                                            "flickering; 0 gives the research report's loss, "
                                            "which can freeze less (docs/dyntex.md)",
        default=0.5, min=0.0, max=1.0, subtype="FACTOR",
    )
    lambda_paint: FloatProperty(
        name="Style Stream (λ7)", description="Weight of the style stream's statistics "
                                              "(needs a Style Stream image)",
        default=0.1, min=0.0, soft_max=10.0,
    )


# Blender keeps only pointers to the strings of a dynamic enum's items: the lists handed out
# must stay referenced from Python, or the menu shows garbage. One list per distinct content.
_model_items_kept = {}


def _model_items(self, context):
    from .bake import models

    context = context or bpy.context
    choices = models.listed_choices(context)
    if self.model_file not in choices:  # a model that was removed or renamed: still shown
        choices.append(self.model_file)
    paths = [models.model_path(context, choice) for choice in choices]
    key = tuple((choice, str(path), path.is_file()) for choice, path in zip(choices, paths))
    if key not in _model_items_kept:
        items = []
        for number, (choice, path, exists) in enumerate(key):
            missing = "" if exists else " (missing)"
            if not choice:
                note = ((models.shipped_tooltip(choice) or "the model shipped with the "
                         "extension") if exists else "not installed: train a model or pick "
                        "another")
                items.append((models.DEFAULT_ID, models.display_name(choice),
                              f"Shipped default: {note}", "PACKAGE", number))
            elif models.is_shipped_extra(choice):
                what = models.shipped_tooltip(choice)
                items.append((choice, models.display_name(choice) + missing,
                              f"{what} ({path})" if what else f"{path} (shipped)",
                              "PACKAGE" if exists else "ERROR", number))
            else:
                items.append((choice, models.display_name(choice) + missing, path,
                              "FILE_3D" if exists else "ERROR", number))
        _model_items_kept[key] = items
    return _model_items_kept[key]


def _get_model(self):
    for identifier, _name, _text, _icon, number in _model_items(self, bpy.context):
        if identifier == (self.model_file or "DEFAULT"):
            return number
    return 0


def _set_model(self, value):
    for identifier, _name, _text, _icon, number in _model_items(self, bpy.context):
        if number == value:
            self.model_file = "" if identifier == "DEFAULT" else identifier
            return


# The Picture dropdown: the picture nodes of the plane's material (scene/plane.py find_picture),
# kept referenced like the model list above.
_picture_items_kept = {}


def _picture_items(self, context):
    from .scene.plane import find_picture

    picture = find_picture(self.id_data)
    names = [node.name for node in picture.choices] if len(picture.choices) > 1 else []
    key = (tuple((name, node.image.name) for name, node in zip(names, picture.choices)),
           picture.ambiguous or not names)
    if key not in _picture_items_kept:
        items = []
        if key[1]:
            items.append(("", "Pick the picture", "Two or more Image Texture nodes feed the "
                          "material's colour: pick the one that shows your picture", "ERROR"))
        for name, image in key[0]:
            items.append((name, f"{name} ({image})", f"The Image Texture node '{name}', which "
                          f"shows '{image}'", "NODE_TEXTURE"))
        _picture_items_kept[key] = [item + (number,) for number, item in enumerate(items)]
    return _picture_items_kept[key]


def _get_picture(self):
    for identifier, _name, _text, _icon, number in _picture_items(self, None):
        if identifier == self.picture_node:
            return number
    return 0


def _set_picture(self, value):
    for identifier, _name, _text, _icon, number in _picture_items(self, None):
        if number == value:
            self.picture_node = identifier
            return


class StillMotionPokePart(bpy.types.PropertyGroup):
    """One poke of the last Sample run and the facial part the engine found it drives."""

    number: IntProperty(name="Poke", description="The poke's place on the Pokes layer (1: first)",
                        min=1)
    part: StringProperty(name="Part", description="Engine name of the part ('mouth'); empty "
                                                  "when no part is near")
    pin: BoolProperty(name="Pin", description="A click without a drag: this spot holds still")


class StillMotionPokeSettings(bpy.types.PropertyGroup):
    """Sampled (iPOKE) engine settings (docs/JOB.md, "poke") and the thumbnail strip last made
    for this plane."""

    # The choice is stored as text naming a file (bake/models.py: "" = shipped default,
    # "shipped/<name>" another shipped model, a bare name the models folder), not as the enum's
    # number: the list changes with the models folder, and a number would then point at
    # another model.
    model_file: StringProperty(name="Model File", options={"HIDDEN"})
    model: EnumProperty(
        name="Model",
        description="Poke model to sample: one shipped with the extension or one trained with "
                    "Train from Clip (the models folder of the add-on's preferences)",
        items=_model_items, get=_get_model, set=_set_model,
    )
    samples: IntProperty(
        name="Samples", description="How many different clips Sample draws for these pokes",
        default=4, min=1, max=16,
    )
    temperature: FloatProperty(
        name="Temperature",
        description="1: motion as varied as the model learnt; lower: tamer, more alike clips",
        default=1.0, min=0.05, max=10.0, soft_max=2.0,
    )
    sample: IntProperty(
        name="Chosen Sample", description="Which sample Bake renders (0 is the first)",
        default=0, min=0, max=15,
    )
    guide: BoolProperty(
        name="Land Pokes Exactly",
        description="Motion-space models only (trained on motion, not pixels): correct each "
                    "sample so every poke ends exactly where it was dragged and every pin stays "
                    "put. Off: the model's own motion. Pixel models ignore it; the face-mesh "
                    "model always lands pokes exactly",
        default=True,
    )
    snap: BoolProperty(
        name="Snap to Face Parts",
        description="iPOKE models: move a poke that starts near an eye, a brow, the nose, the "
                    "mouth or the jaw onto that part; after Sample the panel lists which part "
                    "each poke drives (the face is found by MediaPipe, part of Install Engine). "
                    "The face-mesh model needs no snapping: it moves the face's own landmarks",
        default=True,
    )
    background: BoolProperty(
        name="Hold Background",
        description="Keep everything but the person still (a person mask found by MediaPipe). "
                    "Static masks always hold; a mask with a motion label frees what it covers",
        default=True,
    )
    # The strip of the last Sample run: where its thumbnails are and what they were made from.
    thumbnails_dir: StringProperty(options={"HIDDEN"})
    thumbnails_count: IntProperty(options={"HIDDEN"})
    thumbnails_key: StringProperty(options={"HIDDEN"})
    thumbnails_made_with: StringProperty(options={"HIDDEN"})
    # What the engine said about the pokes before it sampled that strip (its "parts" line):
    # parts_key is bake.poke.parts_key of the strokes they were made from, "" when none came.
    parts: CollectionProperty(type=StillMotionPokePart, options={"HIDDEN"})
    parts_face: BoolProperty(options={"HIDDEN"})
    parts_key: StringProperty(options={"HIDDEN"})


class StillMotionTrainSettings(bpy.types.PropertyGroup):
    """Train from Clip: what the engine trains a poke model on (kept with the scene)."""

    clip: PointerProperty(
        name="Movie Clip", type=bpy.types.MovieClip,
        description="A Movie Clip of the person (its video file is used); takes precedence "
                    "over Video File",
    )
    video_path: StringProperty(
        name="Video File", description="A video of the person, when no Movie Clip is set",
        subtype="FILE_PATH", options=_BLEND_RELATIVE_PATH,
    )
    model_name: StringProperty(
        name="Model Name",
        description="File name of the new model in the models folder (empty: the video's name)",
    )
    minutes: FloatProperty(
        name="Minutes", description="Training time budget, shared by the three stages",
        default=30.0, min=1.0, soft_max=600.0, max=100000.0,
    )
    face_crop: BoolProperty(
        name="Face Crop",
        description="Train on a square that follows the face (for portraits); off: the centre "
                    "square",
        default=True,
    )
    stride: IntProperty(
        name="Frame Stride",
        description="Use every n-th frame inside a training clip: 2 or 3 for slow motion",
        default=1, min=1, max=8,
    )
    motion_space: BoolProperty(
        name="Motion Space",
        description="Learn the clip's motion instead of its pixels: samples warp the still "
                    "itself, so faces stay sharp at any resolution (off: iPOKE's pixel model)",
        default=True,
    )
    face_parts: BoolProperty(
        name="Face Parts",
        description="Give the model the eyes, brows and mouth (MediaPipe) and train half its "
                    "pokes on them, so blinks and lips are learned, not only head turns",
        default=True,
    )


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
    # Style (every engine): the still takes on a painting's look once, then the engine moves
    # the stylised still (the job's "style" object, scene/job.py).
    style_image: PointerProperty(
        name="Painting",
        type=bpy.types.Image,
        poll=_is_single_picture,
        description="A painting whose colours and brush textures the still takes on before it "
                    "moves, with every engine. Empty: no style, the still as it is",
    )
    style_strength: FloatProperty(
        name="Strength",
        description="How far the still takes on the painting: 0 leaves the still as it is, 1 "
                    "gives it the painting's colours and textures in full",
        default=0.8, min=0.0, max=1.0, subtype="FACTOR",
    )
    style_where: EnumProperty(
        name="Where",
        description="Paint the whole picture, or only inside the masks",
        items=STYLE_WHERE, default="ALL",
    )
    style_feather: FloatProperty(
        name="Feather",
        description="Soft edge of the painted regions in image pixels: the painting fades into "
                    "the still over this width (0: automatic, from the picture's size)",
        default=0.0, min=0.0, soft_max=200.0, subtype="PIXEL",
    )
    dyntex: PointerProperty(type=StillMotionDyntexSettings)
    poke: PointerProperty(type=StillMotionPokeSettings)
    mask_labels: CollectionProperty(type=StillMotionMaskLabel)
    mask_labels_index: IntProperty()
    # The still the plane showed before its first bake, so "Revert to Still" can bring it back.
    original_image: PointerProperty(type=bpy.types.Image)
    # Name of the Image Texture node that shows the picture, when the material has more than
    # one feeding its colour (scene/plane.py find_picture); "" = not picked.
    picture_node: StringProperty(name="Picture Node", options={"HIDDEN"})
    picture: EnumProperty(
        name="Picture",
        description="The Image Texture node that shows your picture: the material has more "
                    "than one feeding its colour. Bake animates it and shows the take on it",
        items=_picture_items, get=_get_picture, set=_set_picture,
    )
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


classes = (StillMotionMaskLabel, StillMotionDyntexSettings, StillMotionPokePart,
           StillMotionPokeSettings, StillMotionTrainSettings, StillMotionPlaneSettings,
           StillMotionRuntime)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Object.stillmotion = PointerProperty(type=StillMotionPlaneSettings)
    bpy.types.WindowManager.stillmotion = PointerProperty(type=StillMotionRuntime)
    bpy.types.Scene.stillmotion_train = PointerProperty(type=StillMotionTrainSettings)


def unregister():
    del bpy.types.Scene.stillmotion_train
    del bpy.types.WindowManager.stillmotion
    del bpy.types.Object.stillmotion
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
