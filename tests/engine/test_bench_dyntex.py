"""`python -m engine bench dyntex`: the report has every configuration with positive numbers."""

import json

from engine.bench import bench_dyntex


def test_bench_dyntex_reports_every_configuration():
    lines = []
    report = bench_dyntex(sizes=(32,), frames_count=2, iterations=1, warmup=0,
                          target_iterations=2, isolate=False, out=lines.append)
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
    assert json.loads(lines[-1]) == report  # the last printed line is the JSON report
    assert any("coarse-to-fine" in line for line in lines)
