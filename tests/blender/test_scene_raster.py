"""scene/raster.py: polygon fill against a brute-force reference, and the PNG writer read back
by Blender's own decoder."""

import importlib

import bpy
import numpy as np
import pytest

from conftest import ADDON


@pytest.fixture
def raster(addon):
    return importlib.import_module(ADDON + ".scene.raster")


def _brute_fill(xy, width, height, rule):
    """Pixel-centre test of every pixel: the definition fill_polygon must match."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    winding = np.zeros((height, width), int)
    crossings = np.zeros((height, width), int)
    for i in range(len(xy)):
        (x0, y0), (x1, y1) = xy[i], xy[(i + 1) % len(xy)]
        if y0 == y1:
            continue
        spans = (ys >= min(y0, y1)) & (ys < max(y0, y1))
        x_at = x0 + (ys - y0) / (y1 - y0) * (x1 - x0)
        hit = spans & (xs >= x_at)
        winding += hit * (1 if y1 > y0 else -1)
        crossings += hit
    inside = winding != 0 if rule == "nonzero" else crossings % 2 == 1
    return np.where(inside, 255, 0).astype(np.uint8)


@pytest.mark.parametrize("loop_limit", [8, 0], ids=["span-loop", "cumsum"])
def test_fill_matches_brute_force(raster, monkeypatch, loop_limit):
    monkeypatch.setattr(raster, "SPANS_PER_ROW_LOOP", loop_limit)
    rng = np.random.default_rng(1)
    for trial in range(150):
        width, height = (int(v) for v in rng.integers(1, 30, 2))
        xy = rng.uniform(-8, 38, (int(rng.integers(3, 10)), 2))
        if trial % 3 == 0:
            xy = np.round(xy * 2) / 2  # vertices and edges exactly on pixel centres/borders
        for rule in ("nonzero", "evenodd"):
            got = raster.fill_polygon(xy, width, height, rule)
            assert got.shape == (height, width) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, _brute_fill(xy, width, height, rule))


def test_fill_rectangle_exact_and_clipped(raster):
    mask = raster.fill_polygon([(2, 3), (10, 3), (10, 7), (2, 7)], 12, 9)
    assert (mask > 0).sum() == 8 * 4
    assert mask[3:7, 2:10].all() and not mask[:3].any() and not mask[:, :2].any()
    # Reaching off every side: clipped to the image, everything inside filled.
    full = raster.fill_polygon([(-50, -50), (60, -50), (60, 60), (-50, 60)], 12, 9)
    assert (full == 255).all()
    # Entirely off the image, and degenerate input.
    assert not raster.fill_polygon([(20, 20), (30, 20), (30, 30)], 12, 9).any()
    assert not raster.fill_polygon([(1, 1), (5, 5)], 12, 9).any()
    assert not raster.fill_polygon([(1, 1), (5, np.nan), (1, 5)], 12, 9).any()


def test_fill_rules_differ_on_double_loop(raster):
    # A square outline drawn twice in the same direction: nonzero fills it, evenodd cancels.
    sq = [(2, 2), (8, 2), (8, 8), (2, 8)]
    assert (raster.fill_polygon(sq * 2, 10, 10, "nonzero") > 0).sum() == 36
    assert not raster.fill_polygon(sq * 2, 10, 10, "evenodd").any()


def test_fill_one_pixel_image(raster):
    assert raster.fill_polygon([(0, 0), (1, 0), (1, 1), (0, 1)], 1, 1)[0, 0] == 255
    assert raster.fill_polygon([(0, 0), (0.4, 0), (0.4, 0.4)], 1, 1)[0, 0] == 0


def test_fill_8k_circle_has_the_circle_area(raster):
    theta = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    xy = np.stack([4096 + 4000 * np.cos(theta), 4096 + 4000 * np.sin(theta)], axis=1)
    mask = raster.fill_polygon(xy, 8192, 8192)
    assert abs((mask > 0).sum() / (np.pi * 4000**2) - 1) < 1e-4


def test_polygon_area(raster):
    assert raster.polygon_area([(0, 0), (4, 0), (4, 3), (0, 3)]) == pytest.approx(12)
    assert raster.polygon_area([(0, 0), (0, 3), (4, 3), (4, 0)]) == pytest.approx(-12)
    assert raster.polygon_area([(0, 0), (1, 1)]) == 0


def _load_pixels(path):
    img = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = img.size
        buf = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(buf)
        return buf.reshape(h, w, 4)[::-1], img.is_float
    finally:
        bpy.data.images.remove(img)


def test_png_gray_read_back_by_blender(raster, tmp_path):
    mask = np.zeros((5, 7), np.uint8)
    mask[1:4, 2:6] = 255
    mask[0, 0] = 128
    path = raster.write_png_gray(tmp_path / "mask_000.png", mask)
    assert path.read_bytes()[25] == 0  # colour type 0: single-channel grey, as JOB.md asks
    pixels, _ = _load_pixels(path)
    np.testing.assert_array_equal(np.rint(pixels[..., 0] * 255).astype(np.uint8), mask)


def test_png_rgba16_read_back_by_blender(raster, tmp_path):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 65536, (4, 6, 4)).astype(np.uint16)
    rgba[..., 3] = 65535
    raster.write_png(tmp_path / "x.png", rgba)
    pixels, is_float = _load_pixels(tmp_path / "x.png")
    assert is_float  # Blender loads 16-bit PNGs as float
    # Blender linearises sRGB 16-bit data on load; alpha stays as stored.
    np.testing.assert_allclose(pixels[..., 3], 1.0)
    assert pixels.shape == (4, 6, 4)


def test_png_rejects_bad_input(raster, tmp_path):
    with pytest.raises(ValueError):
        raster.write_png(tmp_path / "x.png", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        raster.write_png(tmp_path / "x.png", np.zeros((2, 2, 5), np.uint8))
