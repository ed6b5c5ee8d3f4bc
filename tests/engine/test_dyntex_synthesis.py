"""Two-stream synthesis per region (engine/dyntex/losses.py, synthesis.py, `python -m engine
dyntex`): exact stills outside the masks, falling loss, the L2 layout term, the painting stream,
seamless loops, masked statistics and clear errors for bad input.

Fast on purpose (CI has 2 cores): 40 x 48 stills, 4 frames, a few L-BFGS iterations, a VGG-19
with random (He-scaled) weights read only up to pool2 and an untrained MSOE. The properties
tested hold for any fixed networks; what the real weights look like is a bench/demo matter.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import save, texture, tiny_dyntex_networks
from rounding import assert_within, gamma, gram_tolerance
from engine import vgg
from engine.checkpoints import save_weights
from engine.dyntex.losses import DyntexLoss, LossWeights, masked_mse
from engine.dyntex.msoe import MsoeNet, save_msoe
from engine.dyntex.synthesis import (Region, Synthesis, SynthesisConfig, bake, load_networks,
                                     parse_mask_spec, synthesize)
from engine.errors import Cancelled, JobError
from engine.metrics import layout_fidelity, loop_seam_error
from engine.progress import Progress, Silent

H, W = 40, 48
FAST = dict(appearance_layers=("relu1_1", "pool1", "pool2"), l2_layers=("pool1", "pool2"),
            painting_layers=("relu1_1", "pool1", "pool2"))


@pytest.fixture(scope="module")
def nets():
    return tiny_dyntex_networks()


# tensors this small gain nothing from threads, and lose a lot to a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _still(seed=0):
    return texture(H, W, seed=seed)


def _top_mask():
    mask = np.zeros((H, W), np.float32)
    mask[:18] = 1.0
    return mask


def _config(iterations=6, **weights):
    return SynthesisConfig(frames=4, size=W, iterations=iterations, loop=True,
                           weights=LossWeights(**{**FAST, **weights}))


def _run(nets, regions, config, **kwargs):
    net, msoe = nets
    return synthesize(_still(), regions, config, vgg=net, msoe=msoe, **kwargs)


@pytest.fixture(scope="module")
def two_regions(nets):
    """One bake, two regions with different exemplars (a built-in and a given clip)."""
    still = _still()
    bottom = np.zeros((H, W), np.float32)
    bottom[28:, 4:30] = 1.0
    bottom[27, 4:30] = 0.5  # a soft edge: inside for the composition, outside at >= 0.5
    clip = np.random.default_rng(1).random((4, 32, 32, 3)).astype(np.float32)
    calls = []
    result = synthesize(still, [Region(_top_mask(), "water"), Region(bottom, clip)],
                        _config(iterations=14), vgg=nets[0], msoe=nets[1],
                        callback=lambda *a: calls.append(a))
    return still, _top_mask() + bottom, result, calls


def test_pixels_outside_every_mask_are_the_still_in_every_frame(two_regions):
    still, mask, result, _ = two_regions
    frames = list(result.frames())
    assert len(frames) == 4
    outside = mask == 0
    for frame in frames:
        assert frame.dtype == still.dtype and frame.shape == still.shape
        assert np.array_equal(frame[outside], still[outside])
    inside = mask >= 1
    assert np.mean([np.abs(f[inside].astype(int) - still[inside]).mean() for f in frames]) > 1


def test_loss_falls_and_progress_is_reported(two_regions):
    _, _, result, calls = two_regions
    assert result.losses[-1] < 0.5 * result.losses[0]
    done = [call[0] for call in calls]
    assert done == sorted(done) and done[-1] <= 14 and all(call[1] == 14 for call in calls)


def test_composition_keeps_native_type_alpha_and_grey():
    """Full-resolution output from a working-size clip: 16-bit RGBA and float grey stills."""
    rng = np.random.default_rng(2)
    mask = np.zeros((80, 96), np.float32)
    mask[10:50, 20:70] = 1.0
    for still in (texture(80, 96, 4, np.uint16), rng.random((80, 96, 1)).astype(np.float32)):
        work = torch.rand(1, 3, 40, 48)
        clip = work + 0.1 * torch.randn(3, 3, 40, 48)
        result = Synthesis(still=still, clip=clip, work_still=work, mask=mask, losses=[1.0],
                           seconds=0.0)
        for frame in result.frames():
            assert frame.dtype == still.dtype and frame.shape == still.shape
            assert np.array_equal(frame[mask == 0], still[mask == 0])
            if still.shape[2] == 4:
                assert np.array_equal(frame[..., 3], still[..., 3])
        weight = result.edge_weight()  # the change fades in over 2 working px = 4 px here
        assert weight[30, 45] == 1.0 and 0 < weight[10, 45] < 0.5 and weight[9, 45] == 0


def test_masked_gram_and_l2_ignore_pixels_outside_the_mask():
    features = torch.randn(2, 8, 10, 12)
    mask = torch.zeros(1, 1, 10, 12)
    mask[..., 2:7, 3:9] = 1.0
    changed = features.clone()
    changed[..., :2, :] = 100.0 * torch.randn_like(changed[..., :2, :])
    changed[..., :, 9:] = -50.0
    assert_within(vgg.gram(features, mask), vgg.gram(changed, mask),
                  gram_tolerance(features, mask))
    target = torch.randn(1, 8, 10, 12)
    # non-negative terms, so a relative bound: a sum over 8 channels, n = 10 x 12 weighted
    # terms and their area (n each), 5 more roundings (difference, square, channel mean,
    # weight, division); two float32 orders of it differ by at most 2 gamma of that
    terms = 8 + 2 * 10 * 12 + 5
    assert torch.allclose(masked_mse(features, target, mask), masked_mse(changed, target, mask),
                          rtol=2 * gamma(terms), atol=0)
    assert not torch.allclose(vgg.gram(features), vgg.gram(changed))


def test_the_region_statistics_ignore_the_rest_of_the_still(nets):
    """A region's appearance target is the same whatever the still holds far outside it."""
    still = torch.from_numpy(_still()).permute(2, 0, 1).float() / 255
    other = still.clone()
    other[:, 30:] = torch.rand(3, 10, W)
    mask = torch.zeros(H, W)
    mask[:8] = 1.0
    clip = torch.rand(3, 3, 32, 32)
    a = DyntexLoss(nets[0], nets[1], still, [mask], [clip], LossWeights(**FAST))
    b = DyntexLoss(nets[0], nets[1], other, [mask], [clip], LossWeights(**FAST))
    features = a._vgg(still[None])
    for name in ("relu1_1", "pool1"):  # receptive fields that stay clear of rows >= 30
        # the same features in the mask: at most a float32 reordering of the Gram's sums apart
        tolerance = gram_tolerance(features[name], a.regions[0].statistics[name])
        assert_within(a.regions[0].appearance[name], b.regions[0].appearance[name], tolerance,
                      what=name)


def test_motion_contrast_tells_a_falling_waterfall_from_a_rising_one(nets):
    """With the shipped MSOE, the plain pair Gram of the waterfall exemplar barely changes when
    the water runs upwards (the streaks' appearance dominates it); the motion contrast (each
    pair's Gram minus its first frame's held still) does change (losses.py, module doc)."""
    from engine.dyntex.exemplars import make_exemplar
    from engine.dyntex.msoe import load_msoe

    msoe = load_msoe()
    exemplar = torch.from_numpy(make_exemplar("waterfall", 8, 96, seed=0)).permute(0, 3, 1, 2)
    other = torch.from_numpy(make_exemplar("waterfall", 8, 96, seed=1)).permute(0, 3, 1, 2)
    mask = torch.ones(96, 96)
    ratio = {}
    for share in (0.0, 1.0):
        weights = LossWeights(appearance=0.0, dynamics=1.0, dynamics_contrast=share, border=0)
        loss = DyntexLoss(nets[0], msoe, other[0], [mask], [exemplar], weights)
        with torch.no_grad():
            falling = float(loss.terms(other)["dynamics"])
            rising = float(loss.terms(other.flip(0))["dynamics"])
        ratio[share] = rising / falling
    assert ratio[0.0] < 1.5, ratio
    assert ratio[1.0] > 2.0 and ratio[1.0] > 1.5 * ratio[0.0], ratio


def test_bad_loss_weights_say_what_is_wrong():
    for weights, message in ((dict(dynamics=-1.0), "dynamics must be >= 0"),
                             (dict(dynamics_contrast=1.5), "share between 0 and 1"),
                             (dict(appearance=0.0, dynamics=0.0, painting=0.0), "all loss "),
                             (dict(border=8), "multiple of 16")):
        with pytest.raises(JobError, match=message):
            LossWeights(**weights).check()


def test_l2_term_keeps_frame_0_closer_to_the_still(nets):
    """Same seed, same iterations, λ4 = 0 against λ4 > 0. In 8 iterations the frames are still
    near the start (still + noise), where the L2 term is small against the dynamics term (all
    terms are relative to erasing the region), so the effect is measured with λ4 = 1 and the
    L2 term on relu1_1 too; at full length λ4 = 0.1 on pool1..pool4 does the same job."""
    mask = _top_mask()
    fidelity = {}
    for l2 in (0.0, 1.0):
        config = _config(iterations=8, l2=l2, l2_layers=("relu1_1", "pool1", "pool2"))
        result = _run(nets, [Region(mask, "water")], config)
        frame0 = result.work_frames()[0]
        still = result.work_still[0].permute(1, 2, 0).numpy()
        fidelity[l2] = layout_fidelity(frame0, still, mask)
    assert fidelity[1.0] > fidelity[0.0] + 0.005


def test_painting_moves_colour_statistics_towards_the_painting(nets):
    mask = _top_mask()
    painting = np.zeros((32, 32, 3), np.uint8)
    painting[..., 0] = 230
    painting[::2, :, 1] = 120  # a red, striped "painting"
    target = painting.reshape(-1, 3).astype(np.float32).mean(0) / 255
    distance = {}
    for use in (False, True):
        # Few iterations, so the painting gets the weight the still's own Gram (λ3) and the
        # motion (λ6) have at full length; with λ3 = 1 the still's statistics hold the colours.
        # The motion contrast is off: with these tests' untrained MSOE it takes most of 8 steps.
        weights = dict(style=0.0, dynamics=1.0, painting=1.0, dynamics_contrast=0.0)
        result = _run(nets, [Region(mask, "water")], _config(iterations=8, **weights),
                      painting=painting if use else None)
        region = result.work_frames()[:, mask > 0.5]
        distance[use] = float(np.abs(region.reshape(-1, 3).mean(0) - target).sum())
    assert distance[True] < distance[False] - 0.02


def test_loop_seam_is_no_larger_than_neighbouring_frame_changes(two_regions):
    _, mask, result, _ = two_regions
    clip = result.work_frames()[:, mask[::1, ::1] >= 1]
    error = loop_seam_error(clip)
    assert error["neighbour"] > 0
    assert error["seam"] <= 1.1 * error["neighbour"]


def test_adam_and_coarse_to_fine_run(nets):
    config = _config(iterations=3)
    config.optimizer = "adam"
    config.levels = 2  # 48 -> 24 would be under MSOE's 32 px: that level is skipped
    result = _run(nets, [Region(_top_mask(), "clouds")], config)
    assert result.clip.shape == (4, 3, H, W) and len(result.losses) == 3 + 1


# --------------------------------------------------------------------------------------------
# Bad input and the command line


def _files(tmp_path, mask=None):
    image = save(tmp_path / "still.png", _still())
    mask_path = save(tmp_path / "mask.png",
                     ((_top_mask() if mask is None else mask) * 255).astype(np.uint8)[..., None])
    return image, mask_path


def _bake(nets, tmp_path, masks, **kwargs):
    image, _ = _files(tmp_path)
    return bake(image, masks, tmp_path / "out", _config(iterations=2), Silent(),
                networks=nets, device="cpu", **kwargs)


def _video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (32, 32))
    for _ in range(frames):
        writer.write(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    writer.release()
    return path


def test_bad_inputs_give_clear_errors(nets, tmp_path):
    image, mask = _files(tmp_path)
    empty = save(tmp_path / "empty.png", np.zeros((H, W, 1), np.uint8))
    small = save(tmp_path / "small.png", np.full((20, 24, 1), 255, np.uint8))
    short = _video(tmp_path / "short.mp4", 1)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    cases = [([(empty, "water")], "empty"),
             ([(small, "water")], "24x20 but the still is 48x40"),
             ([(mask, str(short))], "at least 2"),
             ([(mask, str(broken))], "broken.mp4"),
             ([(mask, "lava")], "neither a built-in"),
             ([], "no mask")]
    for masks, words in cases:
        with pytest.raises(JobError, match=words):
            _bake(nets, tmp_path, masks)
        assert not (tmp_path / "out").exists()
    with pytest.raises(JobError, match="needs a label"):
        parse_mask_spec(str(mask))
    with pytest.raises(JobError, match="does not exist"):
        parse_mask_spec(str(tmp_path / "nothing.png") + ":water")
    assert parse_mask_spec(f"{mask}:clouds") == (mask, "clouds")


def test_mismatched_or_missing_weights_are_refused(tmp_path):
    msoe_file = save_msoe(tmp_path / "msoe.safetensors", MsoeNet(decoder=False))
    not_msoe = save_weights(tmp_path / "other.safetensors", {"conv1_1.weight": torch.zeros(1)},
                            architecture="vgg19")
    with pytest.raises(JobError, match="holds weights for 'vgg19', not 'msoe'"):
        load_networks(msoe_file, not_msoe, torch.device("cpu"))
    with pytest.raises(JobError, match="holds weights for 'msoe', not 'vgg19'"):
        load_networks(msoe_file, msoe_file, torch.device("cpu"))
    with pytest.raises(JobError, match="MSOE dynamics weights are missing"):
        load_networks(msoe_file, tmp_path / "absent.safetensors", torch.device("cpu"))


def test_cancel_leaves_nothing_behind(nets, tmp_path):
    class CancelOnSynthesis(Progress):
        def emit(self, stage, done=None, total=None, **extra):
            if stage == "synthesize":
                raise Cancelled("stop")

    image, mask = _files(tmp_path)
    with pytest.raises(Cancelled):
        bake(image, [(mask, "water")], tmp_path / "out", _config(iterations=2),
             CancelOnSynthesis(), networks=nets, device="cpu")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("out.partial-*"))


def test_cli_writes_frames_preview_and_contact_sheet(nets, tmp_path, monkeypatch, capsys,
                                                     keep_sigterm):
    from engine import cli
    from engine.dyntex import synthesis

    monkeypatch.setattr(synthesis, "load_networks", lambda *args, **kwargs: nets)
    image, mask = _files(tmp_path)
    out = tmp_path / "take"
    code = cli.main(["dyntex", "--image", str(image), "--mask", f"{mask}:grass", "--frames",
                     "4", "--size", "48", "--loop", "--iterations", "2", "--lambda-l2", "0.1",
                     "--device", "cpu", "--out", str(out)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, lines
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:04d}.png"
                                                              for i in range(1, 5)]
    assert (out / "contact_sheet.png").is_file() and not (out / "preview.png").exists()
    assert list(out.glob("preview.*"))
    stages = [line["stage"] for line in lines]
    assert "synthesize" in stages and stages[-1] == "done"
    assert any("preview" in line for line in lines if line["stage"] == "synthesize")

    empty = save(tmp_path / "empty.png", np.zeros((H, W, 1), np.uint8))
    code = cli.main(["dyntex", "--image", str(image), "--mask", f"{empty}:water",
                     "--out", str(tmp_path / "again")])
    assert code == 2 and "empty" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_job_file_with_dyntex_engine(nets, tmp_path, monkeypatch, keep_sigterm):
    from conftest import write_job
    from engine.dyntex import synthesis
    from engine.job import load_job
    from engine.runner import run_job

    monkeypatch.setattr(synthesis, "load_networks", lambda *args, **kwargs: nets)
    clip = tmp_path / "job" / "frames"
    clip.mkdir(parents=True)
    for index in range(3):
        save(clip / f"frame_{index + 1:04d}.png", texture(32, 32, seed=index))
    mask = (_top_mask() * 255).astype(np.uint8)
    job_path = write_job(tmp_path / "job", _still(), [mask], engine="dyntex", loop=True,
                         dyntex={"method": "two-stream", "size": 48, "iterations": 2,
                                 "lambda_l2": 0.1, "motion_contrast": 0.25})
    data = json.loads(job_path.read_text())
    data["masks"][0]["label"] = "frames"  # a frames folder, relative to the job
    job_path.write_text(json.dumps(data))
    job = load_job(job_path)
    assert job.engine == "dyntex" and job.dyntex.lambda_l2 == 0.1
    assert job.dyntex.motion_contrast == 0.25
    data["dyntex"]["motion_contrast"] = 1.5
    job_path.with_name("bad.json").write_text(json.dumps(data))
    with pytest.raises(JobError, match="motion_contrast is a share from 0 to 1"):
        load_job(job_path.with_name("bad.json"))
    out = run_job(job, Silent())
    written = sorted(out.glob("frame_*.png"))
    assert len(written) == 4
    outside = _top_mask() == 0
    for path in written:
        from engine import frames as frames_io
        assert np.array_equal(frames_io.read_image(path)[outside], _still()[outside])
    assert not list(tmp_path.glob("job/out/*.preview"))


def test_incremental_blocks_share_a_frame(nets, tmp_path):
    from engine.dyntex.synthesis import synthesize_blocks

    config = _config(iterations=2)
    config.frames, config.loop = 3, False
    result = synthesize_blocks(_still(), [Region(_top_mask(), "water")], config, 5,
                               vgg=nets[0], msoe=nets[1])
    assert result.clip.shape[0] == 5
    frames = result.work_frames()
    assert not np.array_equal(frames[2], frames[3])  # the second block moves on from frame 3
    shared = result.clip[2]
    nxt = synthesize(_still(), [Region(_top_mask(), "water")], config, vgg=nets[0],
                     msoe=nets[1], first_frame=shared)
    assert torch.equal(nxt.clip[0], shared)  # a later block starts exactly where one ended
    image, mask = _files(tmp_path)
    summary = bake(image, [(mask, "water")], tmp_path / "long", config, Silent(), networks=nets,
                   device="cpu", block=2)
    assert summary["frames"] == 3 and len(list((tmp_path / "long").glob("frame_*"))) == 3
    with pytest.raises(JobError, match="cannot loop"):
        synthesize_blocks(_still(), [Region(_top_mask(), "water")], _config(), 8,
                          vgg=nets[0], msoe=nets[1])


def test_a_region_at_the_image_border_sees_no_dark_frame(nets):
    """VGG zero-pads (the ImageNet mean grey after Caffe preprocessing): without the reflected
    border the features of a flat sky along the top edge differ from those inside it, and the
    region's Gram learns a dark band. With it, a flat still gives flat features up to the edge."""
    still = torch.full((3, H, W), 0.9)
    mask = torch.zeros(H, W)
    mask[:18] = 1.0
    clip = torch.rand(3, 3, 32, 32)
    spread = {}
    for border in (0, 16):
        loss = DyntexLoss(nets[0], nets[1], still, [mask], [clip],
                          LossWeights(**FAST, border=border))
        assert loss.padding == ((16, 16, 16, 0) if border else (0, 0, 0, 0))
        features = loss._vgg(still[None])
        assert features["pool2"].shape[-2:] == (H // 4, W // 4)  # cropped back exactly
        spread[border] = float(features["pool1"][0, :, :4].std((1, 2)).max())
    assert spread[16] < 1e-4 < spread[0]


def test_region_statistics_leave_out_the_mask_edge():
    from engine.dyntex.losses import eroded_mask

    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, 4:12] = 1.0  # touches the top border, has edges left, right and below
    eroded = eroded_mask(mask, (16, 16), 1)[0, 0]
    assert eroded[0, 5:11].eq(1).all() and eroded[0, 4] == 0 and eroded[0, 11] == 0
    assert eroded[7].eq(0).all() and eroded[6, 5:11].eq(1).all()  # the top row stays in
    tiny = torch.zeros(1, 1, 16, 16)
    tiny[..., 7:9, 7:9] = 1.0  # erosion would leave nothing: keep the plain mask
    assert torch.equal(eroded_mask(tiny, (16, 16), 1), tiny)


def test_drift_start_moves_each_region_with_its_exemplar():
    from engine.dyntex.synthesis import _drift_start, mean_motion

    pattern = torch.from_numpy(np.ascontiguousarray(_still()[:32, :32])).permute(2, 0, 1) / 255
    exemplar = torch.stack([torch.roll(pattern.float(), t, dims=2) for t in range(5)])
    dx, dy = mean_motion(exemplar)
    assert dx == pytest.approx(1.0, abs=0.2) and abs(dy) < 0.2
    still = torch.from_numpy(_still()).permute(2, 0, 1).float() / 255
    mask = torch.from_numpy(_top_mask())
    change = _drift_start(still, [mask], [exemplar], 4, loop=True)
    assert change.shape == (4, 3, H, W)
    assert change[0].abs().max() == 0  # frame 0 is the still: the loop starts at it
    assert change[:, :, 18:].abs().max() == 0  # nothing outside the region
    drift = _drift_start(still, [mask], [exemplar], 4, loop=False)
    moved = (still + drift)[2].mean(0)[:18].numpy()  # without a loop: 2 frames = 2 px right
    grey = still.mean(0).numpy()
    error = np.abs(moved - np.roll(grey, 2, axis=1)[:18])[:, 4:-4].mean()
    assert error < 0.3 * np.abs(grey - np.roll(grey, 2, axis=1))[:18, 4:-4].mean()


def test_bad_regions_and_clips_in_the_api_give_clear_errors(nets):
    net, msoe = nets
    config = _config(iterations=1)
    still = _still()
    one_frame = np.zeros((1, 16, 16, 3), np.float32)
    nothing = np.zeros((H, W), np.float32)
    cases = [(still, Region(_top_mask(), one_frame), "T >= 2"),
             (still, Region(nothing, "water"), "empty"),
             (still, Region(np.ones((H + 1, W), np.float32), "water"), "but the still is")]
    for image, region, words in cases:
        with pytest.raises(JobError, match=words):
            synthesize(image, [region], config, vgg=net, msoe=msoe)
