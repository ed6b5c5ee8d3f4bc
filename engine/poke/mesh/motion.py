"""Face motion in landmark space: the training clips of the face-mesh poke model.

A clip is a still's 468 landmarks and their displacements over `frames` frames, all in the
still's face units (engine/face/geometry.py: the still's eye midpoint at 0, inter-ocular
distance 1, the eye line along +x). Nothing in it knows whose face it is.

Two sources, mixed:
- **Tracks.** MediaPipe's mesh followed through real talking-head clips (carphone), lightly
  smoothed in time (the mesh jitters by ~0.01 face units a frame); windows whose skull moved
  more than a real short clip does (rigid residual > TRACK_RESIDUAL) are dropped.
- **An identity-free prior.** A face from the tracks, reshaped (wider, longer, flatter), turned
  in 3-D to a random pose, is moved by small 3-D head rotations (yaw, pitch about the head's
  centre, roll about the neck), a slide and a scale, and by expressions defined once per
  landmark index on the reference face: the jaw opening about its hinge, a smile, each eye's
  lids, the brows. Head turns stay within MAX_TURN: a real 12 degree turn already measures
  0.063 on the face-structure residual, and a generated clip must stay under 0.06.

The poke of a clip is iPOKE's: a landmark picked where the clip moves (probability in
proportion to its displacement at the last frame) and that displacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.face.geometry import (LEFT_EYE, RIGHT_EYE, RIGID, FaceFrame, fit_similarity,
                                  interocular)

FRAMES = 8                 # model frames after the still
TRACK_RESIDUAL = 0.06      # real windows whose skull deforms more than this are not used
TRACK_SMOOTH = 1.0         # Gaussian sigma in frames for the tracks
MAX_TURN = np.radians(6.0)
HEAD_CENTRE = np.array([0.0, 0.4, 1.1])   # face units: behind the eyes, between the ears
NECK = np.array([0.0, 2.6])               # roll pivot in the picture plane

# Eye lids, outer corner to inner (MediaPipe FACEMESH_RIGHT_EYE / LEFT_EYE order).
RIGHT_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_LOWER = (249, 390, 373, 374, 380, 381, 382)
EYE_CORNERS = (33, 133, 362, 263)
UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
LOWER_OUTER_LIP = 17
MOUTH_CORNERS = ((61, 78), (291, 308))     # (outer, inner), person's right then left
# The lips' inner and outer edges between the corners (MediaPipe FACEMESH_LIPS).
UPPER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415, 185, 40, 39, 37, 0, 267, 269, 270, 409)
LOWER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324, 146, 91, 181, 84, 17, 314, 405, 321, 375)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
EXPRESSIONS = ("jaw", "smile", "right_lids", "left_lids", "brows")


def smooth_track(track: np.ndarray, sigma: float = TRACK_SMOOTH) -> np.ndarray:
    """[N, 468, C] landmarks over time, Gaussian-smoothed along time (edges repeat)."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.concatenate([track[:1].repeat(radius, 0), track, track[-1:].repeat(radius, 0)])
    return sum(w * padded[k:k + len(track)] for k, w in enumerate(taps))


def to_face_units(mesh: np.ndarray) -> np.ndarray:
    """[468, 3] pixels -> face units of its own frame."""
    return FaceFrame.of(mesh).to_face(mesh)


def _rbf_spread(reference: np.ndarray, controls: dict[int, np.ndarray], sigma: float,
                fixed=RIGID) -> np.ndarray:
    """Per-landmark 3-D displacements: the controls' own, spread to the other landmarks by a
    Gaussian of their distance in the reference face (normalised only where the weights sum
    past 1, so the effect dies out away from the controls); `fixed` landmarks hold."""
    controls = dict(controls)
    for index in fixed:
        controls.setdefault(index, np.zeros(3))
    keys = np.array(list(controls))
    values = np.stack([np.asarray(controls[k], np.float64) for k in keys])
    distance = np.linalg.norm(reference[:, None, :2] - reference[None, keys, :2], axis=2)
    weights = np.exp(-0.5 * (distance / sigma) ** 2)
    out = weights @ values / np.maximum(weights.sum(1, keepdims=True), 1.0)
    out[keys] = values
    return out


def _smoothstep(x, low, high):
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def expression_basis(reference: np.ndarray) -> dict[str, np.ndarray]:
    """Each expression's 3-D landmark displacement at full strength on the reference face
    [468, 3] (face units): name -> [468, 3]. Defined by landmark index, so it applies to any
    face; the jaw is a rotation, so it is linearised at its typical opening."""
    ref = np.asarray(reference, np.float64)
    basis = {}
    # Jaw: the mandible turns ~14 degrees about a hinge in front of the ears; how much of it a
    # landmark follows grows from the upper inner lip (none) to the lower outer lip (all).
    # The whole lower lip goes with the jaw and the whole upper lip stays (setting only the
    # middle landmarks would pull a notch into the lip); the corners go half way, the skin
    # between the corners' line and the chin follows by height.
    hinge = np.array([ref[:, 1].mean(), HEAD_CENTRE[2] * 0.8])
    corners_y = ref[[c for pair in MOUTH_CORNERS for c in pair], 1].mean()
    follow = _smoothstep(ref[:, 1], corners_y, ref[LOWER_OUTER_LIP, 1])
    follow *= 1.0 - 0.5 * _smoothstep(np.abs(ref[:, 0]), 0.6, 1.1)
    follow[list(UPPER_LIP)] = 0.0
    follow[list(LOWER_LIP)] = 1.0
    follow[[c for pair in MOUTH_CORNERS for c in pair]] = 0.5
    angle = np.radians(14.0)
    rel = np.stack([ref[:, 1] - hinge[0], ref[:, 2] - hinge[1]], axis=1)
    turned = rel @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    jaw = np.zeros_like(ref)
    jaw[:, 1:] = (turned - rel) * follow[:, None]
    jaw[list(RIGID)] = 0.0
    basis["jaw"] = jaw
    # Smile: the mouth corners go out and up, the cheeks with them.
    controls = {}
    for side, corners in zip((-1.0, 1.0), MOUTH_CORNERS):
        for corner in corners:
            controls[corner] = np.array([0.09 * side, -0.07, 0.0])
    basis["smile"] = _rbf_spread(ref, controls, 0.2)
    # Lids: the upper lid closes 85 % of the gap, the lower rises to meet it.
    for name, upper, lower in (("right_lids", RIGHT_UPPER, RIGHT_LOWER),
                               ("left_lids", LEFT_UPPER, LEFT_LOWER)):
        controls = {corner: np.zeros(3) for corner in EYE_CORNERS}
        for u, l in zip(upper, lower):
            gap = ref[l, 1] - ref[u, 1]
            controls[u] = np.array([0.0, 0.85 * gap, 0.0])
            controls[l] = np.array([0.0, -0.15 * gap, 0.0])
        basis[name] = _rbf_spread(ref, controls, 0.06)
    # Brows: up by 0.1 face units (a frown is the negative), the skin above the lids follows.
    controls = {index: np.array([0.0, -0.10, 0.0]) for index in RIGHT_BROW + LEFT_BROW}
    basis["brows"] = _rbf_spread(ref, controls, 0.15)
    return basis


def _rotation(yaw, pitch) -> np.ndarray:
    """[B, 3, 3] rotations: yaw about the vertical, then pitch about the horizontal axis."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    r_yaw = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                      np.stack([-sy, zero, cy], -1)], -2)
    r_pitch = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                        np.stack([zero, sp, cp], -1)], -2)
    return r_pitch @ r_yaw


def _ease(rng, count, frames):
    """[B, T] ease curves from 0 (the still) to 1 at a random moment in the clip."""
    t = np.arange(1, frames + 1) / frames
    start = rng.uniform(0.0, 0.4, (count, 1))
    end = rng.uniform(0.6, 1.0, (count, 1))
    return _smoothstep(t[None], start, end)


def _active(rng, count, share, low, high):
    return np.where(rng.random(count) < share, rng.uniform(low, high, count), 0.0)


def _normalise_to_still(still2d: np.ndarray, frames2d: np.ndarray):
    """Still [B, 468, 2] and frames [B, T, 468, 2] in any common 2-D frame -> the still's
    layout in its own face units and the frames' displacements in those units (FaceFrame,
    done for the whole batch at once)."""
    right = still2d[:, list(RIGHT_EYE)].mean(1)
    left = still2d[:, list(LEFT_EYE)].mean(1)
    axis = left - right
    scale = np.hypot(axis[:, 0], axis[:, 1])[:, None, None]
    c, s = (axis[:, 0] / scale[:, 0, 0])[:, None], (axis[:, 1] / scale[:, 0, 0])[:, None]
    centre = ((right + left) / 2)[:, None]

    def to_face(points, centre):  # rotate by -angle, divide by the scale
        x = np.ascontiguousarray(points[..., 0]) - centre[..., 0]
        y = np.ascontiguousarray(points[..., 1]) - centre[..., 1]
        return np.stack([c * x + s * y, c * y - s * x], -1) / scale

    layouts = to_face(still2d, centre)
    frames = frames2d.reshape(len(frames2d), -1, 2)
    motion = to_face(frames, centre).reshape(frames2d.shape) - layouts[:, None]
    return layouts.astype(np.float32), motion.astype(np.float32)


def synthetic_clips(rng: np.random.Generator, faces: np.ndarray, basis: dict[str, np.ndarray],
                    count: int, frames: int = FRAMES):
    """`count` clips from the prior: (layouts [B, 468, 2], motion [B, T, 468, 2])."""
    base = faces[rng.integers(0, len(faces), count)].astype(np.float64)
    base[..., 0] *= rng.uniform(0.9, 1.1, (count, 1))
    base[..., 1] *= rng.uniform(0.9, 1.12, (count, 1))
    base[..., 2] *= rng.uniform(0.8, 1.2, (count, 1))
    # The still's own pose: anywhere a face mesh is still found.
    yaw0 = rng.uniform(-np.radians(30), np.radians(30), count)
    pitch0 = rng.uniform(-np.radians(12), np.radians(12), count)
    ease = {name: _ease(rng, count, frames) for name in
            ("yaw", "pitch", "roll", "move", "scale", *EXPRESSIONS)}
    amount = {
        "yaw": np.clip(rng.normal(0, np.radians(3.5), count), -MAX_TURN, MAX_TURN)
        * (rng.random(count) < 0.6),
        "pitch": np.clip(rng.normal(0, np.radians(3.0), count), -MAX_TURN, MAX_TURN)
        * (rng.random(count) < 0.5),
        "roll": rng.normal(0, np.radians(5.0), count) * (rng.random(count) < 0.5),
        "scale": rng.normal(0, 0.03, count) * (rng.random(count) < 0.3),
        "jaw": _active(rng, count, 0.45, 0.15, 1.3),
        "smile": _active(rng, count, 0.3, -0.4, 1.0),
        "brows": _active(rng, count, 0.3, -0.6, 1.0),
    }
    both = _active(rng, count, 0.25, -0.35, 1.0)
    amount["right_lids"] = np.where(rng.random(count) < 0.08, _active(rng, count, 1, 0.3, 1.0),
                                    both)
    amount["left_lids"] = np.where(rng.random(count) < 0.08, _active(rng, count, 1, 0.3, 1.0),
                                   both)
    move = rng.normal(0, 0.08, (count, 2)) * (rng.random((count, 1)) < 0.4)

    def pose(points, yaw, pitch):
        rotation = _rotation(yaw, pitch)
        return np.einsum("bij,bnj->bni", rotation, points - HEAD_CENTRE) + HEAD_CENTRE

    still = pose(base, yaw0, pitch0)[..., :2]
    out = np.empty((count, frames, base.shape[1], 2))
    for t in range(frames):
        shaped = base.copy()
        for name in EXPRESSIONS:
            shaped += (amount[name] * ease[name][:, t])[:, None, None] * basis[name][None]
        points = pose(shaped, yaw0 + amount["yaw"] * ease["yaw"][:, t],
                      pitch0 + amount["pitch"] * ease["pitch"][:, t])[..., :2]
        roll = amount["roll"] * ease["roll"][:, t]
        c, s = np.cos(roll), np.sin(roll)
        rel = points - NECK
        points = np.stack([c[:, None] * rel[..., 0] - s[:, None] * rel[..., 1],
                           s[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]], -1) + NECK
        points = points * (1.0 + amount["scale"] * ease["scale"][:, t])[:, None, None]
        out[:, t] = points + (move * ease["move"][:, t:t + 1])[:, None]
    return _normalise_to_still(still, out)


@dataclass
class TrackWindows:
    """Real windows cut from face tracks: start frame indices into `tracks`."""
    tracks: list[np.ndarray]           # each [N, 468, 3] pixels, smoothed
    starts: list[tuple[int, int]]      # (track, first frame)
    frames: int

    @classmethod
    def cut(cls, tracks, frames: int = FRAMES, residual: float = TRACK_RESIDUAL):
        smoothed = [smooth_track(np.asarray(t, np.float64)) for t in tracks]
        starts = []
        for number, track in enumerate(smoothed):
            for first in range(len(track) - frames):
                window = track[first:first + frames + 1]
                if not np.isfinite(window).all():
                    continue
                if max(_rigid(window[0], w) for w in window[1:]) <= residual:
                    starts.append((number, first))
        return cls(smoothed, starts, frames)

    def sample(self, rng: np.random.Generator, count: int):
        """(layouts [B, 468, 2], motion [B, T, 468, 2]); half of them played backwards."""
        picks = rng.integers(0, len(self.starts), count)
        stills, frames = [], []
        for pick, backwards in zip(picks, rng.random(count) < 0.5):
            number, first = self.starts[pick]
            window = self.tracks[number][first:first + self.frames + 1, :, :2]
            if backwards:
                window = window[::-1]
            stills.append(window[0])
            frames.append(window[1:])
        return _normalise_to_still(np.stack(stills), np.stack(frames))


def _rigid(still, frame) -> float:
    source, target = still[list(RIGID), :2], frame[list(RIGID), :2]
    matrix = fit_similarity(source, target)
    moved = source @ matrix[:, :2].T + matrix[:, 2]
    return float(np.hypot(*(moved - target).T).max() / interocular(still))


def clip_pokes(rng: np.random.Generator, layouts: np.ndarray, motion: np.ndarray,
               noise: float = 0.005):
    """iPOKE's poke per clip: a landmark drawn in proportion to how far it moved by the last
    frame (plus a floor, so still spots get poked too) -> (start [B, 2], drag [B, 2])."""
    last = np.linalg.norm(motion[:, -1], axis=2) + 0.001        # [B, 468]
    cumulative = np.cumsum(last / last.sum(1, keepdims=True), axis=1)
    index = (cumulative < rng.random((len(motion), 1))).sum(1).clip(0, motion.shape[2] - 1)
    rows = np.arange(len(motion))
    start = layouts[rows, index]
    drag = motion[rows, -1, index] + rng.normal(0, noise, (len(motion), 2))
    return start.astype(np.float32), drag.astype(np.float32)
