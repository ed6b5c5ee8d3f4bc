"""Facial parts: snapping a poke to a part, the part raster, the automatic background pin, and
(when mediapipe is installed: requirements/face.txt) landmarks and a person mask on a real face."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import JobError
from engine.face import segmentation
from engine.face.parts import PART_NAMES, FaceParts, part_layout, snap_to_part

MEDIA = Path(__file__).resolve().parents[2] / "media"


def ellipse(cx, cy, rx, ry, count=12):
    angle = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], 1)


def synthetic_face() -> FaceParts:
    """A frontal cartoon face in a 200 x 200 image; the person's left eye on the image right."""
    jaw_angle = np.linspace(0, np.pi, 15)
    return FaceParts({
        "left_eye": ellipse(130, 80, 15, 6), "right_eye": ellipse(70, 80, 15, 6),
        "left_brow": ellipse(130, 62, 18, 3), "right_brow": ellipse(70, 62, 18, 3),
        "nose": [(100, 85), (92, 115), (108, 115), (100, 120)],
        "mouth": ellipse(100, 145, 25, 8),
        "jaw": np.stack([100 + 70 * np.cos(jaw_angle), 100 + 80 * np.sin(jaw_angle)], 1),
    }, 200, 200)


@pytest.mark.parametrize("point, radius, expected", [
    ((130, 80), 1, "left_eye"),        # inside: distance 0
    ((70, 90), 5, "right_eye"),        # 4 px below the lower lid
    ((70, 90), 3, None),               # ... not within 3 px
    ((130, 59), 2, "left_brow"),
    ((100, 100), 2, "nose"),
    ((112, 148), 1, "mouth"),
    ((100, 182), 3, "jaw"),            # 2 px above the chin, on the curve's side
    ((100, 165), 5, None),             # under the mouth, inside the jaw's hull: the jaw is a curve
    ((100, 30), 20, None),             # forehead: nothing near
])
def test_snap_to_part(point, radius, expected):
    assert snap_to_part(point, synthetic_face(), radius) == expected


def test_snap_prefers_the_nearer_and_the_smaller_part():
    face = synthetic_face()
    # Between the right eye (lower lid at y=86) and the nose's left edge: the eye is nearer.
    assert snap_to_part((80, 88), face, 30) == "right_eye"
    # A point inside both the mouth and a large overlapping area goes to the mouth.
    overlapping = dict(face.points, nose=ellipse(100, 130, 40, 40))
    assert snap_to_part((100, 145), overlapping, 1) == "mouth"
    assert snap_to_part((100, 110), overlapping, 1) == "nose"


def test_part_layout_puts_each_part_where_it_is():
    face = synthetic_face()
    layout = part_layout(face, 50, 50)
    assert layout.shape == (len(PART_NAMES), 50, 50) and layout.dtype == np.float32
    assert 0 <= layout.min() and layout.max() <= 1
    ys, xs = np.mgrid[0:50, 0:50] + 0.5
    for channel, name in enumerate(PART_NAMES):
        weight = layout[channel]
        assert weight.sum() > 0, name
        centre = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
        expected = face.points[name].mean(0) / 4  # 200 px -> 50 px
        if name == "jaw":  # a curve: drawn as a line along the arc, not filled
            assert weight[44:46, 24:26].min() > 0.3 and weight[38, 25] == 0  # chin, under lips
            continue
        assert np.abs(centre - expected).max() < 1.0, (name, centre, expected)
    # Areas are filled: the mouth's raster area matches the ellipse's (25 x 8 px radii / 4).
    mouth_area = layout[PART_NAMES.index("mouth")].sum()
    assert abs(mouth_area - np.pi * 25 * 8 / 16) < 0.25 * np.pi * 25 * 8 / 16
    # Parts do not bleed into each other: nothing of the left eye under the right eye.
    assert layout[PART_NAMES.index("left_eye"), :, :25].sum() == 0


def test_part_layout_of_a_non_square_image_and_missing_parts():
    face = FaceParts({"mouth": [(10, 70), (30, 70), (30, 80), (10, 80)]}, 100, 40)  # h, w
    layout = part_layout(face, 10, 4)
    mouth = layout[PART_NAMES.index("mouth")]
    assert layout.sum() == mouth.sum() > 0
    # x 10..30 of 40 -> columns 1..3 of 4; y 70..80 of 100 -> rows 7..8 of 10.
    assert mouth[7:8, 1:3].min() > 0.9 and mouth[:6].sum() == 0 and mouth[9:].sum() == 0


def test_unknown_part_names_are_refused():
    with pytest.raises(ValueError, match="unknown facial parts"):
        FaceParts({"left_ear": [(0, 0)]}, 10, 10)


def test_background_pin_rules():
    person = np.zeros((4, 6), np.float32)
    person[:, :3] = 1.0           # person on the left half
    person[:, 3] = 0.25           # a soft edge
    static = np.zeros_like(person)
    static[0, :] = 1.0            # the artist pins the top row, person included
    motion = np.zeros_like(person)
    motion[:, 5] = 1.0            # ... and wants the rightmost background column to move
    motion[0, 5] = 1.0            # (also under the static row: static wins)

    assert np.array_equal(segmentation.background_pin_map(person), 1 - person)
    pin = segmentation.background_pin_map(person, static_masks=[static], motion_masks=[motion])
    assert pin.dtype == np.float32 and pin.shape == person.shape
    assert np.all(pin[0] == 1)                      # static wins over person and motion
    assert np.all(pin[1:, :3] == 0)                 # the person is free
    assert np.allclose(pin[1:, 3], 0.75)            # soft edge stays soft
    assert np.all(pin[1:, 4] == 1)                  # background pinned automatically
    assert np.all(pin[1:, 5] == 0)                  # ... unless a motion mask covers it
    half_motion = motion * 0.5
    assert np.allclose(segmentation.background_pin_map(person, motion_masks=[half_motion])[1:, 5],
                       0.5)
    with pytest.raises(ValueError, match="mask of shape"):
        segmentation.background_pin_map(person, static_masks=[np.zeros((2, 2), np.float32)])


def test_missing_mediapipe_says_how_to_install(monkeypatch):
    from engine.face import landmarks

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    with pytest.raises(JobError, match="Install Engine.*requirements/face.txt"):
        landmarks.detect_faces(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(JobError, match="mediapipe"):
        segmentation.person_mask(np.zeros((8, 8, 3), np.float32))


@pytest.fixture(scope="module")
def astronaut_face_crop():
    pytest.importorskip("mediapipe")
    import cv2

    image = cv2.imread(str(MEDIA / "astronaut.png"))
    if image is None:
        pytest.skip("media/astronaut.png is missing: run `make media`")
    # Her head and shoulders in the 512 x 512 portrait; the face is about 100 px wide.
    crop = cv2.cvtColor(image[20:260, 110:340], cv2.COLOR_BGR2RGB)
    return crop.astype(np.float32) / 255.0


def test_landmarks_on_a_real_face(astronaut_face_crop):
    from engine.face.landmarks import detect_face

    face = detect_face(astronaut_face_crop)
    assert face is not None
    assert (face.height, face.width) == astronaut_face_crop.shape[:2]
    centre = {name: points.mean(0) for name, points in face.points.items()}
    x, y = 0, 1
    assert set(centre) == set(PART_NAMES)
    assert centre["left_brow"][y] < centre["left_eye"][y] < centre["nose"][y]
    assert centre["right_brow"][y] < centre["right_eye"][y] < centre["nose"][y]
    assert centre["nose"][y] < centre["mouth"][y] < face.points["jaw"][:, y].max()
    # Person's left eye on the image right; the nose and mouth between the eyes.
    assert centre["right_eye"][x] < centre["nose"][x] < centre["left_eye"][x]
    assert centre["right_eye"][x] < centre["mouth"][x] < centre["left_eye"][x]
    eye_distance = centre["left_eye"][x] - centre["right_eye"][x]
    assert 25 < eye_distance < 80  # a face ~100 px wide
    assert snap_to_part(centre["mouth"], face, 2) == "mouth"
    assert snap_to_part(centre["left_eye"], face, 2) == "left_eye"
    # The part raster a 64-px model would get keeps the layout: eyes above the mouth.
    layout = part_layout(face, 64, 64)
    rows = np.arange(64) + 0.5
    row_of = {name: (layout[i].sum(1) * rows).sum() / layout[i].sum()
              for i, name in enumerate(PART_NAMES)}
    assert row_of["left_eye"] < row_of["nose"] < row_of["mouth"]
    # The same still at twice the size and as uint8: the same points, twice as far out.
    import cv2

    big = cv2.resize((astronaut_face_crop * 255).round().astype(np.uint8), None, fx=2, fy=2,
                     interpolation=cv2.INTER_CUBIC)
    big_face = detect_face(big)
    assert np.abs(big_face.points["mouth"].mean(0) / 2 - centre["mouth"]).max() < 3


def test_no_face_in_a_picture_without_one(astronaut_face_crop):
    from engine.face.landmarks import detect_faces

    wall = np.ascontiguousarray(np.tile(astronaut_face_crop[:20, 200:], (12, 10, 1)))  # wall only
    assert detect_faces(wall) == []


def test_person_mask_on_a_real_face(astronaut_face_crop):
    mask = segmentation.person_mask(astronaut_face_crop)
    assert mask.shape == astronaut_face_crop.shape[:2] and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1
    assert mask[100:130, 100:130].mean() > 0.9      # her face
    assert mask[:30, 180:].mean() < 0.1             # the wall behind her, top right
    pin = segmentation.background_pin_map(mask)
    assert pin[:30, 180:].mean() > 0.9 and pin[100:130, 100:130].mean() < 0.1


def test_mesh_detector_frames_a_real_face_like_the_cascade(astronaut_face_crop):
    """The poke engine's face crop from MediaPipe: one box, around the face, with the Haar
    cascade's framing (forehead in, a bit wider than the landmarks)."""
    from engine.face.landmarks import detect_face
    from engine.poke import faces

    detector = faces.default_detector()
    assert isinstance(detector, faces.MeshFaceDetector)
    rgb = (astronaut_face_crop * 255).round().astype(np.uint8)
    boxes = detector(rgb)
    assert boxes.shape == (1, 4)
    x, y, w, h = boxes[0]
    face = detect_face(astronaut_face_crop)
    points = np.concatenate(list(face.points.values()))
    assert w == h and w > np.ptp(points[:, 0]) * 1.2
    assert x < points[:, 0].min() and x + w > points[:, 0].max()
    assert y < points[:, 1].min()   # the forehead above the brows is inside
