"""Operators: thin wrappers that collect inputs, call scene/ and bake/, and report."""

import bpy

from . import bake, engine_setup, strokes

_modules = (strokes, bake, engine_setup)


def register():
    for module in _modules:
        for cls in module.classes:
            bpy.utils.register_class(cls)


def unregister():
    for module in reversed(_modules):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
