"""Shared training utilities: a run stopped and resumed continues exactly; schedules; the
single-process path of the distributed helper is a no-op."""

import io

import pytest
import torch

from engine.errors import JobError
from engine.training import (Budget, Distributed, ProgressLine, load_state, save_state,
                             warmup_linear_decay)


def _model_and_optimiser(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    return model, optimiser


def _steps(model, optimiser, data, n):
    for x, y in data[:n]:
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen))
            for _ in range(6)]
    straight, straight_opt = _model_and_optimiser()
    _steps(straight, straight_opt, data, 6)

    first, first_opt = _model_and_optimiser()
    _steps(first, first_opt, data, 3)
    path = save_state(tmp_path / "state.safetensors", modules={"net": first},
                      optimisers={"adam": first_opt}, counters={"step": 3, "stage": "ae"})
    resumed, resumed_opt = _model_and_optimiser(seed=99)  # different init: must be overwritten
    counters = load_state(path, modules={"net": resumed}, optimisers={"adam": resumed_opt})
    assert counters == {"step": 3, "stage": "ae"}
    _steps(resumed, resumed_opt, data[3:], 3)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_state_of_another_model_is_refused_by_tensor_name(tmp_path):
    model, optimiser = _model_and_optimiser()
    path = save_state(tmp_path / "s.safetensors", modules={"net": model},
                      optimisers={"adam": optimiser}, counters={"step": 0})
    other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    with pytest.raises(JobError, match=r"module/net/0.weight.*shape"):
        load_state(path, modules={"net": other}, optimisers={})


def test_weights_file_is_not_a_training_state(tmp_path):
    from engine.checkpoints import save_weights

    model, _ = _model_and_optimiser()
    path = save_weights(tmp_path / "w.safetensors", model, architecture="something")
    with pytest.raises(JobError, match="not a StillMotion training state"):
        load_state(path, modules={"net": model}, optimisers={})


def test_warmup_then_linear_decay_to_zero():
    factors = [warmup_linear_decay(s, 10, 110) for s in range(111)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.5)
    assert factors[110] == 0.0
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10]))


def test_budget():
    assert not Budget(None).spent()
    assert Budget(1e-9).spent()


def test_single_process_helpers_are_no_ops():
    dist = Distributed.from_env(torch.device("cpu"))
    assert dist.is_main and not dist.enabled
    module = torch.nn.Linear(2, 2)
    assert dist.wrap(module) is module
    assert dist.sampler([1, 2, 3], shuffle=True, seed=0) is None
    assert dist.mean({"loss": 2.0}) == {"loss": 2.0}
    assert dist.any(True) and not dist.any(False)


def test_progress_line_names_the_losses():
    stream = io.StringIO()
    line = ProgressLine("stage 1", total=10, stream=stream)
    line.update(5, {"l1": 0.25, "kl": 3.0}, force=True)
    assert "5/10" in stream.getvalue() and "l1 0.25" in stream.getvalue()
