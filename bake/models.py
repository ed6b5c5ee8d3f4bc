"""Poke models the artist can pick: the shipped default, the other poke models shipped beside it
in the extension's `models/` folder, and the ones in the models folder.

No bpy at module level and never torch: a model is recognised by the architecture tag in its
safetensors header (engine/checkpoints.py writes `stillmotion.architecture`), read as plain
JSON, so listing a folder of large models costs a few bytes per file. Two kinds are poke
models: the face-mesh model (issue 14, the shipped default: it moves MediaPipe's landmarks, so
any face works and pokes land by construction) and iPOKE's pixel and motion-space models, which
the panel offers their own switches for (Land Pokes Exactly, Snap to Face Parts).

The models folder is the add-on preference `models_dir`; when it is empty, the extension's user
folder `<extensions>/.user/<repo>/stillmotion/models` (Blender keeps it across upgrades, and it
is always writable), so Train from Clip always has somewhere to put a model.

A choice is stored as text that keeps naming the same file across sessions and a moved models
folder: "" is the shipped default, `shipped/<file name>` another shipped model, and a bare file
name a model in the models folder. A file name cannot hold "/", so no model in the models
folder is ever stored like a shipped one, even when it has a shipped model's file name.
"""

import json
import pathlib
import struct

from .process import EXTENSION_ROOT

POKE_ARCHITECTURE = "stillmotion-poke"  # engine/poke/model.py ARCHITECTURE
MESH_ARCHITECTURE = "stillmotion-mesh-poke"  # engine/poke/mesh/model.py ARCHITECTURE
POKE_ARCHITECTURES = (MESH_ARCHITECTURE, POKE_ARCHITECTURE)
ARCHITECTURE_KEY = "stillmotion.architecture"  # engine/checkpoints.py
SUFFIX = ".safetensors"
# engine/job.py DEFAULT_POKE_MODEL: a job with "model": null samples this one.
SHIPPED_DEFAULT = EXTENSION_ROOT / "models" / "poke_mesh.safetensors"

# What the picker calls the models shipped in models/ (file name -> label, tooltip), in the
# order it lists them; file names are what the model cards and the evaluation report use, not
# what tells an artist which to pick. A shipped model not named here lists by its file name.
SHIPPED_LABELS = {
    "poke_mesh.safetensors": (
        "Face mesh (any face)",
        "Moves the landmarks of the face MediaPipe finds, so it works on any face; pokes land "
        "exactly and the background holds (card: models/poke_mesh.md)"),
    "poke_faces.safetensors": (
        "iPOKE motion, 2 people",
        "Older: iPOKE in motion space with facial parts, trained on two clips; kept for "
        "comparison (models/poke_faces.md)"),
    "poke_motion.safetensors": (
        "iPOKE motion, 1 person",
        "Older: iPOKE in motion space, trained on one clip; kept for comparison "
        "(models/poke_motion.md)"),
    "poke_default.safetensors": (
        "iPOKE pixels, 1 person",
        "Older: iPOKE as published (pixels), trained on one clip; kept for comparison "
        "(models/poke_default.md)"),
}
DEFAULT_ID = "DEFAULT"  # the enum identifier (and stored choice "") of the shipped default
SHIPPED_PREFIX = "shipped/"  # stored choice of a shipped model other than the default

_HEADER_LIMIT = 16 * 1024 * 1024  # a header bigger than this is not one the engine wrote

_found = None  # (models folder, poke model paths in it) at the last scan
_shipped_found = None  # (shipped folder, the other shipped poke models) at the last scan
# str(path) -> (mtime_ns, size, architecture): the panel asks on every redraw which kind the
# chosen model is; a stat is cheap there, opening and parsing the header is not.
_architectures = {}


def architecture(path):
    """The architecture tag in a safetensors header, or None when the file is not readable as
    safetensors (or has no tag)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                return None
            (length,) = struct.unpack("<Q", raw)
            if length > _HEADER_LIMIT:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta.get(ARCHITECTURE_KEY) if isinstance(meta, dict) else None


def is_poke_model(path):
    return architecture(path) in POKE_ARCHITECTURES


def cached_architecture(path):
    """architecture(path), read again only when the file changed (None for no file)."""
    try:
        stat = pathlib.Path(path).stat()
    except OSError:
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    known = _architectures.get(str(path))
    if known is None or known[:2] != stamp:
        known = stamp + (architecture(path),)
        _architectures[str(path)] = known
    return known[2]


def is_mesh_model(path):
    """A face-mesh poke model: it lands pokes and finds the face by itself, so the panel leaves
    out the switches only iPOKE's models read."""
    return cached_architecture(path) == MESH_ARCHITECTURE


def find_poke_models(folder):
    """Poke model files directly in folder, sorted by name. Training state (`<name>_run/`
    subfolders) and other networks' weights (motion estimators) are left out."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir()
             if p.suffix.lower() == SUFFIX and p.is_file() and is_poke_model(p)]
    return sorted(found, key=lambda p: p.name.lower())


def models_folder(context, create=True):
    """The folder trained models go to and are listed from (see the module docstring)."""
    import bpy

    from . import paths
    from .session import preferences

    prefs = preferences(context)
    configured = getattr(prefs, "models_dir", "") if prefs else ""
    if configured:
        return pathlib.Path(bpy.path.abspath(configured))
    return paths.user_folder("models", create=create)


def shipped_folder():
    """The extension's own `models/` folder: wherever the default lives (a test that moves the
    default moves the shipped models with it)."""
    return SHIPPED_DEFAULT.parent


def cached_models(context):
    """The poke models found in the models folder at the last refresh (scanned once, and
    again when the folder in the preferences changes)."""
    global _found
    folder = models_folder(context, create=False)
    if _found is None or _found[0] != folder:
        _found = (folder, find_poke_models(folder))
    return list(_found[1])


def cached_shipped():
    """The poke models shipped beside the default, without the default, as found at the last
    refresh."""
    global _shipped_found
    folder = shipped_folder()
    if _shipped_found is None or _shipped_found[0] != folder:
        extras = [p for p in find_poke_models(folder) if p.name != SHIPPED_DEFAULT.name]
        order = list(SHIPPED_LABELS)
        extras.sort(key=lambda p: (order.index(p.name) if p.name in order else len(order),
                                   p.name.lower()))
        _shipped_found = (folder, extras)
    return list(_shipped_found[1])


def refresh(context):
    """Look at the models folder (and the shipped models) again; returns how many poke models
    the models folder holds."""
    global _found, _shipped_found
    _found = _shipped_found = None
    _architectures.clear()
    return len(cached_models(context))


def listed_choices(context):
    """The stored choices the model picker offers, in its order: the shipped default, the other
    shipped models (a stripped install without them lists none), then the models folder."""
    shipped = [SHIPPED_PREFIX + p.name for p in cached_shipped() if p.is_file()]
    return [""] + shipped + [p.name for p in cached_models(context)]


def is_shipped_extra(choice):
    return choice.startswith(SHIPPED_PREFIX)


def model_path(context, choice):
    """The file a stored choice names (see the module docstring). A shipped choice keeps only
    its file name, so one edited by hand cannot reach outside the extension's folder."""
    if not choice:
        return SHIPPED_DEFAULT
    if is_shipped_extra(choice):
        return shipped_folder() / pathlib.PurePath(choice[len(SHIPPED_PREFIX):]).name
    return models_folder(context, create=False) / choice


def display_name(choice):
    """What the picker (and the strip's "made with") calls a stored choice."""
    if not choice:
        return SHIPPED_LABELS.get(SHIPPED_DEFAULT.name, ("Default",))[0]
    name = pathlib.Path(choice).name
    if is_shipped_extra(choice) and name in SHIPPED_LABELS:
        return SHIPPED_LABELS[name][0]
    return name[:-len(SUFFIX)] if name.lower().endswith(SUFFIX) else name


def shipped_tooltip(choice):
    """What a shipped model is for, or "" for one SHIPPED_LABELS does not know (and for the
    artist's own models, whatever their file names)."""
    if choice and not is_shipped_extra(choice):
        return ""
    name = SHIPPED_DEFAULT.name if not choice else pathlib.Path(choice).name
    return SHIPPED_LABELS.get(name, ("", ""))[1]


def safe_model_name(text):
    """A file stem for a model the artist names (Train from Clip)."""
    from .paths import safe_name

    stem = text.strip()
    if stem.lower().endswith(SUFFIX):
        stem = stem[:-len(SUFFIX)]
    return safe_name(stem, fallback="poke_model")
