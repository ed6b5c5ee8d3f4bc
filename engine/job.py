"""The job file (docs/JOB.md, version 1) as a validated dataclass.

`load_job(path)` reads and checks everything that can be checked without decoding images:
types, ranges, finite numbers, files that must exist, the output folder that must not. What needs
the still's size (pokes on the image, mask sizes) is checked by `check_against_image` and by
frames.read_mask once the still is read. Every problem is a JobError whose message names the key
and says what to do.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import JobError

VERSION = 1
ENGINES = ("warp", "dyntex", "poke")
FORMATS = {"PNG8": ".png", "PNG16": ".png", "EXR": ".exr"}
EASINGS = ("ease_in_out", "linear")
DEVICES = ("auto", "cpu", "cuda")
# Mask labels that name a motion (engine/dyntex/exemplars.py EXEMPLARS) or pin pixels; any other
# label is a clip file or frames folder for the dyntex engine.
LABELS = ("static", "water", "clouds", "grass", "waterfall", "ripples")
# A poke shorter than this moves nothing visible (half a pixel, or 1 % of the longer side of a
# tiny still); for the warp engine it is a mistake (a click without a drag), so it is refused
# rather than silently ignored. The poke engine accepts them (a zero vector on its poke map).
MIN_POKE_LENGTH = 0.5
# How a pixel poke model's 64-px frames reach the still's resolution (engine/poke/sample.py).
COMPOSE_MODES = ("change", "frames")
# How the dyntex engine makes its frames (engine/dyntex/__init__.py).
DYNTEX_METHODS = ("two-stream", "advect")
MIN_POKE_SHARE = 0.01
# A poke's end may leave the picture (content dragged out of frame), but by at most this many
# picture diagonals beyond its edge: from anywhere on the picture that carries a brush well
# clear of it. Farther ends are slips or broken exports (1e5 px, 1e308), and the warp engine's
# work grows with drag / radius (engine/warp/field.py), so they are refused, not baked for ever.
MAX_POKE_OVERSHOOT = 2
# Where the style stage applies (engine/style/stage.py): the whole still, or inside the masks.
STYLE_PLACES = ("all", "masks")
# A job is four levels deep (job -> pokes -> poke -> start); deeper JSON is not a job, and nested
# far enough it overflows Python's recursion while being read.
MAX_JOB_DEPTH = 32


@dataclass(frozen=True)
class Poke:
    start: tuple[float, float]
    end: tuple[float, float]
    radius: float = 0.0  # 0 = use warp.falloff

    @property
    def vector(self) -> tuple[float, float]:
        return (self.end[0] - self.start[0], self.end[1] - self.start[1])

    @property
    def length(self) -> float:
        return math.hypot(*self.vector)

    def is_pin(self, width: int, height: int) -> bool:
        """A click without a drag: for the poke engine, "this point must not move"."""
        return self.length < min(MIN_POKE_LENGTH, MIN_POKE_SHARE * max(width, height))


@dataclass(frozen=True)
class Mask:
    path: Path
    label: str


@dataclass(frozen=True)
class WarpSettings:
    falloff: float = 0.0  # default poke radius in full-resolution pixels; 0 = automatic
    feather: float = 0.0  # soft edge of static masks, full-resolution pixels


@dataclass(frozen=True)
class DyntexSettings:
    """The "dyntex" object of a job (engine/dyntex/synthesis.py): working size, optimiser and
    the loss weights λ3..λ7; style is a painting (path) for the style stream."""
    size: int = 256
    iterations: int = 100
    levels: int = 1
    optimizer: str = "lbfgs"
    lambda_style: float = 1.0
    lambda_l2: float = 0.0
    lambda_app: float = 1.0
    # the report's λ6 is 10; with our per-layer normalisation 10 lets the motion term override
    # the appearance (grey blobs jumping between frames; docs/dyntex.md)
    lambda_dyn: float = 1.0
    lambda_paint: float = 0.1
    motion_contrast: float = 0.5  # share of λ6's term compared as motion contrast (losses.py)
    style: Path | None = None
    # "advect" (the default): move the still's own pixels along measured motion fields
    # (advect.py, issue 15); "two-stream": optimise every frame (synthesis.py, the research
    # method, which the keys above configure)
    method: str = "advect"
    # advect only: two-stream iterations (the keys above: size, weights, optimizer) started from
    # the advected clip, whose change is composited onto it at full resolution (refine.py); 0 =
    # none. Each costs about as much as one two-stream iteration at the same size and frames.
    refine: int = 0


@dataclass(frozen=True)
class StyleSettings:
    """The "style" object of a job (engine/style/): the painting, how far the still moves toward
    its colour and brushwork statistics (0 = the still, 1 = fully the painting's), and where."""
    image: Path
    strength: float = 0.8
    where: str = "all"      # "all" or "masks" (the union of the job's masks, any label)
    feather: float = 0.0    # soft inner edge of "masks", still pixels; 0 = automatic


# Where a job with "poke": {"model": null} finds its model: the shipped default (models/).
DEFAULT_POKE_MODEL = Path(__file__).resolve().parents[1] / "models" / "poke_mesh.safetensors"
MAX_POKE_SAMPLES = 64


@dataclass(frozen=True)
class PokeSettings:
    """The "poke" object of a job (engine/poke/sample.py): which model, how many samples K the
    seed spreads over, which one to bake (0-based), the noise temperature, and whether to write
    the K thumbnails for the panel's picker instead of frames, and (motion-space models) whether
    the sample is corrected to land every poke exactly and keep every pin still (`guide`),
    whether pokes snap to facial parts (`snap`) and whether the background is held still by a
    person mask (`background`; both need MediaPipe, engine/poke/parts.py)."""
    model: Path | None = None      # None: the shipped default (DEFAULT_POKE_MODEL)
    samples: int = 4
    sample: int = 0
    temperature: float = 1.0
    thumbnails: bool = False
    guide: bool = True
    snap: bool = True               # move each poke onto the facial part it starts near
    background: bool = True         # hold everything but the person still (person mask)
    compose: str = "change"         # pixel models: "change" (added to the still) or "frames"
                                    # (the 64-px frames upsampled: the published baseline)

    def model_path(self) -> Path:
        return self.model if self.model is not None else DEFAULT_POKE_MODEL


@dataclass(frozen=True)
class Job:
    engine: str
    image: Path
    output: Path
    frames: int
    fps: float = 24.0
    seed: int = 0
    loop: bool = False
    easing: str = "ease_in_out"
    format: str = "PNG8"
    max_size: int = 0
    device: str = "auto"
    pokes: tuple[Poke, ...] = ()
    masks: tuple[Mask, ...] = ()
    warp: WarpSettings = field(default_factory=WarpSettings)
    dyntex: DyntexSettings = field(default_factory=DyntexSettings)
    poke: PokeSettings = field(default_factory=PokeSettings)
    style: StyleSettings | None = None
    # Set by the style stage (engine/style/stage.py), which points `image` at the stylized
    # still: the still as the artist gave it, for what decides motion (finding the face).
    unstyled_image: Path | None = None
    version: int = VERSION

    @property
    def extension(self) -> str:
        return FORMATS[self.format]

    def frame_name(self, index: int) -> str:
        """File name of frame `index` (1-based), as Blender's image sequences expect."""
        return f"frame_{index:04d}{self.extension}"


def load_job(path: str | os.PathLike) -> Job:
    """Read and validate a job file. Relative paths inside it are relative to its folder."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError(f"job file not found: {path}; check the path passed to `run`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"cannot read job file {path}: {exc}") from None
    too_deep = (f"job file {path} is nested more than {MAX_JOB_DEPTH} levels deep, so it is "
                "not a job (see docs/JOB.md); re-export the job")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(f"job file {path} is not valid JSON (line {exc.lineno}, column "
                       f"{exc.colno}: {exc.msg}); re-export the job") from None
    except RecursionError:
        raise JobError(too_deep) from None
    if _depth_exceeds(data, MAX_JOB_DEPTH):
        raise JobError(too_deep)
    job = parse_job(data, path.parent)
    check_files(job)
    return job


def parse_job(data: object, folder: Path) -> Job:
    """Validate the JSON object of a job and build a Job (no file-system checks)."""
    if not isinstance(data, dict):
        raise JobError("job file must hold a JSON object ({...}); re-export the job")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise JobError(f"job version {version!r} is not supported: this engine reads version "
                       f"{VERSION}; update the StillMotion extension and engine together")
    engine = _required(data, "engine", str)
    if engine not in ENGINES:
        raise JobError(f"engine {engine!r} is not known; use one of: {', '.join(ENGINES)}")
    image = _path(folder, _required(data, "image", str), "image")
    output = _path(folder, _required(data, "output", str), "output")
    frames = _required(data, "frames", int)
    if frames < 2:
        raise JobError(f"frames must be at least 2 (got {frames}): a clip needs a first and a "
                       "last frame")
    fps = _optional(data, "fps", float, 24.0)
    if not fps > 0:
        raise JobError(f"fps must be a positive number (got {fps})")
    fmt = _optional(data, "format", str, "PNG8")
    if fmt not in FORMATS:
        raise JobError(f"format {fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
    easing = _optional(data, "easing", str, "ease_in_out")
    if easing not in EASINGS:
        raise JobError(f"easing {easing!r} is not known; use one of: {', '.join(EASINGS)}")
    device = _optional(data, "device", str, "auto")
    if device not in DEVICES:
        raise JobError(f"device {device!r} is not known; use one of: {', '.join(DEVICES)}")
    max_size = _optional(data, "max_size", int, 0)
    if max_size < 0:
        raise JobError(f"max_size must be 0 (full resolution) or a positive size in pixels "
                       f"(got {max_size})")

    warp_data = _optional(data, "warp", dict, {})
    warp = WarpSettings(falloff=_non_negative(warp_data, "falloff", "warp.falloff"),
                        feather=_non_negative(warp_data, "feather", "warp.feather"))
    dyntex = _dyntex(_optional(data, "dyntex", dict, {}), folder) if engine == "dyntex" \
        else DyntexSettings()
    poke = _poke_settings(_optional(data, "poke", dict, {}), folder) if engine == "poke" \
        else PokeSettings()
    return Job(
        version=version, engine=engine, image=image, output=output, frames=frames, fps=fps,
        seed=_optional(data, "seed", int, 0), loop=_optional(data, "loop", bool, False),
        easing=easing, format=fmt, max_size=max_size, device=device,
        pokes=tuple(_poke(p, i) for i, p in enumerate(_optional(data, "pokes", list, []), 1)),
        masks=tuple(_mask(m, i, folder)
                    for i, m in enumerate(_optional(data, "masks", list, []), 1)),
        warp=warp, dyntex=dyntex, poke=poke,
        style=_style(data["style"], folder) if data.get("style") is not None else None,
    )


def _dyntex(data: dict, folder: Path) -> DyntexSettings:
    values = {}
    for key, kind in (("size", int), ("iterations", int), ("levels", int), ("optimizer", str),
                      ("lambda_style", float), ("lambda_l2", float), ("lambda_app", float),
                      ("lambda_dyn", float), ("lambda_paint", float), ("motion_contrast", float),
                      ("refine", int)):
        if data.get(key) is not None:
            values[key] = _check_type(data[key], kind, f"dyntex.{key}")
            if kind is not str and values[key] < 0:
                raise JobError(f"dyntex.{key} must not be negative (got {values[key]})")
    if values.get("motion_contrast", 0.0) > 1:
        raise JobError(f"dyntex.motion_contrast is a share from 0 to 1 (got "
                       f"{values['motion_contrast']})")
    style = data.get("style")
    if style is not None:
        values["style"] = _path(folder, _check_type(style, str, "dyntex.style"), "dyntex.style")
    if data.get("method") is not None:
        values["method"] = _check_type(data["method"], str, "dyntex.method")
        if values["method"] not in DYNTEX_METHODS:
            raise JobError(f"dyntex.method {values['method']!r} is not known; use one of: "
                           f"{', '.join(DYNTEX_METHODS)}")
    if values.get("refine") and values.get("method", "advect") != "advect":
        raise JobError("dyntex.refine refines an advected clip: use it with method \"advect\" "
                       "(two-stream already optimises every frame; raise its iterations)")
    return DyntexSettings(**values)


def _style(data: object, folder: Path) -> StyleSettings:
    data = _check_type(data, dict, "style")
    image = _path(folder, _check_type(data.get("image", ""), str, "style.image"), "style.image")
    values = {"image": image}
    if data.get("strength") is not None:
        values["strength"] = _check_type(data["strength"], float, "style.strength")
        if not 0.0 <= values["strength"] <= 1.0:
            raise JobError(f"style.strength must be from 0 (the still) to 1 (fully the "
                           f"painting's statistics), got {values['strength']}")
    if data.get("where") is not None:
        values["where"] = _check_type(data["where"], str, "style.where")
        if values["where"] not in STYLE_PLACES:
            raise JobError(f"style.where {values['where']!r} is not known; use one of: "
                           f"{', '.join(STYLE_PLACES)}")
    if data.get("feather") is not None:
        values["feather"] = _non_negative(data, "feather", "style.feather")
    return StyleSettings(**values)


def _poke_settings(data: dict, folder: Path) -> PokeSettings:
    values = {}
    for key, kind in (("samples", int), ("sample", int), ("temperature", float),
                      ("thumbnails", bool), ("guide", bool), ("snap", bool),
                      ("background", bool)):
        if data.get(key) is not None:
            values[key] = _check_type(data[key], kind, f"poke.{key}")
    samples = values.get("samples", PokeSettings.samples)
    if not 1 <= samples <= MAX_POKE_SAMPLES:
        raise JobError(f"poke.samples must be 1..{MAX_POKE_SAMPLES} (got {samples})")
    sample = values.get("sample", PokeSettings.sample)
    if not 0 <= sample < samples:
        raise JobError(f"poke.sample is {sample} but there are {samples} samples (0.."
                       f"{samples - 1}); pick one of the thumbnails, or raise poke.samples")
    temperature = values.get("temperature", PokeSettings.temperature)
    if not 0 < temperature <= 10:
        raise JobError(f"poke.temperature must be above 0 and at most 10 (got {temperature}); "
                       "1 samples the model as trained, lower is tamer")
    if data.get("model") is not None:
        values["model"] = _path(folder, _check_type(data["model"], str, "poke.model"),
                                "poke.model")
    if data.get("compose") is not None:
        values["compose"] = _check_type(data["compose"], str, "poke.compose")
        if values["compose"] not in COMPOSE_MODES:
            raise JobError(f"poke.compose must be one of {', '.join(COMPOSE_MODES)} (got "
                           f"{values['compose']!r})")
    return PokeSettings(**values)


def check_files(job: Job) -> None:
    """The inputs exist and the output does not (a bake never overwrites an earlier one)."""
    if not job.image.is_file():
        raise JobError(f"still image not found: {job.image}; save or re-export the image and "
                       "bake again")
    for index, mask in enumerate(job.masks, 1):
        if not mask.path.is_file():
            raise JobError(f"mask {index} not found: {mask.path}; re-export the job")
    if job.style is not None and not job.style.image.is_file():
        raise JobError(f"style painting not found: {job.style.image}; pick the painting again "
                       "(or set Strength to 0 for no style)")
    if job.engine == "poke" and not job.poke.model_path().is_file():
        if job.poke.model is None:
            raise JobError("engine 'poke' needs a model, and the shipped default "
                           f"({DEFAULT_POKE_MODEL.name}) is not available in this installation "
                           "yet; train one from a clip of the person (`python -m engine "
                           "train-poke VIDEO --out MODEL.safetensors`) and set poke.model, or "
                           "use 'warp'")
        raise JobError(f"poke model not found: {job.poke.model}; pick a model file made by "
                       "`python -m engine train-poke`")
    if os.path.lexists(job.output):
        raise JobError(f"output folder already exists: {job.output}; bake into a new take "
                       "folder (the engine never overwrites a bake)")


def check_against_image(job: Job, width: int, height: int) -> None:
    """Checks that need the still's size (full resolution, before max_size)."""
    min_length = min(MIN_POKE_LENGTH, MIN_POKE_SHARE * max(width, height))
    for index, poke in enumerate(job.pokes, 1):
        x, y = poke.start
        if job.engine == "warp" and poke.length < min_length:
            raise JobError(f"poke {index} has zero length (start and end at ({x:g}, {y:g})); "
                           "drag it to give it a direction, or delete it")
        if not (0.0 <= x <= width and 0.0 <= y <= height):
            raise JobError(f"poke {index} starts outside the {width}x{height} image at "
                           f"({x:g}, {y:g}); pokes must start on the image (pixel coordinates, "
                           "y down)")
        ex, ey = poke.end
        outside = math.hypot(max(0.0, -ex, ex - width), max(0.0, -ey, ey - height))
        reach = MAX_POKE_OVERSHOOT * math.hypot(width, height)
        if outside > reach:
            raise JobError(f"poke {index} ends at ({ex:g}, {ey:g}), outside the {width}x{height} "
                           f"image by more than {MAX_POKE_OVERSHOOT} picture diagonals "
                           f"({reach:.0f} px); an end may leave the image, but not that far: drag "
                           "its end closer")


def read_motion_still(job: Job, width: int, height: int):
    """The still that decides motion, at width x height: the artist's own when the style stage
    replaced `image` (a face finder should look at the photo, not at brushstrokes), else
    `image`."""
    from engine import frames

    if job.unstyled_image is None:
        return None
    return frames.resize(frames.read_image(job.unstyled_image), width, height)


def read_working_still(job: Job):
    """The still, checked against the job's pokes, at the size the pokes engines render at
    (max_size): (pixels, full width, full height, x scale, y scale). Scales take job pixel
    coordinates to working pixels."""
    from engine import frames
    from engine.warp import working_size

    still = frames.read_image(job.image)
    height, width = still.shape[:2]
    check_against_image(job, width, height)
    work_w, work_h = working_size(width, height, job.max_size)
    return frames.resize(still, work_w, work_h), width, height, work_w / width, work_h / height


# --------------------------------------------------------------------------------------------


def _poke(item: object, index: int) -> Poke:
    where = f"poke {index}"
    if not isinstance(item, dict):
        raise JobError(f"{where} must be an object with start, end and radius")
    start = _point(item.get("start"), f"{where} start")
    end = _point(item.get("end"), f"{where} end")
    radius = _non_negative(item, "radius", f"{where} radius")
    return Poke(start=start, end=end, radius=radius)


def _point(value: object, where: str) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(_is_number(v) for v in value)):
        raise JobError(f"{where} must be [x, y] in image pixels, got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise JobError(f"{where} is not a finite point ({value[0]}, {value[1]}); redraw the stroke")
    return (x, y)


def _mask(item: object, index: int, folder: Path) -> Mask:
    where = f"mask {index}"
    if not isinstance(item, dict):
        raise JobError(f"{where} must be an object with path and label")
    path = item.get("path")
    label = item.get("label", "static")
    if not isinstance(path, str) or not path:
        raise JobError(f"{where} needs a \"path\" to a PNG file")
    if not isinstance(label, str) or not label:
        raise JobError(f"{where} \"label\" must be a non-empty string such as \"static\"")
    if label not in LABELS:  # a clip file or frames folder (dyntex), relative to the job
        label = str(_path(folder, label, f"{where} label"))
    return Mask(path=_path(folder, path, f"{where} path"), label=label)


def _path(folder: Path, value: str, where: str) -> Path:
    if not value:
        raise JobError(f"{where} must not be empty")
    path = Path(value)
    return path if path.is_absolute() else folder / path


def _depth_exceeds(data: object, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep (iteratively: no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((item, depth + 1)
                         for item in (value.values() if isinstance(value, dict) else value))
    return False


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_type(value: object, kind: type, key: str):
    if kind is float:
        ok = _is_number(value) and math.isfinite(value)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok and isinstance(value, float) and value.is_integer():
            ok, value = True, int(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        names = {float: "a finite number", int: "an integer", bool: "true or false",
                 str: "a string", list: "a list", dict: "an object"}
        raise JobError(f"job key \"{key}\" must be {names[kind]}, got {value!r}")
    return value


def _required(data: dict, key: str, kind: type):
    if key not in data:
        raise JobError(f"job has no \"{key}\"; every job needs it (see docs/JOB.md)")
    return _check_type(data[key], kind, key)


def _optional(data: dict, key: str, kind: type, default):
    if data.get(key) is None:
        return default
    return _check_type(data[key], kind, key)


def _non_negative(data: dict, key: str, where: str) -> float:
    value = data.get(key, 0.0)
    value = 0.0 if value is None else value
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise JobError(f"{where} must be a finite number >= 0 (pixels), got {value!r}")
    return float(value)
