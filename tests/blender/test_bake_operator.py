"""The interactive side, which the bpy wheel cannot run on its own (no event loop: modal
handlers and timers never fire). Its methods are plain functions, so the tests call them with
stand-ins: events for the modal handler, a recording layout for the panels' draw code.

The engine here is a stand-in as well (a few lines that copy the still as frames, or hang):
these tests are about the Blender side; test_bake_flow.py drives the real engine.
"""

import pathlib
import sys
import time
import types

import bpy
import pytest

from conftest import ADDON
from test_bake_flow import image_node, make_scene

COPY_ENGINE = """
import json, pathlib, shutil, sys, time
job_path = pathlib.Path(sys.argv[-1])
job = json.loads(job_path.read_text())
still = pathlib.Path(job["image"])
still = still if still.is_absolute() else job_path.parent / still
out = pathlib.Path(job["output"])
partial = out.with_name(out.name + ".partial-1")
partial.mkdir()
for i in range(1, job["frames"] + 1):
    time.sleep(0.05)
    shutil.copy(still, partial / f"frame_{i:04d}.png")
    print(json.dumps({"stage": "render", "done": i, "total": job["frames"]}), flush=True)
partial.rename(out)
print(json.dumps({"stage": "done", "done": job["frames"], "total": job["frames"],
                  "output": str(out), "frames": job["frames"]}), flush=True)
"""

HANGING_ENGINE = """
import json, time
print(json.dumps({"stage": "render", "done": 0, "total": 10}), flush=True)
time.sleep(60)
"""


@pytest.fixture
def modules(addon):
    from bl_ext.user_default.stillmotion.bake import session
    from bl_ext.user_default.stillmotion.operators import bake as bake_ops
    from bl_ext.user_default.stillmotion.panels import main, preferences

    return types.SimpleNamespace(session=session, ops=bake_ops, main=main, prefs=preferences)


def use_engine(tmp_path, body):
    path = tmp_path / "engine-python"
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    bpy.context.preferences.addons[ADDON].preferences.engine_python = str(path)


def fake_operator(cls):
    """The operator's own methods on a plain object (a registered Operator cannot be created
    outside Blender's operator machinery)."""
    reports = []
    members = {name: value for name, value in vars(cls).items()
               if callable(value) or isinstance(value, staticmethod)}
    op = type("FakeOperator", (), members)()
    op._timer = None
    op.report = lambda level, message: reports.append((next(iter(level)), message))
    op.reports = reports
    return op


def event(kind, value="NOTHING"):
    return types.SimpleNamespace(type=kind, value=value)


def start_modal(modules, plane):
    op = fake_operator(modules.ops.STILLMOTION_OT_bake)
    op._session = modules.session.BakeSession()
    op._session.start(bpy.context, plane)
    return op


def test_modal_polls_on_timer_passes_other_events_and_installs(modules, tmp_path):
    plane = make_scene(tmp_path, frames=6)
    use_engine(tmp_path, COPY_ENGINE)
    op = start_modal(modules, plane)
    runtime = bpy.context.window_manager.stillmotion
    assert runtime.running and modules.session.is_running()

    assert op.modal(bpy.context, event("MOUSEMOVE")) == {"PASS_THROUGH"}
    assert op.modal(bpy.context, event("A", "PRESS")) == {"PASS_THROUGH"}
    seen_progress = set()
    end = time.monotonic() + 30
    while (result := op.modal(bpy.context, event("TIMER"))) == {"PASS_THROUGH"}:
        seen_progress.add(round(runtime.progress, 3))
        assert time.monotonic() < end
        time.sleep(0.02)
    assert result == {"FINISHED"}
    assert len(seen_progress) > 2, "progress did not move while the engine ran"
    assert op.reports[-1][0] == "INFO" and op.reports[-1][1].startswith("Take 1: 6 frames")
    assert not runtime.running and runtime.progress == 1.0
    node = image_node(plane)
    assert node.image.source == "SEQUENCE" and node.image_user.frame_duration == 6


def test_modal_escape_cancels(modules, tmp_path):
    plane = make_scene(tmp_path)
    still = image_node(plane).image
    use_engine(tmp_path, HANGING_ENGINE)
    op = start_modal(modules, plane)
    process = op._session.process
    assert op.modal(bpy.context, event("TIMER")) == {"PASS_THROUGH"}
    assert op.modal(bpy.context, event("ESC", "RELEASE")) == {"PASS_THROUGH"}
    started = time.monotonic()
    assert op.modal(bpy.context, event("ESC", "PRESS")) == {"CANCELLED"}
    assert time.monotonic() - started < 5
    assert op.reports[-1] == ("WARNING", modules.session.CANCELLED_MESSAGE)
    assert process.returncode is not None and op._session is None
    runtime = bpy.context.window_manager.stillmotion
    assert not runtime.running and runtime.last_error == modules.session.CANCELLED_MESSAGE
    assert image_node(plane).image == still
    assert list((tmp_path / "stillmotion" / plane.name).iterdir()) == []


def test_handler_dropped_by_blender_stops_the_engine(modules, tmp_path):
    plane = make_scene(tmp_path)
    use_engine(tmp_path, HANGING_ENGINE)
    op = start_modal(modules, plane)
    process = op._session.process
    op.cancel(bpy.context)  # what Blender calls when a file is loaded mid-bake
    assert process.returncode is not None
    assert not modules.session.is_running()
    assert not bpy.context.window_manager.stillmotion.running


# -- panels ---------------------------------------------------------------------------------


class RecordingLayout:
    """Stands in for UILayout: records labels and checks every property and operator drawn
    exists, so a typo in draw code fails here rather than in an artist's sidebar."""

    def __init__(self, log):
        self.__dict__["log"] = log

    def __setattr__(self, name, value):  # scale_y, active, use_property_split, ...
        self.__dict__[name] = value

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.log)

    row = column = box = split = grid_flow = _child

    def template_icon(self, icon_value=0, scale=1.0):
        assert isinstance(icon_value, int)
        self.log.append(("icon", icon_value))

    def label(self, text="", icon="NONE", **kwargs):
        self.log.append(("label", text))

    def separator(self, **kwargs):
        pass

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(("progress", text, factor))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties or hasattr(data, name), f"no property {name}"
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)), f"no operator {idname}"
        self.log.append(("operator", idname))
        return types.SimpleNamespace()

    def template_ID(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"no property {name}"
        if "open" in kwargs:
            self.operator(kwargs["open"])
        self.log.append(("template_ID", name))

    def panel(self, idname, default_closed=False):
        """Both the header and the body (an open sub-panel), so the body's draw code runs."""
        self.log.append(("panel", idname))
        return RecordingLayout(self.log), RecordingLayout(self.log)

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kw):
        assert hasattr(bpy.types, list_type), f"UI list {list_type} is not registered"
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.log.append(("list", prop))


def draw_panel(modules):
    members = {n: v for n, v in vars(modules.main.VIEW3D_PT_stillmotion).items()
               if n.startswith("draw")}
    log = []
    panel = type("FakePanel", (), members)()
    panel.layout = RecordingLayout(log)
    panel.draw(bpy.context)
    return log


def texts(log):
    return [entry[1] for entry in log if entry[0] in {"label", "progress"}]


def test_panel_draws_each_state(modules, tmp_path):
    bpy.context.view_layer.objects.active = None
    assert texts(draw_panel(modules)) == ["Select an image plane"]

    plane = make_scene(tmp_path)
    bpy.context.view_layer.objects.active = plane
    log = draw_panel(modules)
    drawn = {entry[1] for entry in log}
    assert {"stillmotion.bake", "stillmotion.add_strokes", "stillmotion.sync_mask_labels",
            "frames", "fps", "seed", "falloff", "feather", "easing", "loop", "output_format",
            "preview_size", "engine", "strokes"} <= drawn
    assert "still.png" in texts(log) and "stillmotion.revert_to_still" not in drawn

    # While a bake runs: progress bar and Cancel instead of the bake buttons.
    use_engine(tmp_path, HANGING_ENGINE)
    session = modules.session.BakeSession()
    session.start(bpy.context, plane)
    try:
        session.update(bpy.context)
        log = draw_panel(modules)
        drawn = {entry[1] for entry in log}
        assert "stillmotion.cancel" in drawn and "stillmotion.bake" not in drawn
        assert any(entry[0] in {"progress", "label"} and "Take 1" in entry[1] for entry in log)
    finally:
        session.cancel()
    with pytest.raises(Exception):
        session.finish(bpy.context)
    # After a failure the reason is shown (wrapped over several labels).
    shown = " ".join(texts(draw_panel(modules)))
    assert "Bake cancelled" in shown

    plane.stillmotion.original_image = image_node(plane).image
    plane.stillmotion.take = 3
    log = draw_panel(modules)
    assert "Take 3" in texts(log)
    assert ("operator", "stillmotion.revert_to_still") in log


def test_preferences_draw_and_offline_install(modules, tmp_path):
    from bl_ext.user_default.stillmotion.operators import engine_setup

    prefs = bpy.context.preferences.addons[ADDON].preferences
    assert prefs.bl_rna.properties["device"].enum_items.keys() == ["AUTO", "CPU", "CUDA"]
    members = {n: v for n, v in vars(type(prefs)).items() if n.startswith("draw")}
    log = []
    fake = type("FakePrefs", (), members)()
    fake.layout = RecordingLayout(log)
    for name in ("engine_python", "device", "models_dir"):
        setattr(fake, name, getattr(prefs, name))
    fake.bl_rna = prefs.bl_rna
    fake.engine_python = ""
    fake.draw(bpy.context)
    drawn = {entry[1] for entry in log}
    assert {"engine_python", "device", "models_dir", "stillmotion.install_engine",
            "stillmotion.check_engine"} <= drawn
    assert any("managed engine (not installed yet)" in t for t in texts(log))

    # The bpy wheel runs offline: Install Engine refuses and says how to allow it.
    assert bpy.app.online_access is False
    with pytest.raises(RuntimeError, match="enable Allow Online Access in Preferences > System"):
        bpy.ops.stillmotion.install_engine()
    assert engine_setup.current_task.state == "FAILED"
    assert not (pathlib.Path(bpy.utils.extension_path_user(ADDON)) / "engine-env" / "bin").exists()
    log.clear()
    fake.draw(bpy.context)
    assert any("Allow Online Access" in t for t in texts(log))


def test_check_engine_operator(modules, tmp_path):
    from bl_ext.user_default.stillmotion.operators import engine_setup

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = str(tmp_path / "missing" / "python")
    with pytest.raises(RuntimeError, match="Engine Python not found"):
        bpy.ops.stillmotion.check_engine()

    check = tmp_path / "python"
    check.write_text('#!/bin/sh\necho \'{"python": "3.11.9", "torch": "2.13.0", '
                     '"numpy": "2.4.6", "cv2": "5.0.0", "devices": ["cpu"], "ok": true}\'\n')
    check.chmod(0o755)
    prefs.engine_python = str(check)
    assert bpy.ops.stillmotion.check_engine() == {"FINISHED"}  # runs synchronously here
    task = engine_setup.current_task
    assert task.state == "DONE"
    assert task.message == ("Engine ready: python 3.11.9; torch 2.13.0; numpy 2.4.6; "
                            "cv2 5.0.0; devices cpu")

    prefs.engine_python = sys.executable  # numpy, no torch: the check fails with the reason
    with pytest.raises(RuntimeError, match="has no PyTorch"):
        bpy.ops.stillmotion.check_engine()
    assert engine_setup.current_task.state == "FAILED"


def test_install_steps_use_blenders_python_then_the_new_environment(modules, tmp_path):
    from bl_ext.user_default.stillmotion.operators import engine_setup

    steps = engine_setup.install_steps(tmp_path / "env", base_python="/blender/python")
    labels = [step[0] for step in steps]
    assert labels[0] == "Creating the engine environment"
    assert steps[0][1] == ["/blender/python", "-m", "venv", str(tmp_path / "env")]
    env_python = str(tmp_path / "env" / "bin" / "python")
    assert steps[1][1][:4] == [env_python, "-m", "pip", "install"]
    assert steps[1][1][-1].endswith("requirements/engine.txt")
    assert steps[2][1][:4] == [env_python, "-m", "pip", "install"]
    assert "--no-deps" in steps[2][1] and steps[2][1][-1].endswith("requirements/face.txt")
    assert steps[3][1] == [env_python, "-m", "engine", "check"]
    # The pip step runs without Blender's PYTHONHOME/PYTHONPATH leaking into the new Python.
    assert "PYTHONPATH" not in steps[1][2] and "PYTHONHOME" not in steps[1][2]
