"""The face measures (engine/metrics.py face_structure, person_edge_seam) on pictures whose
answer is known: synthetic people for the edge, stand-in meshes for the structure's bookkeeping,
and the astronaut (media/, `make media`) for MediaPipe's own meshes."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import texture

from engine import metrics
from engine.face import geometry, landmarks
from engine.metrics import face_structure, person_edge_seam

MEDIA = Path(__file__).resolve().parents[2] / "media"
SIZE = 160


def _person(shift=0, size=SIZE, busy=False):
    """A person-like blob (a head on shoulders) drawn `shift` pixels to the right, anti-aliased
    like a photograph's edge, in front of a soft random background (a portrait's out-of-focus
    one), or a busy one: (picture, mask)."""
    background = texture(size, size, seed=5).astype(np.float32) / 255
    if not busy:
        background = cv2.GaussianBlur(background, (0, 0), 3) * 0.4 + 0.3
    else:
        background = background * 0.5 + 0.25
    mask = np.zeros((size, size), np.float32)
    cv2.circle(mask, (size // 2 + shift, size // 3), size // 6, 1.0, -1, cv2.LINE_AA)
    cv2.ellipse(mask, (size // 2 + shift, size), (size // 3, size // 3), 0, 180, 360, 1.0, -1,
                cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    skin = np.array([0.85, 0.6, 0.5], np.float32)
    picture = background * (1 - mask[..., None]) + skin * mask[..., None]
    return (picture * 255 + 0.5).astype(np.uint8), mask


def test_edge_seam_is_one_for_the_still_itself():
    still, mask = _person()
    assert person_edge_seam(still, [still, still.copy()], mask) == 1.0


def test_edge_seam_sees_a_seam_line_and_a_doubled_outline():
    still, mask = _person()
    seam = still.copy()
    outline = (mask > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(outline, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(seam, contours, -1, (20, 20, 20), 1)  # a dark cut around the person
    assert person_edge_seam(still, [still, seam], mask) > 1.5
    # a doubled outline: the moved person over a ghost of where it was (a double exposure)
    # (only the outline across the shift doubles: the top of the head and shoulders do not)
    moved = _person(shift=4)[0].astype(np.float32)
    ghost = (0.5 * moved + 0.5 * still + 0.5).astype(np.uint8)
    assert person_edge_seam(still, [still, ghost], mask) > 1.25


def test_edge_seam_holds_for_a_smoothly_moved_person_and_falls_with_blur():
    still, mask = _person()
    moved = [_person(shift=s)[0] for s in (1, 2, 3)]
    assert person_edge_seam(still, moved, mask) == pytest.approx(1.0, abs=0.06)
    # blur smears the background's edges along the person below the thresholds
    busy, busy_mask = _person(busy=True)
    blurred = cv2.GaussianBlur(busy, (0, 0), 2.5)
    assert person_edge_seam(busy, [busy, blurred], busy_mask) < 0.8
    blurred = cv2.GaussianBlur(still, (0, 0), 2.5)
    # the frame furthest from 1 is reported, whichever way it went
    seam = still.copy()
    seam[:, SIZE // 2] = 0
    blur_first = person_edge_seam(still, [blurred, seam], mask)
    assert blur_first == person_edge_seam(still, [seam, blurred], mask)
    assert metrics.furthest_from_one([0.5, 1.9, 1.0]) == 0.5
    assert metrics.furthest_from_one([0.6, 1.9]) == 1.9


def test_edge_seam_without_a_person_or_at_the_wrong_size():
    still, mask = _person()
    assert np.isnan(person_edge_seam(still, [still], np.zeros_like(mask)))
    assert np.isnan(person_edge_seam(np.full_like(still, 128), [still], mask))
    with pytest.raises(ValueError, match="at the still's size"):
        person_edge_seam(still, [still], mask[:-1])


# --- face structure: its bookkeeping, with stand-in meshes ------------------------------------


def _mesh(x=100.0, y=100.0, iod=40.0, seed=0):
    points = np.random.default_rng(seed).normal(0, iod, (geometry.MESH_POINTS, 3))
    mesh = points.astype(np.float32) + np.float32([x, y, 0])
    mesh[[33, 133]] = [x - iod / 2, y, 0]       # right eye centre at -iod/2
    mesh[[362, 263]] = [x + iod / 2, y, 0]
    return mesh


def _melted(mesh, by):
    melted = mesh.copy()
    melted[geometry.RIGID[-1], 1] += by * geometry.interocular(mesh)  # a temple slides down
    return melted


def _fake_detector(monkeypatch, answers):
    """detect_meshes answering from `answers` (picture's first pixel value -> meshes)."""
    monkeypatch.setattr(landmarks, "detect_meshes",
                        lambda image, max_faces=1, min_confidence=0.5:
                        [m for m in answers[int(np.asarray(image).flat[0])]][:max_faces])


def _picture(value):
    return np.full((8, 8, 3), value, np.uint8)


def test_face_structure_bookkeeping(monkeypatch):
    face = _mesh()
    stranger = _mesh(x=400, seed=1)
    _fake_detector(monkeypatch, {0: [face, stranger], 1: [stranger, _melted(face, 0.3)],
                                 2: [face], 3: [], 4: [stranger]})
    still = _picture(0)
    assert face_structure(still, [_picture(2)]) == pytest.approx(0.0, abs=1e-9)
    # the face nearest the still's, not a larger stranger; the worst frame
    assert 0.15 < face_structure(still, [_picture(2), _picture(1), _picture(2)]) < 0.35
    assert face_structure(still, [_picture(2), _picture(3)]) == metrics.FACE_LOST
    assert face_structure(_picture(3), [_picture(2)]) is None
    # a face that moved rigidly is no change of structure
    scale, angle = 1.3, 0.2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = face.copy()
    turned[:, :2] = face[:, :2] @ rotation.T * scale + np.float32([30, -10])
    _fake_detector(monkeypatch, {0: [face], 5: [turned]})
    assert face_structure(still, [_picture(5)]) == pytest.approx(0.0, abs=1e-5)


# --- face structure on a real face (MediaPipe) -------------------------------------------------


@pytest.fixture(scope="module")
def astronaut():
    pytest.importorskip("mediapipe")
    image = cv2.imread(str(MEDIA / "astronaut.png"))
    if image is None:
        pytest.skip("media/astronaut.png is missing: run `make media`")
    return cv2.cvtColor(cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)


def test_face_structure_on_a_real_face(astronaut):
    assert face_structure(astronaut, [astronaut]) == pytest.approx(0.0, abs=1e-6)
    # the whole picture turned and scaled a little: the head moved, its structure did not
    matrix = cv2.getRotationMatrix2D((128, 100), 6, 1.05)
    turned = cv2.warpAffine(astronaut, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT)
    rigid = face_structure(astronaut, [turned])
    assert rigid < 0.08
    # one side of the face slid down by about an inter-ocular distance (eye, temple, cheek): a
    # face no skull can make (the mesh's own face prior takes up part of it)
    face = landmarks.detect_meshes(astronaut)[0]
    x, y = face[263, :2]  # her left eye's outer corner
    ys, xs = np.mgrid[0:256, 0:256].astype(np.float32)
    pull = 20 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 20.0 ** 2))
    melted = cv2.remap(astronaut, xs, ys - pull, cv2.INTER_LINEAR)
    assert face_structure(astronaut, [turned, melted]) > max(0.1, 3 * rigid)
    assert face_structure(astronaut, [np.zeros_like(astronaut)]) == metrics.FACE_LOST


@pytest.mark.parametrize("name", ["faces_photo.jpg", "faces_closeup.png", "faces_painting.jpg",
                                  "faces_cgi.png", "faces_drawing.png", "faces_small.png"])
def test_held_out_portraits_have_a_face(name):
    """The evaluation's held-out portraits (`make media-faces`): MediaPipe must find the face
    the cases poke, or face structure would be blank for them."""
    pytest.importorskip("mediapipe")
    image = cv2.imread(str(MEDIA / name))
    if image is None:
        pytest.skip(f"media/{name} is missing: run `make media-faces`")
    assert landmarks.detect_meshes(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
