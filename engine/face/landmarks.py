"""Facial landmarks of a still: MediaPipe's face mesh (468 points) grouped into named parts.

The face-mesh and face-detection models (.tflite) ship inside the mediapipe wheel pinned in
requirements/face.txt, run on the CPU and download nothing. Later mediapipe releases dropped
these legacy "solutions" for task bundles fetched at run time, hence the pin; see
docs/face_parts.md for the candidates compared.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from engine.errors import JobError
from engine.face.parts import FaceParts

# Face-mesh indices, person's own left/right (MediaPipe's LEFT_* sets are the subject's left).
# Areas: any order (their hull is used). The jaw is a curve, so its order matters: the face
# oval from the left ear's height round the chin to the right's.
MESH_PARTS = {
    "left_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    "left_brow": (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
    "right_brow": (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    "nose": (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275,
             45, 220, 115, 48, 64),
    "mouth": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269,
              270, 409),
    "jaw": (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
            172, 58, 132, 93, 234),
}

# The mesh runs on a 192-px crop of the face, so a larger still only costs time: detect on a
# copy whose longer side is at most this and scale the points back.
DETECT_LONG_SIDE = 1280

INSTALL_HINT = "-m pip install --no-deps -r requirements/face.txt"


def import_mediapipe():
    """The mediapipe module, or a JobError that says how to install it."""
    try:
        import mediapipe  # noqa: F401
        from mediapipe.python.solutions import face_mesh, selfie_segmentation
    except ImportError as error:
        raise JobError(
            f"Facial parts and the automatic background mask need the mediapipe package, which "
            f"the engine Python {sys.executable} cannot import ({error}): click Install Engine "
            f"in Preferences > Add-ons > StillMotion, or run `{sys.executable} {INSTALL_HINT}` "
            "from the extension's folder") from error
    return face_mesh, selfie_segmentation


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 RGB copy of an RGB(A) or grey image, float in [0, 1] or uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _mesh_pass(face_mesh, rgb: np.ndarray, max_faces: int, min_confidence: float
               ) -> list[np.ndarray]:
    """One run of the face mesh on an RGB uint8 picture: [468, 3] meshes in its pixels."""
    height, width = rgb.shape[:2]
    small = shrink(rgb, DETECT_LONG_SIDE)
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                            refine_landmarks=False,
                            min_detection_confidence=min_confidence) as mesh:
        result = mesh.process(np.ascontiguousarray(small))
    # Normalised coordinates: x * width is the pixel position in this picture; MediaPipe
    # scales z like x.
    return [np.array([(point.x * width, point.y * height, point.z * width)
                      for point in landmarks.landmark], np.float32)
            for landmarks in result.multi_face_landmarks or ()]


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    eyes = [33, 263]
    gap = float(np.hypot(*(a[eyes[0], :2] - a[eyes[1], :2])))
    return float(np.abs(a[eyes, :2] - b[eyes, :2]).max()) < 0.5 * max(gap, 1.0)


def detect_meshes(image: np.ndarray, max_faces: int = 1,
                  min_confidence: float = 0.5) -> list[np.ndarray]:
    """The face meshes of an RGB still (H x W x 3, float in [0, 1] or uint8), largest first:
    each [468, 3] float32, x and y in the still's pixels and z (depth, towards the camera
    negative) in the same pixel scale as x. An empty list when there is no face.

    MediaPipe's detector looks for faces that fill a good part of its 128-px view, so a face
    in a wide shot or one of several people is missed on the whole picture; the picture's
    halves (overlapping squares along its longer side) are searched too, and a face found in
    both counts once."""
    face_mesh, _ = import_mediapipe()
    rgb = to_rgb8(image)
    height, width = rgb.shape[:2]
    meshes = _mesh_pass(face_mesh, rgb, max_faces, min_confidence)
    side = min(height, width)
    if len(meshes) < max_faces or max(height, width) > 1.5 * side:
        tile = max(32, int(round(0.6 * max(height, width))) if max(height, width) < 1.5 * side
                   else side)
        tile = min(tile, height, width)
        ys = np.linspace(0, height - tile, max(2, int(np.ceil(height / tile)) + 1)).astype(int)
        xs = np.linspace(0, width - tile, max(2, int(np.ceil(width / tile)) + 1)).astype(int)
        for y in np.unique(ys):
            for x in np.unique(xs):
                for found in _mesh_pass(face_mesh, rgb[y:y + tile, x:x + tile], max_faces,
                                        min_confidence):
                    found[:, 0] += x
                    found[:, 1] += y
                    if not any(_same_face(found, known) for known in meshes):
                        meshes.append(found)
    meshes.sort(key=lambda points: -float(np.prod(np.ptp(points[:, :2], axis=0))))
    return meshes[:max_faces]


def mesh_parts(mesh: np.ndarray, height: int, width: int) -> FaceParts:
    """The named parts of one face mesh ([468, 2+] pixels) in a still of height x width."""
    return FaceParts({name: mesh[list(indices), :2] for name, indices in MESH_PARTS.items()},
                     height, width)


def detect_faces(image: np.ndarray, max_faces: int = 1,
                 min_confidence: float = 0.5) -> list[FaceParts]:
    """The faces in an RGB still (H x W x 3, float in [0, 1] or uint8), largest first, each as
    named parts in the still's pixels. An empty list when there is no face."""
    height, width = np.asarray(image).shape[:2]
    faces = [mesh_parts(mesh, height, width)
             for mesh in detect_meshes(image, max_faces, min_confidence)]
    faces.sort(key=FaceParts.size, reverse=True)
    return faces


def detect_face(image: np.ndarray, min_confidence: float = 0.5) -> FaceParts | None:
    """The largest face in the still, or None."""
    faces = detect_faces(image, max_faces=1, min_confidence=min_confidence)
    return faces[0] if faces else None
