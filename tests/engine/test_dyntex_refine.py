"""The advect method's refiner (`dyntex.refine`, engine/dyntex/refine.py) and the chunked
two-stream gradient it relies on (DyntexLoss.backward): the chunked loss and gradient equal the
whole clip's; refining keeps frame 1 and every pixel outside the regions bit for bit and changes
the regions; refine 0 is the advected clip itself; refine with two-stream is refused.

Small stills, few frames, the tiny random networks of conftest (no weights read).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import save, texture, tiny_dyntex_networks, write_job
from engine.dyntex import prepare, synthesis
from engine.dyntex.advect import AdvectClip
from engine.dyntex.losses import DyntexLoss, LossWeights
from engine.dyntex.refine import RefinedClip
from engine.errors import JobError
from engine.job import load_job, parse_job
from engine.progress import Recorded

H, W = 48, 64
FAST = dict(appearance_layers=("relu1_1", "pool1", "pool2"), l2_layers=("pool1", "pool2"),
            painting_layers=("relu1_1", "pool1", "pool2"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nets():
    return tiny_dyntex_networks()


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("contrast", [0.0, 0.5])
def test_the_chunked_gradient_is_the_whole_clips(nets, loop, contrast):
    torch.manual_seed(1)
    still = torch.rand(3, H, W)
    mask = torch.zeros(1, 1, H, W)
    mask[..., 8:40, 6:58] = 1.0
    weights = LossWeights(**FAST, l2=0.1, dynamics_contrast=contrast)
    loss = DyntexLoss(*nets, still, [mask], [torch.rand(5, 3, 32, 32)], weights,
                      painting=torch.rand(3, 40, 40), loop=loop)
    clip = torch.rand(7, 3, H, W, requires_grad=True)
    whole = loss.terms(clip)
    whole["total"].backward()
    expected = clip.grad.clone()
    clip.grad = None
    chunked = loss.backward(clip, chunk=3)
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(float(value.detach()), rel=1e-5, abs=1e-9), key
    scale = float(expected.abs().max())
    assert scale > 0
    assert float((clip.grad - expected).abs().max()) <= 1e-5 * scale


def _job(folder, refine, frames=6, method="advect"):
    folder.mkdir(parents=True, exist_ok=True)
    sky = np.zeros((H, W, 1), np.uint8)
    sky[:22] = 255
    save(folder / "sky.png", sky)
    return write_job(folder, texture(H, W, seed=5), engine="dyntex", frames=frames, loop=True,
                     masks=[{"path": "sky.png", "label": "clouds"}],
                     dyntex={"method": method, "refine": refine, "size": W,
                             "iterations": 3})


@pytest.fixture(scope="module")
def refined(tmp_path_factory, nets):
    """The same job advected, and advected + refined with 3 iterations."""
    folder = tmp_path_factory.mktemp("refine")
    patch = pytest.MonkeyPatch()
    patch.setattr(synthesis, "load_networks", lambda *args, **kwargs: nets)
    try:
        advected = prepare(load_job(_job(folder / "a", 0)), "cpu", Recorded())
        progress = Recorded()
        clip = prepare(load_job(_job(folder / "b", 3)), "cpu", progress)
        frames = [np.array(frame) for frame in clip]
    finally:
        patch.undo()
    return advected, clip, frames, progress


def test_refine_0_is_the_advected_clip(refined):
    advected, clip, _, _ = refined
    assert isinstance(advected, AdvectClip)
    assert isinstance(clip, RefinedClip)


def test_refining_changes_the_region_and_nothing_else(refined):
    advected, clip, frames, progress = refined
    still = advected.still
    assert len(frames) == len(advected) == 6
    assert np.array_equal(frames[0], still)  # frame 1 held: a loop starts on the still
    outside = np.ones((H, W), bool)
    outside[:22] = False
    before = [advected.frame(t) for t in range(len(advected))]
    changed = 0
    for frame, plain in zip(frames, before):
        assert frame.dtype == still.dtype
        assert np.array_equal(frame[outside], still[outside])
        changed += int((frame != plain).any(axis=-1).sum())
    assert changed > 0
    stages = {record["stage"] for record in progress.records}
    assert {"measure", "field", "advect", "refine"} <= stages
    last = [r for r in progress.records if r["stage"] == "refine"][-1]
    assert last["done"] == last["total"] == 3


def test_refine_with_two_stream_is_refused(tmp_path):
    with pytest.raises(JobError, match="advect"):
        parse_job({"version": 1, "engine": "dyntex", "image": "x.png", "output": "out",
                   "frames": 8, "dyntex": {"method": "two-stream", "refine": 2}}, tmp_path)


@pytest.mark.parametrize("loop", [True, False])
def test_the_refiners_change_is_smooth_in_time_and_zero_on_frame_1(loop):
    from engine.dyntex.refine import temporal_basis

    basis = temporal_basis(12, loop).numpy()
    assert basis.shape == (12, 4)
    assert np.abs(basis[0]).max() == 0
    steps = np.abs(np.diff(basis, axis=0)).max()
    assert steps < 1.1  # at most two cycles over the clip: no frame-to-frame noise
    if loop:  # whole cycles: from the last frame back to frame 1 is one more small step
        assert np.abs(basis[-1]).max() <= steps + 1e-6
