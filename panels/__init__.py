"""UI: the N-panel (3D Viewport > Sidebar > StillMotion) and the add-on preferences."""

from ..registration import register_modules, unregister_modules
from . import main, preferences

_modules = (preferences, main)


def register():
    register_modules(_modules)


def unregister():
    unregister_modules(_modules)
