"""OpenEXR files through the OpenEXR project's own Python bindings.

Why not OpenCV: the pinned opencv-python-headless wheels are built without OpenEXR
("OpenEXR: NO" in cv2.getBuildInformation()), and EXR is one of the three bake formats.
The bindings read every variant Blender writes (ZIP, PIZ, DWA, half or float, tiled).
"""

from __future__ import annotations

import os

import numpy as np

MAGIC = b"\x76\x2f\x31\x01"
# RGBA order in which we store and return channels; EXR itself keeps them sorted by name.
_LAYOUTS = {1: ("Y",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}


class ExrError(ValueError):
    """The file is not an EXR we can read; the message says why."""


def _openexr():
    try:
        import OpenEXR
    except ImportError:
        raise ExrError("the engine's Python has no OpenEXR package: "
                       "pip install -r requirements/engine.txt (or choose PNG)") from None
    return OpenEXR


def write(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write H x W x C float pixels (C = 1 grey, 3 RGB, 4 RGBA) as a 32-bit float, ZIP EXR."""
    OpenEXR = _openexr()
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    names = _LAYOUTS.get(pixels.shape[2])
    if names is None:
        raise ValueError(f"EXR needs 1, 3 or 4 channels, got {pixels.shape[2]}")
    channels = {name: np.ascontiguousarray(pixels[:, :, i], dtype=np.float32)
                for i, name in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr_file:
        exr_file.write(os.fspath(path))


def read(path: str | os.PathLike) -> np.ndarray:
    """H x W x C float32 pixels of an EXR's default layer: Y, RGB or RGBA."""
    OpenEXR = _openexr()
    try:
        with OpenEXR.File(os.fspath(path), separate_channels=True) as exr_file:
            found = {name: channel.pixels for name, channel in exr_file.channels().items()}
    except Exception as exc:  # the bindings raise plain RuntimeError/IOError with a reason
        raise ExrError(f"{exc}") from None
    for names in (("R", "G", "B", "A"), ("R", "G", "B"), ("Y",)):
        if all(name in found for name in names):
            return np.stack([found[name].astype(np.float32, copy=False) for name in names],
                            axis=-1)
    raise ExrError(f"no Y, RGB or RGBA channels in its default layer (found {sorted(found)})")
