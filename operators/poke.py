"""Sampled (iPOKE): Sample, pick a thumbnail, refresh the model list, Train from Clip.

Sample and Train from Clip run the engine like Bake does (operators/bake.py): a window timer
polls the run while every other event passes through, Esc or the panel's Cancel stops it (the
engine's whole process group), progress shows in the status bar and the panel. In background
mode there is no event loop, so the same run is waited for in a loop.
"""

import bpy
from bpy.props import IntProperty

from ..bake import models
from ..bake import poke as poke_runs
from ..bake import session as bake_session
from ..scene.errors import StillMotionError

TIMER_STEP = 0.1


def _busy(cls):
    if bake_session.is_running():
        cls.poll_message_set("The engine is busy: wait for it or press Cancel")
        return True
    return False


class _EngineRunModal:
    """Start a run, then poll it on a timer until it ends (mixed into the two operators)."""

    _timer = None
    _run = None

    def _launch(self, context, run, *start_args):
        if bpy.app.background:
            try:
                message = poke_runs.run_sync(context, run, *start_args)
            except StillMotionError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            self._report_warnings(run)
            self.report({"INFO"}, message)
            return {"FINISHED"}
        try:
            run.start(context, *start_args)
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._report_warnings(run)
        self._run = run
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_STEP, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, wm.stillmotion.message)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
        elif event.type != "TIMER" and run.state == bake_session.RUNNING:
            return {"PASS_THROUGH"}  # the artist keeps working while the engine runs
        try:
            state = run.update(context)
        except Exception:  # a bug must not leave the engine running or the UI locked
            self.cancel(context)
            raise
        if state == bake_session.RUNNING:
            message = context.window_manager.stillmotion.message
            self._status(context, f"StillMotion {message}  Esc: cancel")
            return {"PASS_THROUGH"}
        self._end(context)
        self._run = None
        try:
            message = run.finish(context)
        except StillMotionError as exc:
            self.report({"WARNING" if state == bake_session.CANCELLED else "ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def cancel(self, context):
        run, self._run = self._run, None
        if run is not None and run.state != bake_session.DONE:
            run.cancel()
            try:
                run.finish(context)
            except StillMotionError:
                pass
        self._end(context)

    def _end(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        self._status(context, None)

    def _report_warnings(self, run):
        for warning in run.warnings:
            self.report({"WARNING"}, warning)

    @staticmethod
    def _status(context, text):
        if context.workspace is not None:
            context.workspace.status_text_set(text)


class STILLMOTION_OT_poke_sample(_EngineRunModal, bpy.types.Operator):
    """Draw the chosen number of clips for these pokes and show their thumbnails to pick from
    (Bake then renders the picked one at full resolution)"""

    bl_idname = "stillmotion.poke_sample"
    bl_label = "Sample"
    bl_options = {"REGISTER", "UNDO"}  # the new strip is one undo step

    @classmethod
    def poll(cls, context):
        if _busy(cls):
            return False
        plane = bake_session.plane_for(context)
        if plane is None or plane.stillmotion.engine != "POKE":
            cls.poll_message_set("Select an image plane whose Engine is Sampled (iPOKE)")
            return False
        return True

    def execute(self, context):
        return self._launch(context, poke_runs.SampleRun(), bake_session.plane_for(context))


class STILLMOTION_OT_poke_pick(bpy.types.Operator):
    """Bake this sample"""

    bl_idname = "stillmotion.poke_pick"
    bl_label = "Choose Sample"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    index: IntProperty(name="Sample", min=0, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return bake_session.plane_for(context) is not None

    def execute(self, context):
        poke = bake_session.plane_for(context).stillmotion.poke
        if self.index >= max(poke.thumbnails_count, poke.samples):
            self.report({"ERROR"}, f"There is no sample {self.index + 1}: sample again")
            return {"CANCELLED"}
        poke.sample = self.index
        return {"FINISHED"}


class STILLMOTION_OT_poke_refresh_models(bpy.types.Operator):
    """List the poke models in the models folder again (after copying a model there)"""

    bl_idname = "stillmotion.poke_refresh_models"
    bl_label = "Refresh Models"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context):
        count = models.refresh(context)
        folder = models.models_folder(context, create=False)
        self.report({"INFO"}, f"{count} poke {'model' if count == 1 else 'models'} in {folder}")
        return {"FINISHED"}


class STILLMOTION_OT_poke_train(_EngineRunModal, bpy.types.Operator):
    """Train a poke model on a video of one person (a Movie Clip or a video file) and add it to
    the models folder; takes the time budget set in Minutes, continues where it stopped when
    run again with the same model name"""

    bl_idname = "stillmotion.poke_train"
    bl_label = "Train from Clip"
    bl_options = {"REGISTER", "UNDO"}  # the plane switching to the new model is one step

    @classmethod
    def poll(cls, context):
        if _busy(cls):
            return False
        train = getattr(context.scene, "stillmotion_train", None)
        if train is None or (train.clip is None and not train.video_path.strip()):
            cls.poll_message_set("Pick a Movie Clip or a Video File to train on")
            return False
        return True

    def execute(self, context):
        return self._launch(context, poke_runs.TrainRun())


classes = (STILLMOTION_OT_poke_sample, STILLMOTION_OT_poke_pick,
           STILLMOTION_OT_poke_refresh_models, STILLMOTION_OT_poke_train)
