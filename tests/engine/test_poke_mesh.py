"""The face-mesh poke engine (engine/poke/mesh/): face units, the dense field, the identity-free
motion prior, and sampling with exact pokes and pins on a real face (MediaPipe)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.errors import JobError
from engine.face.geometry import FaceFrame, fit_similarity, rigid_residual
from engine.poke.mesh import motion as mesh_motion
from engine.poke.mesh.field import MeshField, delaunay, harmonic_fill

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO / "media"
MODEL = REPO / "models" / "poke_mesh.safetensors"


def _mediapipe():
    pytest.importorskip("mediapipe", reason="requirements/face.txt is not installed")


def astronaut(size: int = 384) -> np.ndarray:
    path = MEDIA / "astronaut.png"
    if not path.is_file():
        pytest.skip("media/astronaut.png is missing: run `make media`")
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def synthetic_mesh(seed: int = 0, centre=(200.0, 180.0), scale: float = 40.0) -> np.ndarray:
    """468 landmark-like points on an ellipse-shaped face with the eye corners where the mesh
    puts them (enough for face frames and triangulation)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, 468)
    radius = np.sqrt(rng.uniform(0, 1, 468))
    points = np.stack([1.1 * radius * np.cos(angle), 1.4 * radius * np.sin(angle) + 0.4,
                       rng.normal(0, 0.2, 468)], 1)
    points[[33, 133, 362, 263], :2] = [[-0.7, 0], [-0.3, 0], [0.3, 0], [0.7, 0]]
    points[:, :2] = points[:, :2] * scale + np.asarray(centre)
    points[:, 2] *= scale
    return points.astype(np.float32)


# -- face units --------------------------------------------------------------------------------


def test_face_units_round_trip_and_put_the_eyes_on_the_x_axis():
    mesh = synthetic_mesh()
    rotation = np.radians(20)
    c, s = np.cos(rotation), np.sin(rotation)
    turned = mesh.copy()
    turned[:, :2] = (mesh[:, :2] - 200) @ np.array([[c, s], [-s, c]]) * 1.7 + [310, 95]
    frame = FaceFrame.of(turned)
    units = frame.to_face(turned)
    assert np.allclose(frame.to_pixels(units), turned, atol=1e-4)
    # the eye centres land at (-0.5, 0) and (0.5, 0): inter-ocular distance 1, no roll
    right = units[[33, 133], :2].mean(0)
    left = units[[362, 263], :2].mean(0)
    assert np.allclose(right, [-0.5, 0], atol=1e-6) and np.allclose(left, [0.5, 0], atol=1e-6)
    assert frame.scale == pytest.approx(1.7 * 40 * 1.0, rel=1e-6)
    vectors = np.array([[3.0, -2.0], [0.0, 5.0]])
    assert np.allclose(frame.vectors_to_face(frame.vectors_to_pixels(vectors)), vectors)
    # the same face in another place, size and roll has the same face units
    assert np.allclose(to_units(mesh)[:, :2], units[:, :2], atol=1e-4)


def to_units(mesh):
    return FaceFrame.of(mesh).to_face(mesh)


def test_rigid_residual_ignores_similarities_and_measures_melting():
    mesh = synthetic_mesh()
    matrix = np.array([[0.9, -0.3, 14.0], [0.3, 0.9, -8.0]])
    moved = mesh[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    assert rigid_residual(mesh, moved) < 1e-9
    assert np.allclose(fit_similarity(mesh[:, :2], moved), matrix, atol=1e-9)
    melted = moved.copy()
    melted[263] += [0.0, 0.2 * 40 * 1.0]      # one outer eye corner drops 0.2 IOD
    assert rigid_residual(mesh, melted) > 0.1


# -- the dense field ---------------------------------------------------------------------------


def test_delaunay_tiles_the_points_without_overlap():
    points = synthetic_mesh()[:, :2]
    triangles = delaunay(points)
    a, b, c = (points[triangles[:, k]].astype(np.float64) for k in range(3))
    area = np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                  - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) / 2
    hull = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    # no overlap (the areas never add up past the hull), and no gap but, at most, a sliver
    # between nearly collinear points on the hull, which OpenCV's subdivision may leave out
    assert hull * 0.999 <= area.sum() <= hull * (1 + 1e-6)


def test_field_is_the_landmark_displacement_at_landmarks_and_zero_outside_the_person():
    mesh = synthetic_mesh()
    person = np.zeros((360, 400), np.float32)
    cv2.ellipse(person, (200, 200), (90, 140), 0, 0, 360, 1.0, -1)
    field = MeshField(mesh, (360, 400), person)
    rng = np.random.default_rng(1)
    displacement = rng.normal(0, 3, (468, 2))
    # exactly the displacement at every landmark (the piecewise-affine function)
    at = field.interpolate(mesh[:, :2], displacement)
    assert np.nanmax(np.abs(at - displacement)) < 1e-6
    assert np.isfinite(at).all()
    grid = field.fields(displacement[None])[0].numpy()          # grid cells, [2, gh, gw]
    # the grid's face cells are that function at their centres
    rows, cols = np.nonzero(field.inside)
    centres = (np.stack([cols, rows], 1) + 0.5) / field.scale
    expected = field.interpolate(centres[:50], displacement) * field.scale
    assert np.allclose(grid[:, rows[:50], cols[:50]].T, expected, atol=1e-4)
    # zero wherever the person mask is not (and the face's grown hull is not)
    outside = cv2.resize(person, grid.shape[:0:-1], interpolation=cv2.INTER_AREA) == 0
    outside &= ~field.free.numpy() & ~field.inside
    assert outside.any() and (grid[:, outside] == 0).all()
    # and harmonic in between: no cell of the person outside the face exceeds the face's range
    free = field.free.numpy()
    assert np.abs(grid[:, free]).max() <= np.abs(grid[:, field.inside]).max() + 1e-4


def test_affine_landmark_motion_gives_the_same_affine_field_through_the_renderer():
    from engine.render import upsample_flow

    mesh = synthetic_mesh()
    field = MeshField(mesh, (360, 400), None)
    matrix = np.array([[0.03, -0.02], [0.01, 0.04]])
    displacement = (mesh[:, :2] - 200) @ matrix.T + [2.0, -1.5]
    grid = field.fields(displacement[None])[0]
    full = upsample_flow(grid, 360, 400).numpy()
    # landmarks well inside the face (the B-spline reaches two cells across its edge)
    inner = np.hypot(*((mesh[:, :2] - [200, 200]) / [44, 56]).T) < 0.6
    for x, y in mesh[inner, :2]:
        value = full[:, int(y), int(x)]
        want = (np.array([int(x) + 0.5, int(y) + 0.5]) - 200) @ matrix.T + [2.0, -1.5]
        assert np.allclose(value, want, atol=0.02)


def test_harmonic_fill_keeps_fixed_values_and_solves_laplace_between():
    values = torch.zeros(1, 20, 30)
    fixed = torch.zeros(20, 30, dtype=torch.bool)
    fixed[:, 0] = fixed[:, -1] = True
    values[0, :, -1] = 29.0
    out = harmonic_fill(values, fixed)[0]
    # between two fixed columns the membrane is the straight ramp (Neumann top and bottom)
    assert torch.allclose(out, torch.arange(30.0).expand(20, -1), atol=1e-3)


# -- the motion prior --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prior_faces():
    """A real face (the reference the shipped model was trained around), turned a little."""
    if not MODEL.is_file():
        pytest.skip("models/poke_mesh.safetensors is missing")
    from engine.poke.mesh.model import load_mesh_model

    reference = load_mesh_model(MODEL).reference.double().numpy()
    faces = np.stack([reference, reference * [1.05, 0.97, 1.0]])
    return faces, mesh_motion.expression_basis(reference)


def test_synthetic_clips_start_at_the_still_and_move_like_faces(prior_faces):
    faces, basis = prior_faces
    rng = np.random.default_rng(0)
    layouts, motion = mesh_motion.synthetic_clips(rng, faces, basis, 64, frames=6)
    assert layouts.shape == (64, 468, 2) and motion.shape == (64, 6, 468, 2)
    # every layout is in its own face units: eye centres at (-0.5, 0) and (0.5, 0)
    right = layouts[:, [33, 133]].mean(1)
    assert np.allclose(right, [-0.5, 0], atol=1e-5)
    assert np.isfinite(motion).all()
    # the clips move (an expression or head motion in most), by face-sized amounts
    size = np.abs(motion[:, -1]).max(axis=(1, 2))
    assert (size > 0.02).mean() > 0.6 and size.max() < 1.0


def test_expressions_are_defined_per_landmark_and_hold_the_skull(prior_faces):
    _, basis = prior_faces
    from engine.face.geometry import RIGID
    for name, delta in basis.items():
        assert delta.shape == (468, 3)
        assert np.abs(delta[list(RIGID)]).max() < 1e-9, name
    # the jaw moves the lower lip down and leaves the upper lip
    assert basis["jaw"][mesh_motion.LOWER_INNER_LIP, 1] > 0.1
    assert abs(basis["jaw"][mesh_motion.UPPER_INNER_LIP, 1]) < 1e-9


def test_pokes_are_drawn_where_the_clip_moves():
    rng = np.random.default_rng(0)
    layouts = np.zeros((200, 468, 2), np.float32)
    motion = np.zeros((200, 3, 468, 2), np.float32)
    motion[:, -1, 10] = [0.3, 0.0]
    start, drag = mesh_motion.clip_pokes(rng, layouts, motion, noise=0.0)
    moved = np.isclose(drag[:, 0], 0.3)
    assert moved.mean() > 0.3                    # landmark 10 carries most of the motion
    assert np.allclose(drag[~moved], 0.0)


# -- sampling on a real face ------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_setup():
    _mediapipe()
    if not MODEL.is_file():
        pytest.skip("models/poke_mesh.safetensors is missing")
    from engine.face.landmarks import detect_meshes
    from engine.poke.mesh.model import load_mesh_model

    torch.set_num_threads(1)
    still = astronaut()
    mesh = detect_meshes(still)[0]
    return still, mesh, load_mesh_model(MODEL)


def sampler_for(still, model, pokes, pins=(), person=True):
    from engine.poke.mesh.sample import MotionSampler, face_scene
    from engine.warp.pins import pin_discs

    hold = pin_discs([(x, y, 0.0) for x, y in pins], still.shape[1], still.shape[0])
    scene = face_scene(still, still.astype(np.float32) / 255, pokes, hold, person=person)
    return scene, MotionSampler(model, scene)


def landed(scene, fields, point, landmarks=None):
    """Where the content at `point` of the still is in the last frame: solve
    q - B(q) = point for q on the full-resolution backward flow the renderer uses."""
    from engine.poke.motion import backward_flow
    from engine.render import upsample_flow

    height, width = scene.still.shape[:2]
    back = backward_flow(fields[-1][None])[0] if landmarks is None \
        else scene.field.backward(fields[-1], landmarks[-1])
    back = upsample_flow(back, height, width)
    back = back * torch.from_numpy(scene.gate)[None]
    back = back.double().numpy()
    # the output pixel whose sample position (centre - backward flow) is nearest the point,
    # then a linear step within its neighbourhood (the map is smooth at pixel scale)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    source = np.stack([xs - back[0], ys - back[1]])
    distance = np.hypot(source[0] - point[0], source[1] - point[1])
    i, j = np.unravel_index(np.argmin(distance), distance.shape)
    i, j = min(max(i, 1), height - 2), min(max(j, 1), width - 2)
    jacobian = np.array([[source[0, i, j + 1] - source[0, i, j - 1],
                          source[0, i + 1, j] - source[0, i - 1, j]],
                         [source[1, i, j + 1] - source[1, i, j - 1],
                          source[1, i + 1, j] - source[1, i - 1, j]]]) / 2
    step = np.linalg.solve(jacobian, np.asarray(point) - source[:, i, j])
    return np.array([xs[i, j], ys[i, j]]) + step


def test_a_poke_lands_within_a_pixel_and_pins_hold(face_setup):
    still, mesh, model = face_setup
    # the chin, dragged down: the jaw opens. (A poke right on the inner lip's edge lands within
    # ~1.5 px: the renderer's B-spline upsampling rounds the kink where the parting lips meet.)
    chin = mesh[152, :2]
    poke = (float(chin[0]), float(chin[1]), 0.0, 0.25 * FaceFrame.of(mesh).scale)
    # a pin on the forehead: it holds a disc (2 % of the picture, fading over as far again),
    # which must not reach the poke
    nose = tuple(float(v) for v in mesh[151, :2])
    scene, sampler = sampler_for(still, model, [poke], pins=[nose])
    codes = sampler.codes([poke], [nose], 4, seed=3, temperature=1.0)
    for sample in codes:
        fields = sampler.frame_fields(sample)
        end = landed(scene, fields, poke[:2], sampler.frame_landmarks(sample))
        assert np.hypot(*(end - (poke[0] + poke[2], poke[1] + poke[3]))) <= 1.0
        at_pin = sampler.values_at([nose])[0].double().numpy() @ np.concatenate(
            [[1.0], sample.double().numpy()[-1]])
        assert np.hypot(*at_pin) < 0.05


def test_several_pokes_land_together(face_setup):
    still, mesh, model = face_setup
    unit = FaceFrame.of(mesh).scale
    # the chin down and a brow up (a poke right on the inner lip's edge: see above)
    pokes = [(float(mesh[152, 0]), float(mesh[152, 1]), 0.0, 0.2 * unit),
             (float(mesh[105, 0]), float(mesh[105, 1]), 0.0, -0.08 * unit)]
    scene, sampler = sampler_for(still, model, pokes)
    codes = sampler.codes(pokes, [], 2, seed=0, temperature=1.0)
    for sample in codes:
        fields = sampler.frame_fields(sample)
        for x, y, dx, dy in pokes:
            end = landed(scene, fields, (x, y), sampler.frame_landmarks(sample))
            assert np.hypot(*(end - (x + dx, y + dy))) <= 1.0


def test_the_skull_moves_rigidly(face_setup, monkeypatch):
    """The cINN draws some squash and shear of the skull with every expression; the code
    projection takes it out: the skull's landmarks (geometry.RIGID) move as a rigid head does
    (shift, scale, roll, small yaw and pitch), within 0.025 of the inter-ocular distance, in
    every frame of every sample, a third less than the cINN draws, while the poke still
    lands."""
    from engine.face.geometry import RIGID
    from engine.poke.mesh import sample as mesh_sample

    still, mesh, model = face_setup
    poke = (float(mesh[152, 0]), float(mesh[152, 1]), 0.0, 0.25 * FaceFrame.of(mesh).scale)
    scene, sampler = sampler_for(still, model, [poke])
    projector = mesh_sample._rigid_projector(scene.frame.to_face(scene.mesh)[list(RIGID)])

    def skull_residual(codes):
        motion = model.decode_motion(codes).double().numpy()[..., list(RIGID), :]
        rest = (motion.reshape(*motion.shape[:2], -1) @ projector.T).reshape(motion.shape)
        return float(np.hypot(rest[..., 0], rest[..., 1]).max())

    codes = sampler.codes([poke], [], 6, seed=0, temperature=1.0)
    assert skull_residual(codes) <= 0.025
    monkeypatch.setattr(mesh_sample, "SKULL_WEIGHT", 0.0)
    drawn = sampler.codes([poke], [], 6, seed=0, temperature=1.0)
    monkeypatch.undo()
    assert skull_residual(drawn) > 1.4 * skull_residual(codes)
    for sample in codes:
        end = landed(scene, sampler.frame_fields(sample), poke[:2],
                     sampler.frame_landmarks(sample))
        assert np.hypot(*(end - (poke[0] + poke[2], poke[1] + poke[3]))) <= 1.0


def test_samples_differ_and_one_sample_is_reproducible(face_setup):
    still, mesh, model = face_setup
    poke = (float(mesh[14, 0]), float(mesh[14, 1]), 0.0, 0.2 * FaceFrame.of(mesh).scale)
    _, sampler = sampler_for(still, model, [poke])
    batch = sampler.codes([poke], [], 3, seed=5, temperature=1.0)
    alone = sampler.codes([poke], [], 3, seed=5, temperature=1.0, indices=[2])
    assert torch.allclose(batch[2], alone[0], rtol=1e-4, atol=1e-4)
    assert (batch[0] - batch[1]).abs().max() > 0.1


def test_pixels_outside_the_person_are_the_still_bit_for_bit(face_setup):
    from engine.poke.mesh.sample import render_clip

    still, mesh, model = face_setup
    poke = (float(mesh[1, 0]), float(mesh[1, 1]), 0.3 * FaceFrame.of(mesh).scale, 0.0)
    scene, sampler = sampler_for(still, model, [poke])
    fields = sampler.frame_fields(sampler.codes([poke], [], 1, seed=0, temperature=1.0)[0])
    frames = list(render_clip(scene, fields, 4))
    assert (frames[0] == still).all()
    held = scene.gate == 0
    assert held.mean() > 0.2
    for frame in frames:
        assert (frame[held] == still[held]).all()
    assert (frames[-1] != still).any()


def test_no_face_is_a_clear_error_that_names_the_warp_engine():
    _mediapipe()
    from engine.poke.mesh.sample import face_scene

    wall = np.full((200, 200, 3), 120, np.uint8)
    with pytest.raises(JobError, match="Warp"):
        face_scene(wall, wall / 255.0, [(100, 100, 10, 0)], None)


def test_a_face_partly_outside_the_frame_still_moves(face_setup):
    _, _, model = face_setup
    still = astronaut(384)
    from engine.face.landmarks import detect_meshes
    mesh = detect_meshes(still)[0]
    # cut the picture through the face: its left third is outside the frame
    left = int(mesh[:, 0].min() + 0.3 * np.ptp(mesh[:, 0]))
    cropped = np.ascontiguousarray(still[:, left:])
    found = detect_meshes(cropped)
    if not found:
        pytest.skip("MediaPipe does not find the cut face")
    lip = found[0][14, :2]
    poke = (float(lip[0]), float(lip[1]), 0.0, 0.2 * FaceFrame.of(found[0]).scale)
    scene, sampler = sampler_for(cropped, model, [poke])
    assert (found[0][:, 0] < 0).any()            # some landmarks lie outside the picture
    code = sampler.codes([poke], [], 1, seed=0, temperature=1.0)[0]
    end = landed(scene, sampler.frame_fields(code), poke[:2], sampler.frame_landmarks(code))
    assert np.hypot(*(end - (poke[0], poke[1] + poke[3]))) <= 1.0


def test_with_two_faces_only_the_one_under_the_poke_moves(face_setup):
    _, _, model = face_setup
    one = astronaut(256)
    still = np.ascontiguousarray(np.concatenate([one, one[:, ::-1]], axis=1))
    from engine.face.landmarks import detect_meshes
    meshes = detect_meshes(still, max_faces=4)
    if len(meshes) < 2:
        pytest.skip("MediaPipe finds one of the two faces only")
    right_face = max(meshes, key=lambda m: m[:, 0].mean())
    left_face = min(meshes, key=lambda m: m[:, 0].mean())
    lip = right_face[14, :2]
    poke = (float(lip[0]), float(lip[1]), 0.0, 0.25 * FaceFrame.of(right_face).scale)
    scene, sampler = sampler_for(still, model, [poke])
    assert np.allclose(scene.mesh, right_face)
    from engine.poke.mesh.sample import render_clip
    fields = sampler.frame_fields(sampler.codes([poke], [], 1, seed=0, temperature=1.0)[0])
    last = list(render_clip(scene, fields, 3))[-1]
    x0, x1 = int(left_face[:, 0].min()), int(left_face[:, 0].max()) + 1
    y0, y1 = int(left_face[:, 1].min()), int(left_face[:, 1].max()) + 1
    assert (last[y0:y1, x0:x1] == still[y0:y1, x0:x1]).all()
    rx0, rx1 = int(right_face[:, 0].min()), int(right_face[:, 0].max()) + 1
    assert (last[y0:y1, rx0:rx1] != still[y0:y1, rx0:rx1]).any()
