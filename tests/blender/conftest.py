"""Fixtures for add-on tests against the real bpy wheel (4.2.23, 4.5.15, 5.0.1).

The add-on is installed the way Blender installs an extension: the repository is linked into a
throw-away user extensions folder and enabled as ``bl_ext.user_default.stillmotion``, so
``__package__``, ``extension_path_user`` and preferences behave as in a real Blender.
"""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_USER_RESOURCES = tempfile.mkdtemp(prefix="stillmotion-user-")
# Must be set before bpy is imported: Blender reads it once at start-up.
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

import bpy  # noqa: E402
import addon_utils  # noqa: E402

ADDON = "bl_ext.user_default.stillmotion"


def _link_extension():
    repo_dir = pathlib.Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default"
    repo_dir.mkdir(parents=True, exist_ok=True)
    link = repo_dir / "stillmotion"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)


_link_extension()


def engine_python():
    """The interpreter that runs the engine in tests: the project's .venv (it has torch)."""
    path = os.environ.get("STILLMOTION_ENGINE_PYTHON") or str(REPO / ".venv" / "bin" / "python")
    if not pathlib.Path(path).exists():
        raise RuntimeError(f"engine Python {path} not found: run `make test` (it creates .venv)")
    return path


@pytest.fixture
def addon():
    """A fresh empty scene with StillMotion enabled; disabled again afterwards."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    module = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    assert module is not None, "StillMotion failed to register"
    prefs = bpy.context.preferences.addons[ADDON].preferences
    if prefs is not None and hasattr(prefs, "engine_python"):
        prefs.engine_python = engine_python()
    yield module
    addon_utils.disable(ADDON, default_set=True, handle_error=None)


def save_test_image(path, width, height, channels=4, pattern="checker"):
    """Write a test still with Blender itself (no OpenCV on the add-on side): a colour checker
    whose every 16-px cell differs, so any motion shows in pixel differences."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., 0] = ((x // 16 + y // 16) % 2) * 0.8 + 0.1
    rgba[..., 1] = (x / max(width - 1, 1))
    rgba[..., 2] = (y / max(height - 1, 1))
    img = bpy.data.images.new("test_still", width, height, alpha=channels == 4)
    img.pixels.foreach_set(np.flipud(rgba).ravel())
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)
    return pathlib.Path(path)


def import_image_plane(path):
    """Import a still the way artists do (Import Images as Planes); returns the plane object."""
    path = pathlib.Path(path)
    bpy.ops.image.import_as_mesh_planes(
        files=[{"name": path.name}], directory=str(path.parent) + os.sep
    )
    return bpy.context.active_object


def pytest_sessionfinish(session, exitstatus):
    session.config._stillmotion_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The bpy 4.2 module crashes (SIGSEGV, exit 139) while Python shuts down once any
    PointerProperty with a poll callback was registered (properties.py's `strokes`), even after
    unregistering it: `make test` would fail after every test passed. There, skip the shutdown
    and exit with pytest's own status; 4.3 and later shut down cleanly."""
    # The throw-away user folder holds a link to the repository: rmtree unlinks links, it
    # never follows them.
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)
    if bpy.app.version < (4, 3, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(getattr(config, "_stillmotion_exitstatus", 0))
