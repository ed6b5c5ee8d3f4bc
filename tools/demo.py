"""The main job, headless: a portrait on an image plane, two pokes and a static mask, baked with
the warp engine through the same code path as the Bake button, then rendered with Cycles.

    .venv-bpy-5.0.1/bin/python tools/demo.py --engine-python .venv/bin/python --out out

Writes into OUT: demo.blend (open it in Blender and scrub the timeline), the baked frames under
stillmotion/<plane>/take_001/, preview.mp4, contact_sheet.png and two Cycles renders.
"""

import argparse
import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
# Blender reads its user folder once at start-up; keep the artist's real one out of the demo.
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="stillmotion-demo-")
# It holds a link to the repository: rmtree unlinks links, it never follows them.
atexit.register(shutil.rmtree, os.environ["BLENDER_USER_RESOURCES"], ignore_errors=True)

import bpy  # noqa: E402  (first: it puts Blender's own modules on sys.path)
import addon_utils  # noqa: E402

ADDON = "bl_ext.user_default.stillmotion"
FRAMES = 24

# In astronaut.png pixels (512 x 512, y down): the model shuttle lifts off its stand and the
# head tilts; the stand under the shuttle is pinned so only the shuttle rises.
POKES = [((405.0, 175.0), (405.0, 140.0)), ((222.0, 80.0), (236.0, 74.0))]
STATIC_MASK = [(360.0, 268.0), (476.0, 268.0), (511.0, 300.0), (511.0, 345.0), (360.0, 345.0)]
FALLOFF = 70.0


def enable_extension():
    repo_dir = pathlib.Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default"
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "stillmotion").symlink_to(REPO, target_is_directory=True)
    module = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    if module is None:
        sys.exit("error: StillMotion did not register; see the messages above")
    return module


def pixel_to_world(plane, image_size, xy):
    """Inverse of the add-on's projection for an Import-as-Planes plane (UV 0..1 spans it)."""
    from mathutils import Vector

    xs = [v.co.x for v in plane.data.vertices]
    ys = [v.co.y for v in plane.data.vertices]
    u, v = xy[0] / image_size[0], 1.0 - xy[1] / image_size[1]
    local = Vector((min(xs) + u * (max(xs) - min(xs)), min(ys) + v * (max(ys) - min(ys)), 0.0))
    return plane.matrix_world @ local


def build_scene(still: pathlib.Path):
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    bpy.ops.image.import_as_mesh_planes(
        files=[{"name": still.name}], directory=str(still.parent) + os.sep, shader="SHADELESS"
    )
    plane = bpy.context.active_object
    settings = plane.stillmotion
    settings.frames = FRAMES
    settings.falloff = FALLOFF
    settings.easing = "ease_in_out"

    from bl_ext.user_default.stillmotion.scene import strokes

    gp = strokes.ensure_strokes_object(bpy.context, plane)
    size = tuple(bpy.data.images[still.name].size)
    for start, end in POKES:
        strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, size, start),
                                         pixel_to_world(plane, size, end)])
    strokes.add_stroke(gp, "Masks", [pixel_to_world(plane, size, p) for p in STATIC_MASK])
    return plane


def add_camera(plane):
    """An orthographic camera that frames the plane exactly, for the proof renders."""
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("DemoCamera")
    cam_data.type = "ORTHO"
    xs = [v.co.x for v in plane.data.vertices]
    cam_data.ortho_scale = max(xs) - min(xs)
    cam = bpy.data.objects.new("DemoCamera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = plane.matrix_world.translation + plane.matrix_world.to_3x3().col[2] * 5.0
    cam.rotation_euler = plane.matrix_world.to_euler()
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.render.resolution_x = scene.render.resolution_y = 256
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    # The baked frames are the colours we want to see, not a look applied on top of them.
    scene.view_settings.view_transform = "Standard"


def render_frame(out: pathlib.Path, frame: int) -> pathlib.Path:
    scene = bpy.context.scene
    scene.frame_set(frame)
    scene.render.filepath = str(out / f"render_{frame:04d}.png")
    bpy.ops.render.render(write_still=True)
    return pathlib.Path(scene.render.filepath)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-python", required=True)
    parser.add_argument("--out", default="out")
    parser.add_argument("--still", default=str(REPO / "media" / "astronaut.png"))
    args = parser.parse_args()

    out = pathlib.Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # out/ is generated; a re-run starts clean so take_001 is this run
    out.mkdir(parents=True)
    still = pathlib.Path(args.still).resolve()
    if not still.exists():
        sys.exit(f"error: {still} not found; run `make media` first")

    enable_extension()
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = str(pathlib.Path(args.engine_python).absolute())

    plane = build_scene(still)
    add_camera(plane)
    # out/ is generated: no demo.blend1 backups beside the scene.
    bpy.context.preferences.filepaths.save_version = 0
    # Saved first so the bake lands beside the .blend (//stillmotion/...), as it would for an artist.
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))

    from bl_ext.user_default.stillmotion.bake import session

    result = session.run_sync(bpy.context, plane, preview=False)
    for warning in result.warnings:
        print(f"warning: {warning}")
    frames_dir = pathlib.Path(result.output)
    print(f"baked {result.frames} frames into {frames_dir}")
    bpy.ops.wm.save_mainfile()

    renders = [render_frame(out, 1), render_frame(out, FRAMES)]
    print("rendered", ", ".join(str(r) for r in renders))

    subprocess.run([args.engine_python, "-m", "engine", "preview", str(frames_dir),
                    "--out", str(out), "--fps", str(plane.stillmotion.fps)],
                   check=True, cwd=REPO)
    print(f"done: open {out / 'demo.blend'}; contact sheet {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
