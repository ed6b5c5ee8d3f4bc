"""The motion library's thumbnails for the panel.

The engine makes them (`python -m engine exemplar NAME --out DIR` writes DIR/thumbnail.png, the
middle frame of the generated clip) once, on request, into the extension's user folder; the
panel shows them as preview icons. One `ThumbnailRun` at a time makes the missing ones, one
engine process after another, polled like a bake (a timer in the UI, a loop in background
mode), so Blender never waits on it.
"""

import pathlib
import shutil

import bpy

from ..scene.errors import StillMotionError
from . import paths
from .process import ChildProcess, engine_env, missing_python_message

NAMES = ("water", "clouds", "grass", "waterfall", "ripples")  # engine/dyntex/exemplars.py EXEMPLARS
CLIP_FRAMES, CLIP_SIZE = 12, 96  # the clip the thumbnail is cut from; small, made in seconds

_run = None  # the ThumbnailRun in progress, if any
_icons = None  # bpy.utils.previews collection, made on first use


def library_folder(create=True):
    return paths.user_folder("motion-library", create=create)


def thumbnail_path(name):
    return library_folder(create=False) / name / "thumbnail.png"


def missing_names():
    return [name for name in NAMES if not thumbnail_path(name).is_file()]


class ThumbnailRun:
    """Makes the thumbnails of `names`, one engine process after another."""

    def __init__(self, python, names):
        self.python = str(python)
        self.pending = list(names)
        self.process = None
        self.current = None
        self.errors = []

    @property
    def running(self):
        return self.process is not None or bool(self.pending)

    def update(self):
        """Start the next process when the current one is done; returns whether work is
        left."""
        if self.process is not None:
            if not self.process.finished:
                return True
            if self.process.returncode != 0:
                tail = " ".join(self.process.stderr_tail()[-2:]).strip()
                self.errors.append(f"{self.current}: {tail or self.process.exit_description()}")
            elif not thumbnail_path(self.current).is_file():
                self.errors.append(f"{self.current}: the engine wrote no thumbnail")
            self.process = None
        if not self.pending:
            return False
        self.current = self.pending.pop(0)
        out = library_folder() / self.current
        shutil.rmtree(out, ignore_errors=True)  # a folder without its thumbnail: made again
        self.process = ChildProcess(
            [self.python, "-m", "engine", "exemplar", self.current, "--frames", CLIP_FRAMES,
             "--size", CLIP_SIZE, "--out", out], env=engine_env()).start()
        return True

    def cancel(self):
        self.pending.clear()
        if self.process is not None:
            self.process.cancel()
            self.process = None


def start(python):
    """Start making the missing thumbnails; returns the run (None when none is missing).
    Raises StillMotionError when the engine's Python is not there."""
    global _run
    if is_running():
        return _run
    names = missing_names()
    if not names:
        return None
    if not pathlib.Path(python).is_file():
        raise StillMotionError(missing_python_message(python))
    _run = ThumbnailRun(python, names)
    try:
        _run.update()
    except OSError as exc:
        _run = None
        raise StillMotionError(
            f"Cannot start the engine Python {python} ({exc.strerror or exc}): pick a working "
            "interpreter in Preferences > Add-ons > StillMotion") from None
    return _run


def is_running():
    return _run is not None and _run.running


def update():
    """Advance the run; returns the error text once it ended with failures, else ""."""
    global _run
    if _run is None:
        return ""
    if _run.update():
        return ""
    errors, _run = _run.errors, None
    if errors:
        return ("Some motion thumbnails could not be made (" + "; ".join(errors) + "): press "
                "Check Engine in the add-on's preferences")
    return ""


def icons():
    """name -> icon id of each thumbnail on disk (loaded into the previews collection once)."""
    global _icons
    if _icons is None:
        import bpy.utils.previews

        _icons = bpy.utils.previews.new()
    found = {}
    for name in NAMES:
        path = thumbnail_path(name)
        if name not in _icons:
            if not path.is_file():
                continue
            _icons.load(name, str(path), "IMAGE")
        found[name] = _icons[name].icon_id
    return found


def release():
    """On unregister: stop a run and free the icons."""
    global _run, _icons
    if _run is not None:
        _run.cancel()
        _run = None
    if _icons is not None:
        bpy.utils.previews.remove(_icons)
        _icons = None
