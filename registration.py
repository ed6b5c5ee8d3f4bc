"""Registering the classes of several modules, in order, and removing them in reverse."""

import bpy


def register_modules(modules):
    for module in modules:
        for cls in module.classes:
            bpy.utils.register_class(cls)


def unregister_modules(modules):
    for module in reversed(modules):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
