"""The Sampled (iPOKE) engine's two engine runs besides Bake: Sample and Train from Clip.

- `SampleRun` writes the plane's poke job with `"thumbnails": true`; the engine draws all K
  samples and writes `sample_NN.png` (docs/JOB.md); the plane then remembers the folder and
  what the strip was made from (`strip_key`), and the panel shows the K thumbnails to pick from.
  Bake afterwards renders only the chosen sample, at full resolution: sample i depends on
  (seed, i) alone, so it is the clip its thumbnail showed. Before sampling the engine says which
  facial part each poke drives (its "parts" line); the plane keeps that list with the strip
  (`parts`, `parts_key`) and the panel lists it under the thumbnails while the pokes are the
  ones it was made from.
- `TrainRun` runs `python -m engine train-poke VIDEO --out <models folder>/<name>.safetensors`
  and, when the model is saved, lists the models folder again and selects the new model.
  The engine keeps resumable state in `<name>_run/` beside the model, so a cancelled or
  interrupted training continues where it stopped when it is started again with the same name.

Both are driven like a BakeSession: `start`, then `update` on every timer tick (or in a loop in
background mode, `run_sync`), then `finish`. They hold datablock names, never references.
"""

import hashlib
import pathlib
import tempfile
import time

import bpy

from ..scene.errors import StillMotionError
from . import models, paths
from . import session as bake_session
from .process import EngineProcess, missing_python_message
from .session import CANCELLED, DONE, FAILED, RUNNING

SAMPLE_RUNS_KEPT = 3  # thumbnail folders kept per plane (older strips are gone from disk)
TRAIN_STAGES = ("video", "codes", "cinn")  # engine/poke/train.py STAGES, in order
STAGE_TITLES = {"video": "video autoencoder", "codes": "image and poke encoders",
                "cinn": "cINN"}
RESUME_NOTE = ("Training keeps its progress in the models folder: Train again with the same "
               "model name to continue where it stopped")

# engine/poke/parts.py's part names as the panel shows them; left and right are the person's.
PART_NAMES = {"left_eye": "Left Eye", "right_eye": "Right Eye", "left_brow": "Left Brow",
              "right_brow": "Right Brow", "nose": "Nose", "mouth": "Mouth", "jaw": "Jaw"}
NO_FACE_NOTE = "No face found: pokes stay where drawn"  # the engine's warning says why

_icons = None  # bpy.utils.previews collection of the strips' thumbnails


def _start_engine(context, args):
    python = bake_session.engine_python(context)
    if not pathlib.Path(python).is_file():
        raise StillMotionError(missing_python_message(python))
    try:
        return EngineProcess.run_command(python, args,
                                         env_extra=bake_session._engine_env_extra(context))
    except OSError as exc:
        raise StillMotionError(
            f"Cannot start the engine Python {python} ({exc.strerror or exc}): pick a working "
            "interpreter in Preferences > Add-ons > StillMotion") from None


class _EngineRun:
    """What Sample and Train share: progress into wm.stillmotion, cancel, finish."""

    title = ""

    def __init__(self):
        self.state = bake_session.IDLE
        self.process = None
        self.started = 0.0
        self.warnings = []
        self.progress = 0.0

    def _begin(self, context, process, label, message):
        self.process = process
        self.state = RUNNING
        self.started = time.monotonic()
        runtime = context.window_manager.stillmotion
        runtime.running = True
        runtime.plane_name = label
        runtime.stage = "start"
        runtime.progress = 0.0
        runtime.message = message
        runtime.last_error = ""
        runtime.last_warning = "; ".join(self.warnings)
        bake_session._redraw(context)

    def _fail_to_start(self, context, exc):
        bake_session.release(self)
        runtime = context.window_manager.stillmotion
        runtime.running = False
        runtime.last_error = str(exc)

    @property
    def elapsed(self):
        return time.monotonic() - self.started if self.started else 0.0

    def update(self, context):
        if self.state != RUNNING:
            return self.state
        finished = self.process.finished  # before draining, so no line arrives after
        runtime = context.window_manager.stillmotion
        for event in self.process.poll():
            if event.get("stage") == "warning":
                text = str(event.get("message", "")).strip()
                if text and text not in self.warnings:
                    self.warnings.append(text)
                    runtime.last_warning = "; ".join(self.warnings)
            elif event.get("stage") not in {"error", "cancelled"}:
                self._apply(runtime, event)
        if finished:
            self.state = DONE if self.process.succeeded else (
                CANCELLED if self.process.cancelled else FAILED)
        bake_session._redraw(context)
        return self.state

    def _apply(self, runtime, event):
        raise NotImplementedError

    def cancel(self):
        if self.state == RUNNING and self.process is not None:
            self.process.cancel()
            self.state = CANCELLED

    def finish(self, context):
        """The result message, or StillMotionError (also in wm.stillmotion.last_error)."""
        if self.state == RUNNING:
            raise StillMotionError(f"{self.title} is still running")
        bake_session.release(self)
        runtime = context.window_manager.stillmotion
        runtime.running = False
        try:
            if self.state == CANCELLED:
                raise StillMotionError(self._cancelled_message())
            if self.state != DONE:
                reason = self.process.error_message() if self.process else ""
                raise StillMotionError(reason or f"{self.title} stopped without finishing")
            message = self._done(context)
        except StillMotionError as exc:
            runtime.stage = "cancelled" if self.state == CANCELLED else "failed"
            runtime.progress = 0.0
            runtime.message = ""
            runtime.last_error = str(exc)
            self._cleanup(success=False)
            bake_session._redraw(context)
            raise
        runtime.stage = "done"
        runtime.progress = 1.0
        runtime.message = message
        runtime.last_error = ""
        self._cleanup(success=True)
        bake_session._redraw(context)
        return message

    def _cancelled_message(self):
        return f"{self.title} cancelled"

    def _done(self, context):
        raise NotImplementedError

    def _cleanup(self, success):
        pass


# -- Sample ---------------------------------------------------------------------------------------


def strip_key(plane):
    """What a strip of thumbnails depends on: the still, seed, model, temperature, K, the face
    options, the Style and the strokes. Compared on redraw with the key the strip was made
    with, so the panel can say when the thumbnails no longer show what Bake would render."""
    from ..scene import strokes

    settings = plane.stillmotion
    poke = settings.poke
    key = (settings.seed, poke.model_file, round(poke.temperature, 4), poke.samples,
           poke.guide, poke.snap, poke.background)
    if models.is_mesh_model(models.model_path(bpy.context, poke.model_file)):
        # It ignores guide and snap (and the panel hides them): no reason to Sample again.
        key = key[:4] + (poke.background,)
    painting = settings.style_image
    if painting is not None and settings.style_strength > 0:  # (no style: keys as before)
        key += ((painting.name, round(settings.style_strength, 4), settings.style_where,
                 round(settings.style_feather, 3)),)
    return _key(plane, (strokes.POKES, strokes.MASKS), key)


def parts_key(plane):
    """What the facial parts of the pokes depend on: the still, Snap to Face Parts and the
    pokes (not the seed or model: a new seed does not move a poke to another part)."""
    from ..scene import strokes

    return _key(plane, (strokes.POKES,), (plane.stillmotion.poke.snap,))


def _key(plane, layers, settings):
    from ..scene import strokes

    digest = hashlib.sha1()
    digest.update(repr(settings).encode())
    digest.update(_plane_image_name(plane).encode())
    gp_obj = plane.stillmotion.strokes
    if gp_obj is not None and strokes.is_grease_pencil(gp_obj):
        for layer in layers:
            for stroke in strokes.read_stroke_data(gp_obj, layer):
                digest.update(layer.encode())
                digest.update(stroke.points.round(5).tobytes())
    return digest.hexdigest()[:16]


def read_parts(event, poke_strokes):
    """The engine's "parts" line -> (face found, [(stroke number, part or "", pin)]), in the
    job's poke order. The engine numbers the job's pokes; poke_strokes (JobPlan.poke_strokes)
    turns them back into the artist's strokes. None when the line is not what docs/JOB.md says
    (an engine of another version): the panel then shows no parts rather than wrong ones."""
    items = event.get("pokes")
    if not isinstance(items, list):
        return None
    rows = []
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            return None
        part = item.get("part") or ""
        if not isinstance(part, str):
            return None
        number = poke_strokes[index - 1] if index <= len(poke_strokes) else index
        rows.append((number, part, bool(item.get("pin"))))
    return bool(event.get("face")), rows


def store_parts(poke, parts, key):
    """Keep a Sample run's parts on the plane (None: the run said nothing about parts)."""
    poke.parts.clear()
    if parts is None:
        poke.parts_face, poke.parts_key = False, ""
        return
    face, rows = parts
    for number, part, pin in rows:
        item = poke.parts.add()
        item.number, item.part, item.pin = number, part, pin
    poke.parts_face, poke.parts_key = face, key


def part_name(part):
    return PART_NAMES.get(part) or part.replace("_", " ").title()


def part_rows(plane):
    """[(text, icon)] the panel lists under the strip: "Poke 1 → Mouth", "Poke 2 (pin)",
    "Poke 3 → no part", after a note when no face was found. Empty when the last Sample said
    nothing about parts or the pokes (or the still, or Snap) changed since: parts of other
    pokes would point the artist at the wrong stroke."""
    poke = plane.stillmotion.poke
    if not poke.parts_key or poke.parts_key != parts_key(plane):
        return []
    rows = [] if poke.parts_face else [(NO_FACE_NOTE, "INFO")]
    for item in poke.parts:
        if item.pin:
            text = f"Poke {item.number} (pin)"
            if item.part:
                text += f" → {part_name(item.part)}"
        else:
            text = f"Poke {item.number} → {part_name(item.part) if item.part else 'no part'}"
        rows.append((text, "PINNED" if item.pin else "FORWARD"))
    return rows


def _plane_image_name(plane):
    from ..scene.plane import find_image_node

    _material, node = find_image_node(plane)
    image = node.image if node is not None else None
    return image.name if image is not None else ""


def made_with(plane):
    settings = plane.stillmotion
    poke = settings.poke
    return (f"seed {settings.seed} · {models.display_name(poke.model_file)} · "
            f"T {poke.temperature:g}")


class SampleRun(_EngineRun):
    title = "Sampling"

    def __init__(self):
        super().__init__()
        self.plane_name = ""
        self.plane_uid = None
        self.job_dir = None
        self.output_dir = None
        self.key = ""
        self.made_with = ""
        self.samples = 0
        self.parts_key = ""
        self.poke_strokes = []
        self.parts = None  # read_parts of the engine's "parts" line, when it sent one

    def start(self, context, plane):
        """Write the thumbnails job and start the engine; StillMotionError when it cannot."""
        bake_session.claim(self)
        try:
            self._start(context, plane)
        except StillMotionError as exc:
            self._cleanup(success=False)
            self._fail_to_start(context, exc)
            raise
        self._begin(context, self.process, plane.name,
                    f"Sampling {self.samples}: starting the engine")
        return self

    def _start(self, context, plane):
        from ..scene import job as scene_job

        if plane is None:
            raise StillMotionError("Select an image plane first")
        if plane.stillmotion.engine != "POKE":
            raise StillMotionError("Sample draws clips of the Sampled (iPOKE) engine: choose it "
                                   "as the plane's Engine first")
        self.plane_name, self.plane_uid = plane.name, plane.session_uid
        self.key, self.made_with = strip_key(plane), made_with(plane)
        self.parts_key = parts_key(plane)
        self.samples = int(plane.stillmotion.poke.samples)
        try:
            folder = paths.user_folder("poke-samples") / paths.safe_name(plane.name)
            folder.mkdir(parents=True, exist_ok=True)
            paths.prune_job_dirs(folder, keep=SAMPLE_RUNS_KEPT - 1)
            run_dir = pathlib.Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"),
                                                    dir=folder))
            self.output_dir = run_dir / "samples"  # the engine creates it when all are written
            self.job_dir = paths.new_job_dir(plane.name)
            plan = scene_job.write_job(plane, self.job_dir, self.output_dir, thumbnails=True,
                                       device=bake_session.engine_device(context))
        except OSError as exc:
            raise StillMotionError(
                f"Cannot write the sample folders ({exc.strerror or exc}): free some disk "
                "space in your user folder and sample again") from None
        self.warnings = list(plan.warnings or [])
        self.poke_strokes = list(plan.poke_strokes)
        self.process = _start_engine(context, ["run", plan.job_path])

    def _apply(self, runtime, event):
        stage = str(event.get("stage", ""))
        done, total = event.get("done"), event.get("total")
        runtime.stage = stage
        if stage == "parts":
            self.parts = read_parts(event, self.poke_strokes)
            runtime.message = "Sampling: the pokes found their facial parts"
        elif stage == "thumbnail" and isinstance(done, int) and isinstance(total, int) and total:
            self.progress = runtime.progress = max(0.0, min(1.0, done / total))
            runtime.message = f"Sampling: {done}/{total} samples"
        elif stage == "face":
            runtime.message = "Sampling: found the face, measuring it"
        elif stage in {"sample", "load"}:
            runtime.message = "Sampling: the model draws the clips"
        elif stage:
            runtime.message = f"Sampling: {stage}"

    def _done(self, context):
        output = pathlib.Path(self.output_dir)
        thumbnails = sorted(output.glob("sample_*.png")) if output.is_dir() else []
        if not thumbnails:
            raise StillMotionError(f"The engine reported success but wrote no thumbnails into "
                                   f"{output}: sample again")
        plane = bake_session.find_object(self.plane_name, self.plane_uid)
        if plane is None:
            raise StillMotionError(f"The plane {self.plane_name} was deleted while sampling")
        poke = plane.stillmotion.poke
        poke.thumbnails_dir = str(output)
        poke.thumbnails_count = len(thumbnails)
        poke.thumbnails_key = self.key
        poke.thumbnails_made_with = self.made_with
        store_parts(poke, self.parts, self.parts_key)
        if poke.sample >= len(thumbnails):
            poke.sample = 0
        return (f"{len(thumbnails)} samples ({self.elapsed:.1f} s): click one to choose it, "
                "then Bake renders it at full resolution")

    def _cleanup(self, success):
        import shutil

        if self.job_dir is not None:
            shutil.rmtree(self.job_dir, ignore_errors=True)
            self.job_dir = None
        if not success and self.output_dir is not None:
            shutil.rmtree(pathlib.Path(self.output_dir).parent, ignore_errors=True)


def thumbnail_paths(poke):
    """The strip's files on disk, in sample order (missing ones are None)."""
    if not poke.thumbnails_dir or poke.thumbnails_count <= 0:
        return []
    folder = pathlib.Path(poke.thumbnails_dir)
    found = []
    for index in range(poke.thumbnails_count):
        path = folder / f"sample_{index:02d}.png"
        found.append(path if path.is_file() else None)
    return found


def thumbnail_icons(poke):
    """[(index, icon id)] for the strip's thumbnails on disk (loaded into previews once)."""
    global _icons
    paths_found = thumbnail_paths(poke)
    if not paths_found:
        return []
    if _icons is None:
        import bpy.utils.previews

        _icons = bpy.utils.previews.new()
    strip = []
    for index, path in enumerate(paths_found):
        if path is None:
            continue
        name = str(path)
        if name not in _icons:
            _icons.load(name, name, "IMAGE")
        strip.append((index, _icons[name].icon_id))
    return strip


def release_icons():
    global _icons
    if _icons is not None:
        bpy.utils.previews.remove(_icons)
        _icons = None


# -- Train from Clip ------------------------------------------------------------------------------


def training_video(train):
    """The video file Train from Clip reads: the Movie Clip's file, else Video File."""
    if train.clip is not None:
        clip = train.clip
        if clip.source != "MOVIE":
            raise StillMotionError(
                f"The Movie Clip '{clip.name}' is an image sequence; training reads a video "
                "file: pick a clip opened from a video, or set Video File")
        path = pathlib.Path(bpy.path.abspath(clip.filepath, library=clip.library))
        what = f"The file of the Movie Clip '{clip.name}'"
    elif train.video_path.strip():
        path = pathlib.Path(bpy.path.abspath(train.video_path))
        what = "The Video File"
    else:
        raise StillMotionError("Pick a Movie Clip or a Video File of the person to train on")
    if not path.is_file():
        raise StillMotionError(f"{what} is missing: {path}. Pick an existing video")
    return path.resolve()


def model_name_for(train, video):
    return models.safe_model_name(train.model_name or video.stem)


def train_arguments(train, video, out, device="auto", extra=()):
    """The `python -m engine ...` arguments of a Train from Clip run."""
    args = ["train-poke", str(video), "--out", str(out),
            "--max-minutes", f"{float(train.minutes):g}", "--stride", str(int(train.stride)),
            "--device", device]
    if train.face_crop:
        args.append("--face-crop")
    if train.motion_space:
        args += ["--space", "motion"]
    if train.face_parts:
        args.append("--parts")
    return args + [str(a) for a in extra]


class TrainRun(_EngineRun):
    title = "Training"

    def __init__(self, extra_args=()):
        super().__init__()
        self.extra_args = list(extra_args)  # tests: a tiny model, fixed steps
        self.name = ""
        self.out = None
        self.saved = None
        self.stage_name = ""
        self.resumed = False
        self.last_val = ""
        self.select_on = ""  # plane whose model becomes the new one
        self._share_of, self._share = "", 0.0  # progress inside the current stage

    def start(self, context):
        bake_session.claim(self)
        try:
            self._start(context)
        except StillMotionError as exc:
            self._fail_to_start(context, exc)
            raise
        self._begin(context, self.process, "Train from Clip",
                    f"Training {self.name}: the engine reads the video")
        return self

    def _start(self, context):
        train = context.scene.stillmotion_train
        video = training_video(train)
        try:
            folder = models.models_folder(context, create=True)
            paths.ensure_folder(folder)
        except OSError as exc:
            raise StillMotionError(
                f"Cannot use the models folder ({exc.strerror or exc}): pick a folder you can "
                "write to in Preferences > Add-ons > StillMotion > Models Folder") from None
        self.name = model_name_for(train, video)
        self.out = folder / f"{self.name}{models.SUFFIX}"
        plane = bake_session.plane_for(context)
        self.select_on = plane.name if plane is not None else ""
        args = train_arguments(train, video, self.out, bake_session.engine_device(context),
                               self.extra_args)
        self.process = _start_engine(context, args)

    def _apply(self, runtime, event):
        stage = event.get("stage")
        if stage == "saved":
            self.saved = event.get("path")
            runtime.message = f"Training {self.name}: saving the model"
            return
        if stage != "train":
            return
        name = str(event.get("stage_name", self.stage_name))
        self.stage_name = name
        position = TRAIN_STAGES.index(name) if name in TRAIN_STAGES else 0
        title = f"{STAGE_TITLES.get(name, name)} ({position + 1}/{len(TRAIN_STAGES)})"
        if "resumed_at" in event:
            self.resumed = True
        if isinstance(event.get("val"), dict):
            self.last_val = ", ".join(f"{k} {v:.4g}" for k, v in event["val"].items()
                                      if isinstance(v, (int, float)))
        done, total = event.get("done"), event.get("total")
        if name != self._share_of:
            self._share_of, self._share = name, 0.0
        detail = ""
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            self._share = min(1.0, done / total)
            losses = [f"{k} {v:.4g}" for k, v in event.items()
                      if k not in {"stage", "stage_name", "done", "total"}
                      and isinstance(v, (int, float))]
            title += f" {int(done)}/{int(total)}"
            detail = " · " + ", ".join(losses[:3]) if losses else ""
        elif "val" in event and self.last_val:
            detail = f" · held-out {self.last_val}"
        elif "resumed_at" in event:
            detail = f" · continuing at step {event['resumed_at']}"
        self.progress = runtime.progress = (position + self._share) / len(TRAIN_STAGES)
        runtime.stage = name
        runtime.message = f"Training {self.name}: {title}{detail}"

    def _cancelled_message(self):
        return f"Training {self.name} stopped. {RESUME_NOTE}"

    def _done(self, context):
        path = pathlib.Path(self.saved or self.out)
        if not path.is_file():
            raise StillMotionError(f"The engine reported success but wrote no model at {path}: "
                                   "train again (it continues where it stopped)")
        models.refresh(context)
        plane = bpy.data.objects.get(self.select_on) if self.select_on else None
        if plane is not None and hasattr(plane, "stillmotion"):
            plane.stillmotion.poke.model_file = path.name
        return (f"Model '{self.name}' trained ({self.elapsed / 60:.1f} min) and added to the "
                f"models folder: {path}")


def run_sync(context, run, *start_args, timeout=None, interval=0.05):
    """Start run and wait for it (background mode, tests): the same calls the modal operators
    make. Returns finish()'s message; raises StillMotionError as the panel would show it."""
    run.start(context, *start_args)
    try:
        while run.update(context) == RUNNING:
            if timeout is not None and run.elapsed > timeout:
                run.cancel()
                break
            time.sleep(interval)
    except BaseException:
        run.cancel()
        try:
            run.finish(context)
        except StillMotionError:
            pass
        raise
    return run.finish(context)
