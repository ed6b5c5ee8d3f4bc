"""The command line as Blender and the demo use it: run, cancel, failures, check, preview."""

import errno
import json

import cv2
import numpy as np
import pytest
from conftest import REPO, json_lines, run_engine, terminate_when, texture, write_job

from engine import cli, frames

POKE = {"start": [30.0, 30.0], "end": [38.0, 26.0], "radius": 20.0}


def test_run_reports_progress_and_renames_into_place(tmp_path):
    job = write_job(tmp_path, texture(64, 80), frames=5, pokes=[POKE])
    done = run_engine("run", str(job))
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert events[0] == {"stage": "load", "done": 0, "total": 1}
    renders = [e for e in events if e["stage"] == "render"]
    assert [e["done"] for e in renders] == [1, 2, 3, 4, 5]
    assert all(e["total"] == 5 and ".partial-" in e["preview"] for e in renders)
    output = tmp_path / "out" / "take_001"
    assert events[-1] == {"stage": "done", "done": 5, "total": 5, "output": str(output),
                          "frames": 5}
    assert sorted(p.name for p in output.iterdir()) == [f"frame_000{i}.png" for i in range(1, 6)]
    assert [p.name for p in output.parent.iterdir()] == ["take_001"]  # no partial left


def test_sigterm_leaves_no_output_folder(tmp_path):
    job = write_job(tmp_path, texture(400, 400), frames=400, format="PNG16",
                    pokes=[{"start": [200.0, 200.0], "end": [260.0, 170.0], "radius": 150.0}])
    def writing():
        partial = list((tmp_path / "out").glob("take_001.partial-*"))
        assert len(partial) == 1 and any(partial[0].iterdir())

    result = terminate_when(lambda r: r["stage"] == "render" and r["done"] >= 2,  # frames written
                            "run", str(job), check=writing)
    assert result.returncode == 143
    assert json_lines(result.stdout)[-1]["stage"] == "cancelled"
    assert list((tmp_path / "out").iterdir()) == []


def test_disk_full_is_a_clear_message(tmp_path, capsys, keep_sigterm, monkeypatch):
    job = write_job(tmp_path, texture(32, 32), frames=3, pokes=[POKE])
    calls = []

    def full_disk(path, pixels, fmt):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        path.write_bytes(b"frame")

    monkeypatch.setattr(frames, "write_image", full_disk)
    assert cli.main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    output = tmp_path / "out" / "take_001"
    assert err.startswith(f"error: disk full while writing frames to {output}")
    assert "free space and bake again" in err
    assert list((tmp_path / "out").iterdir()) == []


def test_crash_is_one_line_and_exit_1(tmp_path, capsys, keep_sigterm, monkeypatch):
    import engine.warp

    def broken(*args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(engine.warp, "prepare", broken)
    job = write_job(tmp_path, texture(32, 32), pokes=[POKE])
    assert cli.main(["run", str(job)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "unexpected ZeroDivisionError: division by zero" in captured.err
    assert json_lines(captured.out)[-1]["stage"] == "error"

    monkeypatch.setenv("STILLMOTION_DEBUG", "1")
    assert cli.main(["run", str(job)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_check_reports_versions():
    done = run_engine("check")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("python", "torch", "numpy", "cv2"):
        assert report[key]
    assert report["cuda"] in (True, False) and report["ok"] is True


def test_preview_writes_a_playable_clip_and_a_contact_sheet(tmp_path):
    source = tmp_path / "frames"
    source.mkdir()
    for index in range(1, 11):
        frame = np.zeros((90, 121, 4), np.uint8)
        frame[..., 3] = 255
        frame[:, : index * 12, :3] = (200, 40, 40)
        frames.write_image(source / f"frame_{index:04d}.png", frame, "PNG8")
    out = tmp_path / "preview ü"
    done = run_engine("preview", str(source), "--out", str(out), "--fps", "12")
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[-1]["stage"] == "done"

    video = cv2.VideoCapture(str(out / "preview.mp4"))
    assert video.isOpened()
    count, first = 0, None
    while True:
        ok, image = video.read()
        if not ok:
            break
        first = image if first is None else first
        count += 1
    video.release()
    assert count == 10 and first.shape[0] == 90 and first.shape[1] in (120, 122)  # even sides
    sheet = frames.read_image(out / "contact_sheet.png")
    assert sheet.shape[1] > 6 * 120 and sheet.shape[0] > 2 * 80  # 6 columns, 2 rows


def test_preview_of_an_empty_folder_says_so(tmp_path):
    done = run_engine("preview", str(tmp_path), "--out", str(tmp_path / "p"))
    assert done.returncode == 2 and "no frames" in done.stderr


@pytest.mark.parametrize("argv", [["run"], ["bench", "nope"], ["frobnicate"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2


def test_no_bpy_anywhere_in_the_engine():
    for path in (REPO / "engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import bpy" not in text and "from bpy" not in text, path



def test_preview_falls_back_to_gif_without_mp4(tmp_path, monkeypatch):
    from engine import preview

    class NoVideo:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(preview.cv2, "VideoWriter", NoVideo)
    source = tmp_path / "frames"
    source.mkdir()
    for index in range(1, 4):
        frames.write_image(source / f"frame_{index:04d}.png", texture(20, 30, seed=index), "PNG8")
    result = preview.write_preview(source, tmp_path / "out", fps=10)
    assert result["preview"].name == "preview.gif"
    ok, animation = cv2.imreadanimation(str(result["preview"]))
    assert ok and len(animation.frames) == 3
