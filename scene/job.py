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
"""

import json
import math
import pathlib
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import raster, strokes
from .errors import StillMotionError
from .plane import export_still, find_target

JOB_VERSION = 1
CLOSE_GAP = 0.15  # a mask is closed when its end-start gap is at most this share of its length
MIN_COMPACTNESS = 1e-4  # area / perimeter² below this is a line, not a region (circle: 0.08)
DEFAULT_FALLOFF_SHARE = 0.1  # warp.falloff when none is set: this share of the longer side
DEFAULT_LABEL = "static"


@dataclass
class JobPlan:
    job_path: pathlib.Path
    job: dict
    warnings: list = field(default_factory=list)
    image_size: tuple = (0, 0)


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


def _pokes(raw, projector, size, falloff, warnings):
    """-> (list of poke dicts, number ignored because they start off the picture)."""
    w, h = size
    min_length = min(0.5, 0.01 * max(w, h))
    pokes, outside = [], 0
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
        if np.linalg.norm(pixels[1] - pixels[0]) < min_length:
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
    return pokes, outside


def _masks(raw, projector, size, labels, job_dir, warnings):
    """Rasterise mask strokes into job_dir/mask_NNN.png -> (mask dicts, number off picture)."""
    w, h = size
    masks, outside = [], 0
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
        area = abs(raster.polygon_area(pixels))
        perimeter = length + gap
        if area <= MIN_COMPACTNESS * perimeter * perimeter or area == 0.0:
            raise StillMotionError(
                f"Mask {stroke.index + 1} encloses no area (it runs along a line): draw a closed "
                "outline around the region")
        if not covered:
            warnings.append(f"mask {stroke.index + 1} is smaller than a pixel and was ignored")
            continue
        path = pathlib.Path(job_dir) / f"mask_{len(masks):03d}.png"
        raster.write_png_gray(path, filled)
        label = labels[stroke.index].label if stroke.index < len(labels) else DEFAULT_LABEL
        masks.append({"path": path.name, "label": label})
    return masks, outside


def write_job(plane, job_dir, output_dir, *, preview=False, device="auto") -> JobPlan:
    """Write job_dir/job.json (and the masks, and the still when it is not a plain file) for
    the plane's current settings and strokes. Raises StillMotionError with what to do when the
    scene cannot make a job; nothing is written to the .blend either way."""
    target = find_target(plane)
    settings = plane.stillmotion
    gp_obj = settings.strokes
    if gp_obj is None or not strokes.is_grease_pencil(gp_obj):
        raise StillMotionError(
            "There are no strokes yet: click Add Strokes, then draw pokes (drags from a spot to "
            "where it should move) on the Pokes layer")
    warnings = list(target.notes)
    raw_pokes = _read_layer(gp_obj, strokes.POKES, warnings)
    raw_masks = _read_layer(gp_obj, strokes.MASKS, warnings)
    if not raw_pokes and not raw_masks:
        frame = bpy.context.scene.frame_current
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
    pokes, pokes_out = _pokes(raw_pokes, projector, size, falloff, warnings)
    masks, masks_out = _masks(raw_masks, projector, size, settings.mask_labels, job_dir, warnings)

    ignored = pokes_out + masks_out
    if not pokes and not masks:
        total = len(raw_pokes) + len(raw_masks)
        raise StillMotionError(
            f"None of the {total} {_plural(total, 'stroke', 'strokes')} lies on the picture: "
            "draw them over the image plane (pokes must start on the picture)")
    if ignored:
        warnings.insert(0, f"{ignored} {_plural(ignored, 'stroke', 'strokes')} outside the plane "
                           f"{_plural(ignored, 'was', 'were')} ignored")
    if not pokes and settings.engine == "WARP":
        warnings.append("there are no pokes on the picture, so nothing will move")

    still = export_still(target.image, job_dir)
    try:
        image_ref = still.relative_to(job_dir).as_posix()
    except ValueError:
        image_ref = str(still)
    w, h = size
    job = {
        "version": JOB_VERSION,
        "engine": settings.engine.lower(),
        "image": image_ref,
        "output": str(pathlib.Path(output_dir).absolute()),
        "frames": int(settings.frames),
        "fps": int(settings.fps),
        "seed": int(settings.seed),
        "loop": bool(settings.loop),
        "easing": settings.easing,
        "format": settings.output_format,
        "max_size": int(settings.preview_size) if preview else 0,
        "device": device,
        "pokes": pokes,
        "masks": masks,
        "warp": {
            "falloff": falloff if falloff > 0 else round(DEFAULT_FALLOFF_SHARE * max(w, h), 3),
            "feather": float(settings.feather),
        },
    }
    job_path = job_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2, ensure_ascii=False), encoding="utf-8")
    return JobPlan(job_path, job, warnings, (w, h))
