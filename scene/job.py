"""Plane + strokes -> a job folder the engine runs (docs/JOB.md): job.json, the still, masks.

What a stroke means:
- a **poke** is a stroke on the Pokes layer: its first point is where the picture is grabbed,
  its last point where that spot should move to. A poke whose first point is off the picture is
  ignored (and counted in a warning); its last point may leave the picture.
- a **mask** is a closed stroke on the Masks layer, filled (nonzero rule) at the still's
  resolution. "Closed" means the stroke is cyclic (legacy use_cyclic / GPv3 "cyclic"
  attribute: Toggle Cyclic in Edit Mode) OR it ends near where it started: the gap between its
  last and first point is at most CLOSE_GAP (15 %) of the length drawn. Masks are clipped to the
  picture; a mask entirely off it is ignored and counted in the warning. The i-th mask stroke
  takes plane.stillmotion.mask_labels[i] (by stroke order; "static" when unset).
A poke's fall-off radius is plane.stillmotion.falloff when set; at 0 it is the stroke's drawn
width in image pixels, so a broad brush pushes a broad area.

What each engine takes:
- Warp: pokes, and the `static` masks (a mask with a motion label is left out with a warning).
- Dynamic Texture: the masks; a motion label (water, clouds, grass, waterfall) is written as
  the word, "Clip File" as the clip's absolute path, and "dyntex" with the method. Motion
  (advect, the default) also takes the pokes as the warp engine does: an arrow steers the motion
  region it starts in (one starting outside every motion mask is refused), a click without a
  drag is a pin; Refine Iterations above 0 adds "refine" and its Working Size as "size"; its
  Preview is scaled to Preview Size like Warp's and never refines. Two-stream synthesis does
  not read pokes (a warning counts them) and its Preview bakes at most DYNTEX_PREVIEW's working
  size, frames and iterations.
- Sampled (iPOKE): the pokes (at least one; a poke may be a click without a drag: "hold still
  here") and the `static` masks, as for Warp, plus the "poke" object: the chosen model (null for
  the shipped default), samples K, the chosen sample, temperature, `thumbnails` for the
  Sample button's strip, and the face options `guide`, `snap`, `background`. A missing model
  file stops before the engine starts.

Every engine: the Style painting (plane.stillmotion.style_*) as the top-level "style" object
when a painting is set and Strength is above 0: the engine stylises the still once, then moves
the stylised still. "masks" styles inside the masks the job carries (any label; for Warp and
Sampled those are the Static masks), so with no mask in the job it is refused.
"""

import json
import math
import pathlib
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import raster, strokes
from .errors import StillMotionError
from .plane import export_image, export_still, find_target, missing_file, unreadable

JOB_VERSION = 1
CLOSE_GAP = 0.15  # a mask is closed when its end-start gap is at most this share of its length
MIN_COMPACTNESS = 1e-4  # filling no pixel, area / perimeter² below this is a line (circle: 0.08)
DEFAULT_FALLOFF_SHARE = 0.1  # warp.falloff when none is set: this share of the longer side
DEFAULT_LABEL = "static"
CLIP_LABEL = "clip"  # properties.CLIP_LABEL: the mask moves like a video file the artist picks
LABEL_NAMES = {"static": "Static", "water": "Water", "clouds": "Clouds", "grass": "Grass",
               "waterfall": "Waterfall", "ripples": "Ripples", CLIP_LABEL: "Clip File"}
# The panel's Dynamic Texture methods -> the job's dyntex.method (properties.DYNTEX_METHODS).
DYNTEX_METHODS = {"ADVECT": "advect", "TWO_STREAM": "two-stream"}
# A two-stream dyntex Preview: small enough to come back in a minute or two on a laptop CPU,
# so the artist checks regions and labels before a bake that takes many minutes.
DYNTEX_PREVIEW = {"size": 96, "frames": 6, "iterations": 5}
MIN_WORK = 32  # engine/dyntex/synthesis.py MIN_WORK: MSOE's 5-level pyramid needs 2^5 pixels
ENGINES_WITH_STATIC_MASKS_ONLY = {"WARP", "POKE"}  # a motion label means nothing to them
ENGINE_NAMES = {"WARP": "Warp", "DYNTEX": "Dynamic Texture", "POKE": "Sampled (iPOKE)"}
# The panel's Style › Where -> the job's style.where (properties.STYLE_WHERE).
STYLE_WHERE = {"ALL": "all", "MASKS": "masks"}
# The Style painting is exported as painting.<ext> (export_image), apart from the two-stream
# style stream's style.<ext>: exporting one must not delete the other.
STYLE_STEM = "painting"
_NOT_A_PICTURE = {"MOVIE": "a movie", "SEQUENCE": "an image sequence",
                  "TILED": "a UDIM tiled image", "VIEWER": "a render or viewer result"}


@dataclass
class JobPlan:
    job_path: pathlib.Path
    job: dict
    warnings: list = field(default_factory=list)
    image_size: tuple = (0, 0)
    # job["pokes"][i] was drawn as stroke poke_strokes[i] (1-based) of the Pokes layer: strokes
    # off the picture are left out, so the engine's poke numbers are not the artist's.
    poke_strokes: list = field(default_factory=list)


def _plural(n, one, many):
    return one if n == 1 else many


def _check_finite(stroke, kind):
    if not np.isfinite(stroke.points).all():
        raise StillMotionError(
            f"{kind} {stroke.index + 1} has invalid coordinates (NaN or infinite): delete it and "
            "draw it again")


def _path_length(xy):
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) if len(xy) > 1 else 0.0


def _read_layer(gp_obj, layer_name, warnings):
    found = strokes.read_stroke_data(gp_obj, layer_name)
    if not found:
        layer = gp_obj.data.layers.get(layer_name)
        if layer is not None and not strokes.layer_visible(layer):
            hidden = strokes.read_stroke_data(gp_obj, layer_name, include_hidden=True)
            if hidden:
                warnings.append(f"the {layer_name} layer is hidden, so its {len(hidden)} "
                                f"{_plural(len(hidden), 'stroke was', 'strokes were')} not used")
    return found


def _pokes(raw, projector, size, falloff, warnings, allow_still=False):
    """-> (list of poke dicts, their 1-based stroke numbers, number ignored because they start
    off the picture). allow_still: a poke without a drag is kept (the poke engine reads it as a
    pin, "hold still here")."""
    w, h = size
    min_length = min(0.5, 0.01 * max(w, h))
    pokes, numbers, outside = [], [], 0
    for stroke in raw:
        _check_finite(stroke, "Poke")
        if len(stroke.points) < 2:
            raise StillMotionError(
                f"Poke {stroke.index + 1} is a single point: draw a poke as a drag from the "
                "spot that should move to where it should go")
        ends = stroke.points[[0, -1]]
        pixels, inside, tris = projector.project(ends)
        if not inside[0]:
            outside += 1
            continue
        if not allow_still and np.linalg.norm(pixels[1] - pixels[0]) < min_length:
            raise StillMotionError(
                f"Poke {stroke.index + 1} ends where it starts, so it shows no direction: drag "
                "from the spot that should move to where it should go")
        radius = 0.0
        if falloff <= 0:
            scale = float(projector.pixels_per_unit(tris[:1])[0])
            width = 2.0 * float(np.mean(stroke.radii)) * scale
            radius = round(max(1.0, width), 3) if math.isfinite(width) else 0.0
        pokes.append({
            "start": [float(pixels[0, 0]), float(pixels[0, 1])],
            "end": [float(pixels[1, 0]), float(pixels[1, 1])],
            "radius": radius,
        })
        numbers.append(stroke.index + 1)
    return pokes, numbers, outside


def _clip_label(number, item):
    """The absolute path a "Clip File" label stands for; refused when it is not there."""
    raw = item.clip_path if item is not None else ""
    if not raw.strip():
        raise StillMotionError(
            f"Mask {number} is labelled Clip File but has no clip: pick a video file (or a "
            "folder of frames) for it in the Mask Labels list, or choose another label")
    path = pathlib.Path(bpy.path.abspath(raw))
    if not path.exists():
        raise StillMotionError(
            f"The clip of mask {number} is missing: {path}. Pick an existing video file or "
            "folder of frames, or choose another label")
    return str(path.resolve())


def _job_label(stroke_index, labels, engine, dropped):
    """The mask's label as the job writes it, or None when this engine does not use the mask
    (its number goes into dropped)."""
    item = labels[stroke_index] if stroke_index < len(labels) else None
    label = item.label if item is not None else DEFAULT_LABEL
    if engine in ENGINES_WITH_STATIC_MASKS_ONLY:
        if label != DEFAULT_LABEL:
            dropped.append(stroke_index + 1)
            return None
        return label
    return _clip_label(stroke_index + 1, item) if label == CLIP_LABEL else label


def _masks(raw, projector, size, labels, engine, job_dir, warnings, fills=None):
    """Rasterise mask strokes into job_dir/mask_NNN.png -> (mask dicts, number off picture).
    fills: when a list, each written mask's (label, filled pixels) is appended to it."""
    w, h = size
    masks, outside, dropped = [], 0, []
    for stroke in raw:
        _check_finite(stroke, "Mask")
        n = len(stroke.points)
        if n < 3:
            raise StillMotionError(
                f"Mask {stroke.index + 1} has only {n} {_plural(n, 'point', 'points')}: draw a "
                "closed outline around the region")
        pixels, inside, _ = projector.project(stroke.points)
        filled = raster.fill_polygon(pixels, w, h)
        covered = bool(filled.any())
        if not covered and not inside.any():
            outside += 1
            continue
        length = _path_length(pixels)
        gap = float(np.linalg.norm(pixels[-1] - pixels[0]))
        if not stroke.cyclic and gap > CLOSE_GAP * length:
            share = 100.0 * gap / length if length > 0 else 100.0
            raise StillMotionError(
                f"Mask {stroke.index + 1} is not closed (its ends are {share:.0f}% of its length "
                "apart): end the outline where it started, or make it cyclic (Edit Mode, "
                "Stroke › Toggle Cyclic)")
        if not covered:
            # A mask is judged by the pixels it fills (filled is what mask_NNN.png holds), not
            # by the signed area of its outline: the loops of a symmetric 8 cancel to 0 there.
            # Filling none, it is a line unless its outline encloses area (then it is a dot).
            area = abs(raster.polygon_area(pixels))
            perimeter = length + gap
            if area <= MIN_COMPACTNESS * perimeter * perimeter or area == 0.0:
                raise StillMotionError(
                    f"Mask {stroke.index + 1} encloses no area (it runs along a line): draw a "
                    "closed outline around the region")
            warnings.append(f"mask {stroke.index + 1} is smaller than a pixel and was ignored")
            continue
        label = _job_label(stroke.index, labels, engine, dropped)
        if label is None:
            continue
        path = pathlib.Path(job_dir) / f"mask_{len(masks):03d}.png"
        raster.write_png_gray(path, filled)
        masks.append({"path": path.name, "label": label})
        if fills is not None:
            fills.append((label, filled))
    if dropped:
        numbers = ", ".join(str(n) for n in dropped)
        warnings.append(f"{_plural(len(dropped), 'mask', 'masks')} {numbers} "
                        f"{_plural(len(dropped), 'has a motion label', 'have motion labels')}: "
                        "only the Dynamic Texture engine animates them, "
                        f"{ENGINE_NAMES[engine]} leaves {_plural(len(dropped), 'it', 'them')} "
                        "out")
    return masks, outside


def write_job(plane, job_dir, output_dir, *, preview=False, device="auto",
              thumbnails=False) -> JobPlan:
    """Write job_dir/job.json (and the masks, and the still when it is not a plain file) for
    the plane's current settings and strokes. Raises StillMotionError with what to do when the
    scene cannot make a job; nothing is written to the .blend either way.
    thumbnails: (Sampled engine) the job writes the K samples' thumbnails instead of frames."""
    target = find_target(plane)
    settings = plane.stillmotion
    dyntex = settings.engine == "DYNTEX"
    advect = dyntex and settings.dyntex.method == "ADVECT"  # motion first: arrows steer regions
    two_stream = dyntex and not advect
    sampled = settings.engine == "POKE"
    poke_block = _poke_block(settings.poke, thumbnails) if sampled else None
    gp_obj = settings.strokes
    if gp_obj is None or not strokes.is_grease_pencil(gp_obj):
        raise StillMotionError(
            "There are no strokes yet: click Add Strokes, then "
            + ("draw closed masks around the regions that should move on the Masks layer"
               if dyntex else "draw pokes (drags from a spot to where it should move) on the "
               "Pokes layer"))
    warnings = list(target.notes)
    raw_pokes = _read_layer(gp_obj, strokes.POKES, warnings)
    raw_masks = _read_layer(gp_obj, strokes.MASKS, warnings)
    if two_stream and raw_pokes:
        n = len(raw_pokes)
        warnings.append(f"{n} {_plural(n, 'poke is', 'pokes are')} not used by Two-stream "
                        "synthesis (it animates labelled masks; Motion (advect) follows arrows)")
        raw_pokes = []
    if sampled and not raw_pokes:
        frame = bpy.context.scene.frame_current
        raise StillMotionError(
            f"'{gp_obj.name}' has no pokes on its Pokes layer at frame {frame}: the Sampled "
            "(iPOKE) engine moves the picture from pokes, so draw at least one (a drag from the "
            "spot that should move towards where it should go)")
    if not raw_masks and (dyntex or not raw_pokes):  # (advect's arrows steer masks only)
        frame = bpy.context.scene.frame_current
        if dyntex:
            raise StillMotionError(
                f"'{gp_obj.name}' has no masks on its Masks layer at frame {frame}: draw a "
                "closed outline around each region that should move and label it (water, "
                "clouds, grass, waterfall or Clip File)")
        raise StillMotionError(
            f"'{gp_obj.name}' has no strokes on its Pokes or Masks layer at frame {frame}: draw "
            "at least one poke (a drag from a spot to where it should move) on the Pokes layer")

    size = target.size
    job_dir = pathlib.Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    for old in job_dir.glob("mask_*.png"):
        old.unlink()
    projector = strokes.PlaneProjector(plane, size, target.uv_map)
    falloff = float(settings.falloff)
    pokes, poke_strokes, pokes_out = _pokes(raw_pokes, projector, size, falloff, warnings,
                                            allow_still=sampled or advect)
    fills = [] if advect else None
    masks, masks_out = _masks(raw_masks, projector, size, settings.mask_labels, settings.engine,
                              job_dir, warnings, fills)

    ignored = pokes_out + masks_out
    if not pokes and not masks and ignored:
        total = len(raw_pokes) + len(raw_masks)
        raise StillMotionError(
            f"None of the {total} {_plural(total, 'stroke', 'strokes')} lies on the picture: "
            "draw them over the image plane (pokes must start on the picture)")
    if ignored:
        warnings.insert(0, f"{ignored} {_plural(ignored, 'stroke', 'strokes')} outside the plane "
                           f"{_plural(ignored, 'was', 'were')} ignored")
    if dyntex and not masks:
        raise StillMotionError(
            "No mask covers any of the picture: draw closed outlines over the image plane "
            "around the regions that should move")
    if dyntex and not any(m["label"] != DEFAULT_LABEL for m in masks):
        raise StillMotionError(
            "The Dynamic Texture engine moves only masks with a motion label, and none has "
            "one: label a mask Water, Clouds, Grass, Waterfall or Clip File in the Mask Labels "
            "list (click the refresh button if the list is empty)")
    if advect:
        check_arrows(pokes, poke_strokes, fills, size)
    if sampled and not pokes:
        raise StillMotionError(
            "No poke starts on the picture: the Sampled (iPOKE) engine needs at least one poke "
            "that starts on the image plane")
    if not pokes and settings.engine == "WARP":
        warnings.append("there are no pokes on the picture, so nothing will move")
    painting = _style_painting(settings, masks, raw_masks, warnings)

    still = export_still(target.image, job_dir)
    w, h = size
    frames = int(settings.frames)
    if two_stream and preview:
        frames = min(frames, DYNTEX_PREVIEW["frames"])
    job = {
        "version": JOB_VERSION,
        "engine": settings.engine.lower(),
        "image": _job_ref(still, job_dir),
        "output": str(pathlib.Path(output_dir).absolute()),
        "frames": frames,
        "fps": int(settings.fps),
        "seed": int(settings.seed),
        "loop": bool(settings.loop),
        "easing": settings.easing,
        "format": settings.output_format,
        # two-stream reads max_size as a cap on its working size; its preview cap is in
        # "dyntex" (the panel hides Preview Size for it), so a small Preview Size cannot push
        # the working size below what the motion network needs. Advect previews like warp.
        "max_size": int(settings.preview_size) if preview and not two_stream else 0,
        "device": device,
        "pokes": pokes,
        "masks": masks,
        "warp": {
            "falloff": falloff if falloff > 0 else round(DEFAULT_FALLOFF_SHARE * max(w, h), 3),
            "feather": float(settings.feather),
        },
    }
    if painting is not None:
        job["style"] = _style_block(settings, painting, job_dir)
    if dyntex:
        job["dyntex"] = _dyntex_block(settings.dyntex, job_dir, size, preview, warnings)
    if sampled:
        job["poke"] = poke_block
    job_path = job_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2, ensure_ascii=False), encoding="utf-8")
    return JobPlan(job_path, job, warnings, (w, h), poke_strokes)


def check_arrows(pokes, poke_strokes, fills, size):
    """Motion (advect): an arrow steers the motion region it starts in, so one that starts
    outside every motion mask is refused, by its stroke number (the engine's own check,
    engine/dyntex/advect.py, reads the same pixel of the same masks at full resolution). A
    click without a drag is a pin and may lie anywhere. fills: [(label, filled pixels)]."""
    w, h = size
    min_length = min(0.5, 0.01 * max(w, h))  # engine/job.py Poke.is_pin
    motion = [filled for label, filled in fills if label != DEFAULT_LABEL]
    for poke, number in zip(pokes, poke_strokes):
        (x, y), (ex, ey) = poke["start"], poke["end"]
        if math.hypot(ex - x, ey - y) < min_length:
            continue
        column, row = min(w - 1, int(x)), min(h - 1, int(y))
        if not any(filled[row, column] for filled in motion):
            raise StillMotionError(
                f"Poke {number} starts outside every motion mask: with Motion (advect) an arrow "
                "steers the region it starts in, so start it inside a mask labelled Water, "
                "Clouds, Grass, Waterfall or Clip File, or delete it (a click without a drag "
                "pins a spot instead)")


def _style_painting(settings, masks, raw_masks, warnings):
    """The Style painting the job uses, or None (none set, or Strength 0: a warning). Refused
    when it cannot be read, or when it should go inside masks and the job carries none."""
    image = settings.style_image
    if image is None:
        return None
    if settings.style_strength <= 0:
        warnings.append(f"the Style painting '{image.name}' is not used because Strength is 0: "
                        "strength 0 leaves the still as it is")
        return None
    check_painting(image)
    if settings.style_where == "MASKS" and not masks:
        labels = settings.mask_labels
        if settings.engine in ENGINES_WITH_STATIC_MASKS_ONLY and any(
                stroke.index < len(labels) and labels[stroke.index].label != DEFAULT_LABEL
                for stroke in raw_masks):
            raise StillMotionError(
                f"Style › Where is Masked Regions, but {ENGINE_NAMES[settings.engine]} uses only "
                "Static masks and none of the masks drawn is one: label the mask to paint "
                "Static in the Mask Labels list, or choose Whole Picture")
        raise StillMotionError(
            "Style › Where is Masked Regions, but there is no mask on the picture to paint "
            "inside: draw a closed outline on the Masks layer around the part to paint, or "
            "choose Whole Picture")
    return image


def check_painting(image):
    """Refused with what to do when the Style painting is not a single picture Blender can
    read (its file missing or damaged)."""
    kind = _NOT_A_PICTURE.get(image.source)
    if kind is not None:
        raise StillMotionError(
            f"The Style painting '{image.name}' is {kind}: pick a single picture as the "
            "Painting under Style, or clear it to bake without a style")
    shown = missing_file(image)
    if shown is not None:
        raise StillMotionError(
            f"The file of the Style painting '{image.name}' is missing: {shown}. Relink it "
            "(Image Editor › Image › Replace), pack it into the .blend, or pick another "
            "Painting under Style (clear it to bake without a style)")
    if unreadable(image):
        where = f" ({image.filepath})" if image.filepath else ""
        raise StillMotionError(
            f"Blender cannot read the Style painting '{image.name}'{where}: the file may be "
            "damaged or in a format Blender does not open; save it as PNG or JPEG and open it "
            "again, or pick another Painting under Style")


def _style_block(settings, painting, job_dir):
    """The job's "style" object (every engine): the painting, exported as export_image does
    for the still (its own file when that is a plain readable one)."""
    path = export_image(painting, job_dir, STYLE_STEM)
    return {
        "image": _job_ref(path, job_dir),
        "strength": round(float(settings.style_strength), 6),
        "where": STYLE_WHERE[settings.style_where],
        "feather": round(float(settings.style_feather), 3),
    }


def _job_ref(path, job_dir):
    """A file the job names: relative to the job folder when it lies inside, else absolute."""
    try:
        return path.relative_to(job_dir).as_posix()
    except ValueError:
        return str(path)


def min_working_size(width, height):
    """The smallest dyntex working size (longer side) that keeps the shorter side at
    MIN_WORK pixels, as the engine scales (engine/dyntex/synthesis.py working_size)."""
    longer, shorter = max(width, height), min(width, height)
    if shorter < MIN_WORK:
        raise StillMotionError(
            f"The picture is {width}x{height} pixels; the Dynamic Texture engine needs at least "
            f"{MIN_WORK} on each side: use a larger picture")
    size = MIN_WORK
    while size < longer and round(shorter * size / longer) < MIN_WORK:
        size += 1
    return size


def _checked_working_size(size, size_wh, where):
    """A bake's dyntex working size, refused (naming the smallest that works and where the
    setting is) when it leaves the still's shorter side under MIN_WORK pixels."""
    smallest = min_working_size(*size_wh)
    if size < smallest:
        w, h = size_wh
        raise StillMotionError(
            f"Working Size {size} is too small for this {w}x{h} picture: the motion network "
            f"needs {MIN_WORK} pixels on its shorter side, so set Working Size to at least "
            f"{smallest} ({where})")
    return size


def _dyntex_block(dyn, job_dir, size_wh, preview, warnings):
    """The job's "dyntex" object (docs/JOB.md): the method, and for two-stream its settings (a
    Preview caps size and iterations). Advect writes only the method, plus its refiner's
    iterations and working size when Refine Iterations is above 0 (never for a Preview, which
    must stay fast)."""
    if dyn.method == "ADVECT":
        if dyn.style_image is not None:
            warnings.append(f"the Style Stream image '{dyn.style_image.name}' is not used by "
                            "Motion (advect): only Two-stream synthesis reads it (for a painted "
                            "look with any engine, set a Painting under Style)")
        block = {"method": DYNTEX_METHODS["ADVECT"]}
        refine = int(dyn.refine)
        if refine > 0 and not preview:
            block["refine"] = refine
            block["size"] = _checked_working_size(int(dyn.size), size_wh, "Dynamic Texture")
        return block
    size, iterations, levels = int(dyn.size), int(dyn.iterations), int(dyn.levels)
    if preview:
        size = max(min(size, DYNTEX_PREVIEW["size"]), min_working_size(*size_wh))
        iterations = min(iterations, DYNTEX_PREVIEW["iterations"])
        levels = 1
    else:
        size = _checked_working_size(size, size_wh, "Dynamic Texture › Advanced")
    block = {
        "method": DYNTEX_METHODS["TWO_STREAM"],
        "size": size,
        "iterations": iterations,
        "levels": levels,
        "optimizer": dyn.optimizer.lower(),
        "lambda_style": float(dyn.lambda_style),
        "lambda_l2": float(dyn.lambda_l2),
        "lambda_app": float(dyn.lambda_app),
        "lambda_dyn": float(dyn.lambda_dyn),
        "lambda_paint": float(dyn.lambda_paint),
        "motion_contrast": float(dyn.motion_contrast),
        "style": None,
    }
    if dyn.style_image is not None:
        if dyn.lambda_paint > 0:
            style = export_image(dyn.style_image, job_dir, "style")
            block["style"] = _job_ref(style, job_dir)
        else:
            warnings.append(f"the Style Stream image '{dyn.style_image.name}' is not used "
                            "because Style Stream (λ7) is 0")
    return block


def _poke_block(poke, thumbnails):
    """The job's "poke" object (docs/JOB.md); refused when the chosen model file is missing or
    the chosen sample is not among the K drawn."""
    from ..bake import models

    choice = poke.model_file
    path = models.model_path(bpy.context, choice)
    if not path.is_file():
        if not choice:
            raise StillMotionError(
                f"The shipped default poke model is not installed ({path}): train a model with "
                "Train from Clip, or pick one from your models folder in Model")
        if models.is_shipped_extra(choice):
            raise StillMotionError(
                f"The shipped poke model '{models.display_name(choice)}' is missing ({path}): "
                "reinstall or update the StillMotion extension, or pick another model")
        raise StillMotionError(
            f"The poke model '{models.display_name(choice)}' is missing: {path}. Pick another "
            "model (press the refresh button next to Model to list the models folder again), "
            "or train it again with Train from Clip")
    samples, sample = int(poke.samples), int(poke.sample)
    if not thumbnails and sample >= samples:
        raise StillMotionError(
            f"The chosen sample {sample + 1} is not among the {samples} drawn: click a "
            f"thumbnail in the strip, or raise Samples to at least {sample + 1}")
    return {
        # null: the engine's own default, the file checked above
        "model": str(path.resolve()) if choice else None,
        "samples": samples,
        "sample": min(sample, samples - 1),
        "temperature": round(float(poke.temperature), 6),
        "thumbnails": bool(thumbnails),
        "guide": bool(poke.guide),
        "snap": bool(poke.snap),
        "background": bool(poke.background),
    }
