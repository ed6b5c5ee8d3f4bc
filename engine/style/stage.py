"""The job's style stage: stylize the still once (cached), keep it to the masks if asked, and hand
the engines a job whose still is the stylized one.

The cache ($STILLMOTION_CACHE/style, or ~/.cache/stillmotion/style) holds two kinds of file:

    whole-<key>.png     the whole still stylized, 16-bit sRGB; key = the still's and the
                        painting's file contents, the strength, the algorithm (STYLE_VERSION),
                        and for "masks" the masks (their region's colours are the ones matched)
    still-<key>.<ext>   what the engines read: the above restricted to the masks (or not), in
                        the still's own sample type and channels; key adds where, feather, masks

A re-bake, a new take or another engine on the same still and painting pays the optimisation
once; changing only the feather re-composites in well under a second. The first
bake already reads the 16-bit quantised copy, so a re-bake is bit-identical to it. Files are
written under a temporary name and renamed, so a cancelled bake never leaves half a file that a
later one would trust; the oldest files beyond MAX_CACHE_FILES are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from engine import frames
from engine.errors import JobError
from engine.style import (display_rgb_float, from_display_rgb, read_painting,
                          stylize_display)

# Bump when the optimisation or its defaults change what a stylized still looks like, so cached
# results from an older engine are not reused.
STYLE_VERSION = "gatys-pyramid-3"
MAX_CACHE_FILES = 64
# Automatic feather of "masks": a share of the still's shorter side (about 10 px at 1080p).
AUTO_FEATHER_SHARE = 0.01


def cache_folder() -> Path:
    from engine.cache import user_cache

    return user_cache() / "style"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _write_atomic(path: Path, pixels: np.ndarray, fmt: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frames.write_image(temporary, pixels, fmt)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise JobError(f"cannot write the stylized still into the cache {path.parent}: "
                       f"{exc.strerror or exc}; free disk space or set STILLMOTION_CACHE to a "
                       "writable folder") from None
    except BaseException:  # Cancel (SIGTERM -> Cancelled) while writing: leave nothing behind
        temporary.unlink(missing_ok=True)
        raise


def _prune(folder: Path) -> None:
    files = [p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[MAX_CACHE_FILES:]:
        old.unlink(missing_ok=True)


def _cached(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        pixels = frames.read_image(path)
    except JobError:  # damaged by something outside the engine: make it again
        path.unlink(missing_ok=True)
        return None
    os.utime(path)  # recently used: kept by _prune
    return pixels


def stylized_whole(still: np.ndarray, painting: np.ndarray, strength: float, key: str, device,
                   progress, region: np.ndarray | None = None) -> np.ndarray:
    """The whole still stylized, as float32 sRGB RGB, from the cache file named by `key` when it
    holds it. region: the union of the masks for style "masks" (its colours and Grams are the
    ones matched to the painting's)."""
    path = cache_folder() / f"whole-{key}.png"
    found = _cached(path)
    if found is not None:
        progress.emit("style", 1, 1, cached=True)
        return frames.to_float(found)
    rgb = stylize_display(display_rgb_float(still), display_rgb_float(painting), strength,
                          device=device, progress=progress, region=region)
    quantised = frames.from_float(rgb, np.uint16)
    _write_atomic(path, quantised, "PNG16")
    return frames.to_float(quantised)


def style_region(job, width: int, height: int) -> np.ndarray | None:
    """H x W float32 in [0, 1]: the union of the job's masks for style "masks", None for "all"."""
    if job.style.where == "all":
        return None
    if not job.masks:
        raise JobError("style.where is \"masks\" but the job has no masks; draw a closed outline "
                       "on the Masks layer around what to stylize, or stylize the whole picture")
    union = np.zeros((height, width), np.float32)
    for index, mask in enumerate(job.masks, 1):
        union = np.maximum(union, frames.read_mask(mask.path, width, height, name=f"mask {index}"))
    if not (union > 0).any():
        raise JobError("style.where is \"masks\" but every mask is empty; paint the region to "
                       "stylize in white, or stylize the whole picture")
    return union


def style_weights(job, union: np.ndarray | None) -> np.ndarray | None:
    """H x W float32 in [0, 1]: where the style applies (None: everywhere). For "masks", the
    union of the masks with a feathered edge that stays inside them, so every pixel outside
    every mask is the still's own."""
    if union is None:
        return None
    style = job.style
    height, width = union.shape
    feather = style.feather or AUTO_FEATHER_SHARE * min(width, height)
    radius = int(round(feather))
    if radius < 1:
        return union
    # Erode by the radius, then blur with a kernel of that radius: the soft edge lies inside.
    size = 2 * radius + 1
    inner = cv2.erode(union, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    soft = cv2.GaussianBlur(inner, (size, size), sigmaX=radius / 2.0,
                            borderType=cv2.BORDER_REPLICATE)
    return np.minimum(soft, union)


def compose(still: np.ndarray, stylized: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The stylized still (in the still's sample type) where weights > 0, the still's own pixels
    bit for bit where weights == 0."""
    if weights is None:
        return stylized
    w = weights[:, :, None]
    blended = frames.to_float(still) * (1.0 - w) + frames.to_float(stylized) * w
    out = frames.from_float(blended, still.dtype)
    if still.shape[2] == 4:  # alpha is the still's, everywhere
        out[:, :, 3] = still[:, :, 3]
    return np.where(w > 0, out, still)


def apply_style(job, device, progress):
    """The job the engines run: unchanged without a style (or at strength 0), else with `image`
    pointing at the stylized still in the cache."""
    style = job.style
    if style is None or style.strength == 0.0:
        return job
    painting = read_painting(style.image)  # a bad painting fails before anything is computed
    still = frames.read_image(job.image)
    height, width = still.shape[:2]
    region = style_region(job, width, height)
    weights = style_weights(job, region)
    masks = [(_digest(m.path), m.label) for m in job.masks] if region is not None else []
    whole_key = _key({"still": _digest(job.image), "painting": _digest(style.image),
                      "strength": style.strength, "version": STYLE_VERSION,
                      "region": masks if region is not None else None})
    fmt = "EXR" if still.dtype == np.float32 else "PNG16" if still.dtype == np.uint16 else "PNG8"
    key = _key({"whole": whole_key, "where": style.where, "feather": style.feather,
                "dtype": str(still.dtype), "channels": still.shape[2]})
    path = cache_folder() / f"still-{key}{'.exr' if fmt == 'EXR' else '.png'}"
    if _cached(path) is None:
        rgb = stylized_whole(still, painting, style.strength, whole_key, device, progress, region)
        _write_atomic(path, compose(still, from_display_rgb(rgb, still), weights), fmt)
        _prune(path.parent)
    else:
        progress.emit("style", 1, 1, cached=True)
    return dataclasses.replace(job, image=path, unstyled_image=job.image)
