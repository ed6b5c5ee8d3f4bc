"""The landscape measures of the evaluation report (engine/report/measures.py landscape_numbers,
engine/metrics.py sway and held_identity) on synthetic clips whose answer is known: a drifting
texture, a swaying one, per-pixel noise, a pixel changed outside the mask, a loop with a jump."""

import math

import cv2
import numpy as np
import pytest
from conftest import texture

from engine.dyntex.motion_field import Motion
from engine.metrics import held_identity, sway
from engine.report.measures import landscape_numbers, landscape_summary, landscape_targets
from engine.report.stills import Scene

SIZE = 128
BOX = (slice(16, 112), slice(None))  # the motion region: a band of rows across the frame
GUARD = 4  # flat rows inside the band's edges: a drift along x shows no seam there


def _texture():
    """Periodic (np.roll wraps it) and smooth enough for DIS to follow; flat grey in the GUARD
    rows inside the region's edges, so that content rolled along x meets the still outside
    without a seam (and the edge seam measure still sees the still's edge there)."""
    still = cv2.GaussianBlur(texture(SIZE, SIZE, seed=5), (0, 0), 1.0,
                             borderType=cv2.BORDER_WRAP)
    still[16:16 + GUARD] = still[112 - GUARD:112] = 128
    return still


def _region():
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[BOX] = 1.0
    return mask


def _moved(shifts):
    """Frames whose region is the texture rolled by each (dx, dy) and whose outside is the
    still's, bit for bit."""
    still = _texture()
    frames = []
    for dx, dy in shifts:
        frame = still.copy()
        frame[BOX] = np.roll(still, (dy, dx), axis=(0, 1))[BOX]
        frames.append(frame)
    return frames


def _motion(kind="drift", direction=(1.0, 0.0), pixels=1.0):
    """A Motion asking for `pixels` px/frame (drift) on a SIZE-px still: speed x shorter side."""
    return Motion(kind=kind, direction=direction,
                  speed=pixels / SIZE if kind == "drift" else 0.0, coherence=1.0,
                  amplitude=0.0 if kind == "drift" else 2.0 / SIZE, period=8.0,
                  wave=(0.0, 0.0), scale=0.2, magnitude=pixels / SIZE)


def _scene(pokes=(), static=None):
    still = _texture()
    return Scene(still=still, pokes=list(pokes), pins=[], static=static, region=_region() > 0.5,
                 patches=[], scale=1.0, motion=[(_region(), "clouds")])


def _numbers(frames, motion, loop=False, pokes=()):
    scene = _scene(pokes)
    targets = landscape_targets(scene, [motion], len(frames), loop)
    outside = _region() < 0.5
    return landscape_numbers(frames, scene.still, targets, outside, loop)


def test_a_drifting_texture_moves_as_its_exemplar_asks():
    frames = _moved([(t, 0) for t in range(6)])  # 1 px/frame to the right
    numbers = _numbers(frames, _motion(pixels=1.0))
    (region,) = numbers["regions"]
    assert region["unexplained_change"] < 0.4
    assert region["drift_coherence"] > 0.9
    assert region["speed_ratio"] == pytest.approx(1.0, abs=0.15)
    assert region["direction_cosine"] > 0.98
    assert region["sway"] is None and region["loop_seam"] is None
    assert region["sharpness"] == pytest.approx(1.0, abs=0.05)  # whole-pixel shifts
    assert region["edge_seam"] == pytest.approx(1.0, abs=0.05)
    assert numbers["outside"] == {"pixels": 0, "max_difference": 0.0, "identical": True}
    # against a direction it does not take, and twice the speed
    (wrong,) = _numbers(frames, _motion(direction=(0.0, 1.0), pixels=2.0))["regions"]
    assert abs(wrong["direction_cosine"]) < 0.2
    assert wrong["speed_ratio"] == pytest.approx(0.5, abs=0.1)


def test_an_arrow_in_the_region_sets_direction_and_speed():
    scene = _scene(pokes=[(30.0, 30.0, 0.0, 14.0)])
    (steered,) = landscape_targets(scene, [_motion()], 8, loop=False)
    assert steered.steered and steered.direction == (0.0, 1.0)
    assert steered.speed == pytest.approx(14 / 7)  # length / (frames - 1)
    (looping,) = landscape_targets(scene, [_motion()], 8, loop=True)
    assert looping.speed == pytest.approx(14 / 8)  # length / frames: frame 8 is frame 0
    (free,) = landscape_targets(_scene(pokes=[(2.0, 2.0, 0.0, 14.0)]), [_motion()], 8, False)
    assert not free.steered and free.direction == (1.0, 0.0)
    assert free.speed == pytest.approx(1.0)  # motion.speed x the shorter side
    # the clip drifts down 2 px/frame: as the arrow asks
    frames = _moved([(0, 2 * t) for t in range(5)])
    (region,) = _numbers(frames, _motion(), pokes=[(30.0, 30.0, 0.0, 8.0)])["regions"]
    assert region["direction_cosine"] > 0.98
    assert region["speed_ratio"] == pytest.approx(1.0, abs=0.15)


def test_static_masks_and_pins_leave_the_region():
    static = np.zeros((SIZE, SIZE), np.float32)
    static[:, :32] = 1.0
    (target,) = landscape_targets(_scene(static=static), [_motion()], 4, False)
    assert not target.mask[:, :32].any() and target.mask[BOX][:, 32:].all()


def test_a_sway_reports_its_swing_not_a_speed():
    shifts = [(round(2 * math.sin(2 * math.pi * t / 8)), 0) for t in range(9)]
    numbers = _numbers(_moved(shifts), _motion("oscillate", direction=(0.0, 1.0)))
    (region,) = numbers["regions"]
    assert region["drift_coherence"] < 0.2
    assert region["speed"] is None and region["speed_ratio"] is None
    assert region["sway"] == pytest.approx(1.0, abs=0.3)  # |step| is 1 px/frame
    assert region["direction_cosine"] < 0.2  # it sways along x, the exemplar along y


def test_per_pixel_noise_is_unexplained():
    rng = np.random.default_rng(0)
    still = _texture()
    frames = [still]
    for _ in range(4):
        frame = still.copy()
        frame[BOX] = rng.integers(0, 256, frame[BOX].shape, dtype=np.uint8)
        frames.append(frame)
    (region,) = _numbers(frames, _motion())["regions"]
    assert region["unexplained_change"] > 0.8
    assert region["sharpness"] > 2  # noise is all edges


def test_one_pixel_changed_outside_is_not_identical():
    frames = _moved([(t, 0) for t in range(4)])
    frames[2] = frames[2].copy()
    frames[2][2, 60, 1] ^= 5
    outside = held_identity(frames[0], frames, _region() < 0.5)
    assert outside["pixels"] == 1 and not outside["identical"]
    assert outside["max_difference"] == abs(int(frames[2][2, 60, 1]) - int(frames[0][2, 60, 1]))
    # the region itself may change freely
    assert held_identity(frames[0], _moved([(t, 0) for t in range(4)]), _region() < 0.5)[
        "identical"]
    with pytest.raises(ValueError):
        held_identity(frames[0], frames, np.ones((3, 3), bool))


def test_a_loop_with_a_jump_has_a_seam():
    jump = _moved([(t, 0) for t in range(8)])  # 7 px back from the last frame to the first
    (region,) = _numbers(jump, _motion(), loop=True)["regions"]
    assert region["loop_seam"] > 2.5  # a 7 px jump over 1 px steps reads 3.5
    # a texture that repeats every 8 px, panned 1 px/frame: frame 8 would be frame 0
    base = cv2.GaussianBlur(texture(SIZE, 8, seed=2), (0, 0), 1.0, borderType=cv2.BORDER_WRAP)
    periodic = np.tile(base, (1, SIZE // 8, 1))
    closed = [np.roll(periodic, t, axis=1) for t in range(8)]
    scene = Scene(still=periodic, pokes=[], pins=[], static=None, region=np.ones((SIZE, SIZE),
                  bool), patches=[], scale=1.0, motion=[(np.ones((SIZE, SIZE), np.float32), "x")])
    targets = landscape_targets(scene, [_motion()], 8, loop=True)
    (region,) = landscape_numbers(closed, periodic, targets, np.zeros((SIZE, SIZE), bool),
                                  True)["regions"]
    assert region["loop_seam"] == pytest.approx(1.0, abs=0.05)


def test_sway_measure():
    flows = np.zeros((4, 8, 8, 2), np.float32)
    flows[0::2, ..., 1], flows[1::2, ..., 1] = 1.5, -1.5
    swing = sway(flows)
    assert swing["magnitude"] == pytest.approx(1.5)
    assert abs(swing["axis"][1]) == pytest.approx(1.0) and swing["axis"][0] >= 0
    assert sway(np.zeros((2, 4, 4, 2), np.float32)) == {"magnitude": 0.0, "axis": (1.0, 0.0)}
    with pytest.raises(ValueError, match="empty"):
        sway(flows, np.zeros((8, 8), bool))


def test_summary_over_samples():
    row = {"unexplained_change": 0.3, "drift_coherence": 0.9, "speed": 1.0, "speed_ratio": 1.0,
           "direction_cosine": 1.0, "sway": None, "sharpness": 1.0, "edge_seam": 1.2,
           "loop_seam": None, "loop_seam_mean": None}
    other = {**row, "unexplained_change": 0.5, "edge_seam": 0.7}
    summary = landscape_summary([
        {"regions": [row], "outside": {"pixels": 0, "max_difference": 0.0, "identical": True}},
        {"regions": [other], "outside": {"pixels": 3, "max_difference": 2.0,
                                         "identical": False}}])
    (region,) = summary["regions"]
    assert region["unexplained_change"] == pytest.approx(0.4)
    assert region["edge_seam"] == 0.7 and region["sway"] is None
    assert summary["outside"] == {"pixels": 3, "max_difference": 2.0, "identical": False}
