"""Poke-model training (engine/poke/train.py) on a tiny model and a small synthetic video:
every stage's step lowers its loss, a stopped run resumes where its last epoch ended, the
written model loads and samples, stages that never ran are refused."""

import cv2
import numpy as np
import pytest
import torch

from engine.errors import JobError
from engine.poke.model import load_model, model_facts
from engine.poke.train import (CinnStage, CodesStage, Trainer, TrainConfig, VideoStage,
                               parse_stage_share, parse_stages)
from engine.poke.data import DataConfig
from engine.progress import Recorded


def _video(path, count=72, size=80):
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2)
    background = (background / background.max() * 160 + 40).astype(np.uint8)
    blob = cv2.GaussianBlur(rng.random((20, 20, 3)).astype(np.float32), (0, 0), 2)
    blob = (blob / blob.max() * 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    for index in range(count):
        frame = background.copy()
        x = 10 + (index % 24)  # moves right, jumps back: every clip has motion
        frame[30:50, x:x + 20] = blob
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("train") / "clip.avi")


@pytest.fixture(scope="module")
def make_config(tmp_path_factory):
    """Tiny model, a few steps per stage; decoded clips cached once for the whole module."""
    cache = str(tmp_path_factory.mktemp("clip-cache"))

    def make(**changes):
        config = TrainConfig(preset="tiny", batch=2, steps={"video": 4, "codes": 3, "cinn": 3},
                             epoch_batches=2, val_batches=1, perceptual_weight=0.0,
                             adversarial_after=0.0,
                             data=DataConfig(augment=False, cache_dir=cache))
        for key, value in changes.items():
            setattr(config, key, value)
        return config
    return make


def test_train_writes_a_model_that_samples(video, tmp_path, make_config):
    progress = Recorded()
    out = tmp_path / "person.safetensors"
    Trainer([video], out, make_config(), progress).train()
    model = load_model(out)
    facts = model_facts(out)
    assert '"video": 4' in facts["steps"] and "bits_per_dim" in facts["held_out"]
    x0 = torch.zeros(1, 3, 64, 64)
    poke = torch.zeros(1, 2, 64, 64)
    poke[:, :, 30:35, 30:35] = 3.0
    clips = model.sample(x0, poke, samples=2, generator=torch.Generator().manual_seed(1))
    assert clips.shape == (2, 10, 3, 64, 64)
    assert torch.isfinite(clips).all()
    # held-out metrics were logged per epoch for every stage
    vals = {r["stage_name"]: r["val"] for r in progress.records if "val" in r}
    assert set(vals) == {"video", "codes", "cinn"}
    assert "psnr" in vals["video"] and "flow_epe" in vals["codes"]


def test_stopped_run_resumes_at_its_last_epoch(video, tmp_path, monkeypatch, make_config):
    out = tmp_path / "m.safetensors"
    original = VideoStage.step

    def interrupted(self, batch, step, total):
        if step == 3:  # after the first epoch (2 batches) was saved
            raise KeyboardInterrupt
        return original(self, batch, step, total)

    monkeypatch.setattr(VideoStage, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer([video], out, make_config(), Recorded()).train()
    assert not out.exists()
    monkeypatch.setattr(VideoStage, "step", original)
    progress = Recorded()
    Trainer([video], out, make_config(), progress).train()
    resumed = [r for r in progress.records if "resumed_at" in r]
    assert resumed and resumed[0]["resumed_at"] == 2 and resumed[0]["stage_name"] == "video"
    assert '"video": 4' in model_facts(out)["steps"]


@pytest.mark.parametrize("stage_type,key", [(VideoStage, "loss"), (CodesStage, "poke_loss"),
                                            (CinnStage, "bits_per_dim")])
def test_each_stage_lowers_its_loss_on_a_fixed_batch(video, tmp_path, stage_type, key,
                                                     make_config):
    torch.manual_seed(0)
    trainer = Trainer([video], tmp_path / "m.safetensors",
                      make_config(adversarial_after=1.0, lr_cinn=3e-3), Recorded())
    stage = stage_type(trainer)
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, True))))
    stage.start(batch)
    losses = [stage.step(batch, step, 40)[key] for step in range(8)]
    assert losses[-1] < losses[0], losses


def test_cinn_step_with_an_overflowing_batch_is_skipped(video, tmp_path, make_config,
                                                         monkeypatch):
    torch.manual_seed(0)
    trainer = Trainer([video], tmp_path / "m.safetensors", make_config(), Recorded())
    stage = CinnStage(trainer)
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, True))))
    stage.start(batch)
    stage.step(batch, 0, 10)
    before = {k: v.clone() for k, v in trainer.cinn.state_dict().items()}
    good = stage.inputs

    def overflowing(batch):
        z, cond = good(batch)
        z = z.clone()
        z[0, 0, 0, 0] = float("inf")
        return z, cond

    monkeypatch.setattr(stage, "inputs", overflowing)
    values = stage.step(batch, 1, 10)
    assert values["skipped"] == 1.0
    after = trainer.cinn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # no weight was touched
    monkeypatch.setattr(stage, "inputs", good)
    assert np.isfinite(stage.step(batch, 2, 10)["bits_per_dim"])


def test_stage_that_never_ran_is_refused(video, tmp_path, make_config):
    with pytest.raises(JobError, match="stage 'video' has never run"):
        Trainer([video], tmp_path / "m.safetensors", make_config(stages=("cinn",)),
                Recorded()).train()


def test_stage_list_parsing():
    assert parse_stages("all") == ("video", "codes", "cinn")
    assert parse_stages("cinn,video") == ("video", "cinn")
    with pytest.raises(JobError, match="unknown stage 'gan'"):
        parse_stages("video,gan")
    assert parse_stage_share("0.6,0.1,0.3") == (0.6, 0.1, 0.3)
    for bad in ("0.5,0.5", "a,b,c", "-1,1,1", "0,0,0"):
        with pytest.raises(JobError, match="--stage-share takes three fractions"):
            parse_stage_share(bad)


def test_time_budget_ends_every_stage(video, tmp_path, make_config):
    progress = Recorded()
    out = tmp_path / "m.safetensors"
    Trainer([video], out, make_config(steps={}, max_minutes=0.25), progress).train()
    steps = {r["stage_name"]: r["step"] for r in progress.records if "val" in r}
    assert set(steps) == {"video", "codes", "cinn"} and min(steps.values()) >= 1
    assert load_model(out) is not None


def test_bf16_autocast_trains_with_the_discriminators(video, tmp_path, make_config):
    trainer = Trainer([video], tmp_path / "m.safetensors",
                      make_config(bf16=True, adversarial_after=0.0), Recorded())
    stage = VideoStage(trainer)
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, True))))
    parts = stage.step(batch, 0, 10)
    assert {"g_temporal", "d_temporal", "r1"} <= set(parts)
    assert all(np.isfinite(v) for v in parts.values())


def test_half_precision_model_file_loads_as_float32(tmp_path):
    from engine.poke.model import PokeModel, PokeModelConfig, save_model

    model = PokeModel(PokeModelConfig.preset_named("tiny"))
    full = save_model(tmp_path / "full.safetensors", model)
    half = save_model(tmp_path / "half.safetensors", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, name
        if a.is_floating_point():
            assert torch.equal(b, a.half().float()), name


def test_same_command_runs_under_torchrun_with_two_processes(video, tmp_path):
    """DistributedDataParallel over gloo: two CPU processes share each batch, rank 0 writes."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--standalone", "-m", "engine", "train-poke", str(video), "--out", str(out),
               "--size", "tiny", "--steps", "video=2", "--steps", "codes=2", "--steps", "cinn=2",
               "--batch", "4", "--perceptual-weight", "0", "--epoch-batches", "1",
               "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = [json.loads(line) for line in done.stdout.splitlines()
             if line.startswith("{") and '"saved"' in line]
    assert len(saved) == 1  # rank 0 only
    assert saved[0]["steps"] == {"video": 2, "codes": 2, "cinn": 2}
    assert load_model(out) is not None
