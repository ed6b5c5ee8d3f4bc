"""Add-on preferences: which Python runs the engine, on which device, with which models."""

import bpy
from bpy.props import EnumProperty, StringProperty

from ..bake import paths

# UILayout.progress exists from Blender 4.0; older layouts get a label.
HAS_PROGRESS = "progress" in bpy.types.UILayout.bl_rna.functions

DEVICES = [
    ("AUTO", "Auto", "CUDA when the engine finds a GPU, else the CPU"),
    ("CPU", "CPU", "Always the CPU"),
    ("CUDA", "CUDA", "An NVIDIA GPU (fails with a message when the engine has none)"),
]


class StillMotionPreferences(bpy.types.AddonPreferences):
    # Preferences are keyed by the add-on's module: bl_ext.<repo>.stillmotion, not this module.
    bl_idname = paths.ROOT_PACKAGE

    engine_python: StringProperty(
        name="Engine Python",
        description=("Python interpreter with PyTorch that runs the engine. Empty: the "
                     "environment Install Engine creates"),
        subtype="FILE_PATH",
        default="",
    )
    device: EnumProperty(name="Device", items=DEVICES, default="AUTO")
    models_dir: StringProperty(
        name="Models Folder",
        description="Where trained poke models (.safetensors) are kept and Train from Clip "
                    "writes new ones; empty: the extension's user folder",
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        self.draw_engine(context, layout)
        self.draw_setup(context, layout)

    def draw_engine(self, context, layout):
        col = layout.column()
        col.prop(self, "engine_python")
        if not self.engine_python:
            from ..bake import process, session

            managed = process.venv_python(session.managed_env_dir(create=False))
            state = "installed" if managed.is_file() else "not installed yet"
            col.label(text=f"Using the managed engine ({state}): {managed}", icon="INFO")
        col.prop(self, "device")
        col.prop(self, "models_dir")
        if not self.models_dir:
            from ..bake import models

            col.label(text=f"Models folder: {models.models_folder(context, create=False)}",
                      icon="INFO")

    def draw_setup(self, context, layout):
        from ..operators import engine_setup

        row = layout.row(align=True)
        row.operator("stillmotion.install_engine", icon="IMPORT")
        row.operator("stillmotion.check_engine", icon="CHECKMARK")
        if not bpy.app.online_access:
            layout.label(text="Install Engine needs Allow Online Access (Preferences > System)",
                         icon="INTERNET_OFFLINE")
        task = engine_setup.current_task
        if task is None:
            return
        box = layout.box()
        if task.state == "RUNNING":
            row = box.row()
            _progress(row, task.progress, task.title)
            row.operator("stillmotion.cancel_engine_setup", text="", icon="X")
        icon = {"DONE": "CHECKMARK", "FAILED": "ERROR", "CANCELLED": "CANCEL"}.get(task.state,
                                                                                 "INFO")
        box.label(text=task.message, icon=icon)


def _progress(layout, factor, text):
    if HAS_PROGRESS:
        layout.progress(factor=factor, type="BAR", text=text)
    else:
        layout.label(text=f"{text} {factor * 100:.0f}%")


classes = (StillMotionPreferences,)
