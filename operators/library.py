"""Show Motion Library: have the engine make the built-in motions' thumbnails for the panel."""

import time

import bpy

from ..bake import library
from ..bake import session as bake_session
from ..scene.errors import StillMotionError

TIMER_STEP = 0.5


def _tick():
    """Timer: advance the thumbnail run; stops itself when the run has ended."""
    error = library.update()
    context = bpy.context
    if error:
        context.window_manager.stillmotion.last_warning = error
    for window in context.window_manager.windows:
        for area in window.screen.areas if window.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
    return TIMER_STEP if library.is_running() else None


class STILLMOTION_OT_motion_library(bpy.types.Operator):
    """Make thumbnails of the built-in motions (water, clouds, grass, waterfall, ripples); the
    engine generates each once, in a few seconds, while Blender stays usable"""

    bl_idname = "stillmotion.motion_library"
    bl_label = "Show Motion Library"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if library.is_running():
            cls.poll_message_set("The thumbnails are being made")
            return False
        return True

    def execute(self, context):
        try:
            run = library.start(bake_session.engine_python(context))
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if run is None:
            self.report({"INFO"}, "The motion library's thumbnails are already there")
            return {"FINISHED"}
        if not bpy.app.background:
            bpy.app.timers.register(_tick, first_interval=TIMER_STEP)
            return {"FINISHED"}
        error = ""  # background mode: no timers run, so wait here
        while library.is_running():
            time.sleep(0.1)
            error = library.update()
        if error:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return {"FINISHED"}


def release():
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    library.release()


classes = (STILLMOTION_OT_motion_library,)
