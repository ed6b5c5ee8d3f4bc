"""A face-centred square crop that follows the face through a video, steadied over time.

Detector: MediaPipe's face mesh when the engine has it (requirements/face.txt, part of Install
Engine; its model ships inside the wheel), its landmarks' box scaled to the box the Haar
cascade below would give, so one `face_scale` means the same crop with either. Without it:
OpenCV's frontal-face Haar cascade (haarcascade_frontalface_default.xml). OpenCV 5
(the pinned opencv-python-headless 5.0) dropped both the CascadeClassifier and the bundled XML
files (cv2.data holds only __init__.py); its FaceDetectorYN needs a YuNet ONNX file that no
wheel we install ships. So: OpenCV's CascadeClassifier when the installed OpenCV has one (4.x),
else the small NumPy evaluator below, which reads the same XML. The XML is looked up in
STILLMOTION_FACE_CASCADE, cv2.data.haarcascades, the repository's media/ and models/ folders,
and Debian's opencv-data folder. No cascade or no face: the caller falls back to a centre crop.

The box: the face's centre, detected per frame, gaps filled by interpolation, then a centred
running median (drops single-frame false hits) and a running mean (drops the median's steps).
The side is fixed for the whole video (median face width x scale) so that the crop's pixel
size, and with it the flow's scale, does not change from clip to clip.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CASCADE_NAME = "haarcascade_frontalface_default.xml"
REPO = Path(__file__).resolve().parents[2]

# Faces are searched on a copy whose shorter side is at most this (the cascade's window is
# 24 px, so a face of a fifth of the frame is still ~40 px there) to keep the NumPy detector
# fast on HD video.
DETECT_SHORT_SIDE = 200


def centre_square(width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) of the largest centred square."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def cascade_path() -> Path | None:
    candidates = []
    if os.environ.get("STILLMOTION_FACE_CASCADE"):
        candidates.append(Path(os.environ["STILLMOTION_FACE_CASCADE"]))
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data_dir:
        candidates.append(Path(data_dir) / CASCADE_NAME)
    candidates += [REPO / "media" / CASCADE_NAME, REPO / "models" / CASCADE_NAME,
                   Path("/usr/share/opencv4/haarcascades") / CASCADE_NAME,
                   Path("/usr/share/opencv/haarcascades") / CASCADE_NAME]
    return next((path for path in candidates if path.is_file()), None)


# --------------------------------------------------------------------------------------------
# Haar cascade evaluation (Viola-Jones as OpenCV runs it: image pyramid, variance-normalised
# stump features, stage-wise rejection, neighbour grouping)

@dataclass
class HaarCascade:
    window: tuple[int, int]             # (width, height)
    stage_thresholds: np.ndarray        # [stages]
    stage_ends: np.ndarray              # [stages] end index of each stage's stumps
    stump_feature: np.ndarray           # [stumps] feature index
    stump_threshold: np.ndarray         # [stumps]
    stump_leaves: np.ndarray            # [stumps, 2]: value below / at-or-above threshold
    rects: np.ndarray                   # [features, 3, 4] x, y, w, h (zero rows pad)
    weights: np.ndarray                 # [features, 3]

    @classmethod
    def load(cls, path: Path) -> HaarCascade:
        root = ElementTree.parse(path).getroot()
        cascade = root.find("cascade")
        if cascade is None or (cascade.findtext("featureType") or "").strip() != "HAAR":
            raise ValueError(f"{path} is not an OpenCV Haar cascade (new format)")
        window = (int(cascade.findtext("width")), int(cascade.findtext("height")))
        thresholds, ends, features, stump_thresholds, leaves = [], [], [], [], []
        for stage in cascade.find("stages"):
            thresholds.append(float(stage.findtext("stageThreshold")))
            for weak in stage.find("weakClassifiers"):
                nodes = weak.findtext("internalNodes").split()
                if len(nodes) != 4 or nodes[:2] != ["0", "-1"]:
                    raise ValueError(f"{path}: only stump cascades are supported")
                features.append(int(nodes[2]))
                stump_thresholds.append(float(nodes[3]))
                leaves.append([float(v) for v in weak.findtext("leafValues").split()])
            ends.append(len(features))
        feature_nodes = list(cascade.find("features"))
        rects = np.zeros((len(feature_nodes), 3, 4), np.int64)
        weights = np.zeros((len(feature_nodes), 3), np.float64)
        for number, feature in enumerate(feature_nodes):
            if (feature.findtext("tilted") or "0").strip() not in ("0", ""):
                raise ValueError(f"{path}: tilted Haar features are not supported")
            for slot, rect in enumerate(feature.find("rects")):
                values = rect.text.split()
                rects[number, slot] = [int(float(v)) for v in values[:4]]
                weights[number, slot] = float(values[4])
        return cls(window, np.array(thresholds), np.array(ends), np.array(features),
                   np.array(stump_thresholds), np.array(leaves), rects, weights)

    def _stage_survivors(self, integral: np.ndarray, squares: np.ndarray, xs: np.ndarray,
                         ys: np.ndarray) -> np.ndarray:
        width, height = self.window

        def box_sum(table, x, y, w, h):
            return (table[y + h, x + w] - table[y, x + w] - table[y + h, x] + table[y, x])

        # OpenCV normalises by the window's standard deviation over the window less a 1-px
        # rim, and skips windows too flat to hold a face.
        area = (width - 2) * (height - 2)
        total = box_sum(integral, xs + 1, ys + 1, width - 2, height - 2)
        square_total = box_sum(squares, xs + 1, ys + 1, width - 2, height - 2)
        spread = area * square_total - total * total
        keep = spread > 0
        norm = np.sqrt(np.where(keep, spread, 1.0))
        keep &= area / norm < 0.1
        xs, ys, norm = xs[keep], ys[keep], norm[keep]
        alive = np.nonzero(keep)[0]
        begin = 0
        for end, stage_threshold in zip(self.stage_ends, self.stage_thresholds):
            if len(alive) == 0:
                break
            # All stumps of the stage at once: [stumps, 3 rects] against [windows].
            features = self.stump_feature[begin:end]
            rx, ry, rw, rh = (self.rects[features, :, k][:, :, None] for k in range(4))
            x0, y0 = xs[None, None, :] + rx, ys[None, None, :] + ry
            sums = (integral[y0 + rh, x0 + rw] - integral[y0, x0 + rw]
                    - integral[y0 + rh, x0] + integral[y0, x0])
            values = np.einsum("fr,frn->fn", self.weights[features], sums)
            below = values < self.stump_threshold[begin:end, None] * norm[None, :]
            leaves = self.stump_leaves[begin:end]
            score = np.where(below, leaves[:, :1], leaves[:, 1:]).sum(axis=0)
            passed = score >= stage_threshold
            alive, xs, ys, norm = alive[passed], xs[passed], ys[passed], norm[passed]
            begin = end
        return alive

    def detect(self, grey: np.ndarray, scale_factor: float = 1.1, min_neighbours: int = 3,
               min_size: int = 0) -> np.ndarray:
        """Faces in a uint8 greyscale image as int [k, 4] (x, y, w, h)."""
        width, height = self.window
        hits = []
        factor = 1.0
        while True:
            small_w = int(round(grey.shape[1] / factor))
            small_h = int(round(grey.shape[0] / factor))
            if small_w < width + 2 or small_h < height + 2:
                break
            if width * factor >= min_size:
                small = cv2.resize(grey, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
                pixels = small.astype(np.float64)
                integral = np.zeros((small_h + 1, small_w + 1))
                integral[1:, 1:] = pixels.cumsum(0).cumsum(1)
                squares = np.zeros_like(integral)
                squares[1:, 1:] = (pixels * pixels).cumsum(0).cumsum(1)
                step = 2 if factor <= 2.0 else 1
                ys, xs = np.mgrid[0:small_h - height:step, 0:small_w - width:step]
                xs, ys = xs.ravel(), ys.ravel()
                found = self._stage_survivors(integral, squares, xs, ys)
                for index in found:
                    hits.append([xs[index] * factor, ys[index] * factor,
                                 width * factor, height * factor])
            factor *= scale_factor
        return group_rectangles(np.array(hits, np.float64).reshape(-1, 4), min_neighbours)


def group_rectangles(rects: np.ndarray, min_neighbours: int, eps: float = 0.2) -> np.ndarray:
    """OpenCV's grouping: rectangles whose corners agree within eps of their size are one
    group; groups with more than min_neighbours members become their mean rectangle."""
    count = len(rects)
    parent = list(range(count))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(count):
        for j in range(i + 1, count):
            a, b = rects[i], rects[j]
            delta = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
            if (abs(a[0] - b[0]) <= delta and abs(a[1] - b[1]) <= delta
                    and abs(a[0] + a[2] - b[0] - b[2]) <= delta
                    and abs(a[1] + a[3] - b[1] - b[3]) <= delta):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    out = [rects[members].mean(axis=0) for members in groups.values()
           if len(members) > min_neighbours]
    return np.round(np.array(out)).astype(np.int64).reshape(-1, 4)


class FaceDetector:
    """Frontal faces in RGB frames, (x, y, w, h) in the frame's pixels."""

    def __init__(self, path: Path):
        self.path = path
        classifier = getattr(cv2, "CascadeClassifier", None)
        self.opencv = classifier(str(path)) if classifier is not None else None
        self.numpy = None if self.opencv is not None else HaarCascade.load(path)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        shrink = max(1.0, min(grey.shape) / DETECT_SHORT_SIDE)
        if shrink > 1.0:
            grey = cv2.resize(grey, (int(round(grey.shape[1] / shrink)),
                                     int(round(grey.shape[0] / shrink))),
                              interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        if self.opencv is not None:
            faces = np.asarray(self.opencv.detectMultiScale(grey, 1.1, 3), np.float64)
        else:
            faces = self.numpy.detect(grey).astype(np.float64)
        return np.round(faces.reshape(-1, 4) * shrink).astype(np.int64)


@functools.lru_cache(maxsize=None)
def _detector_for(path: str) -> FaceDetector:
    return FaceDetector(Path(path))


class MeshFaceDetector:
    """Faces from MediaPipe's face mesh (engine/face/landmarks.py), as (x, y, w, h) boxes in
    the Haar cascade's framing: measured on carphone, the cascade's square is 1.35x the
    landmarks' width and centred 14 % of their height higher (it includes the forehead)."""

    name = "mediapipe-face-mesh"
    WIDTH_FACTOR = 1.35
    RAISE = 0.14

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        from engine.face.landmarks import detect_faces

        boxes = []
        for face in detect_faces(frame, max_faces=4):
            points = np.concatenate(list(face.points.values()))
            (x0, y0), (x1, y1) = points.min(0), points.max(0)
            side = self.WIDTH_FACTOR * (x1 - x0)
            cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 - self.RAISE * (y1 - y0)
            boxes.append((cx - side / 2.0, cy - side / 2.0, side, side))
        return np.round(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.int64)


@functools.lru_cache(maxsize=None)
def _mediapipe_available() -> bool:
    try:
        from engine.face.landmarks import import_mediapipe
        import_mediapipe()
        return True
    except Exception:  # noqa: BLE001 - any failure to load it means "use the cascade"
        return False


def default_detector() -> MeshFaceDetector | FaceDetector | None:
    """MediaPipe's face mesh when installed, else the Haar cascade when its XML is found."""
    if _mediapipe_available():
        return MeshFaceDetector()
    path = cascade_path()
    return None if path is None else _detector_for(str(path))


def detector_name() -> str | None:
    """Which detector default_detector() gives (part of the training cache key)."""
    detector = default_detector()
    if detector is None:
        return None
    return getattr(detector, "name", None) or f"haar:{Path(detector.path).name}"


# --------------------------------------------------------------------------------------------
# Tracking and smoothing

@dataclass
class FaceTrack:
    boxes: np.ndarray       # int32 [n, 3]: (x, y, side) per frame
    detected: np.ndarray    # bool [n]: a face was found in this frame
    count: int              # frames seen
    found: bool             # any face at all (else boxes are the centre square)


def _running(values: np.ndarray, window: int, reduce) -> np.ndarray:
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    return np.array([reduce(padded[i:i + 2 * half + 1]) for i in range(len(values))])


def smooth_track(centres: np.ndarray, detected: np.ndarray, window: int) -> np.ndarray:
    """centres float [n, 2] valid where detected -> filled and steadied [n, 2]."""
    frames = np.arange(len(centres))
    known = np.nonzero(detected)[0]
    filled = np.stack([np.interp(frames, known, centres[known, axis]) for axis in (0, 1)], 1)
    if window > 1:
        for axis in (0, 1):
            filled[:, axis] = _running(filled[:, axis], window, np.median)
            filled[:, axis] = _running(filled[:, axis], window, np.mean)
    return filled


def _pick(faces: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """The face to follow: the largest at first, then the nearest to where it was."""
    centres = faces[:, :2] + faces[:, 2:] / 2.0
    if previous is None:
        return faces[np.argmax(faces[:, 2] * faces[:, 3])]
    return faces[np.argmin(np.linalg.norm(centres - previous, axis=1))]


def track_face(frames: Iterable[np.ndarray], scale: float = 2.2, window: int = 31,
               detector: FaceDetector | None = None, detect_every: int = 2) -> FaceTrack:
    """Square crop boxes that follow the face in RGB frames (see the module docstring). The
    detector runs on every `detect_every`-th frame; the smoothing fills the frames between."""
    detector = detector if detector is not None else default_detector()
    centres, widths, detected = [], [], []
    previous = None
    width = height = 0
    for index, frame in enumerate(frames):
        height, width = frame.shape[:2]
        faces = np.zeros((0, 4))
        if detector is not None and index % max(1, detect_every) == 0:
            faces = detector(frame)
        if len(faces):
            face = _pick(faces, previous)
            previous = face[:2] + face[2:] / 2.0
            centres.append(previous)
            widths.append(float(face[2]))
            detected.append(True)
        else:
            centres.append(np.zeros(2))
            detected.append(False)
    count = len(detected)
    detected = np.array(detected, bool)
    if count == 0 or not detected.any():
        box = centre_square(width, height) if count else (0, 0, 0)
        return FaceTrack(np.tile(np.array(box, np.int32), (count, 1)), detected, count, False)
    side = int(round(min(np.median(widths) * scale, width, height)))
    steady = smooth_track(np.array(centres, np.float64), detected, window)
    xs = np.clip(np.round(steady[:, 0] - side / 2.0), 0, width - side)
    ys = np.clip(np.round(steady[:, 1] - side / 2.0), 0, height - side)
    boxes = np.stack([xs, ys, np.full(count, side)], 1).astype(np.int32)
    return FaceTrack(boxes, detected, count, True)
