"""Face-mesh geometry without MediaPipe: a face's frame (position, scale, roll), similarity
fits, and the face-structure measure.

A face mesh is MediaPipe's 468 landmarks, [468, 2] or [468, 3] (x right and y down in pixels,
z in the same scale). The same index is the same spot on every face (a photo, a painting, a
CGI head), which is what makes motion in this space identity-free: "landmark 13 moves down by
0.2 inter-ocular distances" means "the upper lip's middle moves down" on anyone.

The face's frame puts the midpoint between the eye centres at the origin, the line from the
right eye's centre to the left's along +x (the person's own left and right, so a frontal photo's
left eye is on the picture's right) and the distance between the eye centres at 1. Coordinates
in that frame are "face units".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MESH_POINTS = 468
# Eye corners: right eye 33 (outer) and 133 (inner), left eye 362 (inner) and 263 (outer).
RIGHT_EYE = (33, 133)
LEFT_EYE = (362, 263)
# Landmarks that move rigidly with the skull (DESIGN.md, "face structure"): eye corners, nose
# bridge and tip, forehead, temples. A similarity fitted on them leaves ~0.02-0.08 inter-ocular
# distances on real head motion and 0.1-0.2 on a melted face.
RIGID = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356)


def eye_centres(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right eye centre, left eye centre), each (x, y)."""
    points = np.asarray(mesh, np.float64)[:, :2]
    return points[list(RIGHT_EYE)].mean(0), points[list(LEFT_EYE)].mean(0)


def interocular(mesh: np.ndarray) -> float:
    """Distance between the eye centres, in the mesh's units."""
    right, left = eye_centres(mesh)
    return float(np.hypot(*(left - right)))


@dataclass(frozen=True)
class FaceFrame:
    """A face's similarity frame: face units -> pixels is p = centre + scale * R(angle) @ u."""

    centre: tuple[float, float]
    scale: float        # pixels per face unit: the inter-ocular distance
    angle: float        # roll in radians: the eye line's angle in the picture (y down)

    @classmethod
    def of(cls, mesh: np.ndarray) -> "FaceFrame":
        right, left = eye_centres(mesh)
        axis = left - right
        scale = float(np.hypot(*axis))
        if not np.isfinite(scale) or scale <= 1e-6:
            raise ValueError("the face mesh has both eyes at one point; it is not a face")
        centre = (right + left) / 2
        return cls((float(centre[0]), float(centre[1])), scale,
                   float(np.arctan2(axis[1], axis[0])))

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def to_face(self, points: np.ndarray) -> np.ndarray:
        """Pixels [..., 2 or 3] -> face units (z is scaled, not rotated)."""
        points = np.asarray(points, np.float64)
        xy = (points[..., :2] - np.asarray(self.centre)) @ self.rotation() / self.scale
        if points.shape[-1] == 3:
            return np.concatenate([xy, points[..., 2:] / self.scale], axis=-1)
        return xy

    def to_pixels(self, units: np.ndarray) -> np.ndarray:
        """Face units [..., 2 or 3] -> pixels: the inverse of to_face."""
        units = np.asarray(units, np.float64)
        xy = units[..., :2] @ self.rotation().T * self.scale + np.asarray(self.centre)
        if units.shape[-1] == 3:
            return np.concatenate([xy, units[..., 2:] * self.scale], axis=-1)
        return xy

    def vectors_to_pixels(self, units: np.ndarray) -> np.ndarray:
        """Displacements [..., 2] in face units -> pixels (no translation)."""
        return np.asarray(units, np.float64) @ self.rotation().T * self.scale

    def vectors_to_face(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(pixels, np.float64) @ self.rotation() / self.scale


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, translation) taking source [N, 2] closest
    to target [N, 2] in least squares (Umeyama 1991, without reflection)."""
    source = np.asarray(source, np.float64)[:, :2]
    target = np.asarray(target, np.float64)[:, :2]
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    variance = float((a ** 2).sum())
    if variance <= 1e-12:
        raise ValueError("cannot fit a similarity to points that all coincide")
    u, sigma, vt = np.linalg.svd(b.T @ a)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    d = np.diag([1.0, sign])
    rotation = u @ d @ vt
    scale = float((sigma * np.diag(d)).sum()) / variance
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_t - scale * rotation @ mu_s
    return matrix


def rigid_residual(still_mesh: np.ndarray, frame_mesh: np.ndarray) -> float:
    """How far a frame's face moved in a way a skull cannot: fit a similarity from the still's
    rigid landmarks to the frame's, and return the largest remaining distance over the still's
    inter-ocular distance. ~0.02-0.08 for real head motion, 0.1-0.2 for a melted face."""
    source = np.asarray(still_mesh, np.float64)[list(RIGID), :2]
    target = np.asarray(frame_mesh, np.float64)[list(RIGID), :2]
    matrix = fit_similarity(source, target)
    moved = source @ matrix[:, :2].T + matrix[:, 2]
    return float(np.hypot(*(moved - target).T).max() / interocular(still_mesh))
