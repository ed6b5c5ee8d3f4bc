"""A small OpenEXR codec: scanline images, NONE / RLE / ZIPS / ZIP compression, HALF / FLOAT / UINT.

Why our own: the OpenCV wheels we pin (opencv-python-headless 5.0) are built without OpenEXR
("OpenEXR: NO" in cv2.getBuildInformation()), and EXR is one of the three bake formats. The
subset here is what Blender writes by default (ZIP, half or float) and what we write (ZIP, float),
so a bake round-trips through Blender exactly. Anything else (tiled, multi-part, deep, PIZ, DWA,
B44, PXR24) is refused with a message; when the running OpenCV *does* have OpenEXR, frames.py
falls back to it for those.

Layout reference: "OpenEXR File Layout" (openexr.com/en/latest/OpenEXRFileLayout.html). Written
from the specification, not from OpenEXR's code.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

MAGIC = b"\x76\x2f\x31\x01"

# Compression ids from the specification, and how many scanlines each packs into one chunk.
COMPRESSION_NAMES = {0: "NONE", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ", 5: "PXR24",
                     6: "B44", 7: "B44A", 8: "DWAA", 9: "DWAB", 10: "HTJ2K256", 11: "HTJ2K32"}
LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16}
ZIP = 3

# Pixel type id -> numpy little-endian dtype.
PIXEL_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
FLOAT = 2

# Flags in the version field.
TILED, LONG_NAMES, DEEP, MULTIPART = 0x200, 0x400, 0x800, 0x1000


class ExrError(ValueError):
    """The bytes are not an EXR this codec can read; the message says why."""


# --------------------------------------------------------------------------------------------
# Writing


def encode(pixels: np.ndarray) -> bytes:
    """An EXR file (ZIP compression, 32-bit float) holding `pixels`: H x W x C float, C = 1 (Y),
    3 (RGB) or 4 (RGBA), channels in that order."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, count = pixels.shape
    names = {1: ["Y"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}.get(count)
    if names is None:
        raise ValueError(f"EXR needs 1, 3 or 4 channels, got {count}")
    # EXR stores channels sorted by name; each scanline holds one channel after another.
    order = sorted(range(count), key=lambda c: names[c])
    planar = np.ascontiguousarray(
        pixels.astype("<f4", copy=False)[:, :, order].transpose(0, 2, 1))  # H x C x W

    header = bytearray(MAGIC + struct.pack("<I", 2))
    chlist = b"".join(names[c].encode() + b"\0" + struct.pack("<iB3xii", FLOAT, 0, 1, 1)
                      for c in order) + b"\0"
    box = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    for name, kind, value in [
        ("channels", "chlist", chlist),
        ("compression", "compression", bytes([ZIP])),
        ("dataWindow", "box2i", box),
        ("displayWindow", "box2i", box),
        ("lineOrder", "lineOrder", b"\0"),  # INCREASING_Y
        ("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        ("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        ("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]:
        header += name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value))
        header += value
    header += b"\0"

    lines = LINES_PER_CHUNK[ZIP]
    chunks = []
    for y in range(0, height, lines):
        raw = planar[y:y + lines].tobytes()
        packed = _zip_pack(raw)
        # The specification stores a chunk raw when compressing does not make it smaller.
        data = packed if len(packed) < len(raw) else raw
        chunks.append(struct.pack("<ii", y, len(data)) + data)

    offsets = []
    position = len(header) + 8 * len(chunks)
    for chunk in chunks:
        offsets.append(position)
        position += len(chunk)
    return bytes(header) + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(chunks)


def _zip_pack(raw: bytes) -> bytes:
    """ZIP/RLE pre-pass from the specification: split even and odd bytes into two halves, then
    store each byte as the difference to the previous one (+128), then deflate."""
    data = np.frombuffer(raw, np.uint8)
    split = np.concatenate([data[0::2], data[1::2]])
    delta = split.copy()
    delta[1:] = (split[1:].astype(np.int16) - split[:-1] + 128) & 0xFF
    return zlib.compress(delta.tobytes(), 6)


# --------------------------------------------------------------------------------------------
# Reading


def decode(buffer: bytes) -> np.ndarray:
    """H x W x C float32 from EXR bytes; C = 1 (Y or a single channel), 3 (RGB) or 4 (RGBA)."""
    if buffer[:4] != MAGIC:
        raise ExrError("not an OpenEXR file")
    (version,) = struct.unpack_from("<I", buffer, 4)
    if version & (TILED | DEEP | MULTIPART):
        raise ExrError("tiled, deep or multi-part EXR is not supported; "
                       "save it as a single-part scanline EXR (ZIP) or as a 16-bit PNG")
    attrs, position = _read_header(buffer, 8)
    try:
        channels = attrs["channels"]
        compression = attrs["compression"]
        x_min, y_min, x_max, y_max = attrs["dataWindow"]
    except KeyError as missing:
        raise ExrError(f"EXR header has no {missing} attribute") from None
    if compression not in LINES_PER_CHUNK:
        name = COMPRESSION_NAMES.get(compression, str(compression))
        raise ExrError(f"EXR compression {name} is not supported; "
                       "re-save it with ZIP compression or as a 16-bit PNG")
    width, height = x_max - x_min + 1, y_max - y_min + 1
    if width <= 0 or height <= 0:
        raise ExrError("EXR data window is empty")
    for name, (_, xs, ys) in channels.items():
        if xs != 1 or ys != 1:
            raise ExrError(f"EXR channel {name} is subsampled; not supported")

    lines = LINES_PER_CHUNK[compression]
    count = -(-height // lines)
    offsets = struct.unpack_from(f"<{count}Q", buffer, position)
    names = sorted(channels)  # storage order
    dtypes = [PIXEL_TYPES[channels[n][0]] for n in names]
    line_bytes = sum(d.itemsize for d in dtypes) * width
    planes = {n: np.empty((height, width), np.float32) for n in names}
    for offset in offsets:
        y, size = struct.unpack_from("<ii", buffer, offset)
        data = buffer[offset + 8: offset + 8 + size]
        row0 = y - y_min
        rows = min(lines, height - row0)
        expected = rows * line_bytes
        if size < expected:
            data = _unpack(data, compression, expected)
        if len(data) != expected:
            raise ExrError(f"EXR chunk at line {y} is truncated")
        _scatter(data, row0, rows, width, names, dtypes, planes)
    return _to_pixels(planes)


def _read_header(buffer: bytes, position: int) -> tuple[dict, int]:
    attrs = {}
    while True:
        name, position = _cstring(buffer, position)
        if not name:
            return attrs, position
        kind, position = _cstring(buffer, position)
        (size,) = struct.unpack_from("<i", buffer, position)
        position += 4
        value = buffer[position:position + size]
        position += size
        if kind == "chlist":
            attrs[name] = _read_chlist(value)
        elif kind == "compression":
            attrs[name] = value[0]
        elif kind == "box2i":
            attrs[name] = struct.unpack("<iiii", value)


def _cstring(buffer: bytes, position: int) -> tuple[str, int]:
    end = buffer.index(b"\0", position)
    return buffer[position:end].decode("latin-1"), end + 1


def _read_chlist(value: bytes) -> dict:
    channels, position = {}, 0
    while value[position:position + 1] not in (b"\0", b""):
        name, position = _cstring(value, position)
        pixel_type, _, xs, ys = struct.unpack_from("<iB3xii", value, position)
        position += 16
        if pixel_type not in PIXEL_TYPES:
            raise ExrError(f"EXR channel {name} has unknown pixel type {pixel_type}")
        channels[name] = (pixel_type, xs, ys)
    return channels


def _unpack(data: bytes, compression: int, expected: int) -> bytes:
    if compression in (2, 3):
        try:
            delta = np.frombuffer(zlib.decompress(data), np.uint8)
        except zlib.error as exc:
            raise ExrError(f"EXR chunk does not inflate: {exc}") from None
    elif compression == 1:
        delta = _rle_expand(data)
    else:
        return data
    if len(delta) != expected:
        raise ExrError("EXR chunk has the wrong size after decompression")
    # Undo the predictor, then interleave the two halves back.
    split = _undo_predictor(delta)
    half = (len(split) + 1) // 2
    out = np.empty_like(split)
    out[0::2] = split[:half]
    out[1::2] = split[half:]
    return out.tobytes()


def _undo_predictor(delta: np.ndarray) -> np.ndarray:
    # byte[0] is stored as is; byte[i] = byte[i-1] + delta[i] - 128 (mod 256).
    steps = delta.astype(np.int64) - 128
    steps[0] = delta[0]
    return (np.cumsum(steps) & 0xFF).astype(np.uint8)


def _rle_expand(data: bytes) -> np.ndarray:
    out = bytearray()
    position = 0
    while position < len(data):
        count = struct.unpack_from("b", data, position)[0]
        position += 1
        if count < 0:  # -count literal bytes follow
            out += data[position:position - count]
            position -= count
        else:  # the next byte repeated count + 1 times
            out += data[position:position + 1] * (count + 1)
            position += 1
    return np.frombuffer(bytes(out), np.uint8)


def _scatter(data, row0, rows, width, names, dtypes, planes) -> None:
    position = 0
    for r in range(rows):
        for name, dtype in zip(names, dtypes):
            size = dtype.itemsize * width
            line = np.frombuffer(data, dtype, width, position)
            planes[name][row0 + r] = line
            position += size


def _to_pixels(planes: dict) -> np.ndarray:
    # Layered files (Blender's multilayer) name channels like "ViewLayer.Combined.R": match by
    # the last component, first layer that has R, G and B.
    by_suffix: dict[str, np.ndarray] = {}
    for name in sorted(planes):
        by_suffix.setdefault(name.rsplit(".", 1)[-1].upper(), planes[name])
    if all(c in by_suffix for c in "RGB"):
        wanted = "RGBA" if "A" in by_suffix else "RGB"
    elif "Y" in by_suffix:
        wanted = "YA" if "A" in by_suffix else "Y"
    elif len(planes) == 1:
        return next(iter(planes.values()))[:, :, None]
    else:
        raise ExrError(f"EXR has no R, G, B or Y channels (it has {', '.join(sorted(planes))})")
    if wanted == "YA":  # grey + alpha: keep alpha, spread grey to RGB
        y = by_suffix["Y"]
        return np.stack([y, y, y, by_suffix["A"]], axis=2)
    return np.stack([by_suffix[c] for c in wanted], axis=2)
