"""The package as Blender sees it: the zip Blender's tool builds, and register/unregister."""

import pathlib
import subprocess
import sys
import zipfile

import addon_utils
import bpy

from conftest import ADDON, REPO


def test_extension_zip_builds_validates_and_leaves_out_dev_files(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_extension.py"), "--out", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )
    (zip_path,) = tmp_path.glob("stillmotion-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    for needed in ("blender_manifest.toml", "__init__.py", "engine/__main__.py",
                   "requirements/engine.txt", "operators/bake.py", "panels/main.py"):
        assert needed in names, f"{needed} missing from the extension zip"
    # Every shipped model and its card (the poke model picker lists what models/ holds).
    shipped = [*(REPO / "models").glob("*.safetensors"), *(REPO / "models").glob("*.md")]
    assert shipped, "no shipped models in the checkout"
    for path in shipped:
        assert f"models/{path.name}" in names, f"models/{path.name} missing from the extension zip"
    for name in names:
        top = name.split("/")[0]
        assert top not in {"tests", "tools", "media", "out", "docs", ".ci", ".git"}, name
        assert not top.startswith(".venv"), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
        assert not name.startswith("requirements/bpy-") and name != "requirements/test.txt", name


def _stillmotion_state():
    """Everything StillMotion could leave behind in a running Blender."""
    return {
        "object_prop": hasattr(bpy.types.Object, "stillmotion"),
        "wm_prop": hasattr(bpy.types.WindowManager, "stillmotion"),
        "operators": sorted(dir(bpy.ops.stillmotion)),
        "types": sorted(n for n in dir(bpy.types) if "STILLMOTION" in n.upper()),
        "handlers": sum(
            1 for name in dir(bpy.app.handlers) if not name.startswith("_")
            for fn in (getattr(bpy.app.handlers, name) if isinstance(getattr(bpy.app.handlers, name), list) else [])
            if "stillmotion" in getattr(fn, "__module__", "")
        ),
        "enabled": ADDON in bpy.context.preferences.addons,
    }


def test_register_unregister_leaves_nothing_behind():
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    before = _stillmotion_state()
    assert not before["object_prop"] and not before["operators"] and not before["types"]

    assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is not None
    during = _stillmotion_state()
    assert during["object_prop"] and during["wm_prop"] and during["enabled"]
    assert {"bake", "cancel", "revert_to_still", "add_strokes"} <= set(during["operators"])
    assert any("PT_" in n for n in during["types"]), "no StillMotion panel registered"

    addon_utils.disable(ADDON, default_set=True, handle_error=None)
    assert _stillmotion_state() == before

    # A second round trip must work as well (no stale class registrations).
    assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is not None
    addon_utils.disable(ADDON, default_set=True, handle_error=None)
    assert _stillmotion_state() == before


def test_addon_imports_no_torch():
    assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is not None
    try:
        assert "torch" not in sys.modules, "the add-on imported torch inside Blender"
        assert "cv2" not in sys.modules
    finally:
        addon_utils.disable(ADDON, default_set=True, handle_error=None)
