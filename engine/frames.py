"""Reading stills and masks, writing frames: the one place image files are touched.

Pixels travel through the engine as NumPy arrays H x W x C in their native sample type:
  C = 1 (grey), 3 (RGB) or 4 (RGBA), channels in RGB order (OpenCV's BGR stays in this module);
  dtype uint8 or uint16 (integer data, taken to be sRGB-encoded, as PNG/JPEG/TIFF are) or
  float32 (float data, taken to be linear, as EXR/HDR are).
Grey stays grey (a grey still gives grey frames) and alpha is kept. Keeping the native type means
a frame whose pixels did not move is bit-identical to the still, and 16-bit stills keep 16 bits.

Paths go through np.fromfile / tofile and cv2.imdecode / imencode so non-ASCII paths work on
every platform (cv2.imread cannot open them on Windows).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from engine import exr
from engine.errors import JobError

MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


# --------------------------------------------------------------------------------------------
# Reading


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A still as H x W x C (C = 1, 3 or 4, RGB order), uint8, uint16 or float32."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise JobError(f"image not found: {path}") from None
    except OSError as exc:
        raise JobError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if data[:4].tobytes() == exr.MAGIC:
        try:
            pixels = exr.read(path)
        except exr.ExrError as exc:
            raise JobError(f"cannot read EXR {path}: {exc}") from None
    else:
        pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if pixels is None:
            raise JobError(f"cannot decode image {path}: not an image format OpenCV reads "
                           "(use PNG, JPEG, TIFF or EXR)")
        pixels = _from_opencv(pixels)
    return _native_type(pixels, path)


def read_mask(path: str | os.PathLike, width: int, height: int, name: str = "mask") -> np.ndarray:
    """A mask as H x W float32 in [0, 1]; it must have the still's size."""
    pixels = read_image(path)
    if pixels.shape[:2] != (height, width):
        raise JobError(f"{name} {path} is {pixels.shape[1]}x{pixels.shape[0]} but the still is "
                       f"{width}x{height}; masks must be drawn at the still's resolution "
                       "(re-export the job)")
    # Single-channel is the contract; for a colour mask use its brightness, ignore alpha.
    if pixels.shape[2] == 1:
        values = pixels[:, :, 0].astype(np.float32)
    else:
        values = pixels[:, :, :3].mean(axis=2, dtype=np.float32)
    values *= np.float32(1.0 / MAX_VALUE.get(pixels.dtype, 1.0))
    return np.clip(values, 0.0, 1.0, out=values)


def _from_opencv(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels[:, :, None]
    # In place: an 8K still is hundreds of MB.
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA, dst=pixels)
    return pixels


def _native_type(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 2:  # grey + alpha
        grey, alpha = pixels[:, :, :1], pixels[:, :, 1:]
        pixels = np.concatenate([grey, grey, grey, alpha], axis=2)
    if pixels.shape[2] not in (1, 3, 4):
        raise JobError(f"image {path} has {pixels.shape[2]} channels; use grey, RGB or RGBA")
    if pixels.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(pixels)
    if pixels.dtype.kind == "f":
        return np.ascontiguousarray(pixels, dtype=np.float32)
    raise JobError(f"image {path} has {pixels.dtype} samples; use 8 or 16-bit unsigned or float")


# --------------------------------------------------------------------------------------------
# Sample types and colour


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Samples as float32: integers scaled to [0, 1], floats as they are (no colour change)."""
    scale = MAX_VALUE.get(pixels.dtype)
    if scale is None:
        return pixels.astype(np.float32, copy=False)
    return pixels.astype(np.float32) * np.float32(1.0 / scale)


def from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of to_float: round and clip to the integer range, or keep floats."""
    scale = MAX_VALUE.get(np.dtype(dtype))
    if scale is None:
        return values.astype(np.float32, copy=False)
    return np.clip(np.rint(values * scale), 0, scale).astype(dtype)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.04045, values / 12.92,
                    ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92,
                    1.055 * values ** (1.0 / 2.4) - 0.055).astype(np.float32)


def _colour_channels(pixels: np.ndarray) -> int:
    return 3 if pixels.shape[2] == 4 else pixels.shape[2]


def convert(pixels: np.ndarray, fmt: str) -> np.ndarray:
    """Samples for a bake format: PNG8 -> uint8, PNG16 -> uint16 (sRGB-encoded), EXR -> float32
    linear. Integer data is sRGB, float data linear; alpha is never colour-converted."""
    is_float = pixels.dtype == np.float32
    if fmt == "EXR":
        if is_float:
            return pixels
        values = to_float(pixels)
        n = _colour_channels(values)
        values[:, :, :n] = srgb_to_linear(values[:, :, :n])
        return values
    dtype = np.uint8 if fmt == "PNG8" else np.uint16
    if pixels.dtype == dtype:
        return pixels
    if pixels.dtype == np.uint8 and dtype == np.uint16:
        return pixels.astype(np.uint16) * np.uint16(257)  # exact: 255 * 257 = 65535
    values = to_float(pixels)
    if is_float:
        n = _colour_channels(values)
        values = values.copy()
        values[:, :, :n] = linear_to_srgb(values[:, :, :n])
    return from_float(values, dtype)


def to_display(pixels: np.ndarray, background: float = 0.5) -> np.ndarray:
    """uint8 BGR for previews: sRGB, alpha composited over a grey background."""
    values = to_float(convert(pixels, "PNG16"))
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    elif values.shape[2] == 4:
        alpha = values[:, :, 3:]
        values = values[:, :, :3] * alpha + background * (1.0 - alpha)
    return cv2.cvtColor(from_float(values, np.uint8), cv2.COLOR_RGB2BGR)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average down-scale (for max_size). RGBA is averaged premultiplied, so transparent
    pixels do not bleed their hidden colour into the edge."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    if pixels.shape[2] != 4:
        out = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
        return out.reshape(height, width, pixels.shape[2])
    values = to_float(pixels)
    values[:, :, :3] *= values[:, :, 3:]
    values = cv2.resize(values, (width, height), interpolation=cv2.INTER_AREA)
    alpha = values[:, :, 3:]
    values[:, :, :3] = np.where(alpha > 0, values[:, :, :3] / np.maximum(alpha, 1e-12), 0.0)
    return from_float(values, pixels.dtype)


# --------------------------------------------------------------------------------------------
# Writing


def encode_png(pixels: np.ndarray, fmt: str) -> np.ndarray:
    """PNG file contents of a frame in PNG8 or PNG16 (see convert for the sample conversion)."""
    samples = convert(pixels, fmt)
    if samples.shape[2] == 3:
        samples = cv2.cvtColor(samples, cv2.COLOR_RGB2BGR)
    elif samples.shape[2] == 4:
        samples = cv2.cvtColor(samples, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", samples)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {samples.shape} {samples.dtype} PNG")
    return buffer


def write_image(path: str | os.PathLike, pixels: np.ndarray, fmt: str) -> None:
    """Write one frame. OSError (disk full, permissions) propagates to the caller, which knows
    what the file was for."""
    if fmt == "EXR":
        exr.write(path, convert(pixels, fmt))
        return
    data = encode_png(pixels, fmt)
    with open(path, "wb") as stream:
        stream.write(data.tobytes())
