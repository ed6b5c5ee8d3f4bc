"""Operators: thin wrappers that collect inputs, call scene/ and bake/, and report."""

from ..bake import poke as poke_runs
from ..registration import register_modules, unregister_modules
from . import bake, engine_setup, library, poke, strokes

_modules = (strokes, bake, engine_setup, library, poke)


def register():
    register_modules(_modules)


def unregister():
    library.release()  # a thumbnail run and its timer, the icons
    poke_runs.release_icons()  # the sample strips' thumbnails
    unregister_modules(_modules)
