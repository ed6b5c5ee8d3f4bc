"""Child processes the add-on starts: the engine (`python -m engine ...`) and pip.

No bpy here, and never torch: this module only starts an interpreter, reads what it prints and
stops it. Output is read by daemon threads into queues so the main thread (a modal operator's
timer, or a blocking loop in background mode) only ever drains queues and never blocks on a pipe.
"""

import collections
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

# The folder holding `engine/`: the extension root. The engine is started with it on PYTHONPATH.
EXTENSION_ROOT = pathlib.Path(__file__).resolve().parents[1]

_STDERR_LINES_KEPT = 40
# What Python says when the engine's interpreter lacks a package the engine needs.
_MISSING_MODULE = re.compile(r"No module named '(torch|numpy|cv2|safetensors)[.']")


def engine_env(extra=None):
    """Environment for an interpreter that is not Blender's own.

    Blender (and the bpy wheel's venv) may export PYTHONHOME/PYTHONPATH meant for Blender's
    Python; handed to another interpreter they make it import the wrong standard library.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONHOME", "PYTHONPATH"}}
    env["PYTHONPATH"] = str(EXTENSION_ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines must arrive as they are printed
    env["PYTHONIOENCODING"] = "utf-8"
    if extra:
        env.update(extra)
    return env


def _popen_group_kwargs():
    # Own process group/session, so cancel reaches the engine's children (data loaders, pip's
    # build backends) and a Ctrl+C in Blender's terminal does not reach the engine.
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ChildProcess:
    """A command whose stdout lines are queued as they arrive and whose stderr tail is kept."""

    def __init__(self, argv, *, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self.cwd = str(cwd or EXTENSION_ROOT)
        self.env = env if env is not None else engine_env()
        self._popen = None
        self._lines = queue.Queue()
        self._stderr = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._threads = []
        self.cancelled = False
        self.started_at = None

    def start(self):
        """Start the command; raises OSError (e.g. FileNotFoundError) when it cannot run."""
        self._popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **_popen_group_kwargs(),
        )
        self.started_at = time.monotonic()
        for target, stream in ((self._read_stdout, self._popen.stdout),
                               (self._read_stderr, self._popen.stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True,
                                      name=f"stillmotion-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    # -- reader threads (no bpy, no shared state besides the queue/deque) ---------------------

    def _read_stdout(self, stream):
        for raw in stream:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    def _read_stderr(self, stream):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.strip():
                self._stderr.append(line)
        stream.close()

    # -- main thread ---------------------------------------------------------------------------

    @property
    def pid(self):
        return self._popen.pid if self._popen else None

    @property
    def returncode(self):
        """None while the process runs, else its exit status (negative: killed by a signal)."""
        return self._popen.poll() if self._popen else None

    @property
    def finished(self):
        """True once the process has exited and everything it printed has been queued."""
        if self.returncode is None:
            return False
        return not any(t.is_alive() for t in self._threads)

    def poll_lines(self):
        """Every stdout line that arrived since the last call (never blocks)."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def stderr_tail(self):
        return list(self._stderr)

    def wait(self, timeout=None):
        """Block until the process exits and its output is read; returns the exit status."""
        status = self._popen.wait(timeout)
        for thread in self._threads:
            thread.join(5.0)
        return status

    def cancel(self, grace=3.0):
        """Terminate the process group, wait up to `grace` seconds, then kill it."""
        self.cancelled = True
        if self._popen is None or self._popen.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._popen.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
            self._popen.wait(grace)
        for thread in self._threads:
            thread.join(1.0)

    def _signal(self, sig):
        if os.name == "nt":
            if sig == signal.SIGTERM:
                self._popen.terminate()
            else:
                self._popen.kill()
            return
        try:
            os.killpg(self._popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

    def exit_description(self):
        status = self.returncode
        if status is None:
            return "is still running"
        if status < 0:
            return f"was killed by {_signal_name(-status)}"
        return f"exited with status {status}"


class EngineProcess(ChildProcess):
    """`<python> -m engine run JOB.json` (or another engine command, e.g. `train-poke ...`),
    reporting its JSON-lines progress (docs/JOB.md)."""

    def __init__(self, python, job_path=None, *, args=None, env_extra=None):
        args = list(args) if args is not None else ["run", job_path]
        super().__init__([python, "-m", "engine", *args], env=engine_env(env_extra))
        self.python = str(python)
        self.error_event = None  # the engine's {"stage": "error"} line, when it sent one
        self.done_event = None  # its {"stage": "done"} line

    @classmethod
    def run_job(cls, python, job_path, *, env_extra=None):
        proc = cls(python, job_path, env_extra=env_extra)
        return proc.start()

    @classmethod
    def run_command(cls, python, args, *, env_extra=None):
        """Start `<python> -m engine ARGS...` (a command that prints JSON-lines progress)."""
        return cls(python, args=args, env_extra=env_extra).start()

    def poll(self):
        """New progress events (dicts) since the last call; lines that are not JSON objects are
        ignored, as the contract says (a library may print to stdout)."""
        events = []
        for line in self.poll_lines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or "stage" not in event:
                continue
            if event["stage"] in {"error", "cancelled"}:
                self.error_event = event
            elif event["stage"] == "done":
                self.done_event = event
            events.append(event)
        return events

    @property
    def succeeded(self):
        return self.finished and self.returncode == 0 and not self.cancelled

    def error_message(self):
        """One readable line saying why the engine failed (empty while it runs or succeeded)."""
        status = self.returncode
        if status is None or (status == 0 and not self.cancelled):
            return ""
        if self.cancelled:
            return "Bake cancelled"
        tail = self.stderr_tail()
        event_message = str((self.error_event or {}).get("message") or "")
        missing = _missing_module([event_message, *tail])
        if missing:
            return missing_module_message(self.python, missing)
        if (self.error_event or {}).get("stage") == "cancelled":
            # Stopped by a signal we did not send (system shutdown, out-of-memory killer).
            return "The engine was stopped from outside before it finished: bake again"
        if event_message:
            return f"Engine: {event_message}"
        if any("No module named engine" in line for line in tail):
            return (f"Engine code not found by {self.python}: reinstall the StillMotion "
                    f"extension (the folder {EXTENSION_ROOT / 'engine'} is missing)")
        if tail:
            last = tail[-1].strip()
            if last.startswith("error: "):
                last = last[len("error: "):]
            return f"Engine {self.exit_description()}: {last}"
        return f"Engine {self.exit_description()} without saying why"


def missing_python_message(path):
    return (f"Engine Python not found at {path or '(not set)'}: set it in Preferences > Add-ons > "
            "StillMotion or click Install Engine")


def no_torch_message(path):
    return missing_module_message(path, "torch")


_PACKAGE_NAMES = {"torch": "PyTorch", "cv2": "OpenCV", "numpy": "NumPy",
                  "safetensors": "safetensors"}


def missing_module_message(path, module):
    name = _PACKAGE_NAMES.get(module, module)
    return (f"The engine Python {path} has no {name}: click Install Engine in Preferences > "
            "Add-ons > StillMotion, or point Engine Python to an interpreter with torch "
            "(pip install -r requirements/engine.txt)")


def _missing_module(lines):
    for line in lines:
        match = _MISSING_MODULE.search(line)
        if match:
            return match.group(1)
    return None


def check_argv(path):
    return [str(path), "-m", "engine", "check"]


def precheck_engine_python(path):
    """(ok, message) for what can be told without running the interpreter."""
    path = str(path or "")
    if not path or not os.path.isfile(path):
        return False, missing_python_message(path)
    if not os.access(path, os.X_OK):
        return False, f"Engine Python {path} is not executable: pick the python binary itself"
    return True, ""


def check_engine_python(path, timeout=120.0):
    """Run `<path> -m engine check`: (ok, message) where message is one line for the UI."""
    ok, message = precheck_engine_python(path)
    if not ok:
        return ok, message
    try:
        done = subprocess.run(
            check_argv(path), cwd=str(EXTENSION_ROOT), env=engine_env(),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
            **_popen_group_kwargs(),
        )
    except subprocess.TimeoutExpired:
        return False, (f"Engine Python {path} did not answer within {timeout:.0f} s: "
                       "check that it starts from a terminal")
    except OSError as exc:
        return False, f"Cannot run engine Python {path}: {exc.strerror or exc}"
    return interpret_check(path, done.returncode, done.stdout.decode("utf-8", "replace"),
                           done.stderr.decode("utf-8", "replace"))


def interpret_check(path, returncode, stdout, stderr):
    """(ok, message) from what `python -m engine check` printed and its exit status."""
    info = None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                info = json.loads(line)
            except ValueError:
                continue
    if returncode == 0:
        return True, _describe_check(path, info)
    if isinstance(info, dict):
        # The engine's check reports each package as its version, or null when missing.
        for module in ("torch", "numpy", "cv2"):
            if module in info and not info[module]:
                return False, missing_module_message(path, module)
        if info.get("message"):
            return False, f"Engine check failed: {info['message']}"
    missing = _missing_module(stderr.splitlines() + stdout.splitlines())
    if missing:
        return False, missing_module_message(path, missing)
    lines = [line for line in stderr.splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"exit status {returncode}"
    if reason.startswith("error: "):
        reason = reason[len("error: "):]
    return False, f"Engine check failed for {path}: {reason}"


def _describe_check(path, info):
    if not isinstance(info, dict):
        return f"Engine ready: {path}"
    parts = []
    for key in ("python", "torch", "numpy", "cv2"):
        if info.get(key):
            parts.append(f"{key} {info[key]}")
    devices = info.get("devices")
    if devices:
        parts.append("devices " + ", ".join(str(d) for d in devices))
    return "Engine ready: " + ("; ".join(parts) if parts else path)


def blender_python():
    """The interpreter that runs Blender's own Python (to create the engine environment).

    Blender >= 2.92 sets sys.executable to its bundled python; older versions exposed
    bpy.app.binary_path_python. When sys.executable is the blender binary itself (some builds),
    look for the bundled python under sys.prefix.
    """
    try:
        import bpy  # noqa: F401  (only to read the legacy attribute when running in Blender)

        legacy = getattr(bpy.app, "binary_path_python", "")
    except ImportError:
        legacy = ""
    if legacy and os.path.isfile(legacy):
        return legacy
    exe = pathlib.Path(sys.executable)
    if exe.is_file() and not exe.name.lower().startswith("blender"):
        return str(exe)
    prefix = pathlib.Path(sys.prefix)
    names = ("python.exe",) if os.name == "nt" else (
        f"python{sys.version_info.major}.{sys.version_info.minor}", "python3", "python")
    for folder in (prefix / "bin", prefix):
        for name in names:
            if (folder / name).is_file():
                return str(folder / name)
    return str(exe)


def venv_python(env_dir):
    env_dir = pathlib.Path(env_dir)
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"
