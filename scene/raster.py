"""Pixel-level helpers in pure NumPy: fill a polygon into a mask, write PNGs.

The add-on has no OpenCV or PIL, and Blender's own image saving applies colour management we do
not want for masks, so both are done here. Coordinates follow docs/JOB.md: x to the right, y
down, origin at the top-left corner of the top-left pixel, pixel centres at +0.5.
"""

import pathlib
import struct
import zlib

import numpy as np

INSIDE = 255


def polygon_area(xy) -> float:
    """Signed area (shoelace) of the closed polygon through the points; positive when the
    points turn clockwise on screen (y down)."""
    xy = np.asarray(xy, np.float64)
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def fill_polygon(xy, width: int, height: int, rule: str = "nonzero") -> np.ndarray:
    """Rasterise the closed polygon ``xy`` (N, 2) into a uint8 (height, width) mask: 255 where
    the pixel centre is inside, 0 elsewhere. Parts outside the image are clipped.

    ``rule`` is "nonzero" (default: a freehand outline that loops over itself is still filled
    everywhere it encloses) or "evenodd" (overlaps cancel, like SVG's evenodd).

    Scanline fill: every edge is intersected with the pixel-centre rows it spans, all edges at
    once, and the crossings are turned into a running winding count per row with one cumulative
    sum. The work is proportional to the crossings plus the polygon's bounding box clipped to
    the image, so an 8K mask costs a fraction of a second."""
    if rule not in ("nonzero", "evenodd"):
        raise ValueError(f"unknown fill rule {rule!r}")
    width, height = int(width), int(height)
    mask = np.zeros((height, width), np.uint8)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) < 3 or width <= 0 or height <= 0 or not np.isfinite(xy).all():
        return mask

    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)

    # Rows whose centre (j + 0.5) lies in the half-open span [ymin, ymax) of each edge: a vertex
    # shared by two edges is then counted once, horizontal edges never.
    ymin, ymax = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.clip(np.ceil(ymin - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(ymax - 0.5), 0, height).astype(np.int64)  # exclusive
    counts = np.maximum(last - first, 0)
    total = int(counts.sum())
    if total == 0:
        return mask

    edge = np.repeat(np.arange(len(xy)), counts)
    # Row index of every crossing: first row of its edge plus its rank within the edge.
    starts = np.cumsum(counts) - counts
    rows = first[edge] + (np.arange(total) - np.repeat(starts, counts))
    yc = rows + 0.5
    t = (yc - y0[edge]) / (y1[edge] - y0[edge])
    xc = x0[edge] + t * (x1[edge] - x0[edge])
    # Winding direction: +1 for edges going down the image, -1 going up.
    direction = np.where(y1[edge] > y0[edge], 1, -1)

    # First pixel whose centre is at or right of the crossing.
    col = np.clip(np.ceil(xc - 0.5), 0, width).astype(np.int64)

    # Walk the crossings row by row, left to right. Every row crosses the closed outline a net
    # zero times (and an even number of times), so one running sum over all rows is the
    # winding number (or crossing count) between consecutive crossings of the same row.
    order = np.lexsort((xc, rows))
    rows, col, direction = rows[order], col[order], direction[order]
    running = np.cumsum(direction if rule == "nonzero" else np.ones_like(direction))
    filled = running != 0 if rule == "nonzero" else (running & 1) == 1
    filled[-1] = False
    start = np.flatnonzero(filled)
    span_rows, span_from, span_to = rows[start], col[start], col[start + 1]

    _fill_spans(mask, span_rows, span_from, span_to)
    return mask


# Up to this many spans per image row on average, spans are filled one slice at a time (a
# memset each); beyond it, one vectorised pass over the bounding box is cheaper.
SPANS_PER_ROW_LOOP = 8


def _fill_spans(mask, rows, starts, ends):
    """Set mask[row, start:end] = INSIDE for each span (spans of a row never overlap)."""
    if len(rows) == 0:
        return
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    if len(rows) <= SPANS_PER_ROW_LOOP * (r1 - r0):
        for r, a, b in zip(rows.tolist(), starts.tolist(), ends.tolist()):
            mask[r, a:b] = INSIDE
        return
    # +1 at each start, -1 at each end, summed along the row: 1 exactly inside. int8 keeps an
    # 8K mask small.
    c0, c1 = int(starts.min()), int(ends.max())
    diff = np.zeros((r1 - r0, c1 - c0 + 1), np.int8)
    np.add.at(diff, (rows - r0, starts - c0), 1)
    np.add.at(diff, (rows - r0, ends - c0), -1)
    inside = np.cumsum(diff, axis=1, dtype=np.int8)[:, :-1] > 0
    np.multiply(inside.view(np.uint8), INSIDE, out=mask[r0:r1, c0:c1], casting="unsafe")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+A, RGB, RGBA)


def write_png(path, pixels, compress_level=None) -> pathlib.Path:
    """Write a uint8 or uint16 array, (H, W) or (H, W, C) with C in 1..4, as a PNG; rows top to
    bottom. A minimal encoder (one IDAT, filter 0) that every PNG reader, OpenCV included,
    accepts. compress_level None: zlib level 6, or 1 above 16 M samples (these files are
    temporary; level 1 is twice as fast on an 8K image)."""
    pixels = np.asarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG pixels must be uint8 or uint16, not {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"PNG pixels must be (H, W) or (H, W, 1..4), not {pixels.shape}")
    height, width, channels = pixels.shape
    if width == 0 or height == 0:
        raise ValueError("a PNG needs at least one pixel")
    bit_depth = 8 if pixels.dtype == np.uint8 else 16
    if compress_level is None:
        compress_level = 1 if pixels.size > 4096 * 4096 else 6
    data = pixels.astype(">u2") if bit_depth == 16 else pixels
    rows = data.reshape(height, -1).view(np.uint8).reshape(height, -1)
    raw = np.empty((height, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter type "None" for every row
    raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", width, height, bit_depth, _COLOR_TYPES[channels], 0, 0, 0)
    png = b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )
    path = pathlib.Path(path)
    path.write_bytes(png)
    return path


def write_png_gray(path, mask) -> pathlib.Path:
    """Write a single-channel 8-bit mask (H, W) as a greyscale PNG, as docs/JOB.md asks."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is (H, W), not {mask.shape}")
    if mask.dtype == np.bool_:
        mask = np.where(mask, INSIDE, 0)
    return write_png(path, mask.astype(np.uint8, copy=False))
