"""Operators: thin wrappers that collect inputs, call scene/ and bake/, and report."""

from ..registration import register_modules, unregister_modules
from . import bake, engine_setup, library, strokes

_modules = (strokes, bake, engine_setup, library)


def register():
    register_modules(_modules)


def unregister():
    library.release()  # a thumbnail run and its timer, the icons
    unregister_modules(_modules)
