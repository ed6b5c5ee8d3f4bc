"""Operators: thin wrappers that collect inputs, call scene/ and bake/, and report."""

from ..registration import register_modules, unregister_modules
from . import bake, engine_setup, strokes

_modules = (strokes, bake, engine_setup)


def register():
    register_modules(_modules)


def unregister():
    unregister_modules(_modules)
