"""Facial parts as point sets, and the geometry the poke engine needs from them.

A part is a set of landmark points in image pixels (x right, y down). Eyes, brows, nose and
mouth are areas: the convex hull of their points. The jaw is a curve (ear to chin to ear):
its hull would cover the whole lower face, so distances to it are measured to the polyline.
"Left" and "right" are the person's own, as in anatomy and in MediaPipe: the left eye is on
the right of a frontal photo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

PART_NAMES = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth", "jaw")
CURVE_PARTS = frozenset({"jaw"})

# Width of the jaw line in the part raster, as a fraction of the face's size: wide enough to
# survive a 64-px raster, narrow enough not to cover the mouth.
JAW_LINE_WIDTH = 0.04

# part_layout draws each part on a canvas up to this many pixels a side (16 MB of uint8).
MAX_CANVAS_SIDE = 4096


@dataclass
class FaceParts:
    """One face: part name -> [N, 2] float32 points (x, y) in pixels of an image of
    height x width. Parts the detector did not give are simply absent."""

    points: dict[str, np.ndarray]
    height: int
    width: int

    def __post_init__(self):
        unknown = set(self.points) - set(PART_NAMES)
        if unknown:
            raise ValueError(f"unknown facial parts {sorted(unknown)}; known: {PART_NAMES}")
        self.points = {name: np.asarray(points, np.float32).reshape(-1, 2)
                       for name, points in self.points.items()}

    def scaled(self, height: int, width: int) -> FaceParts:
        """The same face in an image resized to height x width."""
        factor = np.array([width / self.width, height / self.height], np.float32)
        return FaceParts({name: points * factor for name, points in self.points.items()},
                         height, width)

    def size(self) -> float:
        """Diagonal of the box around all points: the face's scale in pixels (0 without any)."""
        every = np.concatenate([np.zeros((0, 2), np.float32), *self.points.values()])
        if len(every) == 0:
            return 0.0
        return float(np.hypot(*(every.max(0) - every.min(0))))


def _segment_distance(point: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> float:
    """Smallest distance from point to the segments starts[i] -> ends[i]."""
    direction = ends - starts
    length2 = np.maximum((direction * direction).sum(1), 1e-12)
    t = np.clip(((point - starts) * direction).sum(1) / length2, 0.0, 1.0)
    closest = starts + t[:, None] * direction
    return float(np.sqrt(((closest - point) ** 2).sum(1)).min())


def _hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)


def part_distance(point, name: str, points: np.ndarray) -> float:
    """Pixels from point to the part: 0 inside an area part, else to its outline (areas) or
    its polyline (curves)."""
    point = np.asarray(point, np.float32).reshape(2)
    if len(points) == 1:
        return float(np.hypot(*(points[0] - point)))
    if name in CURVE_PARTS:
        return _segment_distance(point, points[:-1], points[1:])
    hull = _hull(points)
    if len(hull) >= 3 and cv2.pointPolygonTest(hull, (float(point[0]), float(point[1])),
                                               False) >= 0:
        return 0.0
    return _segment_distance(point, hull, np.roll(hull, -1, axis=0))


def _area(name: str, points: np.ndarray) -> float:
    if name in CURVE_PARTS or len(points) < 3:
        return 0.0
    return float(cv2.contourArea(_hull(points)))


def snap_to_part(point, face: FaceParts | Mapping[str, np.ndarray], radius: float) -> str | None:
    """The part a poke starting at point = (x, y) drives: the nearest part no farther than
    radius pixels, or None. A point inside two areas (a mouth hull drawn over the chin line)
    goes to the smaller area, the more specific part."""
    parts = face.points if isinstance(face, FaceParts) else face
    best = None
    for name, points in parts.items():
        points = np.asarray(points, np.float32).reshape(-1, 2)
        if len(points) == 0:
            continue
        key = (part_distance(point, name, points), _area(name, points))
        if key[0] <= radius and (best is None or key < best[0]):
            best = (key, name)
    return None if best is None else best[1]


def part_layout(face: FaceParts, height: int, width: int, supersample: int = 4) -> np.ndarray:
    """[len(PART_NAMES), height, width] float32 coverage in [0, 1], one channel per part in
    PART_NAMES order (zero for parts the face lacks), for a raster of height x width covering
    the same picture as the face's image. Drawn at supersample x the size and area-averaged
    down, so parts smaller than a pixel (an eye in a 64-px raster) keep a fractional value
    instead of vanishing or jumping a whole pixel. Large rasters get less supersampling, so
    the drawing canvas stays within MAX_CANVAS_SIDE."""
    supersample = max(1, min(supersample, MAX_CANVAS_SIDE // max(height, width, 1)))
    scaled = face.scaled(height * supersample, width * supersample)
    jaw_width = max(supersample, int(round(JAW_LINE_WIDTH * scaled.size())))
    layout = np.zeros((len(PART_NAMES), height, width), np.float32)
    canvas = np.empty((height * supersample, width * supersample), np.uint8)
    for channel, name in enumerate(PART_NAMES):
        points = scaled.points.get(name)
        if points is None or len(points) == 0:
            continue
        canvas[:] = 0
        # Pixel centres: point (x, y) in continuous coordinates lies in pixel floor(x, y).
        if name in CURVE_PARTS:
            line = np.round(points - 0.5).astype(np.int32)
            cv2.polylines(canvas, [line], False, 255, jaw_width, cv2.LINE_8)
        else:
            hull = np.round(_hull(points) - 0.5).astype(np.int32)
            cv2.fillConvexPoly(canvas, hull, 255, cv2.LINE_8)
        layout[channel] = cv2.resize(canvas, (width, height),
                                     interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return layout
