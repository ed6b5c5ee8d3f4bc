"""Sampling the face-mesh poke model: a still and pokes -> clips of the still's own pixels.

1. The face: MediaPipe's mesh on the artist's still (before any style stage). With several
   faces, the one under the longest poke moves and the others are held.
2. Motion: the cINN draws the T frames' landmark codes given the still's layout and the longest
   poke (face units). Sample i's noise comes from its own generator, seeded by (seed, i), so the
   sample picked from the thumbnails bakes exactly as it looked.
3. Pokes, pins and the skull, exactly: the dense field is linear in the code, so every poke's
   and pin's displacement at its start is a linear function of each frame's code, and so is
   the part of the skull's landmarks' motion (geometry.RIGID: eye corners, nose, forehead,
   temples) that no rigid head motion makes (a 3-D rotation of the mesh, small angles, seen
   from the front, plus a shift and a scale). One closed-form solve per frame, before any
   pixel is touched, finds the smallest change of the (whitened) code that makes the last frame
   carry each poke's start to its end and every pin stay at every frame (hard), and takes the
   skull's non-rigid motion out (a heavy least-squares weight, SKULL_WEIGHT: the cINN, learnt
   from a few people, draws some squash and shear with every expression). Between the still
   and the last frame the pokes' correction grows linearly. Codes past the leading ones cost
   TRAILING_COST more to change, so a poke moves whole-face motions, not one landmark.
4. Pixels: the field (engine/poke/mesh/field.py: piecewise-affine on the face, harmonic over the
   person, zero elsewhere), inverted into a backward flow and rendered by the shared renderer at
   the still's full resolution. Outside the person, pins and static masks it is exactly zero,
   so those pixels are the still's, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch

from engine import frames as frames_io
from engine.errors import JobError
from engine.face.geometry import RIGID, FaceFrame
from engine.poke.mesh.field import MeshField
from engine.poke.mesh.model import MeshPokeModel
from engine.render import FrameRenderer, cubic_matrix, smoothstep
from engine.warp.pins import pin_discs

THUMB_SIDE = 128
# A poke whose start the field cannot move (outside the person, on a held face) moves less than
# this many pixels per unit of code: it cannot be followed, and is dropped with a warning.
REACH_FLOOR = 0.05
# Ridge on the projection's normal equations, relative to their scale: keeps a pin and a poke
# that start at nearly the same spot from asking for an unbounded code.
RIDGE = 1e-6
# A code is in standard deviations of the training motion; one beyond this is a diverged
# inverse (its frames would tear the face), drawn again from the sample's next generator.
DIVERGED = 8.0
# Pokes and pins are landed mostly by changing this many leading codes (more when there are
# many); changing one of the others costs TRAILING_COST times as much.
LEADING_CODES = 6
TRAILING_COST = 25.0
# Weight of the skull's non-rigid motion (face units, inter-ocular distance 1) against a code
# change (standard deviations): a residual of 0.01 costs as much as moving a code by 1.
SKULL_WEIGHT = 1e4
REDRAWS = 8


@dataclass
class FaceScene:
    """One still and the face that moves in it (working pixels)."""
    still: np.ndarray               # native array (engine/frames.py), what the frames show
    mesh: np.ndarray                # [468, 3] the moving face
    frame: FaceFrame
    field: MeshField
    gate: np.ndarray                # [H, W] 1 where pixels may move, 0 where they are held


def no_face_message() -> str:
    return ("no face found in the still: the face model moves faces only (photos, paintings "
            "and CGI faces MediaPipe finds, at least ~48 px across). For any other picture, "
            "switch the engine to Warp, which moves exactly what the arrows say")


def face_scene(still: np.ndarray, rgb: np.ndarray, pokes: Sequence[Sequence[float]],
               hold: np.ndarray | None, person: bool = True,
               warn: Callable[[str], None] = lambda message: None) -> FaceScene:
    """Find the face under the pokes, the person around it, and build the field operator.
    `rgb`: the artist's still (display RGB, float), for finding; `hold`: [H, W] pins and static
    masks in [0, 1] (or None)."""
    from engine.face.landmarks import detect_meshes

    height, width = still.shape[:2]
    meshes = detect_meshes(rgb, max_faces=4)
    if not meshes:
        raise JobError(no_face_message())
    longest = max(pokes, key=lambda p: math.hypot(p[2], p[3])) if pokes else None
    index = 0
    if longest is not None and len(meshes) > 1:
        index = int(np.argmin([_distance_to_face(m, longest[:2]) for m in meshes]))
    mesh = meshes[index]
    others = [m for k, m in enumerate(meshes) if k != index]
    person_mask = None
    if person:
        try:
            from engine.face.segmentation import person_mask as segment
            person_mask = segment(rgb)
        except JobError as error:
            warn(f"only the face itself moves (no person mask for hair and neck): {error}")
    field = MeshField(mesh, (height, width), person_mask, others, hold)
    gate = field.support_at((height, width))
    return FaceScene(still, mesh, FaceFrame.of(mesh), field, gate)


def _distance_to_face(mesh: np.ndarray, point) -> float:
    hull = cv2.convexHull(mesh[:, :2].astype(np.float32))
    return max(0.0, -cv2.pointPolygonTest(hull, (float(point[0]), float(point[1])), True))


class MotionSampler:
    """The model's motion for one scene: basis fields once, then any sample's frame fields."""

    def __init__(self, model: MeshPokeModel, scene: FaceScene):
        self.model = model
        self.scene = scene
        c = model.config
        # Landmark displacement (pixels) of the code's mean and of each code direction.
        rows = torch.cat([model.motion_mean[None], model.motion_basis]).double().numpy()
        pixels = scene.frame.vectors_to_pixels(rows.reshape(-1, 468, 2))
        self.fields = scene.field.fields(pixels)                       # [K + 1, 2, gh, gw]
        self.layout = torch.from_numpy(scene.frame.to_face(scene.mesh)[:, :2]).float()[None]
        self.frames = c.frames
        # The skull's non-rigid motion, linear in a frame's code: skull_offset + code @ skull.T
        skull = scene.frame.to_face(scene.mesh)[list(RIGID)]
        basis = model.motion_basis.double().numpy().reshape(-1, 468, 2)[:, list(RIGID)]
        basis = basis.reshape(len(basis), -1).T                                   # [2R, K]
        mean = model.motion_mean.double().numpy().reshape(468, 2)[list(RIGID)].reshape(-1)
        rigid = _rigid_projector(skull)
        self.skull = torch.from_numpy(rigid @ basis)                              # [2R, K]
        self.skull_offset = torch.from_numpy(rigid @ mean)                        # [2R]

    def values_at(self, points: Sequence[Sequence[float]]) -> torch.Tensor:
        """Each basis field's full-resolution displacement (pixels) at each point:
        [P, 2, K + 1], the renderer's own interpolation (engine/render.py upsample_flow)."""
        height, width = self.scene.still.shape[:2]
        gh, gw = self.scene.field.grid
        out = []
        for x, y in points:
            row = min(height - 1, max(0, int(math.floor(y))))
            col = min(width - 1, max(0, int(math.floor(x))))
            wy = cubic_matrix(row, row + 1, height, gh, 0, gh, self.fields)[0]
            wx = cubic_matrix(col, col + 1, width, gw, 0, gw, self.fields)[0]
            value = torch.einsum("h,mchw,w->cm", wy, self.fields, wx)
            out.append(value * torch.tensor([width / gw, height / gh])[:, None])
        return torch.stack(out) if out else torch.zeros(0, 2, self.fields.shape[0])

    def codes(self, pokes, pins, count: int, seed: int, temperature: float,
              indices: Sequence[int] | None = None,
              warn: Callable[[str], None] = lambda message: None) -> torch.Tensor:
        """Codes [S, T, K] of the samples `indices` (default 0..count-1), each landing every
        poke (x, y, dx, dy; working pixels) exactly at the last frame and holding every pin
        (x, y) at every frame."""
        from engine.poke.sample import sample_generator

        indices = list(range(count)) if indices is None else list(indices)
        model, frame = self.model, self.scene.frame
        longest = max(pokes, key=lambda p: math.hypot(p[2], p[3]))
        start = torch.from_numpy(frame.to_face(np.array([longest[:2]]))).float()
        drag = torch.from_numpy(frame.vectors_to_face(np.array([longest[2:4]]))).float()
        cond = model.condition(self.layout, start, drag)
        dims = model.config.codes * model.config.frames
        rows = []
        for index in indices:
            for redraw in range(REDRAWS + 1):
                noise = torch.randn(dims, generator=sample_generator(seed, index, redraw))
                code = model.sample(cond, noise[None] * temperature)[0]
                if bool(torch.isfinite(code).all()) and float(code.abs().max()) < DIVERGED:
                    break
            else:
                raise JobError(f"sample {index}: the model's inverse diverged on {REDRAWS + 1} "
                               "draws; lower the temperature or change the seed")
            if redraw:
                warn(f"sample {index} was drawn again ({redraw}x): the model's inverse "
                     "diverged on its first noise")
            rows.append(code)
        return self._project(torch.stack(rows).double(), pokes, pins, warn)

    def _project(self, codes, pokes, pins, warn) -> torch.Tensor:
        """Each frame's code changed as little as it can be (leading codes first) for every kept
        poke to land at the last frame, every pin to hold and the skull to move rigidly (the
        module docstring, step 3): one KKT solve per frame."""
        values = self.values_at([p[:2] for p in pokes] + [p[:2] for p in pins]).double()
        reach = values[:, :, 1:].norm(dim=(1, 2))
        keep = []
        for number, poke in enumerate(pokes):
            if reach[number] < REACH_FLOOR:
                warn(f"a poke starting at ({poke[0]:.0f}, {poke[1]:.0f}) is off the moving "
                     "face and person, so nothing there can follow it; it is ignored")
            else:
                keep.append(number)
        keep += [len(pokes) + k for k in range(len(pins)) if reach[len(pokes) + k] >= REACH_FLOOR]
        _, frames, count = codes.shape
        values = values[keep]
        offset = values[:, :, 0].reshape(-1)                     # [2P] the mean's share
        matrix = values[:, :, 1:].reshape(-1, count)             # [2P, K]
        now = codes @ matrix.T + offset                           # [S, T, 2P]
        target_last = torch.tensor([c for k in keep for c in
                                    ((pokes[k][2], pokes[k][3]) if k < len(pokes)
                                     else (0.0, 0.0))], dtype=torch.float64)
        is_pin = torch.tensor([k >= len(pokes) for k in keep for _ in (0, 1)], dtype=torch.bool)
        ramp = torch.arange(1, frames + 1, dtype=torch.float64) / frames
        target = now + ramp[None, :, None] * (target_last - now[:, -1:, :])
        target = torch.where(is_pin, torch.zeros_like(target), target)
        # minimise d'.cost.d + SKULL_WEIGHT |skull (c + d) + skull_offset|^2
        # subject to matrix d = target - now
        leading = min(count, max(LEADING_CODES, len(matrix) + 2))
        cost = torch.full((count,), TRAILING_COST, dtype=torch.float64)
        cost[:leading] = 1.0
        skull = self.skull
        hessian = torch.diag(cost) + SKULL_WEIGHT * skull.T @ skull
        residual = codes @ skull.T + self.skull_offset            # [S, T, 2R]
        pull = -SKULL_WEIGHT * residual @ skull                   # [S, T, K]
        size = count + len(matrix)
        system = torch.zeros(size, size, dtype=torch.float64)
        system[:count, :count] = hessian
        system[:count, count:] = matrix.T
        system[count:, :count] = matrix
        if len(matrix):  # a pin and a poke at nearly the same spot: keep the solve bounded
            normal = matrix @ torch.linalg.solve(hessian, matrix.T)
            system[count:, count:] = -RIDGE * normal.diagonal().mean() * torch.eye(
                len(matrix), dtype=torch.float64)
        rhs = torch.cat([pull, target - now], dim=-1).reshape(-1, size).T
        change = torch.linalg.solve(system, rhs).T[:, :count].reshape(codes.shape)
        return (codes + change).float()

    def frame_landmarks(self, codes: torch.Tensor) -> np.ndarray:
        """[T, K] codes of one sample -> the landmarks' displacements [T, 468, 2] (pixels)."""
        motion = self.model.decode_motion(codes.float()).double().numpy()
        return self.scene.frame.vectors_to_pixels(motion)

    def frame_fields(self, codes: torch.Tensor) -> torch.Tensor:
        """[T, K] codes of one sample -> forward fields [T, 2, gh, gw] (grid cells)."""
        weights = torch.cat([torch.ones(len(codes), 1), codes.float()], dim=1)
        return torch.einsum("tm,mchw->tchw", weights, self.fields)


def _rigid_projector(points: np.ndarray) -> np.ndarray:
    """[2R, 2R]: the part of the R landmarks' displacement (x0, y0, x1, y1, ...; face units)
    that no rigid head motion makes. Rigid: a shift, a scale, a roll, and small yaw and pitch
    turns of the 3-D mesh seen from the front (x moves by z * yaw, y by z * pitch)."""
    x, y, z = (np.asarray(points, np.float64)[:, k] for k in range(3))
    zero, one = np.zeros_like(x), np.ones_like(x)
    motions = [(one, zero), (zero, one), (x, y), (-y, x), (z, zero), (zero, z)]
    allowed = np.stack([np.stack(pair, axis=1).reshape(-1) for pair in motions], axis=1)
    return np.eye(len(allowed)) - allowed @ np.linalg.pinv(allowed)


def with_still(sequence: np.ndarray | torch.Tensor):
    """The sample's T frames [T, ...] with the still's (zero motion) put first: a sequence
    engine/poke/sample.py's frame_positions and blend_at read like a generated clip."""
    if torch.is_tensor(sequence):
        return torch.cat([torch.zeros_like(sequence[:1]), sequence])
    return np.concatenate([np.zeros_like(sequence[:1]), sequence])


# The inner edges of the lips, corner (78) to corner (308) (MediaPipe face mesh).
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# The lips must part by more than this (face units) before the mouth's inside is drawn.
MOUTH_OPENING_FLOOR = 0.005
CAVITY_DARKNESS = 0.6    # the inside: the still's darkest mouth colour times this


def _along(contour: np.ndarray, s: np.ndarray) -> np.ndarray:
    """A lip contour [N, 2] (face units, corner to corner) at positions s in [0, 1] from the
    first corner to the last along x: [len(s), 2]."""
    x = contour[:, 0]
    t = (x - x[0]) / max(float(x[-1] - x[0]), 1e-9)
    order = np.argsort(t)
    t, contour = t[order], contour[order]
    return np.stack([np.interp(s, t, contour[:, k]) for k in (0, 1)], axis=1)


class MouthCavity:
    """What the motion uncovers inside the mouth. The warp alone would stretch whatever lay
    between the lips in the still (a lip line, teeth) into the opening. A jaw that drops
    parts the mouth instead: what lay along the upper lip (the upper teeth) stays with it, what
    lay along the lower lip goes down with it, and between them the dark inside shows. So,
    column by column across the mouth (in face units), inside the moved inner-lip outline: the
    first half of the still's own gap under the upper lip is copied from under the still's
    upper lip, the same over the lower lip, and the rest is the darkest colour of the still's
    own mouth, shaded; the edges blend over a fraction of a pixel's worth of face units."""

    def __init__(self, scene: FaceScene):
        self.scene = scene
        self.frame = scene.frame
        units = scene.frame.to_face(scene.mesh[:, :2])
        self.upper0 = units[list(UPPER_INNER_LIP)]
        self.lower0 = units[list(LOWER_INNER_LIP)]
        self.still = frames_io.to_float(scene.still)
        self.soft = max(1.2 / scene.frame.scale, 0.015)  # face units: a pixel or more
        box = self._box(scene.mesh[[61, 291, 0, 17], :2], self.still.shape)
        region = self.still[box[1]:box[3], box[0]:box[2]]
        region = region.reshape(-1, region.shape[-1])[:, :min(3, region.shape[-1])]
        light = region.mean(axis=1)
        dark = region[light <= np.quantile(light, 0.05)].mean(axis=0) if len(region) else \
            np.zeros(region.shape[-1])
        self.colour = (dark * CAVITY_DARKNESS).astype(np.float32)

    @staticmethod
    def _box(points, shape, pad=4):
        low = np.floor(points.min(0)).astype(int) - pad
        high = np.ceil(points.max(0)).astype(int) + pad
        return (max(0, low[0]), max(0, low[1]), min(shape[1], high[0]), min(shape[0], high[1]))

    def apply(self, frame: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """frame (native array) and the landmarks' displacement [468, 2] at that frame."""
        moved = self.frame.vectors_to_face(displacement)
        upper = self.upper0 + moved[list(UPPER_INNER_LIP)]
        lower = self.lower0 + moved[list(LOWER_INNER_LIP)]
        probe = np.linspace(0, 1, 33)
        if float((_along(lower, probe)[:, 1] - _along(upper, probe)[:, 1]
                  - (_along(self.lower0, probe)[:, 1] - _along(self.upper0, probe)[:, 1])
                  ).max()) <= MOUTH_OPENING_FLOOR:
            return frame
        outline = self.frame.to_pixels(np.concatenate([upper, lower[::-1]]))
        x0, y0, x1, y1 = self._box(outline, frame.shape, pad=2)
        if x1 <= x0 or y1 <= y0:
            return frame
        ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
        u = self.frame.to_face(np.stack([xs.ravel(), ys.ravel()], 1))
        left, right = upper[0, 0], upper[-1, 0]
        s = (u[:, 0] - left) / max(float(right - left), 1e-9)
        inside_s = (s > 0) & (s < 1)
        s = np.clip(s, 0, 1)
        top, bottom = _along(upper, s), _along(lower, s)
        top0, bottom0 = _along(self.upper0, s), _along(self.lower0, s)
        gap0 = np.maximum(bottom0[:, 1] - top0[:, 1], 0.0)
        a = u[:, 1] - top[:, 1]           # below the moved upper lip
        b = bottom[:, 1] - u[:, 1]        # above the moved lower lip
        inside = inside_s & (a > 0) & (b > 0)
        if not inside.any():
            return frame
        # Where each pixel's content comes from in the still (face units), and how much of
        # the dark inside shows there.
        from_top = top0 + np.stack([u[:, 0] - top[:, 0], a], 1)
        from_bottom = bottom0 + np.stack([u[:, 0] - bottom[:, 0], -b], 1)
        half = gap0 / 2
        near_top = a <= b
        source = np.where(near_top[:, None], from_top, from_bottom)
        reach = np.where(near_top, a, b) - half
        cavity = smoothstep(reach / self.soft, 0.0, 1.0) * inside
        pixels = self.frame.to_pixels(source).astype(np.float32) - 0.5
        map_x = pixels[:, 0].reshape(xs.shape)
        map_y = pixels[:, 1].reshape(xs.shape)
        content = cv2.remap(self.still, map_x, map_y, cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REPLICATE)
        if content.ndim == 2:
            content = content[:, :, None]
        patch = frames_io.to_float(frame[y0:y1, x0:x1])
        # shade toward the back of the mouth: darker where it is deepest
        depth = np.clip(reach / np.maximum(np.maximum(a, b), 1e-9), 0, 1).reshape(xs.shape)
        dark = self.colour * (1.0 - 0.4 * depth[..., None])
        weight = cavity.reshape(xs.shape)[..., None]
        filled = content[..., :dark.shape[-1]] * (1 - weight) + dark * weight
        keep = inside.reshape(xs.shape)[..., None]
        colour = np.where(keep, filled, patch[..., :dark.shape[-1]])
        if patch.shape[2] > colour.shape[2]:
            colour = np.concatenate([colour, patch[..., colour.shape[2]:]], axis=2)
        out = frame.copy()
        out[y0:y1, x0:x1] = frames_io.from_float(colour.astype(np.float32), frame.dtype)
        return out


def render_clip(scene: FaceScene, fields: torch.Tensor, count: int, loop: bool = False,
                device="cpu", landmarks: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The sample's `count` frames at the still's resolution; with the landmarks'
    displacements [T, 468, 2], the mouth's inside is filled where it opens (MouthCavity)."""
    from engine.poke.motion import backward_flow
    from engine.poke.sample import blend_at, frame_positions

    renderer = FrameRenderer(scene.still, device, gate=scene.gate)
    mouth = MouthCavity(scene) if landmarks is not None else None
    fields = with_still(fields)
    landmarks = with_still(landmarks) if landmarks is not None else None
    for position in frame_positions(count, len(fields), loop):
        forward = blend_at(fields, float(position))
        if not bool((forward != 0).any()):
            yield scene.still.copy()
            continue
        if landmarks is None:
            frame = renderer.render(backward_flow(forward[None])[0])
        else:
            moved = blend_at(landmarks, float(position))
            frame = mouth.apply(renderer.render(scene.field.backward(forward, moved)), moved)
        yield frame


def thumbnail(scene: FaceScene, fields: torch.Tensor, landmarks: np.ndarray | None = None,
              side: int = THUMB_SIDE) -> np.ndarray:
    """uint8 RGB: the sample's last frame around the face, `side` px square."""
    last = list(render_clip(scene, fields[-1:], 2, landmarks=None if landmarks is None
                            else landmarks[-1:]))[-1]
    height, width = last.shape[:2]
    low, high = scene.mesh[:, :2].min(0), scene.mesh[:, :2].max(0)
    centre, half = (low + high) / 2, 0.8 * float((high - low).max())
    x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
    x1, y1 = int(min(width, centre[0] + half)), int(min(height, centre[1] + half))
    crop = frames_io.to_display(last[y0:y1, x0:x1])
    crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA
                      if crop.shape[0] > side else cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------
# Job file entry (engine/runner.py through engine/poke/sample.py): engine "poke" with a
# face-mesh model.


class MeshClip:
    """One sample's frames at full resolution, as the runner iterates them."""

    def __init__(self, scene: FaceScene, fields: torch.Tensor, landmarks: np.ndarray,
                 count: int, loop: bool, device):
        self.scene, self.fields, self.landmarks = scene, fields, landmarks
        self.count, self.loop, self.device = count, loop, device

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        return render_clip(self.scene, self.fields, self.count, self.loop, self.device,
                           self.landmarks)


def prepare(job, device, progress):
    """The frames (or the thumbnails) a poke job with a face-mesh model asks for."""
    from engine.job import read_motion_still
    from engine.poke.mesh.model import load_mesh_model
    from engine.poke.sample import NamedImages, display_rgb, read_poke_still, sample_name

    settings = job.poke
    still, width, height, sx, sy, is_pin = read_poke_still(job)
    work_h, work_w = still.shape[:2]
    pokes = [(p.start[0] * sx, p.start[1] * sy, p.vector[0] * sx, p.vector[1] * sy)
             for p, pinned in zip(job.pokes, is_pin) if not pinned]
    pins = [(p.start[0] * sx, p.start[1] * sy, p.radius * math.sqrt(sx * sy))
            for p, pinned in zip(job.pokes, is_pin) if pinned]
    statics = []
    for index, mask in enumerate(job.masks, 1):
        if mask.label == "static":
            values = frames_io.read_mask(mask.path, width, height, name=f"mask {index}")
            statics.append(cv2.resize(values, (work_w, work_h), interpolation=cv2.INTER_AREA))
    hold = pin_discs(pins, work_w, work_h)
    for values in statics:
        hold = values if hold is None else np.maximum(hold, values)
    # The face and the person are found on the artist's still even when a style painted it.
    unstyled = read_motion_still(job, work_w, work_h)
    rgb = display_rgb(still if unstyled is None else unstyled)
    progress.emit("face", 0, 1)
    scene = face_scene(still, rgb, pokes, hold, person=settings.background,
                       warn=progress.warning)
    progress.emit("face", 1, 1, interocular=round(scene.frame.scale, 1))
    model = load_mesh_model(settings.model_path())
    sampler = MotionSampler(model, scene)
    indices = list(range(settings.samples)) if settings.thumbnails else [settings.sample]
    progress.emit("sample", 0, len(indices))
    codes = sampler.codes(pokes, [p[:2] for p in pins], settings.samples, job.seed,
                          settings.temperature, indices, progress.warning)
    progress.emit("sample", len(indices), len(indices))
    if settings.thumbnails:
        return NamedImages([(f"{sample_name(i)}.png",
                             thumbnail(scene, sampler.frame_fields(c), sampler.frame_landmarks(c)))
                            for i, c in zip(indices, codes)])
    return MeshClip(scene, sampler.frame_fields(codes[0]), sampler.frame_landmarks(codes[0]),
                    job.frames, job.loop, device)
