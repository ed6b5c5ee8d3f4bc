"""The main job, headless, through the same code path as the Bake button:

1. portrait: the astronaut on an image plane, two pokes and a static mask, baked with the warp
   engine, then rendered with Cycles;
2. landscape: a Big Buck Bunny meadow on an image plane, the sky masked as clouds and the grass
   as grass, baked with the Dynamic Texture engine's defaults (Motion (advect): the still's own
   pixels moved at full resolution) as a seamless loop of LANDSCAPE["frames"] frames;
3. face: the astronaut, a face no shipped model saw, with the panel's default poke model (the
   face-mesh model, models/poke_mesh.safetensors, Sampled (iPOKE) engine): the lower lip
   dragged down a quarter of the eyes' distance, so the mouth opens; Sample's thumbnails of
   FACE["samples"] samples, then the chosen one baked at the still's resolution;
   face-turn: the same face and model, the nose tip dragged sideways, so the head turns;
4. faces: an older model kept for comparison, the motion-space iPOKE model
   (models/poke_faces.safetensors, trained on two people) on a held-out frame of the carphone
   clip: the lower lip pulled down, the brow raised, the bow tie pinned (a click without a
   drag); the panel's parts rows (which part each poke drives) are printed, and the sample is
   baked by warping the still itself at full resolution;
5. stylized: the landscape of part 2 again with Van Gogh's Starry Night as its Style (the
   panel's default Strength, the whole picture): the still is stylized once, then the clouds
   and grass move the stylized pixels, so the brushwork travels with the motion.

    .venv-bpy-5.0.1/bin/python tools/demo.py --engine-python .venv/bin/python --out out

Writes into OUT: demo.blend and landscape.blend (open them in Blender and scrub the timeline),
the baked frames under stillmotion/<plane>/take_001/, preview.mp4, contact_sheet.png and two
Cycles renders for the portrait, the same under landscape/ for the landscape and under face/
for the face (plus face/samples/, the thumbnails the panel's Sample button shows), the same
under face_turn/ and faces/, and under stylized/ for the stylized landscape (face.blend,
face_turn.blend, faces.blend and stylized.blend beside demo.blend).
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
PARTS = ["portrait", "landscape", "face", "face-turn", "faces", "stylized"]

# In astronaut.png pixels (512 x 512, y down): the model shuttle lifts off its stand and the
# head tilts; the stand under the shuttle is pinned so only the shuttle rises.
POKES = [((405.0, 175.0), (405.0, 140.0)), ((222.0, 80.0), (236.0, 74.0))]
STATIC_MASK = [(360.0, 268.0), (476.0, 268.0), (511.0, 300.0), (511.0, 345.0), (360.0, 345.0)]
FALLOFF = 70.0

# In meadow.png pixels (384 x 384, y down; tools/fetch_media.py cuts it from Big Buck Bunny):
# the sky right of the tree, its left side drawn along the foliage a couple of pixels into the sky
# (a straight edge through open sky shows as a seam once the clouds move), and the grass slope
# and meadow below the rock.
SKY_MASK = [(266.0, 0.0), (383.0, 0.0), (383.0, 118.0), (260.0, 124.0), (258.0, 104.0),
            (250.0, 98.0), (249.0, 78.0), (257.0, 66.0), (260.0, 46.0), (260.0, 24.0),
            (266.0, 20.0)]
GRASS_MASK = [(0.0, 110.0), (60.0, 150.0), (130.0, 200.0), (240.0, 228.0), (383.0, 228.0),
              (383.0, 383.0), (0.0, 383.0)]
# The panel's defaults (Motion (advect), at the still's full resolution): seconds on a laptop
# CPU, so the demo bakes the whole 2-second loop an artist would.
LANDSCAPE = {"frames": 48}

# In astronaut.png pixels (512 x 512, y down), from MediaPipe's landmarks: the eyes are about
# 43 px apart (IOD). No shipped model trained on this face, so it shows what the default does
# on an artist's own portrait. The mouth: the lower inner lip (223.1, 149.6) down 0.25 IOD.
# The head turn: the nose tip (224.1, 131.2) to the image's right 0.3 IOD; the rest of the
# face follows the mesh.
IOD = 43.0
FACE_STROKES = [((223.1, 149.6), (223.1, 149.6 + 0.25 * IOD))]
FACE_TURN_STROKES = [((224.1, 131.2), (224.1 + 0.3 * IOD, 131.2))]
FACE = {"frames": 24, "samples": 4, "sample": 0, "seed": 3}
# The comparison: the older motion-space iPOKE model on a held-out carphone frame (face.png,
# 352 x 288, cut by tools/fetch_media.py; pixels from MediaPipe's landmarks):
# the lower lip down and the person's left brow up; the bow tie pinned, so the head moves over
# a still body (a pin on the face itself would fight the head's own motion and stretch it).
# Temperature 0.7: the model also learnt a CGI character's large motions; this keeps the man's.
FACES_MODEL = "shipped/poke_faces.safetensors"
FACES_STROKES = [((150.0, 166.0), (150.0, 176.0)), ((143.0, 95.0), (143.0, 87.0)),
                 ((178.0, 218.0), (178.0, 218.0))]
FACES_TEMPERATURE = 0.7
FACES_FRAMES = 11  # iPOKE's clip: x0 + 10


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


def import_plane(still: pathlib.Path, frames: int):
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, frames
    bpy.ops.image.import_as_mesh_planes(
        files=[{"name": still.name}], directory=str(still.parent) + os.sep, shader="SHADELESS"
    )
    return bpy.context.active_object


def build_scene(still: pathlib.Path):
    plane = import_plane(still, FRAMES)
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


def build_landscape(still: pathlib.Path):
    """The meadow with a sky mask labelled clouds and a grass mask labelled grass."""
    plane = import_plane(still, LANDSCAPE["frames"])
    settings = plane.stillmotion
    settings.engine = "DYNTEX"
    settings.frames = LANDSCAPE["frames"]
    settings.loop = True  # everything else in settings.dyntex stays the panel's default

    from bl_ext.user_default.stillmotion.scene import strokes

    gp = strokes.ensure_strokes_object(bpy.context, plane)
    size = tuple(bpy.data.images[still.name].size)
    for outline, label in ((SKY_MASK, "clouds"), (GRASS_MASK, "grass")):
        strokes.add_stroke(gp, "Masks", [pixel_to_world(plane, size, p) for p in outline])
        settings.mask_labels.add().label = label
    return plane


def build_stylized(still: pathlib.Path, painting: pathlib.Path):
    """The landscape of build_landscape with the painting as its Style, at the panel's defaults
    (Strength, Whole Picture)."""
    plane = build_landscape(still)
    plane.stillmotion.style_image = bpy.data.images.load(str(painting))
    return plane


def build_face(still: pathlib.Path, name: str, strokes_px, model: str = "",
               temperature: float = 1.0, frames: int = FACE["frames"]):
    """A plane on the Sampled engine with strokes_px on its Pokes layer; model "" leaves the
    panel's default, the face-mesh model."""
    plane = import_plane(still, frames)
    # Its takes go to //stillmotion/<plane name>/: one folder per part, though two parts (and
    # the portrait) show the same picture.
    plane.name = name
    settings = plane.stillmotion
    settings.engine = "POKE"
    settings.frames = frames
    settings.seed = FACE["seed"]
    settings.poke.samples = FACE["samples"]
    settings.poke.sample = FACE["sample"]
    if model:
        settings.poke.model = model
    settings.poke.temperature = temperature

    from bl_ext.user_default.stillmotion.scene import strokes

    gp = strokes.ensure_strokes_object(bpy.context, plane)
    size = tuple(bpy.data.images[still.name].size)
    for stroke in strokes_px:
        strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, size, p) for p in stroke])
    return plane


def sample_face(plane, out: pathlib.Path):
    """What the Sample button does: one thumbnail per sample, copied into out/samples."""
    from bl_ext.user_default.stillmotion.bake import poke as poke_runs

    print(poke_runs.run_sync(bpy.context, poke_runs.SampleRun(), plane))
    target = out / "samples"
    shutil.copytree(plane.stillmotion.poke.thumbnails_dir, target)
    print(f"sampled {FACE['samples']} clips: thumbnails in {target}")
    for row in plane.stillmotion.poke.parts:
        pin = " (pin)" if row.pin else ""
        print(f"  poke {row.number}{pin} -> {row.part or 'no part'}")


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


def bake_and_show(plane, blend: pathlib.Path, out: pathlib.Path, engine_python: str):
    """Save (so the take lands beside the .blend), bake, save, render first and last frame,
    and write preview.mp4 + contact_sheet.png into out."""
    add_camera(plane)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    from bl_ext.user_default.stillmotion.bake import session

    result = session.run_sync(bpy.context, plane, preview=False)
    for warning in result.warnings:
        print(f"warning: {warning}")
    frames_dir = pathlib.Path(result.output)
    print(f"baked {result.frames} frames into {frames_dir} ({result.seconds:.0f} s)")
    bpy.ops.wm.save_mainfile()

    out.mkdir(parents=True, exist_ok=True)
    renders = [render_frame(out, 1), render_frame(out, result.frames)]
    print("rendered", ", ".join(str(r) for r in renders))

    subprocess.run([engine_python, "-m", "engine", "preview", str(frames_dir),
                    "--out", str(out), "--fps", str(plane.stillmotion.fps)],
                   check=True, cwd=REPO)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-python", required=True)
    parser.add_argument("--out", default="out")
    parser.add_argument("--still", default=str(REPO / "media" / "astronaut.png"))
    parser.add_argument("--landscape", default=str(REPO / "media" / "meadow.png"))
    parser.add_argument("--face", default=str(REPO / "media" / "astronaut.png"),
                        help="the face for the default model (parts face and face-turn)")
    parser.add_argument("--carphone-face", default=str(REPO / "media" / "face.png"),
                        help="the carphone frame for the older model (part faces)")
    parser.add_argument("--painting", default=str(REPO / "media" / "starry_night.jpg"))
    parser.add_argument("--only", choices=PARTS,
                        help="run one part of the demo (default: all of them)")
    args = parser.parse_args()

    out = pathlib.Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # out/ is generated; a re-run starts clean so take_001 is this run
    out.mkdir(parents=True)
    stills = {"portrait": pathlib.Path(args.still).resolve(),
              "landscape": pathlib.Path(args.landscape).resolve(),
              "face": pathlib.Path(args.face).resolve(),
              "faces": pathlib.Path(args.carphone_face).resolve()}
    stills["face-turn"] = stills["face"]
    stills["stylized"] = stills["landscape"]
    painting = pathlib.Path(args.painting).resolve()
    parts = [args.only] if args.only else PARTS
    if "stylized" in parts and not painting.exists():
        sys.exit(f"error: {painting} not found; run `make demo` (it fetches the painting)")
    for part in parts:
        if not stills[part].exists():
            sys.exit(f"error: {stills[part]} not found; run `make media` first")

    enable_extension()
    prefs = bpy.context.preferences.addons[ADDON].preferences
    engine_python = str(pathlib.Path(args.engine_python).absolute())
    prefs.engine_python = engine_python
    # out/ is generated: no .blend1 backups beside the scenes.
    bpy.context.preferences.filepaths.save_version = 0

    if "portrait" in parts:
        plane = build_scene(stills["portrait"])
        bake_and_show(plane, out / "demo.blend", out, engine_python)
        print(f"portrait: open {out / 'demo.blend'}; contact sheet {out / 'contact_sheet.png'}")
    if "landscape" in parts:
        plane = build_landscape(stills["landscape"])
        bake_and_show(plane, out / "landscape.blend", out / "landscape", engine_python)
        print(f"landscape: open {out / 'landscape.blend'}; contact sheet "
              f"{out / 'landscape' / 'contact_sheet.png'}")
    for part, name, strokes_px in (("face", "face", FACE_STROKES),
                                   ("face-turn", "face_turn", FACE_TURN_STROKES)):
        if part not in parts:
            continue
        plane = build_face(stills[part], name, strokes_px)
        (out / name).mkdir(parents=True, exist_ok=True)
        sample_face(plane, out / name)
        bake_and_show(plane, out / f"{name}.blend", out / name, engine_python)
        print(f"{part}: open {out / f'{name}.blend'}; contact sheet "
              f"{out / name / 'contact_sheet.png'}")
    if "faces" in parts:
        plane = build_face(stills["faces"], "faces", FACES_STROKES, FACES_MODEL,
                           FACES_TEMPERATURE, FACES_FRAMES)
        (out / "faces").mkdir(parents=True, exist_ok=True)
        sample_face(plane, out / "faces")
        bake_and_show(plane, out / "faces.blend", out / "faces", engine_python)
        print(f"faces: open {out / 'faces.blend'}; contact sheet "
              f"{out / 'faces' / 'contact_sheet.png'}")
    if "stylized" in parts:
        plane = build_stylized(stills["stylized"], painting)
        bake_and_show(plane, out / "stylized.blend", out / "stylized", engine_python)
        print(f"stylized: open {out / 'stylized.blend'}; contact sheet "
              f"{out / 'stylized' / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
