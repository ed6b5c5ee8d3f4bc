"""The quality measures (docs/ARCHITECTURE.md) on clips whose answer is known."""

import numpy as np
import pytest
from conftest import texture

from engine.flow import dis_flow
from engine.metrics import (background_leakage, flow_histograms, histogram_intersection,
                            layout_fidelity, loop_seam_error, motion_statistics,
                            poke_following, ssim)


def _panned(dx, dy, count=6, size=64, seed=0):
    """A texture moving (dx, dy) integer pixels per frame (periodic: np.roll)."""
    still = texture(size, size, seed=seed)
    return np.stack([np.roll(still, (dy * t, dx * t), axis=(0, 1)) for t in range(count)])


def test_histogram_intersection_basics():
    assert histogram_intersection([1, 0, 0], [0, 0, 5]) == 0.0
    assert histogram_intersection([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert histogram_intersection([1, 1], [1, 0]) == pytest.approx(0.5)
    assert histogram_intersection([0, 0], [0, 0]) == 1.0
    assert histogram_intersection([0, 0], [1, 0]) == 0.0
    with pytest.raises(ValueError):
        histogram_intersection([1, 2], [1, 2, 3])


def test_motion_statistics_identical_and_opposite():
    right, left = _panned(2, 0), _panned(-2, 0)
    same = motion_statistics(right, right)
    assert same == {"magnitude": pytest.approx(1.0), "direction": pytest.approx(1.0)}
    opposite = motion_statistics(right, left)
    assert opposite["direction"] < 0.15
    assert opposite["magnitude"] > 0.7  # same speed, other way
    slow = motion_statistics(right, _panned(0, 6))
    assert slow["magnitude"] < 0.3 and slow["direction"] < 0.15


def test_flow_histograms_shape_and_mask():
    clip = _panned(3, 0)
    hist = flow_histograms(clip, bins=(8, 4))
    assert hist["magnitude"].shape == (8,) and hist["direction"].shape == (4,)
    assert hist["magnitude"].sum() == pytest.approx(1.0)
    assert hist["direction"].argmax() == 2  # bins centred on left, up, right, down
    assert hist["mean_magnitude"] == pytest.approx(3.0, abs=0.3)
    # Only the left half of a clip whose right half is static.
    half = clip.copy()
    half[:, :, 32:] = clip[0, :, 32:]
    mask = np.zeros((64, 64), np.float32)
    mask[8:56, 8:24] = 1
    inside = flow_histograms(half, mask=mask)
    everywhere = flow_histograms(half)
    assert inside["mean_magnitude"] > 1.5 * everywhere["mean_magnitude"]
    still = flow_histograms(np.repeat(clip[:1], 3, axis=0))
    assert still["direction"].sum() == 0 and still["mean_magnitude"] < 0.05


def test_loop_seam_error():
    # A cyclic pan: 8 frames of 8 px on a 64 px periodic texture; frame 8 would be frame 0.
    looping = _panned(8, 0, count=8)
    seam = loop_seam_error(looping)
    assert seam["ratio"] == pytest.approx(1.0, abs=0.05)
    fading = looping * np.linspace(1.0, 0.3, 8)[:, None, None, None]  # never comes back
    assert loop_seam_error(fading.astype(np.float32))["ratio"] > 2 * seam["ratio"]
    assert loop_seam_error(np.zeros((3, 4, 4, 3)))["ratio"] == 0.0
    assert loop_seam_error(fading.astype(np.float32))["largest_ratio"] > 2


def test_loop_seam_against_the_largest_step_reads_uneven_motion():
    """A seamless sway that wraps where it swings fastest: against the mean step its seam reads
    1.4, against the largest step it reads what it is, no larger than the clip's own steps; a
    jump at the wrap reads above 1 both ways."""
    still = texture(48, 64, seed=3)
    offsets = np.round(6 * np.sin(2 * np.pi * np.arange(12) / 12)).astype(int)
    sway = np.stack([np.roll(still, int(o), axis=1) for o in offsets])
    seam = loop_seam_error(sway)
    assert seam["ratio"] > 1.0 >= seam["largest_ratio"]
    jump = np.concatenate([sway[:-1], np.roll(sway[-1:], 20, axis=2)])
    assert loop_seam_error(jump)["largest_ratio"] > 1.0


def test_ssim_and_layout_fidelity():
    image = texture(64, 64).astype(np.float32) / 255
    assert ssim(image, image) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    scores = [ssim(image, np.clip(image + rng.normal(0, s, image.shape), 0, 1).astype(np.float32))
              for s in (0.02, 0.1, 0.3)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    # Damage only outside the mask: fidelity inside stays high.
    damaged = image.copy()
    damaged[:, 32:] = rng.random(damaged[:, 32:].shape)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :24] = 1
    assert layout_fidelity(damaged, image, mask) > 0.95 > layout_fidelity(damaged, image)
    assert ssim(texture(32, 32), texture(32, 32)) == pytest.approx(1.0)  # uint8 too


def test_background_leakage():
    flow = np.zeros((32, 32, 2), np.float32)
    mask = np.zeros((32, 32))
    mask[8:24, 8:24] = 1
    flow[8:24, 8:24] = (2.0, 1.0)
    assert background_leakage(flow, mask) == 0.0
    flow[:] = (2.0, 1.0)
    assert background_leakage(flow, mask) == pytest.approx(1.0)
    assert background_leakage(np.moveaxis(flow, -1, 0), mask) == pytest.approx(1.0)


def test_poke_following():
    flow = np.zeros((32, 32, 2), np.float32)
    flow[10:15, 10:15] = (3.0, -4.0)
    cosine, ratio = poke_following(flow, (10, 10, 15, 15), (3.0, -4.0))
    assert cosine == pytest.approx(1.0) and ratio == pytest.approx(1.0)
    cosine, ratio = poke_following(flow, (10, 10, 15, 15), (-6.0, 8.0))
    assert cosine == pytest.approx(-1.0) and ratio == pytest.approx(0.5)
    # Measured with DIS on a real translation, first -> last frame.
    clip = _panned(1, 1, count=4)
    patch = np.zeros((64, 64), bool)
    patch[20:40, 20:40] = True
    cosine, ratio = poke_following(dis_flow(clip[0], clip[-1]), patch, (3.0, 3.0))
    assert cosine > 0.99 and ratio == pytest.approx(1.0, abs=0.1)


def test_magnitude_bins_resolve_slow_motion():
    """Natural motion is mostly sub-pixel per frame: 0.1 and 0.4 px/frame must not share a bin."""
    slow, faster = np.zeros((1, 8, 8, 2), np.float32), np.zeros((1, 8, 8, 2), np.float32)
    slow[..., 0], faster[..., 0] = 0.1, 0.4
    a = flow_histograms(None, flows=slow)["magnitude"]
    b = flow_histograms(None, flows=faster)["magnitude"]
    assert histogram_intersection(a, b) == 0.0


def test_unexplained_change_tells_motion_from_flicker():
    """A texture translated 1.5 px/frame is explained by its flow (the rest is resampling);
    independent noise per frame, or a colour flicker, is not."""
    import cv2

    from engine.metrics import drift_coherence, unexplained_change

    still = texture(64, 96, seed=1).astype(np.float32) / 255.0
    drift = np.stack([cv2.warpAffine(still, np.float32([[1, 0, 1.5 * t], [0, 1, 0]]), (96, 64),
                                     flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                      for t in range(6)])
    mask = np.zeros((64, 96), np.float32)
    mask[12:52, 16:80] = 1
    rng = np.random.default_rng(0)
    noise = np.clip(still + rng.normal(0, 0.08, (6, 64, 96, 3)), 0, 1).astype(np.float32)
    flicker = np.clip(still * (1 + 0.1 * rng.standard_normal((6, 1, 1, 3))), 0, 1)
    assert unexplained_change(drift, mask) < 0.3
    assert unexplained_change((drift * 255 + 0.5).astype(np.uint8), mask) < 0.3
    assert unexplained_change(noise, mask) > 0.8
    assert unexplained_change(flicker.astype(np.float32), mask) > 0.8
    assert unexplained_change(np.repeat(drift[:1], 3, axis=0), mask) == 0.0  # nothing changes
    # Rounding is not flicker: a still whose pixels flip by one 8-bit level reads 0 (and about 2
    # when every difference counts); noise of a few levels (up to 4 here; 2 reads 1.0 too) is
    # flicker.
    levels = (still * 255 + 0.5).astype(np.uint8)
    flips = np.stack([levels + (rng.random(levels.shape) < 0.3).astype(np.uint8)
                      for _ in range(4)])
    assert unexplained_change(flips, mask) == 0.0
    assert unexplained_change(flips, mask, rounding=0) > 0.8
    grain = np.stack([np.clip(levels.astype(int) + rng.integers(-4, 5, levels.shape), 0, 255)
                      for _ in range(4)]).astype(np.uint8)
    assert unexplained_change(grain, mask) > 0.8
    # Coherence: a drift has one direction, a sway back and forth has none on average.
    assert drift_coherence(drift, mask) > 0.95
    sway = np.stack([np.roll(still, round(3 * np.sin(2 * np.pi * t / 8)), axis=1)
                     for t in range(9)])
    assert drift_coherence(sway, mask) < 0.1
    assert drift_coherence(np.repeat(drift[:1], 3, axis=0), mask) < 0.1
    with pytest.raises(ValueError):
        unexplained_change(drift, np.zeros((64, 96)))
