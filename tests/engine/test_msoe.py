"""MSOE dynamics network: shapes, shared pyramid weights, L1 normalisation, and the shipped
weights (models/msoe.safetensors): Grams tell motion directions apart, known shifts come back
through the flow decoder, a mismatched file is refused by tensor name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import REPO, texture
from rounding import assert_rounding_close, float64_twin, gamma
from engine.checkpoints import load_weights
from engine.dyntex.msoe import (ARCHITECTURE, SHIPPED, MsoeConfig, MsoeNet, clip_pairs,
                                contrast_normalise, load_msoe, save_msoe, upsample_bilinear)
from engine.dyntex.train_msoe import affine_flow, warp_pair
from engine.errors import JobError
from engine.vgg import gram


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return MsoeNet().eval()


@pytest.fixture(scope="module")
def shipped():
    assert SHIPPED.is_file(), f"{SHIPPED.relative_to(REPO)} is missing"
    return load_msoe(decoder=True)


def _grey_source(size: int, seed: int) -> np.ndarray:
    """A held-out texture (generated, never trained on): blurred noise, grey float in [0, 1]."""
    return texture(size, size, channels=1, seed=seed)[:, :, 0].astype(np.float32) / 255.0


def _shifted_pair(source: np.ndarray, size: int, dx: int, dy: int) -> torch.Tensor:
    """[1, 2, size, size]: the second frame is the first moved by (dx, dy) whole pixels."""
    y, x = 8, 8
    a = source[y:y + size, x:x + size]
    b = source[y - dy:y - dy + size, x - dx:x - dx + size]
    return torch.from_numpy(np.stack([a, b])[None].copy())


# --- architecture ------------------------------------------------------------------------------

def test_features_have_320_channels_at_the_input_size(untrained):
    for h, w in ((32, 32), (48, 80), (67, 45)):
        pair = torch.rand(2, 2, h, w)
        with torch.no_grad():
            assert untrained.features(pair).shape == (2, 320, h, w)
            assert untrained.flow(pair).shape == (2, 2, h, w)


def test_bad_inputs_are_clear_errors(untrained):
    with pytest.raises(JobError, match="at least 32x32"):
        untrained.features(torch.rand(1, 2, 31, 64))
    with pytest.raises(JobError, match=r"\[N, 2, H, W\]"):
        untrained.features(torch.rand(1, 3, 64, 64))
    with pytest.raises(JobError, match="at least 2 frames"):
        clip_pairs(torch.rand(1, 3, 64, 64))


def test_clip_pairs_and_wrap_around():
    clip = torch.rand(5, 3, 40, 40)
    assert clip_pairs(clip).shape == (4, 2, 40, 40)
    looped = clip_pairs(clip, wrap=True)
    assert looped.shape == (5, 2, 40, 40)
    assert torch.equal(looped[-1, 1], clip_pairs(clip)[0, 0])  # last -> first closes the loop


def test_pyramid_levels_share_one_set_of_weights(untrained):
    names = [n for n, _ in untrained.named_parameters() if not n.startswith("decoder.")]
    assert names == ["level.conv1.weight", "level.conv1.bias", "level.conv2.weight",
                     "level.conv2.bias"]
    assert untrained.level.conv1.weight.shape == (32, 2, 11, 11)
    pair = torch.rand(1, 2, 64, 64)
    twin = float64_twin(untrained)
    with torch.no_grad():
        features = untrained.features(pair)
        levels = untrained.pyramid(contrast_normalise(pair))
        assert [x.shape[-1] for x in levels] == [64, 32, 16, 8, 4]
        for index, x in enumerate(levels):  # every 64-channel block is the one module's output
            y, exact = (torch.nn.functional.interpolate(net.level(x), size=(64, 64),
                                                        mode="bilinear", align_corners=False)
                        for net in (untrained, twin))
            assert_rounding_close(features[:, 64 * index:64 * (index + 1)], y, exact,
                                  what=f"level {index}")


def test_each_level_is_l1_normalised_over_channels(untrained):
    pair = torch.rand(2, 2, 64, 64)
    with torch.no_grad():
        for x in untrained.pyramid(contrast_normalise(pair)):
            sums = untrained.level(x).abs().sum(dim=1)
            # float32: the L1 norm (64 terms), the divisions (1) and this sum (64 more)
            channels = untrained.config.channels
            assert torch.allclose(sums, torch.ones_like(sums), rtol=0,
                                  atol=gamma(2 * channels + 1))
        flat = untrained.features(torch.full((1, 2, 64, 64), 0.5))  # no contrast at all
    assert torch.isfinite(flat).all()


def test_matrix_upsampling_matches_bilinear_interpolate():
    for (h, w), size in (((4, 4), (64, 64)), ((3, 5), (45, 67)), ((12, 7), (96, 56))):
        x = torch.rand(2, 3, h, w)
        expected, exact = (torch.nn.functional.interpolate(v, size=size, mode="bilinear",
                                                           align_corners=False)
                           for v in (x, x.double()))
        assert_rounding_close(upsample_bilinear(x, size), expected, exact, what=f"{h}x{w}")


@pytest.mark.parametrize("bins", [0, 81])
def test_flow_is_the_decoder_applied_to_the_features(bins):
    """flow() skips building the 320-channel map; it must give what the decoder gives on it."""
    torch.manual_seed(1)
    model = MsoeNet(MsoeConfig(decoder_bins=bins)).eval()
    pair = torch.rand(2, 2, 67, 45)
    twin = float64_twin(model)
    with torch.no_grad():
        direct = model.decoder(model.features(pair))
        exact = twin.decoder(twin.features(pair))
        assert_rounding_close(model.flow(pair), direct, exact, what="flow()")
    if bins:  # a softmax-weighted mean of grid velocities stays inside the grid
        assert direct.abs().max() <= model.config.decoder_range + 1e-5


# --- shipped weights ---------------------------------------------------------------------------

def test_shipped_file_is_small_and_loads_without_decoder():
    assert SHIPPED.stat().st_size < 1_000_000
    model = load_msoe()
    assert model.decoder is None
    with torch.no_grad():
        assert model.features(torch.rand(1, 2, 40, 40)).shape == (1, 320, 40, 40)
    with pytest.raises(JobError, match="without its flow decoder"):
        model.flow(torch.rand(1, 2, 40, 40))


def test_gram_tells_motion_directions_apart(shipped):
    size, step = 128, 2
    one, other = _grey_source(size + 16, seed=11), _grey_source(size + 16, seed=12)
    with torch.no_grad():
        def g(source, dx, dy):
            return gram(shipped.features(_shifted_pair(source, size, dx, dy)))
        same = float((g(one, step, 0) - g(other, step, 0)).pow(2).sum())
        opposite = float((g(one, step, 0) - g(other, -step, 0)).pow(2).sum())
        same_v = float((g(one, 0, step) - g(other, 0, step)).pow(2).sum())
        opposite_v = float((g(one, 0, step) - g(other, 0, -step)).pow(2).sum())
    assert opposite > 5 * same, (same, opposite)
    assert opposite_v > 5 * same_v, (same_v, opposite_v)


@pytest.fixture(scope="module")
def shift_errors(shipped) -> dict[int, float]:
    """Shift magnitude (px) -> EPE: mean per-pixel end-point error more than 16 px from the
    border, averaged over 8 directions, on a generated texture the network never saw."""
    size, border = 96, 16
    source = _grey_source(224, seed=5)
    cases = [(m, affine_flow(size, shift=(m * math.cos(k * math.pi / 4),
                                          m * math.sin(k * math.pi / 4))))
             for m in range(1, 7) for k in range(8)]
    pairs = np.stack([np.stack(warp_pair(source, (64.0, 64.0), flow)) for _, flow in cases])
    with torch.no_grad():
        pred = shipped.flow(torch.from_numpy(pairs)).permute(0, 2, 3, 1).numpy()
    errors: dict[int, list[float]] = {}
    for (magnitude, flow), p in zip(cases, pred):
        epe = np.linalg.norm(p - flow, axis=2)[border:-border, border:-border].mean()
        errors.setdefault(magnitude, []).append(float(epe))
    return {m: round(float(np.mean(e)), 3) for m, e in errors.items()}


def test_trained_msoe_recovers_known_shifts_within_half_a_pixel(shift_errors):
    """The shipped weights, on a texture they never saw: every shift of 1-6 px in any of 8
    directions within 0.5 px mean end-point error (models/msoe.md has the held-out numbers)."""
    assert all(e < 0.5 for e in shift_errors.values()), shift_errors


def test_a_mismatched_weights_file_is_refused_by_tensor_name(tmp_path):
    path = save_msoe(tmp_path / "narrow.safetensors", MsoeNet(MsoeConfig(filters=16)))
    with pytest.raises(JobError, match=r"'level\.conv1\.weight' has shape \[16, 2, 11, 11\]"):
        load_weights(path, MsoeNet(), architecture=ARCHITECTURE)


def test_training_state_resumes_exactly_and_refuses_other_settings(tmp_path):
    """train-msoe's resume file is the shared safetensors training state (no pickle): the
    model, Adam, step, time and both random generators come back; other settings are refused."""
    import types

    from engine.dyntex import train_msoe
    from engine.errors import JobError

    config = train_msoe.TrainConfig(minutes=1.0, seed=3)
    model = MsoeNet(MsoeConfig())
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.flow(torch.rand(1, 2, 64, 64)).abs().mean().backward()
    optimiser.step()
    sampler = types.SimpleNamespace(rng=np.random.default_rng(5))
    sampler.rng.random(3)
    path = tmp_path / "msoe.safetensors.resume.safetensors"
    train_msoe._save_resume(path, model, optimiser, sampler, 17, 42.5, config,
                            np.array([1.0, 2.0, 3.0]))
    expected_next = sampler.rng.random()

    fresh = MsoeNet(MsoeConfig())
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_sampler = types.SimpleNamespace(rng=np.random.default_rng(0))
    step, trained_s, running = train_msoe._load_resume(path, fresh, fresh_opt, fresh_sampler,
                                                       config)
    assert (step, trained_s, list(running)) == (17, 42.5, [1.0, 2.0, 3.0])
    assert fresh_sampler.rng.random() == expected_next
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"][0]["step"] == optimiser.state_dict()["state"][0]["step"]
    with pytest.raises(JobError, match="other settings"):
        train_msoe._load_resume(path, fresh, fresh_opt, fresh_sampler,
                                train_msoe.TrainConfig(minutes=1.0, seed=4))


def test_warm_start_with_a_deeper_decoder_keeps_the_shipped_flow(shipped):
    """train-msoe --init: a context conv the file lacks starts at zero, so training begins
    from the shipped network's flow, not from a perturbed one."""
    from engine.dyntex.train_msoe import warm_start

    deeper = MsoeNet(MsoeConfig(decoder_context=shipped.config.decoder_context + 1))
    fresh = warm_start(deeper, SHIPPED)
    assert fresh and all(name.startswith("decoder.context.") for name in fresh)
    pair = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        assert torch.allclose(deeper.eval().flow(pair), shipped.flow(pair), atol=1e-6)


@pytest.mark.parametrize("flags, says", [(["--synthetic-share", "1.5"], "from 0 to 1"),
                                         (["--max-shift", "0"], "positive number of pixels"),
                                         (["--freeze-features"], "give them with --init"),
                                         (["--noise-stills", "-1"], "give a count")])
def test_train_msoe_refuses_bad_sampling_settings_before_loading_data(tmp_path, capsys, flags,
                                                                      says):
    from engine import cli

    code = cli.main(["train-msoe", "--out", str(tmp_path / "m.safetensors"), *flags])
    assert code == 2 and says in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_freeze_features_trains_only_the_decoder(tmp_path, monkeypatch):
    """--freeze-features: the saved features (and so every Gram) are --init's, bit for bit,
    while the decoder learns."""
    from engine.dyntex import train_msoe
    from engine.progress import Progress

    class RandomBatches:  # the real Sampler needs the training media
        synthetic_count = 2

        def __init__(self, config, progress):
            self.rng = np.random.default_rng(0)

        def batch(self):
            return torch.rand(4, 2, 48, 48), torch.randn(4, 2, 48, 48), torch.ones(4, 48, 48)

    monkeypatch.setattr(train_msoe, "Sampler", RandomBatches)
    out = tmp_path / "decoder_only.safetensors"
    config = train_msoe.TrainConfig(steps=3, init=str(SHIPPED), context=5, freeze_features=True,
                                    lr=1e-2)
    train_msoe.train(out, config, Progress())
    before, after = load_msoe(SHIPPED, decoder=True), load_msoe(out, decoder=True)
    for name, tensor in before.level.state_dict().items():
        assert torch.equal(tensor, after.level.state_dict()[name]), name
    assert not torch.equal(before.decoder.conv3.weight, after.decoder.conv3.weight)
