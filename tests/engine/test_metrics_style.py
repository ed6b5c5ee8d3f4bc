"""The style measures (docs/ARCHITECTURE.md, "Quality measures"): colour shift, orientation
shift and edge similarity on pictures whose answer is known."""

import math

import cv2
import numpy as np
import pytest
from conftest import texture

from engine.metrics import colour_shift, edge_similarity, orientation_shift

SIZE = 128


def _still():
    return texture(SIZE, SIZE, seed=1).astype(np.float32) / 255.0


def _stripes(angle_degrees=45.0, period=9.0, size=SIZE):
    """Brush-like strokes: a sine grating along one direction, broken into dashes."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = np.deg2rad(angle_degrees)
    across = xs * np.cos(theta) + ys * np.sin(theta)
    return 0.5 + 0.5 * np.sin(2 * np.pi * across / period)


def _painting():
    """A night-blue and yellow palette painted in 45-degree strokes."""
    rng = np.random.default_rng(5)
    value = np.clip(_stripes() + rng.normal(0, 0.05, (SIZE, SIZE)), 0, 1)[..., None]
    dark, light = np.float32([0.12, 0.18, 0.45]), np.float32([0.85, 0.75, 0.30])
    return (dark + value * (light - dark)).astype(np.float32)


def _reinhard(still, painting):
    """Reinhard et al. 2001: each Lab channel of the still given the painting's mean and std."""
    source = cv2.cvtColor(still, cv2.COLOR_RGB2Lab)
    target = cv2.cvtColor(painting, cv2.COLOR_RGB2Lab)
    mean_s, std_s = source.reshape(-1, 3).mean(0), source.reshape(-1, 3).std(0)
    mean_t, std_t = target.reshape(-1, 3).mean(0), target.reshape(-1, 3).std(0)
    moved = (source - mean_s) / std_s * std_t + mean_t
    return np.clip(cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)


def test_identical_result_is_no_shift_and_the_same_edges():
    still, painting = _still(), _painting()
    assert colour_shift(still, still, painting) == pytest.approx(0.0, abs=1e-9)
    assert orientation_shift(still, still, painting) == pytest.approx(0.0, abs=1e-9)
    assert edge_similarity(still, still) == pytest.approx(1.0, abs=1e-6)
    as_bytes = (still * 255 + 0.5).astype(np.uint8)  # uint8 is read as [0, 1] too
    assert colour_shift(as_bytes, as_bytes, painting) == pytest.approx(0.0, abs=1e-9)
    assert edge_similarity(as_bytes, as_bytes) == pytest.approx(1.0, abs=1e-6)


def test_the_painting_itself_is_the_whole_way():
    still, painting = _still(), _painting()
    assert colour_shift(still, painting, painting) == pytest.approx(1.0, abs=1e-6)
    assert orientation_shift(still, painting, painting) == pytest.approx(1.0, abs=1e-6)
    # blends are part of the way, more of the painting further along it
    shifts = [colour_shift(still, (1 - w) * still + w * painting, painting)
              for w in (0.25, 0.5, 0.75)]
    assert 0 < shifts[0] < shifts[1] < shifts[2] < 1


def test_colour_transfer_is_colour_not_brushwork():
    still, painting = _still(), _painting()
    transferred = _reinhard(still, painting)
    assert colour_shift(still, transferred, painting) > 0.85
    assert abs(orientation_shift(still, transferred, painting)) < 0.1
    # the picture is still there: the edge maps are normalised, a contrast change keeps them
    assert edge_similarity(still, transferred) > 0.85


def test_oriented_strokes_are_brushwork():
    still, painting = _still(), _painting()
    stroked = np.clip(still + 0.35 * (_stripes()[..., None] - 0.5), 0, 1).astype(np.float32)
    shift = orientation_shift(still, stroked, painting)
    assert shift > 0.3
    # strokes across the painting's do not count as its brushwork
    across = np.clip(still + 0.35 * (_stripes(135.0)[..., None] - 0.5), 0, 1)
    assert orientation_shift(still, across.astype(np.float32), painting) < shift - 0.2
    # and colour barely moves: the strokes are grey
    assert abs(colour_shift(still, stroked, painting)) < 0.2


def test_mask_restricts_every_measure():
    still, painting = _still(), _painting()
    changed = still.copy()
    changed[:, SIZE // 2:] = painting[:, SIZE // 2:]  # only the right half is the painting
    left = np.zeros((SIZE, SIZE), np.float32)
    left[:, : SIZE // 2 - 8] = 1.0
    right = np.zeros((SIZE, SIZE), np.float32)
    right[:, SIZE // 2:] = 1.0
    assert colour_shift(still, changed, painting, left) == pytest.approx(0.0, abs=1e-9)
    assert colour_shift(still, changed, painting, right) > 0.9
    assert colour_shift(still, changed, painting) < 0.9
    assert abs(orientation_shift(still, changed, painting, left)) < 0.05
    assert orientation_shift(still, changed, painting, right) > 0.8
    assert edge_similarity(still, changed, left) > 0.95 > edge_similarity(still, changed)
    with pytest.raises(ValueError, match="empty"):
        colour_shift(still, changed, painting, np.zeros((SIZE, SIZE)))
    with pytest.raises(ValueError, match="size"):
        colour_shift(still, changed[:64], painting)


def test_another_picture_has_other_edges():
    still = _still()
    other = texture(SIZE, SIZE, seed=7).astype(np.float32) / 255.0
    assert edge_similarity(still, other) < 0.3
    rng = np.random.default_rng(0)
    noisy = np.clip(still + rng.normal(0, 0.03, still.shape), 0, 1).astype(np.float32)
    assert edge_similarity(still, other) < edge_similarity(still, noisy) < 1.0


def test_a_still_that_already_has_the_paintings_statistics_is_nan():
    still = _still()
    assert math.isnan(colour_shift(still, _painting(), still))
    assert math.isnan(orientation_shift(still, _painting(), still))
    # any size of painting: the statistics are of the whole painting
    big = cv2.resize(_painting(), (300, 200), interpolation=cv2.INTER_LINEAR)
    assert colour_shift(still, _painting(), big) > 0.9
