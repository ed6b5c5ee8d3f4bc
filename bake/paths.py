"""Where bakes and jobs live on disk.

Takes go beside the saved .blend, in `//stillmotion/<plane>/take_NNN/`, so a project folder
carries its bakes with it; an unsaved file bakes into the extension's user folder instead. A take
folder is never reused: numbering continues after the highest existing take, counting leftovers
of interrupted runs (`take_004.partial-123`) so a half-written folder is never overwritten either.
While a bake runs, `take_NNN.partial-reserved` holds its number (reserve_take) against other bakes.
Previews get their own series (`preview_NNN`) so a preview never takes a real take's place.
"""

import os
import pathlib
import re
import shutil
import tempfile
import time
import unicodedata

# `bl_ext.<repo>.stillmotion`: the add-on's module name, which is also its preferences key.
ROOT_PACKAGE = __package__.rpartition(".")[0] if __package__ else "stillmotion"

TAKE_PREFIX = "take"
PREVIEW_PREFIX = "preview"
UNSAVED_FOLDER = "unsaved"
JOBS_KEPT = 8

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def safe_name(name, fallback="plane", max_len=64):
    """A folder name made from a datablock name: keeps letters of any script (non-ASCII names
    are fine on every filesystem Blender runs on), replaces path separators and characters
    Windows forbids, and avoids names that mean something to the filesystem."""
    name = unicodedata.normalize("NFC", str(name))
    name = _UNSAFE.sub("_", name).strip().strip(".").strip()
    if not name or name in {".", ".."}:
        name = fallback
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    # Trim by UTF-8 bytes as well: many filesystems limit a name to 255 bytes.
    while len(name) > max_len or len(name.encode("utf-8")) > 4 * max_len:
        name = name[:-1]
    return name.rstrip(" .") or fallback


def _take_pattern(prefix):
    return re.compile(rf"^{re.escape(prefix)}_(\d+)(?:\.partial-.*)?$")


def take_numbers(root, prefix=TAKE_PREFIX):
    """Numbers used by existing `<prefix>_NNN` folders (and their `.partial-*` leftovers)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    pattern = _take_pattern(prefix)
    numbers = []
    for entry in root.iterdir():
        match = pattern.match(entry.name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def take_name(number, prefix=TAKE_PREFIX):
    return f"{prefix}_{number:03d}"


def next_take(root, prefix=TAKE_PREFIX):
    """(number, path) of the next take folder under root; the folder itself is not created
    (the engine renames its temporary folder to it when every frame is written)."""
    numbers = take_numbers(root, prefix)
    number = (numbers[-1] + 1) if numbers else 1
    path = pathlib.Path(root) / take_name(number, prefix)
    while path.exists():  # a stray file named like a take: step over it
        number += 1
        path = pathlib.Path(root) / take_name(number, prefix)
    return number, path


def partial_leftovers(output_dir):
    """Temporary folders the engine may leave behind when it is killed (`<take>.partial-*`)."""
    output_dir = pathlib.Path(output_dir)
    if not output_dir.parent.is_dir():
        return []
    return sorted(output_dir.parent.glob(glob_escape(output_dir.name) + ".partial-*"))


def glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def remove_partial_leftovers(output_dir):
    """Remove the engine's temporary folders for this one take (never a finished take)."""
    for leftover in partial_leftovers(output_dir):
        shutil.rmtree(leftover, ignore_errors=True)


def reservation(output_dir):
    output_dir = pathlib.Path(output_dir)
    return output_dir.with_name(f"{output_dir.name}.partial-reserved")


def reserve_take(output_dir):
    """Claim the take folder output_dir (from next_take) for one bake: `<take>.partial-reserved`
    is counted by next_take in every Blender, so no other bake - another Blender on the same
    .blend, two unsaved files with a plane of the same name - picks this number while the
    engine loads. Whatever then appears at output_dir is this bake's own, and may be removed
    when the bake is not installed. FileExistsError when another bake got there first."""
    marker = reservation(output_dir)
    marker.mkdir()
    others = [p for p in partial_leftovers(output_dir) if p != marker]
    if os.path.lexists(output_dir) or others:
        shutil.rmtree(marker, ignore_errors=True)
        raise FileExistsError(17, "another bake is writing it", str(output_dir))
    return marker


# -- bpy-dependent locations -----------------------------------------------------------------


def user_folder(kind, create=True):
    """`<extensions>/.user/<repo>/stillmotion/<kind>`, created unless create is False."""
    import bpy

    return pathlib.Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path=kind, create=create))


def bakes_root(plane_name):
    """Folder holding the takes of one plane."""
    import bpy

    plane_folder = safe_name(plane_name)
    if bpy.data.filepath:
        return pathlib.Path(bpy.path.abspath("//stillmotion")) / plane_folder
    return user_folder("bakes") / UNSAVED_FOLDER / plane_folder


def new_job_dir(plane_name):
    """A fresh folder for one job (job.json, the exported still, masks)."""
    jobs = user_folder("jobs")
    prune_job_dirs(jobs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(tempfile.mkdtemp(prefix=f"{safe_name(plane_name)}-{stamp}-", dir=jobs))


def prune_job_dirs(jobs, keep=JOBS_KEPT):
    """Job folders are kept after a failure (to read the job that failed); keep only the
    newest few so they do not pile up."""
    jobs = pathlib.Path(jobs)
    folders = sorted((p for p in jobs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in folders[:-keep] if keep else folders:
        shutil.rmtree(old, ignore_errors=True)


def display_path(path):
    """A path as the artist knows it: `//stillmotion/...` when it is beside the .blend."""
    import bpy

    path = pathlib.Path(path)
    if bpy.data.filepath:
        base = pathlib.Path(bpy.data.filepath).parent
        try:
            return "//" + path.relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


def blend_relative(path):
    """Path to store in an Image datablock: relative (`//...`) when beside the saved .blend, so
    the project folder can move."""
    import bpy

    if bpy.data.filepath:
        try:
            return bpy.path.relpath(str(path))
        except ValueError:  # another drive on Windows
            pass
    return str(path)


def ensure_folder(path):
    """Create path (and parents) or raise OSError with the reason."""
    pathlib.Path(path).mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(13, "not writable", str(path))
    return pathlib.Path(path)
