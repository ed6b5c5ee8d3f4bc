"""Add Strokes and Sync Mask Labels: thin wrappers around scene.strokes."""

import bpy

from ..scene import plane as scene_plane
from ..scene import strokes as scene_strokes
from ..scene.errors import StillMotionError

_DRAW_MODES = {"GPENCIL": "PAINT_GPENCIL", "GREASEPENCIL": "PAINT_GREASE_PENCIL"}


class STILLMOTION_OT_add_strokes(bpy.types.Operator):
    """Add a grease-pencil object over the image plane with a Pokes and a Masks layer, and
    start drawing on it"""

    bl_idname = "stillmotion.add_strokes"
    bl_label = "Add Strokes"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        plane = scene_plane.plane_of(context.active_object)
        if plane is None or not scene_plane.has_image(plane):
            cls.poll_message_set("Select an image plane (a mesh showing a picture)")
            return False
        return True

    def execute(self, context):
        plane = scene_plane.plane_of(context.active_object)
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            gp_obj = scene_strokes.ensure_strokes_object(context, plane)
        except StillMotionError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for obj in context.selected_objects:
            obj.select_set(False)
        gp_obj.hide_set(False)
        gp_obj.select_set(True)
        context.view_layer.objects.active = gp_obj
        # In a 3D view, go straight to drawing; scripts and background runs stay in Object Mode.
        if context.area is not None and context.area.type == "VIEW_3D":
            try:
                bpy.ops.object.mode_set(mode=_DRAW_MODES[gp_obj.type])
            except RuntimeError:
                pass  # the object is there; the artist can still pick Draw Mode by hand
        self.report({"INFO"}, "Draw pokes on the Pokes layer and closed masks on the Masks layer")
        return {"FINISHED"}


class STILLMOTION_OT_sync_mask_labels(bpy.types.Operator):
    """Make one motion label per mask stroke, keeping the labels already set"""

    bl_idname = "stillmotion.sync_mask_labels"
    bl_label = "Sync Mask Labels"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        plane = scene_plane.plane_of(context.active_object)
        if plane is None or plane.stillmotion.strokes is None:
            cls.poll_message_set("Select an image plane that has StillMotion strokes")
            return False
        return True

    def execute(self, context):
        plane = scene_plane.plane_of(context.active_object)
        settings = plane.stillmotion
        count = len(scene_strokes.read_stroke_data(settings.strokes, scene_strokes.MASKS))
        labels = settings.mask_labels
        while len(labels) < count:
            labels.add()
        while len(labels) > count:
            labels.remove(len(labels) - 1)
        settings.mask_labels_index = min(settings.mask_labels_index, max(count - 1, 0))
        self.report({"INFO"}, f"{count} mask {'label' if count == 1 else 'labels'}")
        return {"FINISHED"}


classes = (STILLMOTION_OT_add_strokes, STILLMOTION_OT_sync_mask_labels)
