"""The Sampled (iPOKE) engine on the Blender side: properties -> job.json ("poke" block), the
errors an artist can fix, the model list (shipped default + models folder), Sample and its
thumbnail strip, the sample picker, Train from Clip (its engine command, progress, cancel, the
new model in the list), the panel, and one tiny training + sampling with the real engine."""

import json
import pathlib
import struct
import os
import subprocess
import time
import types

import bpy
import pytest

from conftest import ADDON, engine_python
from test_bake_flow import make_plane, pixel_to_world
from test_bake_operator import draw_panel, event, use_engine

POKE = [(10.0, 24.0), (20.0, 24.0)]  # image pixels, y down
STILL_POKE = [(40.0, 20.0), (40.0, 20.0)]  # a click without a drag: "hold still here"
MASK = [(44.0, 30.0), (60.0, 30.0), (60.0, 44.0), (44.0, 44.0)]


MESH = "stillmotion-mesh-poke"  # engine/poke/mesh/model.py ARCHITECTURE


def fake_model(path, arch="stillmotion-poke"):
    """A safetensors file with no tensors and the header the engine writes (the add-on never
    reads tensors, only the architecture tag). The default arch is iPOKE's (pixel or motion)."""
    header = json.dumps({"__metadata__": {"stillmotion.architecture": arch}}).encode()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def fake_mesh_model(path):
    """A face-mesh poke model's header (issue 14: the shipped default)."""
    return fake_model(path, arch=MESH)


@pytest.fixture
def sm(addon, tmp_path, monkeypatch):
    from bl_ext.user_default.stillmotion.bake import models, poke, session
    from bl_ext.user_default.stillmotion.operators import poke as poke_ops
    from bl_ext.user_default.stillmotion.panels import main
    from bl_ext.user_default.stillmotion.scene import errors, job, strokes

    # The shipped default may or may not be in the checkout: the tests bring their own, a
    # face-mesh model under the shipped default's name.
    shipped = fake_mesh_model(tmp_path / "shipped" / "poke_mesh.safetensors")
    monkeypatch.setattr(models, "SHIPPED_DEFAULT", shipped)
    folder = tmp_path / "models"
    folder.mkdir()
    bpy.context.preferences.addons[ADDON].preferences.models_dir = str(folder)
    models.refresh(bpy.context)
    yield types.SimpleNamespace(job=job, strokes=strokes, errors=errors, main=main,
                                models=models, poke=poke, ops=poke_ops, session=session,
                                models_dir=folder)
    bpy.context.preferences.addons[ADDON].preferences.models_dir = ""
    models.refresh(bpy.context)


def poked_plane(sm, folder, pokes=(POKE,), masks=()):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plane = make_plane(folder)
    gp = sm.strokes.ensure_strokes_object(bpy.context, plane)
    for poke in pokes:
        sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in poke])
    for outline in masks:
        sm.strokes.add_stroke(gp, "Masks", [pixel_to_world(plane, p) for p in outline])
    plane.stillmotion.engine = "POKE"
    bpy.context.view_layer.objects.active = plane
    return plane


def write(sm, plane, tmp_path, **kwargs):
    return sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001", **kwargs)


def test_defaults_and_saved_engine_numbers(sm, tmp_path):
    plane = make_plane(tmp_path)
    settings = plane.stillmotion
    poke = settings.poke
    assert settings.engine == "WARP"
    assert (poke.samples, poke.sample, poke.model, poke.model_file) == (4, 0, "DEFAULT", "")
    assert poke.temperature == pytest.approx(1.0)
    engines = {i.identifier: i.value for i in settings.bl_rna.properties["engine"].enum_items}
    assert engines == {"WARP": 0, "DYNTEX": 1, "POKE": 2}  # saved files store the number
    assert settings.bl_rna.properties["engine"].enum_items["POKE"].name == "Sampled (iPOKE)"


def test_poke_job_has_pokes_static_masks_and_the_poke_block(sm, tmp_path):
    plane = poked_plane(sm, tmp_path, pokes=(POKE, STILL_POKE), masks=(MASK, MASK))
    fake_model(sm.models_dir / "anna.safetensors")
    sm.models.refresh(bpy.context)
    settings = plane.stillmotion
    settings.mask_labels.add().label = "static"
    settings.mask_labels.add().label = "water"
    settings.seed, settings.frames = 5, 12
    poke = settings.poke
    poke.model = "anna.safetensors"
    poke.samples, poke.sample, poke.temperature = 6, 2, 0.7

    plan = write(sm, plane, tmp_path)
    job = json.loads(plan.job_path.read_text(encoding="utf-8"))
    assert job == plan.job
    assert job["engine"] == "poke" and job["seed"] == 5 and job["frames"] == 12
    starts = [p["start"] for p in job["pokes"]]
    assert starts == [pytest.approx([10.0, 24.0], abs=0.01), pytest.approx([40.0, 20.0], abs=0.01)]
    assert job["pokes"][1]["end"] == pytest.approx(job["pokes"][1]["start"], abs=0.01)
    assert job["masks"] == [{"path": "mask_000.png", "label": "static"}]
    assert any("mask 2 has a motion label" in w and "Sampled (iPOKE) leaves it out" in w
               for w in plan.warnings)
    assert job["poke"] == {"model": str((sm.models_dir / "anna.safetensors").resolve()),
                           "samples": 6, "sample": 2, "temperature": pytest.approx(0.7),
                           "thumbnails": False, "guide": True, "snap": True,
                           "background": True}
    assert "dyntex" not in job

    assert write(sm, plane, tmp_path, thumbnails=True).job["poke"]["thumbnails"] is True
    poke.model = "DEFAULT"  # the shipped default is the engine's own: null
    assert poke.model_file == "" and write(sm, plane, tmp_path).job["poke"]["model"] is None


@pytest.mark.parametrize("case, words", [
    ("no_pokes", "has no pokes on its Pokes layer at frame 1: the Sampled \\(iPOKE\\) engine"),
    ("no_strokes_object", "no strokes yet: click Add Strokes, then draw pokes"),
    ("missing_model", "The poke model 'gone' is missing: .*gone.safetensors. Pick another model"),
    ("missing_default", "The shipped default poke model is not installed .*: train a model "
                        "with Train from Clip"),
    ("sample_out_of_range", "The chosen sample 5 is not among the 4 drawn: click a thumbnail"),
])
def test_poke_errors_say_what_to_do(sm, tmp_path, monkeypatch, case, words):
    if case == "no_pokes":
        plane = poked_plane(sm, tmp_path, pokes=(), masks=(MASK,))
    elif case == "no_strokes_object":
        plane = make_plane(tmp_path)
        plane.stillmotion.engine = "POKE"
    else:
        plane = poked_plane(sm, tmp_path)
    if case == "missing_model":
        plane.stillmotion.poke.model_file = "gone.safetensors"
    elif case == "missing_default":
        monkeypatch.setattr(sm.models, "SHIPPED_DEFAULT", tmp_path / "nowhere.safetensors")
    elif case == "sample_out_of_range":
        plane.stillmotion.poke.sample = 4
    with pytest.raises(sm.errors.StillMotionError, match=words):
        write(sm, plane, tmp_path)
    assert not (tmp_path / "job" / "job.json").exists()


def test_model_list_finds_poke_models_in_the_models_folder(sm, tmp_path):
    folder = sm.models_dir
    fake_model(folder / "Zoe.safetensors")
    fake_model(folder / "anna.safetensors")
    fake_model(folder / "msoe.safetensors", arch="stillmotion-msoe")  # another network
    (folder / "broken.safetensors").write_bytes(b"\xff" * 12)
    fake_model(folder / "anna_run" / "stage_video.safetensors")  # training state, not a model
    sm.models.refresh(bpy.context)
    plane = make_plane(tmp_path)
    poke = plane.stillmotion.poke

    assert _items(poke) == ["DEFAULT", "anna.safetensors", "Zoe.safetensors"]
    poke.model = "Zoe.safetensors"
    assert poke.model_file == "Zoe.safetensors"

    fake_model(folder / "bob.safetensors")  # copied in by hand: listed after Refresh
    assert "bob.safetensors" not in _items(poke)
    assert bpy.ops.stillmotion.poke_refresh_models() == {"FINISHED"}
    assert _items(poke) == ["DEFAULT", "anna.safetensors", "bob.safetensors", "Zoe.safetensors"]
    assert poke.model == "Zoe.safetensors"  # the choice is a name, not a position

    (folder / "Zoe.safetensors").unlink()
    bpy.ops.stillmotion.poke_refresh_models()
    assert poke.model == "Zoe.safetensors" and "(missing)" in _names(poke)[-1]

    # No models folder set: the extension's user folder, listed at once.
    bpy.context.preferences.addons[ADDON].preferences.models_dir = ""
    user_models = sm.models.models_folder(bpy.context)
    assert user_models.parts[-2:] == ("stillmotion", "models")
    fake_model(user_models / "kept.safetensors")
    assert _items(poke) == ["DEFAULT", "kept.safetensors", "Zoe.safetensors"]
    (user_models / "kept.safetensors").unlink()


def _items(poke):
    return [item[0] for item in _enum(poke)]


def _names(poke):
    return [item[1] for item in _enum(poke)]


def _enum(poke):
    from bl_ext.user_default.stillmotion import properties

    return properties._model_items(poke, bpy.context)


# -- Sample and the thumbnail strip ------------------------------------------------------------

SAMPLE_ENGINE = """
import json, pathlib, struct, sys, zlib
job_path = pathlib.Path(sys.argv[-1])
job = json.loads(job_path.read_text())
(job_path.parent.parent / "last-job.json").write_text(json.dumps(job))
assert job["poke"]["thumbnails"] is True, job
out = pathlib.Path(job["output"])
partial = out.with_name(out.name + ".partial-1")
partial.mkdir(parents=True)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\\0" + bytes([40, 90, 200]) * 4 for _ in range(4))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
k = job["poke"]["samples"]
for i in range(k):
    (partial / f"sample_{i:02d}.png").write_bytes(png)
    print(json.dumps({"stage": "thumbnail", "done": i + 1, "total": k}), flush=True)
partial.rename(out)
print(json.dumps({"stage": "done", "done": k, "total": k, "output": str(out)}), flush=True)
"""

HANGING_ENGINE = """
import json, time
print(json.dumps({"stage": "thumbnail", "done": 1, "total": 4}), flush=True)
time.sleep(60)
"""


def test_sample_shows_the_strip_and_picking_sets_the_baked_sample(sm, tmp_path):
    plane = poked_plane(sm, tmp_path / "scene")
    plane.stillmotion.seed = 7
    plane.stillmotion.poke.samples = 3
    use_engine(tmp_path, SAMPLE_ENGINE)
    assert bpy.ops.stillmotion.poke_sample() == {"FINISHED"}
    poke = plane.stillmotion.poke
    assert poke.thumbnails_count == 3 and poke.sample == 0
    assert pathlib.Path(poke.thumbnails_dir, "sample_02.png").is_file()
    assert poke.thumbnails_made_with == "seed 7 · Face mesh (any face) · T 1"
    runtime = bpy.context.window_manager.stillmotion
    assert not runtime.running and runtime.message.startswith("3 samples")
    assert not list((pathlib.Path(poke.thumbnails_dir).parent.parent).glob("*/samples.partial*"))

    log = draw_panel(types.SimpleNamespace(main=sm.main))
    assert len([e for e in log if e[0] == "icon"]) == 3
    assert [e for e in log if e == ("operator", "stillmotion.poke_pick")] == \
        [("operator", "stillmotion.poke_pick")] * 3
    assert any(e[0] == "label" and "made with seed 7" in e[1] for e in log)
    assert not any(e[0] == "label" and "changed since" in e[1] for e in log)

    assert bpy.ops.stillmotion.poke_pick(index=2) == {"FINISHED"}
    assert poke.sample == 2
    assert write(sm, plane, tmp_path).job["poke"]["sample"] == 2  # Bake renders the pick
    with pytest.raises(RuntimeError, match="There is no sample 4"):
        bpy.ops.stillmotion.poke_pick(index=3)

    # Changing the seed (or strokes, model, temperature, K) marks the strip stale.
    plane.stillmotion.seed = 8
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    assert any(e[0] == "label" and "changed since" in e[1] for e in log)
    plane.stillmotion.seed = 7
    gp = plane.stillmotion.strokes
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in STILL_POKE])
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    assert any(e[0] == "label" and "changed since" in e[1] for e in log)


def test_sample_that_cannot_start_leaves_nothing_behind(sm, tmp_path):
    plane = poked_plane(sm, tmp_path / "scene")
    plane.stillmotion.poke.model_file = "gone.safetensors"
    use_engine(tmp_path, SAMPLE_ENGINE)
    samples = sm.poke.paths.user_folder("poke-samples") / plane.name
    before = set(samples.iterdir()) if samples.exists() else set()  # earlier tests' strips
    with pytest.raises(RuntimeError, match="The poke model 'gone' is missing"):
        bpy.ops.stillmotion.poke_sample()
    runtime = bpy.context.window_manager.stillmotion
    assert not runtime.running and "'gone' is missing" in runtime.last_error
    assert not sm.session.is_running()
    assert (set(samples.iterdir()) if samples.exists() else set()) <= before
    plane.stillmotion.engine = "WARP"
    assert not sm.ops.STILLMOTION_OT_poke_sample.poll(bpy.context)


def modal_operator(cls):
    """The operator's own and mixed-in methods on a plain object (a registered Operator cannot
    be created outside Blender's operator machinery)."""
    members = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.endswith("operators.poke"):
            members.update({n: v for n, v in vars(klass).items()
                            if callable(v) or isinstance(v, staticmethod)})
    op = type("FakeOperator", (), members)()
    op._timer = None
    op.reports = []
    op.report = lambda level, message: op.reports.append((next(iter(level)), message))
    return op


def test_sample_runs_on_a_timer_and_esc_cancels(sm, tmp_path):
    plane = poked_plane(sm, tmp_path / "scene")
    use_engine(tmp_path, HANGING_ENGINE)
    op = modal_operator(sm.ops.STILLMOTION_OT_poke_sample)
    run = sm.poke.SampleRun().start(bpy.context, plane)
    op._run = run
    assert sm.session.is_running()
    assert not sm.ops.STILLMOTION_OT_poke_sample.poll(bpy.context)  # one engine job at a time
    runtime = bpy.context.window_manager.stillmotion
    for _ in range(100):
        assert op.modal(bpy.context, event("TIMER")) == {"PASS_THROUGH"}
        if runtime.progress > 0:
            break
        time.sleep(0.05)
    assert runtime.running and runtime.message == "Sampling: 1/4 samples"
    assert runtime.progress == pytest.approx(0.25)
    assert op.modal(bpy.context, event("MOUSEMOVE")) == {"PASS_THROUGH"}
    assert op.modal(bpy.context, event("ESC", "PRESS")) == {"CANCELLED"}
    assert run.process.returncode is not None and not sm.session.is_running()
    assert op.reports == [("WARNING", "Sampling cancelled")]
    assert plane.stillmotion.poke.thumbnails_count == 0


# -- Train from Clip ------------------------------------------------------------------------------

TRAIN_ENGINE = """
import json, pathlib, struct, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
(out.parent.parent / "train-argv.json").write_text(json.dumps(args))
def say(**record):
    print(json.dumps(record), flush=True)
for name in ("video", "codes", "cinn"):
    say(stage="train", stage_name=name, done=25, total=50, loss=0.5, l1=0.25)
    say(stage="train", stage_name=name, epoch=1, step=50, val={"psnr": 20.0})
header = json.dumps({"__metadata__": {"stillmotion.architecture": "stillmotion-poke"}}).encode()
out.write_bytes(struct.pack("<Q", len(header)) + header)
say(stage="saved", path=str(out), steps={"video": 50})
"""


def test_train_from_clip_runs_train_poke_and_adds_the_model(sm, tmp_path):
    plane = poked_plane(sm, tmp_path / "scene")
    video = tmp_path / "clips" / "anna talking.mp4"
    video.parent.mkdir()
    video.write_bytes(b"decoded by the engine, not here")
    train = bpy.context.scene.stillmotion_train
    assert (train.minutes, train.face_crop, train.stride) == (30.0, True, 1)
    assert train.motion_space and train.face_parts
    train.video_path = str(video)
    train.model_name, train.minutes, train.stride = "Anna", 5.0, 2
    use_engine(tmp_path, TRAIN_ENGINE)
    assert bpy.ops.stillmotion.poke_train() == {"FINISHED"}

    argv = json.loads((tmp_path / "train-argv.json").read_text())
    out = sm.models_dir / "Anna.safetensors"
    assert argv == ["-m", "engine", "train-poke", str(video.resolve()), "--out", str(out),
                    "--max-minutes", "5", "--stride", "2", "--device", "auto", "--face-crop",
                    "--space", "motion", "--parts"]
    assert out.is_file()
    assert "Anna.safetensors" in _items(plane.stillmotion.poke)  # listed without a Refresh
    assert plane.stillmotion.poke.model == "Anna.safetensors"  # and chosen for the plane
    runtime = bpy.context.window_manager.stillmotion
    assert runtime.message.startswith("Model 'Anna' trained") and not runtime.last_error

    # Without a model name the video's name is used.
    train.model_name, train.face_crop = "", False
    train.motion_space, train.face_parts = False, False
    assert bpy.ops.stillmotion.poke_train() == {"FINISHED"}
    argv = json.loads((tmp_path / "train-argv.json").read_text())
    assert argv[5] == str(sm.models_dir / "anna talking.safetensors")
    assert not {"--face-crop", "--space", "--parts"} & set(argv)


def test_train_progress_reads_stage_losses_and_held_out_numbers(sm, tmp_path):
    run = sm.poke.TrainRun()
    run.name = "Anna"
    runtime = bpy.context.window_manager.stillmotion
    run._apply(runtime, {"stage": "train", "stage_name": "codes", "done": 25, "total": 100,
                         "image_loss": 0.4816, "poke_loss": 2.626})
    assert runtime.message == ("Training Anna: image and poke encoders (2/3) 25/100 · "
                               "image_loss 0.4816, poke_loss 2.626")
    assert runtime.progress == pytest.approx((1 + 0.25) / 3)
    run._apply(runtime, {"stage": "train", "stage_name": "codes", "epoch": 1, "step": 25,
                         "val": {"image_psnr": 11.1, "flow_epe": 4.4}})
    assert runtime.message.endswith("held-out image_psnr 11.1, flow_epe 4.4")
    assert runtime.progress == pytest.approx((1 + 0.25) / 3)
    run._apply(runtime, {"stage": "train", "stage_name": "cinn", "resumed_at": 300, "of": 900})
    assert runtime.message.endswith("cINN (3/3) · continuing at step 300")
    assert run.resumed


def test_train_from_clip_refusals(sm, tmp_path):
    train = bpy.context.scene.stillmotion_train
    assert not sm.ops.STILLMOTION_OT_poke_train.poll(bpy.context)  # nothing picked
    train.video_path = str(tmp_path / "gone.mp4")
    with pytest.raises(RuntimeError, match="The Video File is missing: .*gone.mp4"):
        bpy.ops.stillmotion.poke_train()
    video = tmp_path / "anna.mp4"
    video.write_bytes(b"x")
    train.video_path = str(video)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    bpy.context.preferences.addons[ADDON].preferences.models_dir = str(blocker / "models")
    with pytest.raises(RuntimeError, match="Cannot use the models folder .*Models Folder"):
        bpy.ops.stillmotion.poke_train()
    # An image-sequence Movie Clip has no video file to train on.
    frame = tmp_path / "seq" / "frame_0001.png"
    frame.parent.mkdir()
    from conftest import save_test_image

    save_test_image(frame, 8, 8)
    train.clip = bpy.data.movieclips.load(str(frame))
    with pytest.raises(RuntimeError, match="is an image sequence; training reads a video"):
        bpy.ops.stillmotion.poke_train()
    assert not bpy.context.window_manager.stillmotion.running


def test_cancelled_training_says_how_to_continue(sm, tmp_path):
    video = tmp_path / "anna.mp4"
    video.write_bytes(b"x")
    bpy.context.scene.stillmotion_train.video_path = str(video)
    use_engine(tmp_path, "import time\nprint('{\"stage\": \"train\"}', flush=True)\n"
                         "time.sleep(60)\n")
    run = sm.poke.TrainRun().start(bpy.context)
    assert bpy.context.window_manager.stillmotion.running
    pid = run.process.pid
    assert bpy.ops.stillmotion.cancel() == {"FINISHED"}  # the panel's Cancel button
    with pytest.raises(sm.errors.StillMotionError, match="Training anna stopped. Training keeps "
                       "its progress .*same model name to continue"):
        run.finish(bpy.context)
    assert run.process.returncode is not None
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(pid, 0)


def test_panel_draws_the_poke_engine(sm, tmp_path):
    plane = poked_plane(sm, tmp_path)
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    drawn = {entry[1] for entry in log}
    assert {"engine", "seed", "frames", "loop", "model", "stillmotion.poke_refresh_models",
            "samples", "temperature", "stillmotion.poke_sample", "STILLMOTION_PT_poke_train",
            "clip", "clip.open", "video_path", "model_name", "minutes", "stride", "face_crop",
            "motion_space", "face_parts",
            "stillmotion.poke_train", "stillmotion.bake"} <= drawn
    assert not {"falloff", "feather", "easing", "lambda_dyn"} & drawn
    assert ("label", "Style Stream (two-stream)") not in log
    texts = [e[1] for e in log if e[0] == "label"]
    assert "Bake renders sample 1 (Sample shows them)" in texts
    assert str(sm.models_dir) in "".join(texts).replace(" ", "")  # where models go (wrapped)
    assert not any("model file is not there" in t for t in texts)
    plane.stillmotion.poke.model_file = "gone.safetensors"
    texts = [e[1] for e in draw_panel(types.SimpleNamespace(main=sm.main)) if e[0] == "label"]
    assert any("model file is not there" in t for t in texts)
    plane.stillmotion.engine = "WARP"
    drawn = {entry[1] for entry in draw_panel(types.SimpleNamespace(main=sm.main))}
    assert "stillmotion.poke_sample" not in drawn and "falloff" in drawn


# -- the real engine ------------------------------------------------------------------------------

VIDEO_SCRIPT = """
import sys, cv2, numpy as np
out = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"MJPG"), 12, (64, 64))
for t in range(60):
    frame = np.full((64, 64, 3), (40, 80, 120), np.uint8)
    cv2.circle(frame, (20 + t % 20, 32), 8, (200, 220, 250), -1)
    out.write(frame)
out.release()
"""
TINY = ["--size", "tiny", "--steps", "video=2", "--steps", "codes=2", "--steps", "cinn=2",
        "--perceptual-weight", "0"]


def test_tiny_training_then_sample_and_bake_with_the_real_engine(sm, tmp_path):
    """train-poke on a 60-frame synthetic video (2 steps a stage), then Sample draws two
    thumbnails with that model for a poke and a pin (the engine's parts line lists both; the
    checker still has no face) and Bake renders the second sample at the still's size."""
    video = tmp_path / "dot.avi"
    subprocess.run([engine_python(), "-c", VIDEO_SCRIPT, str(video)], check=True)
    train = bpy.context.scene.stillmotion_train
    train.video_path, train.model_name, train.face_crop = str(video), "dot", False
    plane = poked_plane(sm, tmp_path / "scene", pokes=(POKE, STILL_POKE))
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene" / "shot.blend"))
    plane = bpy.data.objects[plane.name]
    bpy.context.view_layer.objects.active = plane

    message = sm.poke.run_sync(bpy.context, sm.poke.TrainRun(extra_args=TINY), timeout=300)
    assert message.startswith("Model 'dot' trained")
    assert sm.models.is_poke_model(sm.models_dir / "dot.safetensors")
    assert (sm.models_dir / "dot_run").is_dir()  # the state a re-run continues from
    poke = plane.stillmotion.poke
    assert poke.model == "dot.safetensors"

    poke.samples = 2
    sm.poke.run_sync(bpy.context, sm.poke.SampleRun(), plane, timeout=300)
    assert poke.thumbnails_count == 2
    assert [(p.number, p.part, p.pin) for p in poke.parts] == [(1, "", False), (2, "", True)]
    assert sm.poke.part_rows(plane) == [(sm.poke.NO_FACE_NOTE, "INFO"),
                                        ("Poke 1 → no part", "FORWARD"),
                                        ("Poke 2 (pin)", "PINNED")]
    thumb = bpy.data.images.load(str(pathlib.Path(poke.thumbnails_dir) / "sample_01.png"))
    assert tuple(thumb.size) == (128, 128)

    bpy.ops.stillmotion.poke_pick(index=1)
    plane.stillmotion.frames = 3
    result = sm.session.run_sync(bpy.context, plane, timeout=300)
    assert result.frames == 3
    frame = bpy.data.images.load(str(pathlib.Path(result.output) / "frame_0003.png"))
    assert tuple(frame.size) == (64, 48)

