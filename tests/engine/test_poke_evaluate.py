"""evaluate-poke: the held-out numbers of a model card, on a synthetic video and a tiny model."""

import json

import numpy as np
import pytest
import torch
from test_poke_data import moving_square_frames, write_video

from engine import cli
from engine.poke import evaluate as E
from engine.poke.data import DataConfig, PokeClipDataset
from engine.poke.model import PokeModel, PokeModelConfig, save_model


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("poke_eval") / "square.avi",
                       moving_square_frames(70))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return PokeModel(PokeModelConfig.preset_named("tiny")).eval()


def test_patches_are_found_by_their_vector():
    poke = np.zeros((2, 16, 16), np.float32)
    poke[:, 2:5, 2:5] = np.array([1.0, -2.0])[:, None, None]
    poke[:, 9:12, 9:12] = np.array([0.0, 3.0])[:, None, None]
    patches = E._patches(poke)
    assert len(patches) == 2
    for mask, vector in patches:
        assert mask.sum() == 9
        assert np.all(poke[:, mask] == vector[:, None])


def test_evaluate_reports_every_measure_and_repeats_by_seed(model, video):
    a = E.evaluate(model, [str(video)], samples=2, seed=3, max_clips=2)
    b = E.evaluate(model, [str(video)], samples=2, seed=3, max_clips=2)
    c = E.evaluate(model, [str(video)], samples=2, seed=4, max_clips=2)
    held_out = PokeClipDataset([str(video)], "val", DataConfig(augment=False))
    assert a["held_out_clips"] == len(held_out.clips) and a["evaluated_clips"] == 2
    for key in ("seconds",):
        a.pop(key), b.pop(key), c.pop(key)
    assert a == b
    assert a["diversity"] != c["diversity"]
    assert a["video_ae"]["psnr_db"] > 0 and 0 < a["video_ae"]["ssim"] <= 1
    assert np.isfinite(a["cinn_bits_per_dim"])
    assert -1 <= a["poke_following"]["cosine"] <= 1 and a["poke_following"]["patches"] >= 4
    assert a["diversity"]["frame"] > 0
    # the real clips move as their pokes say (the square moves right): a check of the measure
    assert a["poke_following_real_clips"]["cosine"] > 0.9


def test_evaluate_command_prints_one_json_object(model, video, tmp_path, capsys):
    path = save_model(tmp_path / "tiny.safetensors", model)
    assert cli.main(["evaluate-poke", "--model", str(path), str(video), "--samples", "2",
                     "--max-clips", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    result = lines[-1]
    assert result["model"] == "tiny.safetensors" and result["evaluated_clips"] == 1
    assert "evaluate-poke" in result["command"]
