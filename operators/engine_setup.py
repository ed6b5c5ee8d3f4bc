"""Install Engine and Check Engine (buttons in the add-on's preferences).

Install creates a private virtual environment with Blender's own Python in the extension's user
folder (`engine-env`) and pip-installs requirements/engine.txt into it. It is the only thing in
StillMotion that uses the network, so it runs only when the artist clicks it and only when
Blender's "Allow Online Access" is on. Both operators run their commands as child processes
polled by a timer (like Bake) so Blender stays responsive; pip's lines are shown as they come.
"""

import os
import pathlib
import time

import bpy

from ..bake import process, session
from ..bake.process import ChildProcess

REQUIREMENTS = process.EXTENSION_ROOT / "requirements" / "engine.txt"
# Facial parts and the person mask (MediaPipe): its own pip call with --no-deps, because its
# metadata asks for a second OpenCV and numpy<2 that its models do not need.
FACE_REQUIREMENTS = process.EXTENSION_ROOT / "requirements" / "face.txt"
TIMER_STEP = 0.2

OFFLINE_MESSAGE = ("Installing the engine downloads PyTorch: enable Allow Online Access in "
                   "Preferences > System > Network, then click Install Engine again")


class SetupTask:
    """A few commands run one after another, with their last line and a rough progress.

    Module-level state (`current_task`) rather than properties: it is runtime-only, and the
    preferences panel only reads it.
    """

    def __init__(self, title, steps, on_done=None):
        self.title = title
        self.steps = steps  # [(label, argv, env, weight)]
        self.on_done = on_done  # called with (task) on success; returns the final message
        self.index = -1
        self.process = None
        self.state = "RUNNING"
        self.message = ""
        self.progress = 0.0
        self.stdout = []
        self.collected = 0
        self.requirements = _count_requirements()

    @classmethod
    def failed(cls, title, message):
        """A task that failed before running anything, kept so the panel shows why."""
        task = cls(title, [])
        task.state = "FAILED"
        task.message = message
        return task

    def start(self):
        self._next()
        return self

    def _next(self):
        self.index += 1
        if self.index >= len(self.steps):
            self.state = "DONE"
            self.progress = 1.0
            self.message = self.on_done(self) if self.on_done else f"{self.title}: done"
            return
        label, argv, env, _weight = self.steps[self.index]
        self.message = label
        self.stdout = []
        self.process = ChildProcess(argv, env=env)
        try:
            self.process.start()
        except OSError as exc:
            self._fail(f"{label}: cannot run {argv[0]} ({exc.strerror or exc})")

    def _fail(self, message):
        self.state = "FAILED"
        self.message = message

    def update(self):
        if self.state != "RUNNING":
            return self.state
        finished = self.process.finished
        for line in self.process.poll_lines():
            self.stdout.append(line)
            self._read_pip_line(line.strip())
        if finished:
            if self.process.cancelled:
                self.state = "CANCELLED"
                self.message = f"{self.title} cancelled"
            elif self.process.returncode != 0 and not self._step_may_fail():
                tail = self.process.stderr_tail() or self.stdout[-3:]
                reason = tail[-1].strip() if tail else self.process.exit_description()
                self._fail(f"{self.steps[self.index][0]} failed: {reason}")
            else:
                self._next()
        return self.state

    def _step_may_fail(self):
        # `engine check` reports a failure itself; interpret it in on_done.
        return self.steps[self.index][0].startswith("Checking")

    def _read_pip_line(self, line):
        weights = [step[3] for step in self.steps]
        before = sum(weights[: self.index]) / sum(weights)
        share = weights[self.index] / sum(weights)
        within = None
        if line.startswith("Collecting "):
            self.collected += 1
            # Dependencies add lines beyond the requirements themselves: approach 0.6 slowly.
            within = 0.6 * self.collected / (self.collected + max(self.requirements, 1))
        elif line.startswith("Installing collected packages"):
            within = 0.8
        elif line.startswith("Successfully installed"):
            within = 1.0
        if line:
            self.message = line if len(line) < 120 else line[:117] + "..."
        if within is not None:
            self.progress = max(self.progress, before + share * within)

    def cancel(self):
        if self.state == "RUNNING" and self.process is not None:
            self.process.cancel()
            self.state = "CANCELLED"
            self.message = f"{self.title} cancelled"

    def run_blocking(self, interval=0.1):
        while self.update() == "RUNNING":
            time.sleep(interval)
        return self.state


current_task = None


def _count_requirements():
    try:
        lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    return sum(1 for line in lines if line.strip() and not line.lstrip().startswith(("#", "-")))


def _pip_env():
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONHOME", "PYTHONPATH"}}
    env.update(PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONIOENCODING="utf-8")
    return env


def install_steps(env_dir, requirements=REQUIREMENTS, base_python=None,
                  face_requirements=FACE_REQUIREMENTS):
    """The commands that build the engine environment: [(label, argv, env, weight)]."""
    env_dir = pathlib.Path(env_dir)
    python = process.venv_python(env_dir)
    steps = []
    if not python.is_file():
        base = base_python or process.blender_python()
        steps.append(("Creating the engine environment",
                      [base, "-m", "venv", str(env_dir)], _pip_env(), 1))
    steps.append(("Installing PyTorch, NumPy and OpenCV (a large download)",
                  [str(python), "-m", "pip", "install", "--progress-bar", "off",
                   "-r", str(requirements)], _pip_env(), 20))
    steps.append(("Installing the face models (MediaPipe)",
                  [str(python), "-m", "pip", "install", "--progress-bar", "off", "--no-deps",
                   "-r", str(face_requirements)], _pip_env(), 4))
    steps.append(("Checking the engine", process.check_argv(python), process.engine_env(), 1))
    return steps


def _check_result(task, python):
    out = "\n".join(task.stdout)
    err = "\n".join(task.process.stderr_tail())
    ok, message = process.interpret_check(str(python), task.process.returncode, out, err)
    task.ok = ok
    if not ok:
        task.state = "FAILED"
    return message


class _TaskOperator:
    """Shared modal/background runner for the setup operators."""

    _timer = None

    @classmethod
    def poll(cls, context):
        if _task_running():
            cls.poll_message_set("An engine install or check is running")
            return False
        return True

    def _run(self, context, task):
        global current_task
        current_task = task.start()
        if bpy.app.background:
            task.run_blocking()
            return self._report_end(task)
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_STEP, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        task = current_task
        if task is None:
            return self._end(context, {"CANCELLED"})
        if event.type == "ESC" and event.value == "PRESS":
            task.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = task.update()
        _redraw_preferences(context)
        if state == "RUNNING":
            return {"PASS_THROUGH"}
        return self._end(context, self._report_end(task))

    def cancel(self, context):
        if current_task is not None:
            current_task.cancel()
        self._end(context, None)

    def _end(self, context, result):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        _redraw_preferences(context)
        return result

    def _report_end(self, task):
        if task.state == "DONE":
            self.report({"INFO"}, task.message)
            return {"FINISHED"}
        self.report({"WARNING" if task.state == "CANCELLED" else "ERROR"}, task.message)
        return {"CANCELLED"}


def _redraw_preferences(context):
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _task_running():
    return current_task is not None and current_task.state == "RUNNING"


class STILLMOTION_OT_install_engine(_TaskOperator, bpy.types.Operator):
    """Download PyTorch, NumPy and OpenCV into a private environment for the StillMotion engine
    (several GB; needs Allow Online Access)"""

    bl_idname = "stillmotion.install_engine"
    bl_label = "Install Engine"
    bl_options = {"REGISTER"}

    def execute(self, context):
        global current_task
        problem = None
        if not bpy.app.online_access:
            problem = OFFLINE_MESSAGE
        elif not REQUIREMENTS.is_file():
            problem = f"{REQUIREMENTS} is missing: reinstall the extension"
        if problem:
            current_task = SetupTask.failed("Install Engine", problem)
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        env_dir = session.managed_env_dir()
        python = process.venv_python(env_dir)

        def done(task):
            message = _check_result(task, python)
            prefs = session.preferences(context)
            if getattr(task, "ok", False) and prefs is not None and prefs.engine_python:
                message += f" (Engine Python is set to {prefs.engine_python}: clear it to use "\
                           "the installed engine)"
            return message

        return self._run(context, SetupTask("Install Engine", install_steps(env_dir), done))


class STILLMOTION_OT_check_engine(_TaskOperator, bpy.types.Operator):
    """Run the engine's self-check with the configured Python and say what it found"""

    bl_idname = "stillmotion.check_engine"
    bl_label = "Check Engine"
    bl_options = {"REGISTER"}

    def execute(self, context):
        python = session.engine_python(context)
        ok, message = process.precheck_engine_python(python)
        if not ok:
            global current_task
            current_task = SetupTask.failed("Check Engine", message)
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        steps = [("Checking the engine", process.check_argv(python), process.engine_env(), 1)]
        return self._run(context, SetupTask("Check Engine", steps,
                                            lambda task: _check_result(task, python)))


class STILLMOTION_OT_cancel_engine_setup(bpy.types.Operator):
    """Stop the running engine install or check"""

    bl_idname = "stillmotion.cancel_engine_setup"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return _task_running()

    def execute(self, context):
        current_task.cancel()
        return {"FINISHED"}


classes = (STILLMOTION_OT_install_engine, STILLMOTION_OT_check_engine,
           STILLMOTION_OT_cancel_engine_setup)
