"""Motion library: built-in exemplars are real, looping, deterministic dynamic textures; user
videos become exemplars; bad inputs are clear errors."""

import json

import cv2
import numpy as np
import pytest
from conftest import json_lines, run_engine, save, texture

from engine.dyntex.exemplars import (EXEMPLARS, exemplar_from_video, load_exemplar,
                                     power_law_still,
                                     make_exemplar, write_thumbnail)
from engine.errors import JobError
from engine.metrics import clip_flows, flow_histograms, loop_seam_error

FRAMES, SIZE = 16, 96


@pytest.fixture(scope="module")
def clips():
    return {name: make_exemplar(name, FRAMES, SIZE) for name in EXEMPLARS}


@pytest.fixture(scope="module")
def flows(clips):
    return {name: clip_flows(clip) for name, clip in clips.items()}


def _evolution(clip, flows, k):
    """Frame k against frame 0 moved by the clip's accumulated mean flow, relative to their
    plain difference: ~0 for a panned still, large when the appearance itself changes."""
    a, b = clip[0].mean(-1), clip[k].mean(-1)
    dx, dy = flows[:k].reshape(-1, 2).mean(0) * k
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(a, shift, a.shape[::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    m = 12
    return np.abs(moved - b)[m:-m, m:-m].mean() / np.abs(a - b)[m:-m, m:-m].mean()


def test_registry_and_shapes(clips):
    assert set(EXEMPLARS) == {"water", "clouds", "grass", "waterfall", "ripples"}
    assert all(isinstance(text, str) and text for text in EXEMPLARS.values())
    for clip in clips.values():
        assert clip.shape == (FRAMES, SIZE, SIZE, 3) and clip.dtype == np.float32
        assert 0.0 <= clip.min() and clip.max() <= 1.0
        assert clip.std() > 0.03  # a picture, not a flat colour


@pytest.mark.parametrize("name", sorted(EXEMPLARS))
def test_builtin_moves_and_is_not_a_panned_still(name, clips, flows):
    magnitude = np.hypot(flows[name][..., 0], flows[name][..., 1]).mean()
    assert magnitude > 0.15, f"{name} barely moves ({magnitude:.2f} px/frame)"
    assert _evolution(clips[name], flows[name], 4) > 0.25


def test_a_panned_still_is_recognised_by_the_evolution_check(clips):
    still = clips["clouds"][0]
    panned = np.stack([np.roll(still, t, axis=1) for t in range(FRAMES)])
    assert _evolution(panned, clip_flows(panned), 4) < 0.1


@pytest.mark.parametrize("name", sorted(EXEMPLARS))
def test_builtin_loops(name, clips):
    seam = loop_seam_error(clips[name])
    assert seam["ratio"] < 1.3, seam


def test_deterministic_by_seed(clips):
    for name in ("water", "grass"):
        again = make_exemplar(name, FRAMES, SIZE, seed=0)
        assert np.array_equal(again, clips[name])
        other = make_exemplar(name, FRAMES, SIZE, seed=1)
        assert np.abs(other - clips[name]).mean() > 0.02


@pytest.mark.parametrize("wind", [(1.0, 0.0), (-1.0, 1.0), (0.0, -1.0)])
def test_water_travels_with_its_wind(wind):
    flow = clip_flows(make_exemplar("water", 8, SIZE, wind=wind)).reshape(-1, 2).mean(0)
    cosine = flow @ np.asarray(wind) / (np.linalg.norm(flow) * np.linalg.norm(wind))
    assert cosine > 0.95, (wind, flow)


def test_waterfall_falls_down(flows):
    flow = flows["waterfall"]
    assert flow[..., 1].mean() > 0.8 and flow[..., 1].mean() > 5 * abs(flow[..., 0].mean())
    direction = flow_histograms(None, bins=(8, 8), flows=flow)["direction"]
    # Bin 6 of 8 is centred on "down" (+y); bins 5-7 are within 67.5 degrees of it.
    assert direction[6] > 0.4 and direction[5:8].sum() > 0.8, direction


def _write_video(path, count, size=(40, 30)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(count):
        frame = np.roll(texture(size[1], size[0], seed=3), 2 * i, axis=1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_exemplar(tmp_path):
    path = _write_video(tmp_path / "clip.avi", 8)
    clip = exemplar_from_video(path, frames=5, size=24, start=1, stride=1)
    assert clip.shape == (5, 24, 24, 3) and clip.dtype == np.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0
    motion = clip_flows(clip).reshape(-1, 2).mean(0)
    assert motion[0] > 0.5  # the texture moves right in the video
    assert load_exemplar(str(path), frames=3, size=16).shape == (3, 16, 16, 3)


def test_bad_inputs(tmp_path):
    with pytest.raises(JobError, match="at least 2"):
        exemplar_from_video(_write_video(tmp_path / "one.avi", 1), frames=4, size=16)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(JobError):
        exemplar_from_video(junk)
    with pytest.raises(JobError, match="not found"):
        exemplar_from_video(tmp_path / "missing.mp4")
    with pytest.raises(JobError, match="unknown exemplar"):
        make_exemplar("lava")
    with pytest.raises(JobError, match="neither a built-in"):
        load_exemplar("lava")
    with pytest.raises(JobError, match="at least 2 frames"):
        make_exemplar("water", frames=1)
    with pytest.raises(JobError, match="wind"):
        make_exemplar("water", frames=2, size=32, wind=(0, 0))


def test_thumbnail(tmp_path, clips):
    path = write_thumbnail("clouds", tmp_path / "thumbs" / "clouds.png", size=48)
    image = cv2.imread(str(path))
    assert image.shape == (48, 48, 3) and image.std() > 5
    path = write_thumbnail(clips["water"], tmp_path / "water.png", size=32)
    assert cv2.imread(str(path)).shape == (32, 32, 3)


def test_cli_exemplar_and_motion_stats(tmp_path):
    out = tmp_path / "grass"
    result = run_engine("exemplar", "grass", "--frames", "6", "--size", "48", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[-1]["stage"] == "done"
    assert len(list(out.glob("frame_*.png"))) == 6
    for name in ("contact_sheet.png", "thumbnail.png"):
        assert (out / name).is_file()
    assert list(out.glob("preview.*"))
    result = run_engine("motion-stats", str(out), str(out), "--size", "48")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["magnitude"] == pytest.approx(1.0) and stats["direction"] == pytest.approx(1.0)
    mask = np.zeros((48, 48, 1), np.uint8)
    mask[:, :24] = 255
    save(tmp_path / "left.png", mask)
    result = run_engine("motion-stats", str(out), "grass", "--size", "48", "--frames", "6",
                        "--mask-a", str(tmp_path / "left.png"))
    assert result.returncode == 0, result.stderr
    assert 0 <= json.loads(result.stdout.strip().splitlines()[-1])["magnitude"] <= 1
    save(tmp_path / "empty.png", mask * 0)
    result = run_engine("motion-stats", str(out), "grass", "--mask-a", str(tmp_path / "empty.png"))
    assert result.returncode == 2 and "empty" in result.stderr
    result = run_engine("exemplar", "lava", "--out", str(tmp_path / "lava"))
    assert result.returncode == 2 and "neither a built-in" in result.stderr


def _radial_log_slope(still: np.ndarray) -> float:
    """Least-squares slope of log power against log wavenumber over the middle octaves."""
    power = np.abs(np.fft.fft2(still - still.mean())) ** 2
    ky, kx = np.meshgrid(np.fft.fftfreq(still.shape[0]), np.fft.fftfreq(still.shape[1]),
                         indexing="ij")
    k = np.hypot(kx, ky)
    band = (k > 4 / still.shape[0]) & (k < 0.25)
    return float(np.polyfit(np.log(k[band]), np.log(power[band]), 1)[0])


def test_power_law_stills_have_the_asked_spectrum_and_grain():
    """MSOE's training stills: 1/k^slope power (the slope an artist's photo has is near 2) and,
    stretched, grain along the given angle."""
    rng = np.random.default_rng(0)
    for slope in (1.5, 3.0):
        still = power_law_still(rng, 256, slope)
        assert still.dtype == np.float32 and 0.0 <= still.min() and still.max() <= 1.0
        assert abs(_radial_log_slope(still) + slope) < 0.35, (slope, _radial_log_slope(still))
    grain = power_law_still(rng, 256, 2.0, stretch=3.0, angle=0.0)  # wavefronts along x
    along_x = np.abs(np.diff(grain, axis=1)).mean()
    along_y = np.abs(np.diff(grain, axis=0)).mean()
    assert along_y > 1.5 * along_x, (along_x, along_y)
