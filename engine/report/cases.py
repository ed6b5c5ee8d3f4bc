"""The case file of `evaluate` (docs/EVALUATE.md): read, check, and resolve its paths.

Every problem is a JobError that names the case and the key and says what to change, and every
file is checked here, so a bad case file fails before any engine runs. Relative paths are
relative to the case file's folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import JobError
from engine.job import LABELS
from engine.report.engines import ENGINES, PATH

VERSION = 1
CASE_KEYS = {"name", "still", "video", "frame", "pokes", "pins", "masks", "motion", "region",
             "style", "resolution", "samples", "seed", "frames", "engines"}
DEFAULT_KEYS = {"resolution", "samples", "seed", "frames", "engines"}
DEFAULTS = {"resolution": 512, "samples": 4, "seed": 0, "frames": 11}
MAX_SAMPLES = 64
STYLE_KEYS = {"image", "strength", "where", "feather"}
STYLE_WHERE = ("all", "masks")
DEFAULT_STRENGTH = 0.8  # the job's default (engine/job.py StyleSettings)
# Motion labels that are words (the job's, less "static"); any other label is a clip file or
# frames folder, relative to the case file.
MOTION_WORDS = tuple(label for label in LABELS if label != "static")


@dataclass(frozen=True)
class EngineRun:
    engine: str       # a key of engines.ENGINES
    label: str        # unique in its case; names the row of the table
    options: dict     # every option of the engine, defaults filled in, paths absolute


@dataclass(frozen=True)
class Style:
    """A painting the still is stylized with before every engine moves it (the job's "style",
    docs/JOB.md): the whole still (where "all") or the case's masks (where "masks")."""
    image: Path       # the painting
    strength: float   # (0, 1]; default the job's (0.8)
    where: str        # "all" or "masks"
    feather: float    # soft edge of the masks, still pixels (where "masks"); 0 = automatic


@dataclass(frozen=True)
class Case:
    name: str
    still: Path | None          # a picture, or
    video: Path | None          # a video and the 1-based number of its frame
    frame: int
    pokes: tuple[tuple[float, float, float, float], ...]  # (x, y, dx, dy), still pixels
    pins: tuple[tuple[float, float, float], ...]          # (x, y, radius), still pixels
    masks: tuple[Path, ...]     # static masks (white = held still), the still's size
    region_radius: float        # 0: the default (engines.DEFAULT_REGION of the shorter side)
    region_mask: Path | None    # white = the moving region, the still's size
    resolution: int             # the still's longer side as evaluated
    samples: int
    seed: int
    frames: int
    engines: tuple[EngineRun, ...]
    region_person: bool = False  # the moving region is the person (MediaPipe person mask)
    folder: Path | None = None   # the case file's folder: what the report's paths are relative to
    # motion masks (the dyntex engine's regions): (mask PNG, label: a motion word or a clip path)
    motion: tuple[tuple[Path, str], ...] = ()
    region_motion: bool = False  # the moving region is every motion mask together
    style: Style | None = None   # None: no style stage

    @property
    def source(self) -> str:
        """The picture as the report names it: relative to the case file, never a machine path."""
        if self.still:
            return relative_path(self.still, self.folder)
        return f"{relative_path(self.video, self.folder)} frame {self.frame}"


def relative_path(path: Path, start: Path | None) -> str:
    """`path` relative to `start` (forward slashes), so a committed report names no machine
    folder; the bare file name where no relative path exists (another drive on Windows)."""
    if start is None:
        return Path(path).name
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:
        return Path(path).name


def load_cases(path, only: tuple[str, ...] = ()) -> list[Case]:
    """The cases of a case file (those named in `only`, when given), checked."""
    path = Path(path).absolute()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"case file not found: {path}; pass --cases with a file as described in "
                       "docs/EVALUATE.md (tools/eval_cases.json is the shipped one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"cannot read case file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise JobError(f"case file {path} is not valid JSON (line {exc.lineno}, column "
                       f"{exc.colno}: {exc.msg}); fix it there") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise JobError(f"case file {path} must be an object with a \"cases\" list "
                       "(docs/EVALUATE.md)")
    if data.get("version", VERSION) != VERSION:
        raise JobError(f"case file version {data.get('version')!r} is not supported; this "
                       f"engine reads version {VERSION}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise JobError("\"defaults\" must be an object (keys: " + ", ".join(sorted(DEFAULT_KEYS))
                       + ")")
    _unknown(defaults, DEFAULT_KEYS, "defaults")
    cases = [_case(item, index, defaults, path.parent)
             for index, item in enumerate(data["cases"], 1)]
    if not cases:
        raise JobError(f"case file {path} has no cases; add at least one")
    names = [case.name for case in cases]
    for name in names:
        if names.count(name) > 1:
            raise JobError(f"two cases are named {name!r}; give every case its own name")
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise JobError(f"no case named {', '.join(missing)} in {path}; cases: "
                           + ", ".join(names))
        cases = [case for case in cases if case.name in only]
    return cases


def _case(item: object, index: int, defaults: dict, folder: Path) -> Case:
    if not isinstance(item, dict):
        raise JobError(f"case {index} must be an object (docs/EVALUATE.md)")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise JobError(f"case {index} needs a \"name\" (text; it names its section and files)")
    where = f"case {name!r}"
    _unknown(item, CASE_KEYS, where)
    settings = {**DEFAULTS, **defaults, **item}

    still = video = None
    frame = 0
    if ("still" in item) == ("video" in item):
        raise JobError(f"{where} needs either \"still\" (a picture) or \"video\" with "
                       "\"frame\" (a frame of a clip), not both or neither")
    if "still" in item:
        still = _file(item["still"], folder, f"{where} still", "picture")
    else:
        video = _file(item["video"], folder, f"{where} video", "video")
        frame = _integer(item.get("frame"), f"{where} frame", 1,
                         hint="the 1-based number of the frame to animate")

    pokes = tuple(_numbers(p, 4, f"{where} poke {i}", "[x, y, dx, dy] in still pixels")
                  for i, p in enumerate(_list(item.get("pokes"), f"{where} pokes"), 1))
    for number, (x, y, dx, dy) in enumerate(pokes, 1):
        if dx == 0 and dy == 0:
            raise JobError(f"{where} poke {number} has zero length; a point that must not "
                           "move is a pin ([x, y, radius] in \"pins\")")
    pins = tuple(_numbers(p, 3, f"{where} pin {i}", "[x, y, radius] in still pixels")
                 for i, p in enumerate(_list(item.get("pins", []), f"{where} pins"), 1))
    if any(radius <= 0 for _, _, radius in pins):
        raise JobError(f"{where}: a pin's radius must be positive (still pixels)")
    masks = tuple(_file(m, folder, f"{where} mask {i}", "static mask PNG")
                  for i, m in enumerate(_list(item.get("masks", []), f"{where} masks"), 1))
    motion = tuple(_motion(m, i, folder, where)
                   for i, m in enumerate(_list(item.get("motion", []), f"{where} motion"), 1))
    if not pokes and not motion:  # a motion mask moves without any arrow
        raise JobError(f"{where} has no pokes; give at least one [x, y, dx, dy] (or motion "
                       "masks)")
    region_radius, region_mask, region_person, region_motion = _region(
        item.get("region", {}), folder, where)
    if region_motion and not motion:
        raise JobError(f"{where} region {{\"motion\": true}} needs motion masks; list them in "
                       "\"motion\" ([{\"mask\": \"sky.png\", \"label\": \"clouds\"}, ...])")
    style = _style(item["style"], folder, where) if "style" in item else None

    resolution = _integer(settings["resolution"], f"{where} resolution", 16,
                          hint="the still's longer side in pixels as evaluated, e.g. 512")
    samples = _integer(settings["samples"], f"{where} samples", 1, MAX_SAMPLES)
    seed = _integer(settings["seed"], f"{where} seed", 0)
    frames = _integer(settings["frames"], f"{where} frames", 2,
                      hint="frames per clip, the still first (the poke model makes 11)")
    runs = [_engine_run(entry, number, folder, where)
            for number, entry in enumerate(_list(settings.get("engines"), f"{where} engines"), 1)]
    if not runs:
        raise JobError(f"{where} names no engines; list them in \"engines\" (here or in "
                       f"\"defaults\"): {', '.join(ENGINES)}")
    for run in runs:
        if ENGINES[run.engine].motion_masks and not motion:
            raise JobError(f"{where} engine {run.label!r} moves motion masks and the case has "
                           "none; list them in \"motion\" ([{\"mask\": \"sky.png\", "
                           "\"label\": \"clouds\"}, ...])")
        # the job's masks: the static ones (and pins), and the motion masks for engines that
        # move them; where "masks" stylizes their union (engine/style/stage.py)
        if style is not None and style.where == "masks" and not (
                masks or pins or (motion and ENGINES[run.engine].motion_masks)):
            raise JobError(f"{where} style where \"masks\": the job of engine {run.label!r} "
                           "has no masks (it gets static \"masks\" and \"pins\""
                           + (", and the motion masks" if ENGINES[run.engine].motion_masks
                              else "; motion masks only go to engines that move them")
                           + "); give the case masks or use where \"all\"")
    labels = [run.label for run in runs]
    for label in labels:
        if labels.count(label) > 1:
            raise JobError(f"{where} lists two engines labelled {label!r}; give each a "
                           "\"label\" of its own")
    return Case(name=name, still=still, video=video, frame=frame, pokes=pokes, pins=pins,
                masks=masks, region_radius=region_radius, region_mask=region_mask,
                region_person=region_person, folder=folder, motion=motion,
                region_motion=region_motion, style=style,
                resolution=resolution, samples=samples, seed=seed, frames=frames,
                engines=tuple(runs))


def _region(value: object, folder: Path, where: str
            ) -> tuple[float, Path | None, bool, bool]:
    """(radius, mask, person, motion) of the case's "region"."""
    if not isinstance(value, dict) or set(value) - {"radius", "mask", "person", "motion"} \
            or len(value) > 1 or value.get("person", True) is not True \
            or value.get("motion", True) is not True:
        raise JobError(f"{where} region must be {{}} (discs of the default radius around the "
                       "pokes), {\"radius\": R} (still pixels), {\"mask\": \"region.png\"}, "
                       "{\"person\": true} (the person, found by MediaPipe) or {\"motion\": "
                       "true} (the case's motion masks together)")
    if "person" in value:
        return 0.0, None, True, False
    if "motion" in value:
        return 0.0, None, False, True
    if "mask" in value:
        return 0.0, _file(value["mask"], folder, f"{where} region mask", "region mask PNG"), \
            False, False
    radius = _numbers([value.get("radius", 0.0)], 1, f"{where} region radius", "still pixels")[0]
    if radius < 0:
        raise JobError(f"{where} region radius must not be negative (0: the default)")
    return radius, None, False, False


def _motion(value: object, number: int, folder: Path, where: str) -> tuple[Path, str]:
    at = f"{where} motion {number}"
    if not isinstance(value, dict) or set(value) != {"mask", "label"} \
            or not isinstance(value["label"], str) or not value["label"]:
        raise JobError(f"{at} must be {{\"mask\": \"sky.png\", \"label\": \"clouds\"}}: a "
                       "mask PNG at the picture's size (white = moves) and its motion, one of "
                       + ", ".join(MOTION_WORDS) + " or a clip file (relative to the case file)")
    mask = _file(value["mask"], folder, f"{at} mask", "motion mask PNG")
    label = value["label"]
    if label not in MOTION_WORDS:
        label = str(_file(label, folder, f"{at} label", "motion clip (a word: "
                          + ", ".join(MOTION_WORDS) + ")"))
    return mask, label


def _style(value: object, folder: Path, where: str) -> Style:
    at = f"{where} style"
    if not isinstance(value, dict):
        raise JobError(f"{at} must be an object: {{\"image\": \"painting.jpg\", \"strength\": "
                       "0.8, \"where\": \"all\", \"feather\": 0}")
    _unknown(value, STYLE_KEYS, at)
    if "image" not in value:
        raise JobError(f"{at} needs \"image\": the painting (a picture file)")
    image = _file(value["image"], folder, f"{at} image", "painting")
    strength = _numbers([value.get("strength", DEFAULT_STRENGTH)], 1, f"{at} strength",
                        "a number")[0]
    if not 0 < strength <= 1:
        raise JobError(f"{at} strength must be in (0, 1] (0 is no style: leave \"style\" out), "
                       f"got {strength:g}")
    place = value.get("where", "all")
    if place not in STYLE_WHERE:
        raise JobError(f"{at} where must be \"all\" (the whole still) or \"masks\" (inside the "
                       f"case's masks), got {place!r}")
    feather = _numbers([value.get("feather", 0.0)], 1, f"{at} feather", "still pixels")[0]
    if feather < 0:
        raise JobError(f"{at} feather must not be negative (still pixels; 0 = automatic, 1 % "
                       "of the shorter side)")
    return Style(image=image, strength=strength, where=place, feather=feather)


def _engine_run(entry: object, number: int, folder: Path, where: str) -> EngineRun:
    if isinstance(entry, str):
        entry = {"engine": entry}
    if not isinstance(entry, dict):
        raise JobError(f"{where} engine {number} must be a name or an object with \"engine\", "
                       "\"label\" and \"options\"")
    _unknown(entry, {"engine", "label", "options"}, f"{where} engine {number}")
    name = entry.get("engine")
    if name not in ENGINES:
        raise JobError(f"{where} engine {number}: {name!r} is not an engine the evaluation "
                       f"knows; use one of: {', '.join(ENGINES)}")
    label = entry.get("label", name)
    if not isinstance(label, str) or not label.strip():
        raise JobError(f"{where} engine {number} label must be text")
    spec = ENGINES[name].options
    given = entry.get("options", {})
    if not isinstance(given, dict):
        raise JobError(f"{where} engine {label!r} options must be an object")
    _unknown(given, set(spec), f"{where} engine {label!r} options")
    options = {}
    for key, (kind, default) in spec.items():
        value = given.get(key, default)
        at = f"{where} engine {label!r} option {key}"
        if value is None:
            options[key] = None
        elif kind == PATH:
            options[key] = _file(value, folder, at, "file")
        elif kind is float:
            options[key] = _numbers([value], 1, at, "a number")[0]
        elif not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise JobError(f"{at} must be " + ("a whole number" if kind is int else
                                               kind.__name__) + f", got {value!r}")
        elif kind is int and value < 0:  # counts and sizes: the job refuses negatives too
            raise JobError(f"{at} must not be negative, got {value!r}")
        else:
            options[key] = value
    return EngineRun(engine=name, label=label, options=options)


# --------------------------------------------------------------------------------------------


def _unknown(data: dict, known: set, where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise JobError(f"{where}: unknown key {', '.join(map(repr, extra))}; known keys: "
                       + (", ".join(sorted(known)) or "none"))


def _list(value: object, where: str) -> list:
    if not isinstance(value, list):
        raise JobError(f"{where} must be a list")
    return value


def _file(value: object, folder: Path, where: str, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise JobError(f"{where} must be the path of a {what} (text)")
    path = Path(value).expanduser()
    path = Path(os.path.normpath(path if path.is_absolute() else folder / path))
    if not path.is_file():
        raise JobError(f"{where}: {what} not found: {path}; fix the path in the case file "
                       "(relative paths start at the case file's folder)")
    return path


def _numbers(value: object, count: int, where: str, meaning: str) -> tuple[float, ...]:
    if (not isinstance(value, (list, tuple)) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)):
        raise JobError(f"{where} must be {meaning}, got {value!r}")
    return tuple(float(v) for v in value)


def _integer(value: object, where: str, low: int, high: int | None = None,
             hint: str = "") -> int:
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        limits = f"at least {low}" if high is None else f"{low}..{high}"
        raise JobError(f"{where} must be a whole number, {limits}, got {value!r}"
                       + (f" ({hint})" if hint else ""))
    return value
