"""Bake, Cancel and Revert to Still.

Bake is modal: it starts a BakeSession, then a window timer polls the engine every 0.1 s while
every other event passes through, so the artist keeps working. In background mode there is no
event loop (timers and modal handlers never run), so the same session runs synchronously.
"""

import bpy
from bpy.props import BoolProperty

from ..bake import session as bake_session
from ..scene.errors import StillMotionError

TIMER_STEP = 0.1
# Progress goes to the panel's bar and the status bar. Not wm.progress_begin/update: that turns
# the mouse cursor into a counter, meant for operators that block, while here the artist keeps
# working during the bake.


def _plane_poll(cls, context):
    from ..scene.plane import has_image

    if not has_image(bake_session.plane_for(context)):
        cls.poll_message_set("Select an image plane: a mesh whose material shows an image")
        return False
    return True


class STILLMOTION_OT_bake(bpy.types.Operator):
    """Generate frames from the strokes and show them on the plane as an image sequence"""

    bl_idname = "stillmotion.bake"
    bl_label = "Bake"
    # UNDO: the finished bake (texture switch) is one undo step. The property is hidden so the
    # redo panel never offers to re-run a bake.
    bl_options = {"REGISTER", "UNDO"}

    preview: BoolProperty(
        name="Preview",
        description="Low resolution (Preview Size), for a quick look",
        default=False,
        options={"HIDDEN", "SKIP_SAVE"},
    )

    _timer = None
    _session = None

    @classmethod
    def description(cls, context, properties):
        if properties.preview:
            return "Bake a small, fast version to check the motion before the full bake"
        return "Bake the full-resolution frames as a new take and show them on the plane"

    @classmethod
    def poll(cls, context):
        if bake_session.is_running():
            cls.poll_message_set("A bake is running: wait for it or press Cancel")
            return False
        return _plane_poll(cls, context)

    def execute(self, context):
        plane = bake_session.plane_for(context)
        if bpy.app.background:
            return self._run_blocking(context, plane)
        session = bake_session.BakeSession()
        try:
            session.start(context, plane, preview=self.preview)
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in session.warnings:
            self.report({"WARNING"}, warning)
        self._session = session
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_STEP, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, wm.stillmotion.message)
        return {"RUNNING_MODAL"}

    def _run_blocking(self, context, plane):
        try:
            result = bake_session.run_sync(context, plane, preview=self.preview)
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, result.message)
        return {"FINISHED"}

    def modal(self, context, event):
        session = self._session
        if event.type == "ESC" and event.value == "PRESS":
            session.cancel()
        elif event.type != "TIMER" and session.state == bake_session.RUNNING:
            # Everything else is the artist's: keep working while the engine runs. (Any
            # window timer may tick here; polling on each is cheap.)
            return {"PASS_THROUGH"}
        try:
            return self._poll(context, session)
        except Exception as exc:  # a bug must not leave the engine running or the UI locked
            self.cancel(context)
            self.report({"ERROR"}, f"StillMotion bake stopped by an internal error: {exc}")
            raise

    def _poll(self, context, session):
        state = session.update(context)
        if state == bake_session.RUNNING:
            message = context.window_manager.stillmotion.message
            self._status(context, f"StillMotion {message} ({session.progress * 100:.0f}%)"
                                  "  Esc: cancel")
            return {"PASS_THROUGH"}
        self._end(context)
        try:
            result = session.finish(context)
        except StillMotionError as exc:
            level = "WARNING" if state == bake_session.CANCELLED else "ERROR"
            self.report({level}, str(exc))
            return {"CANCELLED"}
        finally:
            self._session = None
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, result.message)
        return {"FINISHED"}

    def cancel(self, context):
        # Called when Blender drops the handler (file loaded, window closed): stop the engine.
        session, self._session = self._session, None
        if session is not None and session.state != bake_session.DONE:
            session.cancel()
            try:
                session.finish(context)
            except StillMotionError:
                pass
        self._end(context)

    def _end(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        self._status(context, None)

    @staticmethod
    def _status(context, text):
        workspace = context.workspace
        if workspace is not None:
            workspace.status_text_set(text)


class STILLMOTION_OT_cancel(bpy.types.Operator):
    """Stop the running bake (or Sample, or Train from Clip); the plane and earlier takes stay
    as they were"""

    bl_idname = "stillmotion.cancel"
    bl_label = "Cancel Bake"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not bake_session.is_running():
            cls.poll_message_set("Nothing is running")
            return False
        return True

    def execute(self, context):
        bake_session.cancel_active()
        self.report({"INFO"}, "Cancelling")
        return {"FINISHED"}


class STILLMOTION_OT_revert_to_still(bpy.types.Operator):
    """Show the original still on the plane again (baked takes stay on disk)"""

    bl_idname = "stillmotion.revert_to_still"
    bl_label = "Revert to Still"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        plane = bake_session.plane_for(context)
        if plane is None or plane.stillmotion.original_image is None:
            cls.poll_message_set("The selected plane has not been baked")
            return False
        if bake_session.is_running():
            cls.poll_message_set("A bake is running: wait for it or press Cancel")
            return False
        return True

    def execute(self, context):
        from ..scene import sequence

        plane = bake_session.plane_for(context)
        try:
            changed = sequence.revert_to_still(plane)
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not changed:
            self.report({"INFO"}, f"{plane.name} already shows its still")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{plane.name} shows {plane.stillmotion.original_image.name} again")
        return {"FINISHED"}


classes = (STILLMOTION_OT_bake, STILLMOTION_OT_cancel, STILLMOTION_OT_revert_to_still)
