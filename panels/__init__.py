"""UI: the N-panel (3D Viewport > Sidebar > StillMotion) and the add-on preferences."""

import bpy

from . import main, preferences

_modules = (preferences, main)


def register():
    for module in _modules:
        for cls in module.classes:
            bpy.utils.register_class(cls)


def unregister():
    for module in reversed(_modules):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
