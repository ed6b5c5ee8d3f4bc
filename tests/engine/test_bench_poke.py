"""`python -m engine bench poke` pieces that run in seconds: the sampling, full-resolution and
train-step rows on the small model, and the headline ratios (the 1 B-parameter original cINN
itself is only built by the real bench)."""

import json
import types

import torch

from engine.poke import bench


def test_full_resolution_rows_render_both_spaces():
    torch.set_num_threads(1)
    for space in ("pixels", "motion"):
        result = bench.full_resolution_case(space, 96, repeat=1)
        assert result["side"] == 96 and result["seconds"] > 0


def test_sample_and_train_rows_time_the_small_model():
    torch.set_num_threads(1)
    sampled = bench.sample_case("small", 2, repeat=1)
    assert 0 < sampled["cinn_seconds"] <= sampled["seconds"] * 1.5
    trained = bench.train_case("small", "codes", 2, repeat=1, perceptual=False)
    assert trained["seconds"] > 0 and trained["optimiser_step"]


def test_headline_states_the_ratios_against_the_original():
    results = {"parameters": {"small": {"cinn": 4_000_000}, "original_cinn": 1_000_000_000},
               "small": {"sample_1": {"seconds": 2.0, "cinn_seconds": 0.5, "peak_rss_mb": 300},
                         "train_cinn": {"seconds": 0.8}},
               "original": {"sample_1": {"seconds": 8.0, "cinn_seconds": 6.0,
                                         "peak_rss_mb": 4500},
                            "train_cinn": {"seconds": 5.0, "optimiser_step": False}}}
    lines = bench._headline(results)
    assert lines["parameters"] == "cINN parameters: original / small = 250x"
    assert "= 12x" in lines["sample_1"] and "whole clip 4.0x" in lines["sample_1"]
    assert "peak memory 15x" in lines["sample_1"]
    assert "no update" in lines["train_cinn"] and "= 50x per clip" in lines["train_cinn"]
    assert "sample_8" not in lines


def test_bench_poke_size_option_reaches_the_full_resolution_rows(monkeypatch):
    seen = []

    def fake_isolated(function, *args):
        if function is bench.full_resolution_case:
            seen.append(args[1])
        return {"error": "not run in this test"}

    monkeypatch.setattr(bench, "isolated", fake_isolated)
    args = types.SimpleNamespace(threads=0, quick=True, repeat=1, no_perceptual=True,
                                 size=256)
    lines = []
    results = bench.run_bench(args, out=lines.append)
    assert seen == [256, 256]
    assert results["small"]["full_resolution_motion"] == {"error": "not run in this test"}
    assert any("256px motion" in line for line in lines)
    summary = json.loads(lines[-1])  # no row ran: the summary says so with nulls
    assert summary["summary"] == "poke" and summary["small_sample_1_s"] is None
    assert summary["cinn_parameters_original_over_small"] > 1
