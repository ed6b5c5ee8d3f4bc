"""Easing endpoints and the shared renderer's conventions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import texture, write_job
from rounding import assert_rounding_close

from engine import render
from engine.job import load_job
from engine.progress import Silent
from engine.render import FlowPatch, FrameRenderer, upsample_flow, warp_frame
from engine.warp import prepare
from engine.warp.timing import frame_times


@pytest.mark.parametrize("easing", ["ease_in_out", "linear"])
@pytest.mark.parametrize("count", [2, 3, 24])
def test_clip_starts_at_the_still_and_ends_at_the_poke(easing, count):
    times = frame_times(count, easing)
    assert times[0] == 0.0 and times[-1] == 1.0
    assert all(a < b for a, b in zip(times, times[1:]))


def test_ease_in_out_starts_and_ends_slowly():
    times = frame_times(24, "ease_in_out")
    linear = frame_times(24, "linear")
    assert times[1] < linear[1] / 2 and 1 - times[-2] < (1 - linear[-2]) / 2


@pytest.mark.parametrize("count", [2, 7, 24])
def test_loop_comes_back(count):
    times = frame_times(count, loop=True)
    assert times[0] == 0.0
    # Frame k+1 and frame N-k+1 are the same moment, so frame N+1 would be frame 1 again.
    assert all(times[k] == times[(count - k) % count] for k in range(count))
    if count % 2 == 0:
        assert times[count // 2] == 1.0


def test_looping_clip_frames_mirror(tmp_path):
    still = texture(48, 64, seed=2)
    job = write_job(tmp_path, still, frames=6, loop=True,
                    pokes=[{"start": [30.0, 20.0], "end": [38.0, 26.0], "radius": 20.0}])
    images = list(prepare(load_job(job), torch.device("cpu"), Silent()))
    assert np.array_equal(images[0], still)
    assert np.array_equal(images[1], images[5]) and np.array_equal(images[2], images[4])
    assert not np.array_equal(images[3], still)


def test_zero_flow_copies_the_still_bit_for_bit():
    still = torch.rand(4, 33, 47)
    assert torch.equal(warp_frame(still, torch.zeros(2, 33, 47)), still)


def test_whole_pixel_shift_is_exact():
    still = torch.rand(3, 20, 30)
    flow = torch.zeros(2, 20, 30)
    flow[0] = 3.0  # content moved 3 px right: frame(x) = still(x - 3)
    out = warp_frame(still, flow)
    assert torch.allclose(out[:, :, 3:], still[:, :, :-3], atol=1e-5)
    assert torch.allclose(out[:, :, :3], still[:, :, :1].expand(-1, -1, 3), atol=1e-5)  # border


def test_pixel_centres_follow_the_job_convention():
    x, y = render.pixel_centres(2, 3)
    assert x[0].tolist() == [0.5, 1.5, 2.5] and y[:, 0].tolist() == [0.5, 1.5]


def test_upsampled_flow_is_in_full_resolution_pixels():
    flow = torch.zeros(2, 4, 8)
    flow[0], flow[1] = 1.0, -2.0  # one low-resolution pixel right, two up
    full = upsample_flow(flow, 40, 64)
    assert torch.allclose(full[0], torch.full((40, 64), 8.0))
    assert torch.allclose(full[1], torch.full((40, 64), -20.0))


def test_upsampled_flow_is_smooth_and_never_overshoots():
    flow = torch.zeros(2, 9, 9)
    flow[:, 3:6, 3:6] = 5.0
    full = upsample_flow(flow, 90, 90) / 10  # back to low-resolution pixels
    assert float(full.max()) <= 5.0 and float(full.min()) >= 0.0
    reference = F.interpolate(flow[None], size=(90, 90), mode="bilinear", align_corners=False)[0]
    assert abs(float(full.mean() - reference.mean())) < 0.01  # same amount of motion
    assert float(full[:, 45, 45].min()) > 4.5  # the plateau's middle is (almost) kept


def test_flow_patch_equals_the_dense_flow():
    dense = torch.zeros(2, 12, 16)
    dense[:, 2:7, 0:9] = torch.randn(2, 5, 9)
    patch = FlowPatch(dense[:, 2:7, 0:9].clone(), (12, 16), (2, 0))
    # the same weighted sums, over 5 x 9 samples instead of 12 x 16 (the rest are zeros)
    assert_rounding_close(upsample_flow(patch, 60, 80), upsample_flow(dense, 60, 80),
                          upsample_flow(dense.double(), 60, 80), what="patch")


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 4), (np.float32, 1)])
def test_band_renderer_matches_the_whole_frame_warp(monkeypatch, dtype, channels):
    still = texture(70, 90, channels, dtype, seed=4)
    flow = torch.zeros(2, 7, 9)
    flow[:, 2:5, 3:7] = torch.tensor([0.6, -0.4])[:, None, None]
    monkeypatch.setattr(render, "BAND_PIXELS", 90 * 16)  # five bands
    banded = FrameRenderer(still).render(flow)
    values = torch.from_numpy(render.frames.to_float(still)).permute(2, 0, 1)
    whole = warp_frame(values, upsample_flow(flow, 70, 90)).permute(1, 2, 0).numpy()
    expected = render.frames.from_float(whole, dtype)
    if dtype == np.float32:  # the bands upsample the flow in other blocks: float32 rounding
        exact = warp_frame(values.double(), upsample_flow(flow.double(), 70, 90))
        assert_rounding_close(banded, expected, exact.permute(1, 2, 0).numpy(), what="bands")
    else:  # a float difference far below one level may round to the next level, no further
        assert np.abs(banded.astype(np.int64) - expected).max() <= 1
    static = (upsample_flow(flow, 70, 90) == 0).all(dim=0).numpy()
    assert np.array_equal(banded[static], still[static])


def test_transparent_colour_does_not_bleed():
    still = torch.zeros(4, 8, 8)
    still[:, :, :4] = torch.tensor([1.0, 0.0, 0.0, 1.0])[:, None, None]  # opaque red left half
    still[:, :, 4:] = torch.tensor([0.0, 1.0, 0.0, 0.0])[:, None, None]  # invisible green right
    flow = torch.zeros(2, 8, 8)
    flow[0] = 0.5
    out = warp_frame(still, flow, mode="bilinear")
    visible = out[3] > 0.01
    assert torch.allclose(out[1][visible], torch.zeros_like(out[1][visible]), atol=1e-6)


def test_lanczos_sampling_is_exact_at_centres_and_close_to_bicubic_on_smooth_content():
    import torch

    from engine import render

    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(5, 6, 7, generator=generator)  # 5 channels: remap takes 4 at a time
    smooth = torch.nn.functional.interpolate(coarse[None], size=(60, 70), mode="bicubic",
                                             align_corners=False)[0]
    ys, xs = torch.meshgrid(torch.arange(60) + 0.5, torch.arange(70) + 0.5, indexing="ij")
    assert torch.equal(render.sample(smooth, xs, ys, "lanczos"), smooth)
    x = torch.rand(1, 5000, generator=generator) * 50 + 10  # folded past 4096 columns
    y = torch.rand(1, 5000, generator=generator) * 40 + 10
    lanczos = render.sample(smooth, x, y, "lanczos")
    assert lanczos.shape == (5, 1, 5000)
    assert float((lanczos - render.sample(smooth, x, y, "bicubic")).abs().max()) < 0.02
