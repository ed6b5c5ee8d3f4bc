"""`python -m engine bench dyntex` and `bench warp`: the report has every configuration with
positive numbers, and the last line is the summary a script reads."""

import json

import pytest

from engine.bench import bench_dyntex, bench_warp


def test_bench_dyntex_reports_every_configuration():
    lines = []
    report = bench_dyntex(sizes=(32,), frames_count=2, iterations=1, warmup=0,
                          target_iterations=2, isolate=False, advect_size=(96, 54),
                          advect_frames=4, two_stream_frames=2, out=lines.append)
    cases = report["per_iteration"]
    assert {(c["size"], c["dtype"]) for c in cases} == {(32, "fp32"), (32, "bf16")}
    for case in cases:
        assert case["s_per_iteration"] > 0 and case["peak_rss_mb"] > 0
        assert case["iterations"] >= 1
    ttl = report["time_to_loss"]
    assert ttl["target_loss"] > 0
    for name in ("single_scale", "coarse_to_fine"):
        assert ttl[name]["seconds"] > 0 and ttl[name]["peak_rss_mb"] > 0
    assert ttl["single_scale"]["seconds_to_target"] > 0
    assert json.loads(lines[-2]) == report  # the JSON report, then the summary line
    assert any("coarse-to-fine" in line for line in lines)
    summary = json.loads(lines[-1])
    assert summary["summary"] == "dyntex" and summary["s_per_iteration_32"] > 0
    assert summary["bf16_over_fp32_32"] > 0 and summary["seconds_to_loss_single"] > 0
    # advect vs two-stream at equal settings: the same still, three regions, frames
    section = report["advect"]
    advect, two = section["advect"], section["two_stream"]
    assert (advect["width"], advect["height"], advect["frames"]) == (96, 54, 4)
    assert advect["files"] == 4 and advect["regions"] == two["regions"] == 3
    assert advect["seconds"] > 0 and advect["s_per_frame"] > 0 and advect["peak_rss_mb"] > 0
    assert two["working_size"] == [96, 54]
    assert (two["frames"], two["measured_frames"]) == (4, 2)  # timed at 2, scaled to 4
    assert two["s_per_iteration"] == pytest.approx(2 * two["measured_s_per_iteration"], rel=1e-3)
    assert two["s_per_iteration"] > 0 and two["job_iterations"] == 100
    assert two["estimate_seconds"] == pytest.approx(100 * two["s_per_iteration"], abs=0.1)
    assert any("two-stream at the defaults would take" in line for line in lines)
    refine = section["refine"]  # the refiner, timed like two-stream
    assert (refine["frames"], refine["measured_frames"]) == (4, 2)
    assert refine["s_per_iteration"] > 0 and refine["working_size"] == [96, 54]
    assert summary["refine_s_per_iteration"] == pytest.approx(refine["s_per_iteration"], rel=0.01)
    assert any("refiner" in line for line in lines)
    assert summary["advect_size"] == "96x54" and summary["advect_frames"] == 4
    assert summary["two_stream_measured_frames"] == 2
    for key in ("advect_s", "advect_s_per_frame", "advect_peak_mb",
                "two_stream_s_per_iteration", "two_stream_estimate_s",
                "two_stream_over_advect"):
        assert summary[key] > 0, key


def test_library_motion_statistics_has_a_row_per_exemplar():
    import torch

    from engine import vgg
    from engine.bench import library_motion_statistics
    from engine.dyntex.exemplars import EXEMPLARS
    from engine.dyntex.msoe import MsoeNet

    torch.manual_seed(0)
    net = vgg.Vgg19Features()
    for name in vgg.CONVS:  # random He-scaled weights: the table's shape, not its values
        torch.nn.init.normal_(getattr(net, name).weight,
                              std=(2.0 / (9 * getattr(net, name).in_channels)) ** 0.5)
        torch.nn.init.zeros_(getattr(net, name).bias)
    networks = (net.requires_grad_(False).eval(), MsoeNet(decoder=False).requires_grad_(False))
    lines = []
    names = ("water", "waterfall")  # two of the four: each row is a synthesis
    report = library_motion_statistics(size=32, frames_count=3, iterations=1, names=names,
                                       networks=networks, out=lines.append)
    assert [row["exemplar"] for row in report["rows"]] == list(names)
    for row in report["rows"]:
        for key in ("magnitude", "direction", "ceiling_magnitude", "ceiling_direction"):
            assert 0.0 <= row[key] <= 1.0, (row["exemplar"], key, row[key])
        assert row["speed_ratio"] >= 0 and row["exemplar_px_per_frame"] > 0
        assert row["seam_ratio"] >= 0
    assert json.loads(lines[-1]) == report
    assert all(any(line.strip().startswith(name) for line in lines) for name in names)
    assert set(names) <= set(EXEMPLARS)


def test_bench_warp_ends_with_its_summary_line():
    lines = []
    report = bench_warp(size=64, frames_count=3, repeat=1, device="cpu", out=lines.append)
    assert json.loads(lines[-2]) == report
    summary = json.loads(lines[-1])
    assert summary["summary"] == "warp" and (summary["size"], summary["frames"]) == (64, 3)
    assert summary["full_s"] > 0 and summary["peak_rss_mb"] > 0
    # ratios of two timings: positive; their size is the bench's business (a busy machine
    # once timed the field alone above the whole frame at 64 px)
    assert summary["field_share"] > 0 and summary["bf16_over_fp32"] > 0
