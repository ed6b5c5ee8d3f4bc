"""The poke engine's non-invertible networks (engine/poke/video_ae.py) and their losses
(engine/poke/losses.py), on tiny configs and synthetic clips."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from rounding import assert_rounding_close, float64_twin

from engine import vgg
from engine.errors import JobError
from engine.poke import losses
from engine.poke.video_ae import (ConvGru, ImageEncoder, PokeEncoder, Spade, SpatialDiscriminator,
                                  TemporalDiscriminator, VideoAeConfig, VideoAutoencoder,
                                  image_autoencoder, parameter_count, parameter_report,
                                  poke_autoencoder, to_channels_last)

TINY = VideoAeConfig.tiny()


def synthetic_clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """[B, 11, 3, 64, 64] in [-1, 1]: a smooth blob moving right over a gradient."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    clips = []
    for b in range(batch):
        colour = torch.rand(3, 1, 1, generator=gen) * 2 - 1
        frames = []
        for t in range(11):
            cx = -0.5 + 0.08 * t + 0.1 * b
            blob = torch.exp(-((xs - cx) ** 2 + ys ** 2) / 0.1)
            frames.append((0.5 * xs + colour * blob).clamp(-1, 1))
        clips.append(torch.stack(frames))
    return torch.stack(clips)


def synthetic_poke_and_flow(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense flow (a smooth bump of rightward motion) and a 5x5 poke at its peak."""
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    flow = torch.zeros(batch, 2, 64, 64)
    poke = torch.zeros(batch, 2, 64, 64)
    for b in range(batch):
        cy, cx = 20 + 10 * b, 30
        bump = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 80.0)
        flow[b, 0], flow[b, 1] = 4.0 * bump, -2.0 * bump
        poke[b, :, cy - 2:cy + 3, cx - 2:cx + 3] = flow[b, :, cy, cx].view(2, 1, 1)
    return poke, flow


@pytest.fixture(scope="module")
def random_vgg():
    """ImageNet weights are not needed to check the plumbing: random ones, made once."""
    torch.manual_seed(0)
    return vgg.Vgg19Features()


def test_video_autoencoder_shapes_and_range():
    torch.manual_seed(0)
    model = VideoAutoencoder(TINY)
    clip = synthetic_clip(2)
    out = model(clip)
    assert out.recon.shape == (2, 10, 3, 64, 64)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (2, TINY.z_channels, 8, 8)
    assert float(out.recon.detach().abs().max()) <= 1.0
    assert out.kl.dim() == 0 and float(out.kl.detach()) > 0
    single = model(clip[:1])  # batch 1 works (GroupNorm, not BatchNorm)
    assert single.recon.shape == (1, 10, 3, 64, 64)
    with pytest.raises(ValueError, match="x0 first"):
        model.encode(clip[:, 1:])


def test_default_sizes_keep_the_contract():
    config = VideoAeConfig()  # small
    assert config == VideoAeConfig.small()
    with torch.no_grad():
        model = VideoAutoencoder(config)
        mu, _ = model.encode(synthetic_clip(1))
        assert mu.shape == (1, 32, 8, 8)
        x0 = synthetic_clip(1)[:, 0]
        poke, _ = synthetic_poke_and_flow(1)
        assert ImageEncoder(config)(x0).shape == (1, 64, 8, 8)
        assert PokeEncoder(config)(poke).shape == (1, 64, 8, 8)


def test_decoder_depends_on_z_and_on_x0():
    torch.manual_seed(0)
    model = VideoAutoencoder(TINY).eval()
    clip = synthetic_clip(2)
    x0 = clip[:, 0]
    z = torch.randn(2, TINY.z_channels, 8, 8)
    with torch.no_grad():
        base = model.decode(z, x0)
        other_z = model.decode(torch.randn_like(z), x0)
        other_x0 = model.decode(z, x0.flip(-1))
        first_three = model.decode(z, x0, length=3)
        exact = float64_twin(model).decode(z, x0)
    assert float((base - other_z).abs().mean()) > 1e-3
    assert float((base - other_x0).abs().mean()) > 1e-3
    # the GRU is causal in time: a shorter rollout is the start of the longer one (another
    # batch of frames for the frame decoder: the same sums, maybe in another order)
    assert_rounding_close(first_three, base[:, :3], exact[:, :3], what="3-frame rollout")
    # each clip is decoded with its own x0 (SPADE maps are not mixed across the batch)
    with torch.no_grad():
        alone = model.decode(z[1:], x0[1:])
    assert_rounding_close(alone, base[1:], exact[1:], what="clip decoded alone")


def test_spade_modulates_by_the_image():
    torch.manual_seed(0)
    spade = Spade(8, 8)
    nn.init.normal_(spade.to_scale.weight, std=0.5)
    features = torch.randn(6, 8, 16, 16)  # 2 clips x 3 frames
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = spade(features, image)
        b = spade(features, image.flip(0))
    assert a.shape == features.shape
    assert float((a - b).abs().mean()) > 1e-3


def test_gru_starts_from_z():
    torch.manual_seed(0)
    gru = ConvGru(4, 2, 8)
    z = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        states = gru(z, 5)
        assert states.shape == (3, 5, 4, 8, 8)
        assert float((gru(z * 2, 5) - states).abs().mean()) > 1e-3


def test_3d_encoder_uses_group_norm_only():
    for config in (TINY, VideoAeConfig.small()):
        model = VideoAutoencoder(config)
        norms = [m for m in model.encoder.modules()
                 if isinstance(m, nn.modules.batchnorm._NormBase)]
        assert not norms, "batch statistics would couple the clips of a batch"
        convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv3d)]
        groups = [m for m in model.encoder.modules() if isinstance(m, nn.GroupNorm)]
        assert convs and len(groups) == len(convs)  # every 3D convolution is normalised
    for net in (SpatialDiscriminator(TINY), TemporalDiscriminator(TINY), image_autoencoder(TINY)):
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _adam_step_lowers(model: nn.Module, loss_fn, lr: float = 1e-3) -> tuple[float, float]:
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    before = loss_fn()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = loss_fn()
    return float(before.detach()), float(after)


def test_video_ae_step_lowers_l1_kl_perceptual(random_vgg):
    torch.manual_seed(0)
    model = VideoAutoencoder(TINY)
    perceptual = losses.PerceptualLoss(random_vgg, layers=("relu1_1", "relu2_1", "relu3_1"))
    clip = synthetic_clip(2)
    weights = losses.VideoAeLossWeights(kl=1e-3, perceptual_frames=2)

    def loss_fn():
        torch.manual_seed(1)  # the same z noise and the same VGG frames before and after
        out = model(clip)
        total, parts = losses.video_ae_reconstruction_loss(
            out.recon, clip[:, 1:], out.mu, out.logvar, weights, perceptual,
            generator=torch.Generator().manual_seed(2))
        assert set(parts) == {"l1", "kl", "perceptual"}
        return total

    before, after = _adam_step_lowers(model, loss_fn)
    assert after < before


def test_image_autoencoder_step_lowers_loss(random_vgg):
    torch.manual_seed(0)
    model = image_autoencoder(TINY)
    perceptual = losses.PerceptualLoss(random_vgg, layers=("relu1_1", "relu2_1"))
    x0 = synthetic_clip(2)[:, 0]
    recon = model(x0)
    assert recon.shape == x0.shape and float(recon.detach().abs().max()) <= 1.0
    assert model.encoder(x0).shape == (2, TINY.code_channels, 8, 8)
    before, after = _adam_step_lowers(
        model, lambda: model.loss(x0, x0, perceptual=perceptual, perceptual_weight=0.5)[0])
    assert after < before


def test_poke_autoencoder_reconstructs_dense_flow_and_step_lowers_loss():
    torch.manual_seed(0)
    model = poke_autoencoder(TINY)
    poke, flow = synthetic_poke_and_flow(2)
    assert model(poke).shape == flow.shape
    _, parts = model.loss(poke, flow)
    assert parts["l1"] > 0 and "perceptual" not in parts
    before, after = _adam_step_lowers(model, lambda: model.loss(poke, flow)[0])
    assert after < before


@pytest.mark.parametrize("kind", ["spatial", "temporal"])
def test_discriminator_hinge_step_lowers_loss(kind):
    torch.manual_seed(0)
    disc = SpatialDiscriminator(TINY) if kind == "spatial" else TemporalDiscriminator(TINY)
    real = synthetic_clip(2)[:, :10]
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1)
    logits, features = disc(real)
    assert logits.shape[1] == 1 and len(features) >= 3
    disc.train()

    def loss_fn():
        return losses.hinge_discriminator_loss(disc(real)[0], disc(fake)[0])

    before, after = _adam_step_lowers(disc, loss_fn, lr=1e-3)
    assert after < before


def test_adversarial_losses():
    ones = torch.ones(4, 1, 3, 3)
    assert float(losses.hinge_discriminator_loss(ones, -ones)) == 0.0
    assert float(losses.hinge_discriminator_loss(-ones, ones)) == pytest.approx(4.0)
    assert float(losses.hinge_generator_loss(2 * ones)) == pytest.approx(-2.0)
    torch.manual_seed(0)
    # eval: spectral norm's power iteration would otherwise change the weights between calls
    disc = TemporalDiscriminator(TINY).eval()
    real = synthetic_clip(2)[:, :10]
    _, real_features = disc(real)
    fake = real.clone().requires_grad_(True)
    _, fake_features = disc(fake)
    same = losses.feature_matching_loss(fake_features, real_features)
    assert float(same.detach()) == 0.0
    _, off_features = disc(fake.flip(1))
    matching = losses.feature_matching_loss(off_features, real_features)
    matching.backward()
    assert float(matching.detach()) > 0
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    inputs = real.clone().requires_grad_(True)
    penalty = losses.r1_penalty(disc(inputs)[0], inputs)
    assert torch.isfinite(penalty) and float(penalty.detach()) > 0


def test_kl_matches_the_closed_form():
    mu = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[0.0, 0.7]])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()),
        torch.distributions.Normal(torch.zeros(2), torch.ones(2))).sum()
    assert float(losses.kl_divergence(mu, logvar)) == pytest.approx(float(expected), rel=1e-5)
    assert float(losses.kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0


def test_perceptual_loss_feeds_vgg_what_it_expects(random_vgg):
    """[-1, 1] frames reach engine/vgg.py as RGB in [0, 1] (it does the Caffe step itself)."""
    perceptual = losses.PerceptualLoss(random_vgg, layers=("relu1_1",))
    frames = synthetic_clip(1)[0, :2]
    got = perceptual._features(frames)["relu1_1"]
    expected = random_vgg((frames + 1) / 2, ("relu1_1",))["relu1_1"]
    torch.testing.assert_close(got, expected)
    assert float(perceptual(frames, frames)) == 0.0
    with torch.no_grad():
        near = perceptual(frames * 0.98, frames)
        far = perceptual(frames.flip(-1), frames)
    assert 0 < float(near) < float(far)
    with pytest.raises(ValueError, match="shapes differ"):
        perceptual(frames, frames[:1])


def test_perceptual_loss_with_the_imagenet_weights():
    try:
        net = vgg.load_vgg19()
    except JobError:
        pytest.skip("VGG-19 weights not installed (make fetch-media / tools/fetch_media.py)")
    perceptual = losses.PerceptualLoss(net)
    frames = synthetic_clip(1)[0, :2]
    assert float(perceptual(frames, frames)) == 0.0
    near = perceptual(frames * 0.95, frames)
    far = perceptual(frames.roll(8, -1), frames)
    assert 0 < float(near) < float(far)


def test_pick_frames_takes_the_same_frames_of_both_clips():
    a = torch.arange(10.0).view(1, 10, 1).expand(2, 10, 3)
    picked_a, picked_b = losses.pick_frames(a, a + 100, 4, torch.Generator().manual_seed(0))
    assert picked_a.shape == (2, 4, 3)
    torch.testing.assert_close(picked_b - picked_a, torch.full_like(picked_a, 100.0))
    assert losses.pick_frames(a, a, None)[0] is a


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = VideoAutoencoder(TINY).eval()
    clip = synthetic_clip(1)
    with torch.no_grad():
        exact = float64_twin(model)(clip, sample=False).recon
        reference = model(clip, sample=False).recon
        to_channels_last(model)
        same = model(clip, sample=False).recon
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(clip, sample=False).recon
    # channels-last only reorders the convolutions' sums: the same values up to float32
    # rounding, which through this network is ~1e-5 (how much exactly depends on the CPU)
    assert_rounding_close(same, reference, exact, what="channels-last")
    assert torch.isfinite(low).all() and float((low.float() - reference).abs().mean()) < 0.05


def test_config_round_trip_and_refusals():
    for name in ("tiny", "small", "large"):
        config = VideoAeConfig.preset(name)
        assert VideoAeConfig.from_dict(config.to_dict()) == config
    with pytest.raises(JobError, match="unknown poke model size"):
        VideoAeConfig.preset("huge")
    with pytest.raises(JobError, match="unknown field"):
        VideoAeConfig.from_dict({"z_dim": 32})
    with pytest.raises(JobError, match="encoder_channels needs 4"):
        VideoAeConfig(encoder_channels=(8, 16, 16))


def test_parameter_counts():
    small = parameter_report(VideoAeConfig.small())
    assert small["first_stage"] <= 8_000_000  # leaves room for the cINN in a 25 M model
    assert small["shipped"] < small["first_stage"]
    large = VideoAutoencoder(VideoAeConfig.large())
    # the original's 64-px encoder has 15.1 M parameters (iPOKE's 64-px first stage)
    assert parameter_count(large.encoder) == pytest.approx(15.1e6, rel=0.01)
    assert parameter_report(TINY)["first_stage"] < 200_000
