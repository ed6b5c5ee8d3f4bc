"""StillMotion: bring a still image to life with grease-pencil pokes and masks.

Registration only. The add-on side never imports torch: the engine runs in its own process
(see docs/JOB.md), so Blender loads this extension on any machine.
"""

from . import operators, panels, properties

_modules = (properties, operators, panels)


def register():
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
