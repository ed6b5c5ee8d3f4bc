"""A bake that cannot start, fails or is stopped changes nothing and says what to do.

Each test starts from a plane that already shows a take (take_001, installed by the same
install_sequence a bake uses) and checks afterwards that the material, the node, its image and
frame settings, the remembered still, the take number, the .blend's images and every file under
//stillmotion/ are exactly as they were, and that wm.stillmotion.last_error holds a message.
"""

import os
import signal
import sys
import time

import bpy
import pytest

from conftest import ADDON, engine_python, save_test_image
from test_bake_flow import folder_digest, image_node, make_scene

HEAVY = dict(frames=60, size=(512, 384))  # rendering takes seconds: time to stop it midway


@pytest.fixture
def bake(addon):
    from bl_ext.user_default.stillmotion.bake import paths, session
    from bl_ext.user_default.stillmotion.scene import plane as scene_plane
    from bl_ext.user_default.stillmotion.scene import sequence
    from bl_ext.user_default.stillmotion.scene.errors import StillMotionError

    class Bake:
        pass

    ns = Bake()
    ns.paths, ns.session, ns.sequence = paths, session, sequence
    ns.scene_plane, ns.Error = scene_plane, StillMotionError
    return ns


def with_previous_take(bake, folder, **scene_args):
    """A scene whose plane shows take_001 (two frames written by Blender)."""
    plane = make_scene(folder, **scene_args)
    take = bake.paths.bakes_root(plane.name) / "take_001"
    take.mkdir(parents=True)
    for i in (1, 2):
        save_test_image(take / f"frame_{i:04d}.png", 8, 6)
    target = bake.scene_plane.find_target(plane)
    bake.sequence.install_sequence(plane, target, take, 2, loop=False, scene=bpy.context.scene)
    plane.stillmotion.take = 1
    return plane


def snapshot(bake, plane):
    node = image_node(plane)
    material = plane.active_material
    user = node.image_user
    return {
        "material": material.name,
        "nodes": sorted(n.name for n in material.node_tree.nodes),
        "image": node.image.name,
        "source": node.image.source,
        "filepath": node.image.filepath,
        "user": (user.frame_start, user.frame_offset, user.frame_duration, user.use_cyclic,
                 user.use_auto_refresh),
        "still": plane.stillmotion.original_image.name,
        "take": plane.stillmotion.take,
        "images": sorted(bpy.data.images.keys()),
        "files": folder_digest(bake.paths.bakes_root(plane.name).parent),
    }


def assert_unchanged(bake, plane, before, error_start):
    assert snapshot(bake, plane) == before
    runtime = bpy.context.window_manager.stillmotion
    assert not runtime.running and not bake.session.is_running()
    assert runtime.last_error.startswith(error_start), runtime.last_error
    root = bake.paths.bakes_root(plane.name)
    assert sorted(p.name for p in root.iterdir()) == ["take_001"]  # no take, no leftovers


def set_engine_python(path):
    bpy.context.preferences.addons[ADDON].preferences.engine_python = str(path)


def fake_python(tmp_path, body, shebang=sys.executable):
    """An executable standing in for the engine's interpreter."""
    path = tmp_path / "bin" / "python"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{shebang}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_cancel_button_mid_bake(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path, **HEAVY)
    before = snapshot(bake, plane)
    session = bake.session.BakeSession()
    session.start(bpy.context, plane)
    assert bpy.ops.stillmotion.bake.poll() is False  # one bake at a time
    with pytest.raises(bake.Error, match="already running"):
        bake.session.run_sync(bpy.context, plane)
    end = time.monotonic() + 60
    while session.update(bpy.context) == bake.session.RUNNING and session.stage != "render":
        assert time.monotonic() < end, "the engine never started rendering"
        time.sleep(0.02)
    assert session.state == bake.session.RUNNING, "finished before it could be cancelled"
    partial = list(session.output_dir.parent.glob("take_002.partial-[0-9]*"))  # not reserved
    assert partial, "the engine writes into a temporary folder"

    assert bpy.ops.stillmotion.cancel() == {"FINISHED"}
    assert session.update(bpy.context) == bake.session.CANCELLED
    with pytest.raises(bake.Error, match="cancelled"):
        session.finish(bpy.context)
    assert_unchanged(bake, plane, before, "Bake cancelled")
    assert bpy.context.window_manager.stillmotion.stage == "cancelled"
    assert bpy.ops.stillmotion.bake.poll() is True


def test_cancel_after_the_engine_finished_leaves_no_take(bake, tmp_path):
    """Cancel pressed between the engine's rename into place and the next poll."""
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    session = bake.session.BakeSession()
    session.start(bpy.context, plane)
    session.process.wait(120)
    assert session.process.returncode == 0 and session.output_dir.is_dir()
    session.cancel()
    with pytest.raises(bake.Error, match="cancelled"):
        session.finish(bpy.context)
    assert_unchanged(bake, plane, before, "Bake cancelled")


# An engine that does what engine/staging.py does - frames into `<take>.partial-<pid>`, renamed
# into place when all are written - and then, before it can exit 0, ends as {end} says.
RENAMED_THEN = """
import json, os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # as the engine's raise_on_sigterm
job = json.loads(pathlib.Path(sys.argv[-1]).read_text())
output = pathlib.Path(job["output"])
partial = output.with_name(f"{{output.name}}.partial-{{os.getpid()}}")
partial.mkdir()
for i in range(1, job["frames"] + 1):
    (partial / f"frame_{{i:04d}}.png").write_bytes(b"a finished frame")
    print(json.dumps({{"stage": "render", "done": i, "total": job["frames"]}}), flush=True)
os.replace(partial, output)
print(json.dumps({{"stage": "renamed"}}), flush=True)
{end}
"""


def test_cancel_after_the_rename_before_the_exit_leaves_no_take(bake, tmp_path):
    """Cancel lands after the engine renamed the finished take into place: it exits 143."""
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    set_engine_python(fake_python(tmp_path, RENAMED_THEN.format(end="time.sleep(60)")))
    session = bake.session.BakeSession()
    session.start(bpy.context, plane)
    end = time.monotonic() + 30
    while session.update(bpy.context) == bake.session.RUNNING and session.stage != "renamed":
        assert time.monotonic() < end, "the stand-in engine never renamed the take"
        time.sleep(0.02)
    assert session.state == bake.session.RUNNING and session.output_dir.is_dir()

    assert bpy.ops.stillmotion.cancel() == {"FINISHED"}
    assert session.update(bpy.context) == bake.session.CANCELLED
    assert session.process.returncode == 143
    with pytest.raises(bake.Error, match="cancelled"):
        session.finish(bpy.context)
    assert_unchanged(bake, plane, before, "Bake cancelled: the plane and earlier takes are "
                     "unchanged")


@pytest.mark.parametrize("end, message", [
    ('print("RuntimeError: lost the GPU", file=sys.stderr)\nsys.exit(1)',
     "Engine exited with status 1: RuntimeError: lost the GPU"),
    ("os.kill(os.getpid(), signal.SIGKILL)", "Engine was killed by SIGKILL"),
    ('print(json.dumps({"stage": "cancelled", "message": "stopped by signal 15"}))\n'
     "sys.exit(143)", "The engine was stopped from outside before it finished"),
], ids=["crash", "sigkill", "sigterm-from-outside"])
def test_failure_after_the_rename_leaves_no_take(bake, tmp_path, end, message):
    """The engine stops unsuccessfully after its take is in place: the artist is told to bake
    again, so the take must not stay on disk unseen."""
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    set_engine_python(fake_python(tmp_path, RENAMED_THEN.format(end=end)))
    with pytest.raises(bake.Error):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before, message)


def test_engine_killed_mid_bake(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path, **HEAVY)
    before = snapshot(bake, plane)

    def kill_when_rendering(session):
        if session.stage == "render":
            os.kill(session.process.pid, signal.SIGKILL)  # no chance to clean up

    with pytest.raises(bake.Error, match="SIGKILL"):
        bake.session.run_sync(bpy.context, plane, on_progress=kill_when_rendering)
    assert_unchanged(bake, plane, before, "Engine was killed by SIGKILL")


def test_crashing_engine(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    # Dies halfway like a real crash: progress, a half-written temporary folder, a traceback.
    python = fake_python(tmp_path, """
import json, pathlib, sys
job = json.loads(pathlib.Path(sys.argv[-1]).read_text())
partial = pathlib.Path(job["output"] + ".partial-99999")
partial.mkdir()
(partial / "frame_0001.png").write_bytes(b"half")
print(json.dumps({"stage": "render", "done": 1, "total": job["frames"]}), flush=True)
print("Traceback (most recent call last):", file=sys.stderr)
print("MemoryError: cannot allocate 2 GiB", file=sys.stderr)
sys.exit(1)
""")
    set_engine_python(python)
    with pytest.raises(bake.Error):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before,
                     "Engine exited with status 1: MemoryError: cannot allocate 2 GiB")


def test_engine_python_missing(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    missing = tmp_path / "no-such-env" / "bin" / "python"
    set_engine_python(missing)
    with pytest.raises(bake.Error):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before, f"Engine Python not found at {missing}: set it in "
                     "Preferences > Add-ons > StillMotion or click Install Engine")


def test_engine_python_without_torch_via_operator(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    set_engine_python(sys.executable)  # the bpy venv: numpy, but no torch and no OpenCV
    with pytest.raises(RuntimeError, match="has no"):  # bpy.ops turns the ERROR report into this
        bpy.ops.stillmotion.bake()
    assert_unchanged(bake, plane, before, f"The engine Python {sys.executable} has no ")


def test_disk_full_while_writing_frames(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    # The engine may write at most 512 bytes per file: the first frame fails as on a full disk.
    python = fake_python(tmp_path, f'ulimit -f 1\nexec "{engine_python()}" "$@"\n',
                         shebang="/bin/sh")
    set_engine_python(python)
    with pytest.raises(bake.Error, match="cannot write"):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before, "Engine: cannot write ")


def test_bake_folder_cannot_be_created(bake, tmp_path):
    plane = make_scene(tmp_path)
    node = image_node(plane)
    still = node.image
    (tmp_path / "stillmotion").write_text("a file where the bake folder should go")
    with pytest.raises(bake.Error) as caught:
        bake.session.run_sync(bpy.context, plane)
    message = str(caught.value)
    assert message.startswith(f"Cannot create the bake folder //stillmotion/{plane.name} ")
    assert "save the .blend in a folder you can write to" in message
    assert node.image == still and plane.stillmotion.original_image is None
    assert bpy.context.window_manager.stillmotion.last_error == message


def test_bad_scene_input_changes_nothing(bake, tmp_path):
    plane = with_previous_take(bake, tmp_path)
    before = snapshot(bake, plane)
    strokes = plane.stillmotion.strokes
    plane.stillmotion.strokes = None
    before["images"] = sorted(bpy.data.images.keys())
    with pytest.raises(bake.Error, match="There are no strokes yet"):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before, "There are no strokes yet")

    # The still's file disappeared since it was loaded.
    plane.stillmotion.strokes = strokes
    still = plane.stillmotion.original_image
    still.filepath = str(tmp_path / "moved-away.png")
    before = snapshot(bake, plane)
    with pytest.raises(bake.Error, match="is missing"):
        bake.session.run_sync(bpy.context, plane)
    assert_unchanged(bake, plane, before, "The picture file of")

    # On a first bake a scene problem leaves no trace beside the .blend either.
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    plane = make_scene(tmp_path / "fresh")
    plane.stillmotion.strokes = None
    with pytest.raises(bake.Error, match="There are no strokes yet"):
        bake.session.run_sync(bpy.context, plane)
    assert not (tmp_path / "fresh" / "stillmotion").exists()

    # Nothing selected: Bake is greyed out with a reason.
    bpy.context.view_layer.objects.active = None
    assert bpy.ops.stillmotion.bake.poll() is False
