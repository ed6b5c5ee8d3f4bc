"""The engine process runner and the engine check, against tiny stand-in interpreters.

A stand-in is a shell script given as the "engine Python": it ignores `-m engine run JOB` and
prints what a test needs, so each failure mode is exact and fast. The real engine is driven by
test_bake_flow.py and test_bake_failures.py.
"""

import os
import pathlib
import signal
import sys
import time

import pytest

from conftest import engine_python


@pytest.fixture
def process_module(addon):
    from bl_ext.user_default.stillmotion.bake import process

    return process


def fake_python(tmp_path, body, name="python"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def wait_finished(proc, timeout=10.0):
    end = time.monotonic() + timeout
    events = []
    while not proc.finished:
        events += proc.poll()
        assert time.monotonic() < end, "process did not finish"
        time.sleep(0.01)
    return events + proc.poll()


def test_progress_events_are_parsed_and_noise_ignored(process_module, tmp_path):
    python = fake_python(tmp_path, """
echo '{"stage": "load", "done": 0, "total": 1}'
echo 'Warning: some library printed this'
echo '{not json'
echo '[1, 2]'
echo '{"stage": "render", "done": 1, "total": 2, "preview": "/x/frame_0001.png"}'
echo '{"stage": "done", "done": 2, "total": 2, "output": "/x", "frames": 2}'
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    events = wait_finished(proc)
    assert [e["stage"] for e in events] == ["load", "render", "done"]
    assert proc.returncode == 0 and proc.succeeded
    assert proc.done_event["frames"] == 2
    assert proc.error_message() == ""


def test_engine_runs_with_extension_root_on_pythonpath(process_module, tmp_path):
    python = fake_python(tmp_path, """
printf '{"stage": "env", "pythonpath": "%s", "cwd": "%s", "args": "%s"}\\n' "$PYTHONPATH" "$(pwd)" "$*"
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "jöb.json")
    (event,) = wait_finished(proc)
    root = process_module.EXTENSION_ROOT
    assert (root / "engine").is_dir()
    assert event["pythonpath"] == str(root)
    assert pathlib.Path(event["cwd"]).resolve() == root.resolve()
    assert event["args"] == f"-m engine run {tmp_path / 'jöb.json'}"


def test_error_event_message_wins(process_module, tmp_path):
    python = fake_python(tmp_path, """
echo '{"stage": "load", "done": 0, "total": 1}'
echo '{"stage": "error", "message": "The still is 0 x 0 pixels: pick another image"}'
echo 'error: The still is 0 x 0 pixels: pick another image' >&2
exit 2
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    wait_finished(proc)
    assert proc.returncode == 2 and not proc.succeeded
    assert proc.error_message() == "Engine: The still is 0 x 0 pixels: pick another image"


def test_crash_reports_last_stderr_line(process_module, tmp_path):
    python = fake_python(tmp_path, """
echo '{"stage": "render", "done": 1, "total": 4}'
echo 'Traceback (most recent call last):' >&2
echo '  File "engine/warp/render.py", line 12, in render' >&2
echo 'ZeroDivisionError: division by zero' >&2
exit 1
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    wait_finished(proc)
    assert proc.error_message() == "Engine exited with status 1: ZeroDivisionError: division by zero"


def test_stopped_from_outside(process_module, tmp_path):
    python = fake_python(tmp_path, """
echo '{"stage": "cancelled", "message": "stopped on request; nothing was written"}'
exit 143
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    wait_finished(proc)
    assert proc.error_message() == ("The engine was stopped from outside before it finished: "
                                    "bake again")


def test_silent_death_names_the_signal(process_module, tmp_path):
    python = fake_python(tmp_path, "kill -9 $$\n")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    wait_finished(proc)
    assert proc.returncode == -signal.SIGKILL
    assert proc.error_message() == "Engine was killed by SIGKILL without saying why"


def test_cancel_kills_the_whole_process_group(process_module, tmp_path):
    child_pid = tmp_path / "child.pid"
    # The "engine" starts a worker of its own, ignores SIGTERM and waits: cancel must still end
    # both (terminate, then kill the group).
    python = fake_python(tmp_path, f"""
trap '' TERM
sleep 60 &
echo $! > '{child_pid}'
echo '{{"stage": "render", "done": 0, "total": 10}}'
wait
""")
    proc = process_module.EngineProcess.run_job(python, tmp_path / "job.json")
    end = time.monotonic() + 10
    while not proc.poll():
        assert time.monotonic() < end
        time.sleep(0.01)
    started = time.monotonic()
    proc.cancel(grace=0.5)
    assert time.monotonic() - started < 5
    assert proc.returncode is not None and proc.finished
    assert proc.error_message() == "Bake cancelled"
    pid = int(child_pid.read_text())
    time.sleep(0.1)
    assert not _alive(pid), "the engine's own child survived the cancel"


def _alive(pid):
    """True while pid runs; a zombie (killed, not yet reaped by init) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = pathlib.Path(f"/proc/{pid}/status")
    if status.exists():
        state = next((l for l in status.read_text().splitlines() if l.startswith("State:")), "")
        return "zombie" not in state and "dead" not in state
    return True


def test_missing_torch_is_explained(process_module, tmp_path):
    # The bpy venv's own Python has no torch: exactly an artist pointing at the wrong Python.
    proc = process_module.EngineProcess.run_job(sys.executable, tmp_path / "job.json")
    wait_finished(proc, timeout=60)
    message = proc.error_message()
    # It lacks torch and OpenCV; whichever the engine tripped over first is named.
    assert message.startswith(f"The engine Python {sys.executable} has no "), message
    assert "Install Engine" in message and "requirements/engine.txt" in message, message


def test_check_engine_python_missing(process_module, tmp_path):
    ok, message = process_module.check_engine_python(tmp_path / "nope" / "python")
    assert not ok
    assert message.startswith("Engine Python not found at ")
    assert "Preferences > Add-ons > StillMotion" in message and "Install Engine" in message


def test_check_engine_python_without_torch(process_module):
    ok, message = process_module.check_engine_python(sys.executable)
    assert not ok
    assert "has no PyTorch" in message, message


def test_check_engine_python_real_engine(process_module):
    ok, message = process_module.check_engine_python(engine_python())
    assert ok, message
    assert message.startswith("Engine ready") and "torch" in message
