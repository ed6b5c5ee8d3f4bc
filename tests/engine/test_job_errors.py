"""Bad jobs and bad inputs: exit status 2, one line that names the problem, no output folder."""

import json

import numpy as np
import pytest
from conftest import json_lines, run_engine, texture, write_job

from engine import cli

POKE = {"start": [10.0, 10.0], "end": [14.0, 12.0], "radius": 8.0}


def run_in_process(job_path, capsys):
    status = cli.main(["run", str(job_path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(status, out, err, *words):
    assert status == 2
    errors = [line for line in json_lines(out) if line["stage"] == "error"]
    assert len(errors) == 1
    message = errors[0]["message"]
    assert err.strip() == f"error: {message}"
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("fields, words", [
    ({"version": 2}, ["version 2", "update"]),
    ({"version": True}, ["version True"]),
    ({"engine": "poke", "poke": {"model": "gone.safetensors"}},
     ["poke model not found", "gone.safetensors", "train-poke"]),
    ({"engine": "magic"}, ["'magic'", "not known"]),
    ({"frames": 1}, ["frames", "at least 2"]),
    ({"frames": "24"}, ["\"frames\"", "integer"]),
    ({"format": "JPEG"}, ["'JPEG'", "PNG8, PNG16, EXR"]),
    ({"easing": "bounce"}, ["'bounce'", "ease_in_out"]),
    ({"device": "tpu"}, ["'tpu'"]),
    ({"max_size": -5}, ["max_size"]),
    ({"image": "nowhere.png"}, ["still image not found", "nowhere.png"]),
    ({"pokes": [{"start": [float("nan"), 3.0], "end": [4.0, 5.0]}]}, ["poke 1 start", "finite"]),
    ({"pokes": [POKE, {"start": [5.0, "x"], "end": [1.0, 1.0]}]}, ["poke 2 start"]),
    ({"pokes": [{**POKE, "radius": -1}]}, ["poke 1 radius", ">= 0"]),
    ({"warp": {"falloff": float("inf")}}, ["warp.falloff"]),
    ({"masks": [{"path": "mask_9.png", "label": "static"}]}, ["mask 1 not found"]),
])
def test_bad_job_fields(tmp_path, capsys, keep_sigterm, fields, words):
    job = write_job(tmp_path, texture(32, 32), **{"pokes": [POKE], **fields})
    assert_refused(*run_in_process(job, capsys), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("poke, words", [
    ({"start": [10.0, 10.0], "end": [10.0, 10.2]}, ["poke 1 has zero length", "drag"]),
    ({"start": [40.0, 10.0], "end": [45.0, 10.0]}, ["poke 1 starts outside the 32x32 image"]),
])
def test_bad_pokes(tmp_path, capsys, keep_sigterm, poke, words):
    job = write_job(tmp_path, texture(32, 32), pokes=[poke])
    assert_refused(*run_in_process(job, capsys), *words)


def test_no_pokes(tmp_path, capsys, keep_sigterm):
    job = write_job(tmp_path, texture(32, 32), pokes=[])
    assert_refused(*run_in_process(job, capsys), "no pokes")


def test_mask_size_mismatch(tmp_path, capsys, keep_sigterm):
    job = write_job(tmp_path, texture(32, 32), mask_images=[np.zeros((16, 32), np.uint8)],
                    pokes=[POKE])
    assert_refused(*run_in_process(job, capsys), "mask 1", "32x16", "32x32")


def test_unreadable_still(tmp_path, capsys, keep_sigterm):
    job = write_job(tmp_path, None, pokes=[POKE])
    (tmp_path / "still.png").write_bytes(b"\x89PNG but not really")
    assert_refused(*run_in_process(job, capsys), "cannot decode image", "still.png")


def test_job_file_not_json(tmp_path, capsys, keep_sigterm):
    path = tmp_path / "job.json"
    path.write_text("{ not json")
    assert_refused(*run_in_process(path, capsys), "not valid JSON", "line 1")


def test_output_that_exists_is_never_touched(tmp_path, capsys, keep_sigterm):
    job = write_job(tmp_path, texture(32, 32), pokes=[POKE])
    output = tmp_path / "out" / "take_001"
    output.mkdir(parents=True)
    (output / "frame_0001.png").write_bytes(b"an earlier bake")
    assert_refused(*run_in_process(job, capsys), "already exists", "new take")
    assert (output / "frame_0001.png").read_bytes() == b"an earlier bake"


def test_labels_the_warp_engine_ignores_are_warned_about(tmp_path, capsys, keep_sigterm):
    mask = np.full((32, 32), 255, np.uint8)
    job = write_job(tmp_path, texture(32, 32), mask_images=[mask], pokes=[POKE])
    data = json.loads(job.read_text())
    data["masks"][0]["label"] = "water"
    job.write_text(json.dumps(data))
    status, out, _ = run_in_process(job, capsys)
    assert status == 0
    warnings = [line["message"] for line in json_lines(out) if line["stage"] == "warning"]
    assert any("'water'" in w for w in warnings)


def test_poke_inside_a_static_mask_is_warned_about(tmp_path, capsys, keep_sigterm):
    mask = np.zeros((32, 32), np.uint8)
    mask[:16, :16] = 255
    job = write_job(tmp_path, texture(32, 32), mask_images=[mask], pokes=[POKE])
    status, out, _ = run_in_process(job, capsys)
    assert status == 0
    warnings = [line["message"] for line in json_lines(out) if line["stage"] == "warning"]
    assert warnings == ["poke 1 starts inside a static mask, so it cannot move anything; move "
                        "the poke or the mask"]


def test_bad_input_through_the_command_line(tmp_path):
    """The real process: exit status 2, the error on stdout as JSON and on stderr as one line."""
    job = write_job(tmp_path, texture(32, 32), version=3, pokes=[POKE])
    done = run_engine("run", str(job))
    assert done.returncode == 2
    assert json_lines(done.stdout)[-1]["stage"] == "error"
    assert done.stderr.startswith("error: job version 3 is not supported")
    assert len(done.stderr.strip().splitlines()) == 1


def test_mask_mismatch_through_the_command_line(tmp_path):
    job = write_job(tmp_path, texture(32, 32), mask_images=[np.zeros((32, 31), np.uint8)],
                    pokes=[POKE])
    done = run_engine("run", str(job))
    assert done.returncode == 2 and "mask 1" in done.stderr
    assert not any(p.name.startswith("take_001") for p in (tmp_path / "out").glob("*"))


@pytest.mark.parametrize("end", [[1e5, 24.0], [1e308, 24.0], [-3e6, -3e6]])
def test_poke_ending_far_off_the_picture_is_refused(tmp_path, capsys, keep_sigterm, end):
    """An end more than two picture diagonals beyond the picture's edge is a slip (the warp
    engine's work grew with the drag: 1e5 took minutes, 1e6 never ended, 1e308 crashed)."""
    job = write_job(tmp_path, texture(32, 32), pokes=[{"start": [16.0, 16.0], "end": end}])
    assert_refused(*run_in_process(job, capsys), "poke 1 ends at", "outside the 32x32 image",
                   "2 picture diagonals", "drag its end closer")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("engine, settings", [
    ("warp", {}), ("poke", {"poke": {"model": "model.safetensors"}}),
    ("dyntex", {"dyntex": {"method": "advect"}})])  # advect's arrows are pokes too
def test_far_off_poke_is_refused_by_every_engine_that_takes_pokes(tmp_path, capsys,
                                                                  keep_sigterm, engine, settings):
    (tmp_path / "model.safetensors").write_bytes(b"never read: the pokes are checked first")
    job = write_job(tmp_path, texture(32, 32), engine=engine, **settings,
                    pokes=[{"start": [16.0, 16.0], "end": [16.0, 1e6]}])
    assert_refused(*run_in_process(job, capsys), "poke 1 ends at")


def test_poke_ending_a_little_outside_the_picture_still_bakes(tmp_path, capsys, keep_sigterm):
    """Dragging content out of frame is legitimate: 1.9 diagonals beyond the edge is kept."""
    diagonal = 32 * 2 ** 0.5
    job = write_job(tmp_path, texture(32, 32),
                    pokes=[{"start": [16.0, 16.0], "end": [32.0 + 1.9 * diagonal, 16.0]}])
    status, _, err = run_in_process(job, capsys)
    assert status == 0, err
    assert len(list((tmp_path / "out" / "take_001").iterdir())) == 4


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_job_is_a_bad_job(tmp_path, depth):
    """A job is four levels deep; JSON nested far deeper (100 000 levels overflowed Python's
    recursion: exit 1, "engine bug") is refused as a bad job, through the real command line."""
    path = tmp_path / "job.json"
    path.write_text('{"version": 1, "pokes": ' + "[" * depth + "]" * depth + "}")
    done = run_engine("run", str(path))
    assert done.returncode == 2, done.stderr
    assert json_lines(done.stdout)[-1]["stage"] == "error"
    assert done.stderr.startswith(f"error: job file {path} is nested more than 32 levels deep")
    assert "re-export the job" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
