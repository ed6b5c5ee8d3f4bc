"""The iPOKE cINN: exact inverse, exact log-determinant, causal masked convolutions, the
condition is used, seeded sampling, training lowers the NLL, and the presets' sizes.

All on the tiny preset in float64, with every weight nudged off its zero/identity
initialisation (otherwise each flow starts as the identity and most checks would be trivial).
"""

from __future__ import annotations

import pytest
import torch
from rounding import K, ULP, ULPS, float64_twin, max_error

from engine.checkpoints import CONFIG_KEY, load_weights, read_metadata, save_weights
from engine.poke.cinn import (ARCHITECTURE, ActNorm, CinnConfig, ConditionalInn,
                              MaskedConvFlow, _orient, count_parameters)

DOUBLE = torch.float64


def nudged_model(config: CinnConfig | None = None, seed: int = 0, scale: float = 0.05,
                 dtype=DOUBLE) -> ConditionalInn:
    """A tiny cINN whose ActNorms are initialised on data and whose weights are all random."""
    torch.manual_seed(seed)
    config = config or CinnConfig.tiny()
    model = ConditionalInn(config).to(dtype)
    z, cond = batch(config, 6, seed=seed + 100, dtype=dtype)
    model(z, cond)  # data-dependent ActNorm init
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model


def batch(config: CinnConfig, size: int, seed: int = 1, dtype=DOUBLE):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(size, config.z_channels, config.z_size, config.z_size, generator=generator,
                    dtype=dtype)
    cond = torch.randn(size, config.cond_channels, config.z_size, config.z_size,
                       generator=generator, dtype=dtype)
    return z, cond


# As the original: the condition reaches only the masked-conv flows, given as is.
TINY_ORIGINAL_STYLE = CinnConfig(z_channels=4, z_size=4, cond_channels=3, levels=(2,),
                                 factor_out=1, macow_units=2, mcf_hidden_factor=4, mcf_layers=1,
                                 coupling_hidden=6, condition_couplings=False,
                                 cond_net_channels=0)


@pytest.mark.parametrize("config", [CinnConfig.tiny(), TINY_ORIGINAL_STYLE],
                         ids=["tiny", "original-style"])
def test_inverse_recovers_z_and_r(config):
    model = nudged_model(config)
    z, cond = batch(model.config, 5)
    with torch.no_grad():
        r, logdet = model(z, cond)
        assert r.shape == z.shape and logdet.shape == (5,)
        assert (r - z).abs().max() > 1e-2  # not the identity
        assert (model.reverse(r, cond) - z).abs().max() < 1e-4
        r_probe = torch.randn_like(r)
        z_probe = model.reverse(r_probe, cond)
        assert (model(z_probe, cond)[0] - r_probe).abs().max() < 1e-4


def test_inverse_in_float32_on_the_small_preset():
    config = CinnConfig.small()
    torch.manual_seed(0)
    model = ConditionalInn(config)
    z, cond = batch(config, 2, dtype=torch.float32)
    model(z, cond)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.abs().max() == 0:  # the zero-initialised output convolutions
                parameter.add_(0.01 * torch.randn_like(parameter))
        r, _ = model(z, cond)
        back = model.reverse(r, cond)
        # Rounding, measured against the float64 twin without assuming the inverse: the
        # forward's (carried through the exact reverse) and the reverse's own. The round trip
        # is off by at most their sum plus what the reverse fails to undo, which must be ~0.
        twin = float64_twin(model)
        carried = max_error(twin.reverse(r, cond), twin.reverse(twin(z, cond)[0], cond))
        own = max_error(back, twin.reverse(r, cond))
        allowed = K * (carried + own) + ULPS * ULP * float(z.abs().max())
        assert max_error(back, z) <= allowed


@pytest.mark.parametrize("config", [CinnConfig.tiny(), TINY_ORIGINAL_STYLE],
                         ids=["tiny", "original-style"])
def test_log_determinant_matches_brute_force_jacobian(config):
    model = nudged_model(config)
    model.eval()
    config = model.config
    z, cond = batch(config, 1, seed=7)
    shape = z.shape

    def flat_flow(flat_z):
        return model(flat_z.view(shape), cond)[0].flatten()

    jacobian = torch.autograd.functional.jacobian(flat_flow, z.flatten())
    assert jacobian.shape == (config.dims, config.dims)
    sign, brute = torch.linalg.slogdet(jacobian)
    _, logdet = model(z, cond)
    assert sign != 0
    assert abs(brute.item()) > 1.0  # a non-trivial volume change
    assert abs(logdet.item() - brute.item()) <= 1e-6 * abs(brute.item())


@pytest.mark.parametrize("direction", ["top", "bottom", "left", "right"])
def test_masked_convolutions_are_causal_and_invertible(direction):
    torch.manual_seed(3)
    flow = MaskedConvFlow(channels=3, hidden=6, cond_channels=2, kernel=(2, 3), layers=3,
                          direction=direction, clamp=2.0).to(DOUBLE)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    height, width = 5, 6  # not square, so a transposition mistake shows
    x = torch.randn(2, 3, height, width, dtype=DOUBLE)
    cond = torch.randn(2, 2, height, width, dtype=DOUBLE)
    # Rank of every pixel in the raster order of this direction's view.
    view_shape = _orient(torch.zeros(1, 1, height, width), direction).shape[-2:]
    ranks = _orient(torch.arange(height * width).view(1, 1, height, width), direction)
    order = torch.empty(height * width, dtype=torch.long)
    order[ranks.flatten()] = torch.arange(height * width)
    rank = order.view(height, width)  # rank[i, j]: raster position of pixel (i, j) in the view
    assert tuple(view_shape) == ((height, width) if direction in ("top", "bottom")
                                 else (width, height))

    with torch.no_grad():
        y, _ = flow(x, cond)
        shift, log_scale = flow.conditioner(_orient(x, direction), _orient(cond, direction))
        for (i, j) in [(0, 0), (2, 3), (4, 5), (1, 5), (3, 0)]:
            poked = x.clone()
            poked[1, 2, i, j] += 1.5
            y_poked, _ = flow(poked, cond)
            earlier = rank < rank[i, j]
            assert torch.equal(y_poked[:, :, earlier], y[:, :, earlier])
            later = rank > rank[i, j]
            if rank[i, j] < height * width - view_shape[1]:  # not the last row: something sees it
                assert not torch.equal(y_poked[1][:, later], y[1][:, later])
            # The conditioner output does not see its own pixel either.
            view_poked = flow.conditioner(_orient(poked, direction), _orient(cond, direction))
            not_after = torch.arange(height * width).view(view_shape) <= rank[i, j]
            assert torch.equal(view_poked[0][:, :, not_after], shift[:, :, not_after])
            assert torch.equal(view_poked[1][:, :, not_after], log_scale[:, :, not_after])
        assert (flow.reverse(y, cond) - x).abs().max() < 1e-10


def test_condition_changes_the_mapping():
    model = nudged_model()
    z, cond = batch(model.config, 3)
    other = torch.randn_like(cond)
    with torch.no_grad():
        r_a, _ = model(z, cond)
        r_b, _ = model(z, other)
        assert (r_a - r_b).abs().max() > 1e-3
        r = torch.randn_like(z)
        assert (model.reverse(r, cond) - model.reverse(r, other)).abs().max() > 1e-3


def test_sampling_is_determined_by_the_seed():
    model = nudged_model()
    _, cond = batch(model.config, 4)
    first = model.sample(cond, generator=torch.Generator().manual_seed(11))
    again = model.sample(cond, generator=torch.Generator().manual_seed(11))
    other = model.sample(cond, generator=torch.Generator().manual_seed(12))
    assert first.shape == (4, 4, 4, 4)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3
    cooler = model.sample(cond, generator=torch.Generator().manual_seed(11), temperature=0.5)
    with torch.no_grad():
        assert torch.allclose(model(cooler, cond)[0],
                              0.5 * model(first, cond)[0], atol=1e-8)


def test_one_adam_step_lowers_the_nll():
    torch.manual_seed(5)
    config = CinnConfig.tiny()
    model = ConditionalInn(config).to(DOUBLE)
    # Synthetic codes: z depends on the condition plus a little noise, so there is structure.
    generator = torch.Generator().manual_seed(2)
    cond = torch.randn(16, config.cond_channels, config.z_size, config.z_size,
                       generator=generator, dtype=DOUBLE)
    mixing = torch.randn(config.z_channels, config.cond_channels, generator=generator,
                         dtype=DOUBLE)
    z = torch.einsum("zc,bchw->bzhw", mixing, cond) + 0.3 * torch.randn(
        16, config.z_channels, config.z_size, config.z_size, generator=generator, dtype=DOUBLE)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model.nll(z, cond).mean()  # also initialises the ActNorms
    loss = model.nll(z, cond).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after = model.nll(z, cond).mean()
    assert after < loss.detach()
    bits = model.bits_per_dim(z, cond)
    assert bits.shape == (16,) and torch.isfinite(bits).all()


def test_actnorm_initialises_from_the_first_batch():
    torch.manual_seed(0)
    norm = ActNorm(3).to(DOUBLE)
    x = 4.0 + 3.0 * torch.randn(8, 3, 5, 5, dtype=DOUBLE)
    y, logdet = norm(x)
    per_channel = y.transpose(0, 1).reshape(3, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-8
    assert (per_channel.std(dim=1) - 1).abs().max() < 1e-4
    assert torch.allclose(logdet, norm.log_scale.sum().expand(8) * 25)
    y_again, _ = norm(x + 10)  # initialised once: a second batch does not re-fit
    assert torch.allclose(y_again - y, (10 * norm.log_scale.exp()).expand_as(y))
    assert torch.allclose(norm.reverse(y), x)


def test_wrong_shapes_are_refused_with_the_expected_shape():
    model = ConditionalInn(CinnConfig.tiny())
    z, cond = batch(model.config, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"expected \[batch, 4, 4, 4\]"):
        model(z[:, :3], cond)
    with pytest.raises(ValueError, match=r"expected \[2, 3, 4, 4\]"):
        model(z, cond[:, :2])


def test_config_round_trips_and_checks():
    config = CinnConfig.large()
    assert CinnConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown cINN config field"):
        CinnConfig.from_dict({"widths": 3})
    with pytest.raises(ValueError, match="leaves"):
        ConditionalInn(CinnConfig(levels=(1, 1, 1, 1), factor_out=8))
    assert CinnConfig.preset("small") == CinnConfig()


def test_parameter_counts_of_the_presets():
    small = count_parameters(CinnConfig.small())
    assert small <= 15_000_000
    assert small == sum(p.numel() for p in ConditionalInn(CinnConfig.small()).parameters())
    assert count_parameters(CinnConfig.tiny()) < 50_000
    assert small < count_parameters(CinnConfig.large())
    # The published configuration: 1.054 B parameters (the iPOKE paper's cINN).
    original = count_parameters(CinnConfig.original())
    assert 1.04e9 < original < 1.07e9


def test_weights_round_trip_through_safetensors(tmp_path):
    model = nudged_model()
    path = save_weights(tmp_path / "cinn.safetensors", model, architecture=ARCHITECTURE,
                        config=model.config.to_dict())
    config = CinnConfig.from_dict(read_metadata(path)[CONFIG_KEY])
    assert config == model.config
    loaded = ConditionalInn(config).to(DOUBLE)
    load_weights(path, loaded, architecture=ARCHITECTURE)
    z, cond = batch(config, 3, seed=9)
    loaded.train()  # loaded ActNorms are initialised: training mode must not re-fit them
    with torch.no_grad():
        assert torch.equal(loaded(z, cond)[0], model(z, cond)[0])
