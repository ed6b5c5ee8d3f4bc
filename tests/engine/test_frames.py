"""Image and frame files: formats, bit depths, channels, sizes and paths the engine must handle."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save, texture, write_job

from engine import exr, frames
from engine.errors import JobError
from engine.job import load_job
from engine.progress import Silent
from engine.runner import run_job

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_depth_and_channels(tmp_path, channels, dtype):
    pixels = texture(9, 13, channels, dtype, seed=channels)
    path = tmp_path / "frame.png"
    frames.write_image(path, pixels, "PNG8" if dtype == np.uint8 else "PNG16")
    back = frames.read_image(path)
    assert back.dtype == dtype and np.array_equal(back, pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_exr_round_trip_is_exact(tmp_path, channels):
    rng = np.random.default_rng(channels)
    pixels = (rng.random((17, 23, channels)) * 4 - 1).astype(np.float32)  # HDR and negative
    path = tmp_path / "frame.exr"
    frames.write_image(path, pixels, "EXR")
    back = frames.read_image(path)
    assert back.dtype == np.float32 and np.array_equal(back, pixels)


@pytest.mark.parametrize("name, tolerance", [("blender_zip_half.exr", 1e-3),
                                             ("blender_rle_float.exr", 0.0),
                                             ("blender_zips_float.exr", 0.0)])
def test_reads_exr_written_by_blender(name, tolerance):
    """Files saved by Blender 5.0 (ZIP half, RLE and ZIPS float) hold a known gradient."""
    h, w = 12, 16
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    expected = np.stack([x / (w - 1) * 2.0, y / (h - 1), (x + y) / (w + h - 2) * 0.5,
                         np.where(x < 8, 1.0, 0.25)], axis=-1)
    pixels = frames.read_image(DATA / name)
    assert pixels.shape == (h, w, 4)
    assert np.abs(pixels - expected).max() <= tolerance


def test_corrupt_exr_is_refused_with_its_path(tmp_path):
    path = tmp_path / "broken.exr"
    frames.write_image(path, np.zeros((4, 4, 3), np.float32), "EXR")
    path.write_bytes(path.read_bytes()[:40])  # the header survives, the pixels do not
    with pytest.raises(JobError, match="cannot read EXR .*broken.exr"):
        frames.read_image(path)


def test_channels_are_rgb_in_memory(tmp_path):
    import cv2
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 200  # red, as OpenCV stores it
    cv2.imencode(".png", bgr)[1].tofile(tmp_path / "red.png")
    assert frames.read_image(tmp_path / "red.png")[0, 0].tolist() == [200, 0, 0]
    frames.write_image(tmp_path / "back.png", frames.read_image(tmp_path / "red.png"), "PNG8")
    assert np.array_equal(cv2.imdecode(np.fromfile(tmp_path / "back.png", np.uint8), -1), bgr)


def test_colour_mask_is_read_as_brightness(tmp_path):
    mask = np.zeros((4, 4, 3), np.uint8)
    mask[:2] = 255
    save(tmp_path / "mask.png", mask)
    values = frames.read_mask(tmp_path / "mask.png", 4, 4)
    assert values.dtype == np.float32 and values[:2].min() == 1.0 and values[2:].max() == 0.0


def test_sample_conversions_between_formats():
    eight = np.array([[[0, 128, 255]]], np.uint8)
    assert np.array_equal(frames.convert(eight, "PNG16"), eight.astype(np.uint16) * 257)
    assert np.array_equal(frames.convert(frames.convert(eight, "PNG16"), "PNG8"), eight)
    linear = frames.convert(eight, "EXR")  # integer data is sRGB: decoded to linear light
    assert np.allclose(linear, [[[0.0, 0.2158605, 1.0]]], atol=1e-6)
    assert np.array_equal(frames.convert(linear, "PNG8"), eight)
    rgba = np.array([[[255, 0, 0, 128]]], np.uint8)
    assert frames.convert(rgba, "EXR")[0, 0, 3] == pytest.approx(128 / 255)  # alpha stays linear


def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "Проект ü 写真"
    pixels = texture(5, 6, 4)
    save(folder / "still ö.png", pixels)
    assert np.array_equal(frames.read_image(folder / "still ö.png"), pixels)
    frames.write_image(folder / "frame é.exr", frames.to_float(pixels), "EXR")
    assert frames.read_image(folder / "frame é.exr").shape == (5, 6, 4)


def test_unreadable_and_missing_images_are_job_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    with pytest.raises(JobError, match="cannot decode image"):
        frames.read_image(tmp_path / "bad.png")
    with pytest.raises(JobError, match="not found"):
        frames.read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("channels, dtype, fmt", [
    (1, np.uint8, "PNG8"),     # grey stays grey
    (4, np.uint8, "PNG8"),     # alpha kept
    (3, np.uint16, "PNG16"),   # 16 bits kept
    (4, np.uint8, "EXR"),
    (3, np.uint8, "PNG16"),
])
def test_bake_keeps_channels_and_depth(tmp_path, channels, dtype, fmt):
    still = texture(40, 50, channels, dtype, seed=7)
    if channels == 4:
        still[:, :25, 3] = frames.MAX_VALUE[np.dtype(dtype)] // 3  # partly transparent
    job = load_job(write_job(tmp_path, still, frames=3, format=fmt,
                             pokes=[{"start": [20.0, 20.0], "end": [27.0, 24.0], "radius": 15.0}]))
    run_job(job, Silent())
    first = frames.read_image(job.output / f"frame_0001{job.extension}")
    last = frames.read_image(job.output / f"frame_0003{job.extension}")
    assert first.shape == last.shape == still.shape
    assert np.array_equal(first, frames.convert(still, fmt))
    if channels == 4:  # the transparent part is still transparent, and the edge moved with it
        alpha, original = last[:, :, 3], frames.convert(still, fmt)[:, :, 3]
        assert np.array_equal(alpha[:, :5], original[:, :5])
        assert not np.array_equal(alpha, original)


def test_sixteen_bit_precision_survives_the_warp(tmp_path):
    """A smooth 16-bit ramp warped and written as PNG16 keeps values 8 bits cannot hold."""
    y, x = np.mgrid[0:64, 0:64]
    ramp = (x * 1000 + y * 17 + 3).astype(np.uint16)
    still = np.repeat(ramp[:, :, None], 3, axis=2)
    job = load_job(write_job(tmp_path, still, frames=2, format="PNG16",
                             pokes=[{"start": [32.0, 32.0], "end": [35.5, 33.25], "radius": 30.0}]))
    run_job(job, Silent())
    last = frames.read_image(job.output / "frame_0002.png")
    moved = last[:, :, 0] != ramp
    assert moved.sum() > 500
    assert np.any(last[moved][:, 0] % 257 != 0)  # not 8-bit values scaled up
    assert len(np.unique(last[moved][:, 0])) > 400


def test_one_pixel_still(tmp_path):
    still = np.array([[[10, 200, 30]]], np.uint8)
    job = load_job(write_job(tmp_path, still, frames=2,
                             pokes=[{"start": [0.5, 0.5], "end": [0.9, 0.5], "radius": 0.0}]))
    run_job(job, Silent())
    for index in (1, 2):
        assert np.array_equal(frames.read_image(job.output / f"frame_000{index}.png"), still)


def test_max_size_scales_the_still_down(tmp_path):
    still = texture(90, 160, 3, seed=8)
    job = load_job(write_job(tmp_path, still, frames=2, max_size=64,
                             pokes=[{"start": [80.0, 45.0], "end": [90.0, 40.0], "radius": 30.0}]))
    run_job(job, Silent())
    assert frames.read_image(job.output / "frame_0002.png").shape == (36, 64, 3)


def test_large_still_renders_in_bands_with_memory_of_one_frame(tmp_path, monkeypatch):
    """A wide still, a small poke: only the band around the poke is resampled; every other
    pixel is the still's, bit for bit."""
    from engine import render
    monkeypatch.setattr(render, "BAND_PIXELS", 4096 * 32)
    still = texture(600, 4096, 3, seed=9)
    job = load_job(write_job(tmp_path, still, frames=2,
                             pokes=[{"start": [3000.0, 300.0], "end": [3012.0, 296.0],
                                     "radius": 40.0}]))
    from engine.warp import prepare
    clip = prepare(job, torch.device("cpu"), Silent())
    last = list(clip)[-1]
    changed = np.nonzero((last != still).any(axis=2))
    assert changed[0].min() > 240 and changed[0].max() < 360
    assert changed[1].min() > 2940 and changed[1].max() < 3070
