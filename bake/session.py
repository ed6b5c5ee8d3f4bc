"""One bake from button press to texture: job folder -> engine process -> image sequence.

The same `BakeSession` serves the modal operator (which calls `update` on each timer tick) and
background mode / the bpy wheel / the demo (`run_sync`, a blocking loop around the same calls),
so what the tests exercise is what the Bake button runs.

Across the run the session holds datablock NAMES (and session ids), never references: the artist
keeps working while the engine runs, and an undo in the meantime frees and reloads datablocks.
Nothing on the material changes until the engine has finished every frame; a failed or cancelled
bake only reports, in `wm.stillmotion.last_error`, and leaves no folder behind (`_end_on_disk`).
"""

import dataclasses
import pathlib
import shutil
import time

import bpy

from ..scene.errors import StillMotionError
from . import paths
from .process import EngineProcess, missing_python_message

IDLE = "IDLE"
RUNNING = "RUNNING"
DONE = "DONE"
FAILED = "FAILED"
CANCELLED = "CANCELLED"

CANCELLED_MESSAGE = "Bake cancelled: the plane and earlier takes are unchanged"

_active = None  # the one BakeSession allowed to run at a time


class FramesKept(StillMotionError):
    """A finished take that could not be installed; the message says where its frames are."""


@dataclasses.dataclass
class BakeResult:
    output: str  # absolute path of the finished take folder
    frames: int
    take: str  # folder name: take_002 / preview_001
    number: int
    preview: bool
    image: str  # name of the image-sequence datablock now on the plane
    warnings: list
    seconds: float
    message: str


def active_session():
    return _active


def is_running():
    return _active is not None and _active.state == RUNNING


def claim(run):
    """Make run (a Sample or Train from Clip run: anything with `state` and `cancel()`) the one
    engine job in progress, so Bake, Sample and Train wait for each other and Cancel stops it.
    Raises StillMotionError when another is running."""
    global _active
    if is_running():
        raise StillMotionError("The engine is busy with another job: wait for it or press "
                               "Cancel")
    _active = run


def release(run):
    global _active
    if _active is run:
        _active = None


def cancel_active():
    """Cancel the running bake, if any (the Cancel button); returns whether one was running."""
    if is_running():
        _active.cancel()
        return True
    return False


# -- preferences --------------------------------------------------------------------------------


def preferences(context):
    addon = context.preferences.addons.get(paths.ROOT_PACKAGE)
    return addon.preferences if addon is not None else None


def managed_env_dir(create=True):
    """Where Install Engine puts the engine's virtual environment."""
    return paths.user_folder("engine-env", create=create)


def engine_python(context):
    """The interpreter set in preferences, or the one Install Engine creates."""
    from .process import venv_python

    prefs = preferences(context)
    configured = getattr(prefs, "engine_python", "") if prefs else ""
    if configured:
        return bpy.path.abspath(configured)
    return str(venv_python(managed_env_dir(create=False)))


def engine_device(context):
    prefs = preferences(context)
    return getattr(prefs, "device", "AUTO").lower() if prefs else "auto"


def _engine_env_extra(context):
    prefs = preferences(context)
    models = getattr(prefs, "models_dir", "") if prefs else ""
    return {"STILLMOTION_MODELS_DIR": bpy.path.abspath(models)} if models else None


# -- finding things again by name ---------------------------------------------------------------


def find_object(name, session_uid=None):
    """The object called name, or the one with that session id when it was renamed meanwhile."""
    obj = bpy.data.objects.get(name)
    if obj is not None or session_uid is None:
        return obj
    return next((o for o in bpy.data.objects if o.session_uid == session_uid), None)


def plane_for(context):
    """The plane a StillMotion button acts on: the active mesh, or, while the artist draws on
    the strokes object, the plane those strokes belong to."""
    from ..scene.plane import plane_of

    return plane_of(context.active_object)


def _redraw(context):
    wm = context.window_manager
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "PROPERTIES", "IMAGE_EDITOR", "NODE_EDITOR", "STATUSBAR"}:
                area.tag_redraw()


class _NodeTarget:
    """What scene.sequence needs of a target when it is looked up again by names."""

    def __init__(self, plane, material, node):
        self.plane, self.material, self.node, self.image = plane, material, node, node.image


class BakeSession:
    def __init__(self):
        self.state = IDLE
        self.process = None
        self.preview = False
        self.plane_name = ""
        self.plane_uid = None
        self.scene_name = ""
        self.material_name = ""
        self.node_name = ""
        self.job_dir = None
        self.output_dir = None
        self.reserved = False  # holds output_dir's paths.reserve_take: what is there is ours
        self.number = 0
        self.frames_planned = 0
        self.loop = False
        self.warnings = []
        self.started = 0.0
        self.cancel_reason = None
        self.stage = ""
        self.progress = 0.0

    # -- start ----------------------------------------------------------------------------------

    def start(self, context, plane, *, preview=False):
        """Write the job and start the engine. Raises StillMotionError (also shown as
        wm.stillmotion.last_error) when the bake cannot start; nothing is changed then."""
        global _active
        runtime = context.window_manager.stillmotion
        if is_running():
            raise StillMotionError("A bake is already running: wait for it or press Cancel")
        try:
            self._start(context, plane, preview)
        except StillMotionError as exc:
            self._discard_job_dir()
            self._end_on_disk(keep=False)
            runtime.running = False
            runtime.stage = ""
            runtime.progress = 0.0
            runtime.last_error = str(exc)
            raise
        _active = self
        runtime.running = True
        runtime.plane_name = self.plane_name
        runtime.stage = "start"
        runtime.progress = 0.0
        kind = "Preview" if preview else "Take"
        runtime.message = f"{kind} {self.number}: starting the engine"
        runtime.last_error = ""
        runtime.last_warning = "; ".join(self.warnings)
        _redraw(context)

    def _start(self, context, plane, preview):
        from ..scene import job as scene_job
        from ..scene import plane as scene_plane

        if plane is None:
            raise StillMotionError("Select an image plane first")
        target = scene_plane.find_target(plane)  # raises StillMotionError with the reason
        python = engine_python(context)
        if not pathlib.Path(python).is_file():
            raise StillMotionError(missing_python_message(python))

        self.preview = preview
        self.plane_name = plane.name
        self.plane_uid = plane.session_uid
        self.scene_name = context.scene.name
        self.material_name = target.material.name
        self.node_name = target.node.name
        self.loop = bool(plane.stillmotion.loop)

        # The job is written first: a scene problem (no strokes, a mask that does not close)
        # must not leave even an empty folder beside the artist's .blend.
        root = paths.bakes_root(plane.name)
        prefix = paths.PREVIEW_PREFIX if preview else paths.TAKE_PREFIX
        self.number, output = paths.next_take(root, prefix)
        self.output_dir = output
        try:
            self.job_dir = paths.new_job_dir(plane.name)
            plan = scene_job.write_job(plane, self.job_dir, output, preview=preview,
                                       device=engine_device(context))
        except OSError as exc:
            raise StillMotionError(
                f"Cannot write the job folder ({exc.strerror or exc}): free some disk space "
                "in your user folder and bake again") from None
        try:
            paths.ensure_folder(root)
            paths.reserve_take(output)
            self.reserved = True
        except FileExistsError:
            raise StillMotionError(
                f"Another bake is writing {paths.display_path(output)} of {plane.name} at the "
                "same moment: bake again") from None
        except OSError as exc:
            raise StillMotionError(
                f"Cannot create the bake folder {paths.display_path(root)} "
                f"({exc.strerror or exc}): save the .blend in a folder you can write to, "
                "or free some disk space") from None
        self.warnings = list(plan.warnings or [])
        self.frames_planned = int(plan.job.get("frames", plane.stillmotion.frames))
        try:
            self.process = EngineProcess.run_job(python, plan.job_path,
                                                 env_extra=_engine_env_extra(context))
        except OSError as exc:
            raise StillMotionError(
                f"Cannot start the engine Python {python} ({exc.strerror or exc}): pick a "
                "working interpreter in Preferences > Add-ons > StillMotion") from None
        self.state = RUNNING
        self.started = time.monotonic()
        print(f"StillMotion: baking {self.plane_name} into {output} (job {plan.job_path})")

    # -- running ------------------------------------------------------------------------------

    def update(self, context):
        """Drain the engine's progress into wm.stillmotion; returns the state (RUNNING until
        the process has exited and all its output is read)."""
        if self.state != RUNNING:
            return self.state
        finished = self.process.finished  # before draining, so no line arrives after
        runtime = context.window_manager.stillmotion
        for event in self.process.poll():
            self._apply_event(runtime, event)
        if finished:
            self.state = DONE if self.process.succeeded else (
                CANCELLED if self.process.cancelled else FAILED)
        _redraw(context)
        return self.state

    def _apply_event(self, runtime, event):
        stage = str(event.get("stage", ""))
        done, total = event.get("done"), event.get("total")
        kind = "Preview" if self.preview else "Take"
        if stage in {"error", "cancelled"}:  # the exit status tells; finish() reports it
            return
        if stage == "warning":  # something to know that does not stop the bake
            text = str(event.get("message", "")).strip()
            if text and text not in self.warnings:
                self.warnings.append(text)
                runtime.last_warning = "; ".join(self.warnings)
            return
        self.stage = stage
        runtime.stage = stage
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            self.progress = max(0.0, min(1.0, float(done) / float(total)))
            runtime.progress = self.progress
            runtime.message = f"{kind} {self.number}: {stage} {int(done)}/{int(total)}"
        else:
            runtime.message = f"{kind} {self.number}: {stage}"

    def cancel(self, reason=None):
        """Stop the engine (terminate, then kill). finish() then reports the cancel."""
        if self.state == RUNNING and self.process is not None:
            self.process.cancel()
            self.state = CANCELLED
            self.cancel_reason = reason

    @property
    def elapsed(self):
        return time.monotonic() - self.started if self.started else 0.0

    # -- finish -------------------------------------------------------------------------------

    def finish(self, context):
        """Install the take when the engine succeeded; otherwise report why it did not and
        change nothing. Returns a BakeResult or raises StillMotionError (also in last_error)."""
        global _active
        if self.state == RUNNING:
            raise StillMotionError("The bake is still running")
        runtime = context.window_manager.stillmotion
        if _active is self:
            _active = None
        runtime.running = False
        try:
            if self.state != DONE:
                raise StillMotionError(self._failure_message())
            result = self._install(context)
        except StillMotionError as exc:
            self._end_on_disk(keep=isinstance(exc, FramesKept))
            runtime.stage = "cancelled" if self.state == CANCELLED else "failed"
            runtime.progress = 0.0
            runtime.message = ""
            runtime.last_error = str(exc)
            if self.job_dir is not None and self.state != CANCELLED:
                print(f"StillMotion: bake failed: {exc} (job kept in {self.job_dir})")
            else:
                self._discard_job_dir()
            _redraw(context)
            raise
        self._end_on_disk(keep=True)
        runtime.stage = "done"
        runtime.progress = 1.0
        runtime.message = result.message
        runtime.last_error = ""
        self._discard_job_dir()
        _redraw(context)
        return result

    def _failure_message(self):
        if self.state == CANCELLED:
            if self.cancel_reason:
                return f"{self.cancel_reason}: cancelled; the plane and earlier takes are unchanged"
            return CANCELLED_MESSAGE
        message = self.process.error_message() if self.process else ""
        return message or "The engine stopped without finishing: bake again"

    def _install(self, context):
        from ..scene import sequence

        output = pathlib.Path(self.output_dir)
        if not output.is_dir():
            raise StillMotionError(
                f"The engine reported success but {output} does not exist: bake again")
        plane = find_object(self.plane_name, self.plane_uid)
        if plane is None:
            raise FramesKept(
                f"The plane {self.plane_name} was deleted during the bake; the frames are in "
                f"{paths.display_path(output)}")
        target = self._target(plane)
        first = sequence.first_frame_file(output)
        n_frames = sequence.count_frames(output, first.suffix)
        done = self.process.done_event or {}
        if isinstance(done.get("frames"), int) and done["frames"] != n_frames:
            self.warnings.append(f"the engine reported {done['frames']} frames but "
                                 f"{n_frames} are on disk")
        scene = bpy.data.scenes.get(self.scene_name) or context.scene
        image = sequence.install_sequence(
            plane, target, output, n_frames, loop=self.loop, scene=scene,
            filepath=paths.blend_relative(first))
        if not self.preview:
            plane.stillmotion.take = self.number
        kind = "Preview" if self.preview else "Take"
        seconds = self.elapsed
        message = (f"{kind} {self.number}: {n_frames} frames in {paths.display_path(output)} "
                   f"({seconds:.1f} s)")
        return BakeResult(output=str(output), frames=n_frames, take=output.name,
                          number=self.number, preview=self.preview, image=image.name,
                          warnings=list(self.warnings), seconds=seconds, message=message)

    def _target(self, plane):
        """The node the bake started from, if it is still on the plane; else look again."""
        material = bpy.data.materials.get(self.material_name)
        on_plane = material is not None and any(
            slot.material == material for slot in plane.material_slots)
        if on_plane and material.node_tree is not None:
            node = material.node_tree.nodes.get(self.node_name)
            if node is not None and node.type == "TEX_IMAGE":
                return _NodeTarget(plane, material, node)
        from ..scene import plane as scene_plane

        return scene_plane.find_target(plane)

    def _end_on_disk(self, keep):
        """The one place where the end of a bake is decided on disk: keep the take (installed,
        or a FramesKept error names its folder), or leave nothing of it. Not installed means
        gone even when the engine renamed the finished folder into place and then got the
        Cancel, another signal or a crash, or exited 0 just before the Cancel: so "the plane and
        earlier takes are unchanged" holds. The reservation makes the folder surely this bake's
        own, and the engine has exited by now (finish runs only then), so nothing reappears."""
        if not self.reserved:
            return
        if not keep:
            shutil.rmtree(self.output_dir, ignore_errors=True)
        paths.remove_partial_leftovers(self.output_dir)  # the engine's, and the reservation
        self.reserved = False

    def _discard_job_dir(self):
        if self.job_dir is not None:
            shutil.rmtree(self.job_dir, ignore_errors=True)
            self.job_dir = None


def run_sync(context, plane, *, preview=False, timeout=None, on_progress=None, interval=0.05):
    """Bake and wait: the same start/update/finish the modal operator runs, in one blocking
    loop, for background mode (`blender -b`, the bpy wheel), tests and the demo.

    on_progress(session) is called after every poll; returning False cancels the bake.
    timeout: seconds after which the bake is cancelled. Returns a BakeResult; raises
    StillMotionError (the same message the panel shows) when the bake fails or is cancelled.
    """
    session = BakeSession()
    session.start(context, plane, preview=preview)
    try:
        while session.update(context) == RUNNING:
            if on_progress is not None and on_progress(session) is False:
                session.cancel()
                break
            if timeout is not None and session.elapsed > timeout:
                session.cancel(f"The bake took longer than {timeout:.0f} s")
                break
            time.sleep(interval)
    except BaseException:
        session.cancel()  # Ctrl+C or an error in on_progress: never leave the engine behind
        try:
            session.finish(context)
        except StillMotionError:
            pass
        raise
    return session.finish(context)
