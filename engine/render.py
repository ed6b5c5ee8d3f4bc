"""Flow field -> frame at native resolution: the renderer every motion engine shares.

Conventions (the same as docs/JOB.md): pixel coordinates in pixels, x right, y down, origin at the
top-left corner of the top-left pixel, so pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5). A *flow* is a tensor [2, H, W] holding (dx, dy) per output pixel: how far the
content now shown at that pixel has moved since the still. Rendering is a backward warp,

    frame(x) = still(x - flow(x)),

which never leaves holes. Where the flow is exactly zero the still's pixel is copied, so static
regions are bit-identical to the still (no resampling round-off). Colour is resampled
premultiplied by alpha so transparent pixels do not bleed their hidden colour into edges.

Engines usually compute flow at a lower resolution (it is smooth); `upsample_flow` brings it to
full resolution and `FrameRenderer` does that band by band, so memory stays O(one frame) even for
8K stills, and only the part of the frame that moves is resampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine import frames

# Bicubic keeps the still sharp under small motions; bilinear is ~2.5x faster on CPU but softens.
# "lanczos" (OpenCV's 8 x 8 Lanczos, CPU tensors; bicubic elsewhere) keeps more of the finest
# detail at sub-pixel offsets: a photo shifted half a pixel both ways keeps 0.84 of its Laplacian
# variance against bicubic's 0.75, which is what a slow drift shows in every frame.
DEFAULT_MODE = "bicubic"
LANCZOS_COLUMNS = 4096  # OpenCV's remap takes maps under 32767 on a side: long lists are folded
# Pixels per band for FrameRenderer: big enough that per-call overhead is small, small enough
# that an 8K frame never needs more than a few hundred MB of temporaries.
BAND_PIXELS = 2 ** 21
# How far (in samples) a kernel reaches on either side: bicubic image sampling and B-spline flow
# upsampling need 2, Lanczos 4.
SUPPORT = 4


def smoothstep(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 at or below `low`, 1 at or above `high`, 3t^2 - 2t^3 between (float32): the soft edge
    of every gate, ramp and mask fall-off the engines make. (engine/warp/pins.py computes the
    same in place, to keep an 8K pin map to one buffer.)"""
    t = np.clip((np.asarray(values, np.float32) - low) / max(high - low, 1e-12), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def sample(source: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           mode: str = DEFAULT_MODE) -> torch.Tensor:
    """Sample `source` [C, h, w] at continuous pixel coordinates `x`, `y` (any equal shape
    [R, K]); samples outside repeat the border. Returns [C, R, K]."""
    if mode == "lanczos":
        if source.device.type == "cpu":
            return _sample_lanczos(source, x, y)
        mode = "bicubic"  # grid_sample has no Lanczos kernel
    _, height, width = source.shape
    grid = torch.empty(*x.shape, 2, dtype=source.dtype, device=source.device)
    # align_corners=False puts pixel j's centre at normalised (2j + 1) / w - 1, which is exactly
    # the pixel-centre convention above.
    torch.add(x * (2.0 / width), -1.0, out=grid[..., 0])
    torch.add(y * (2.0 / height), -1.0, out=grid[..., 1])
    return F.grid_sample(source[None], grid[None], mode=mode, padding_mode="border",
                         align_corners=False)[0]


def _sample_lanczos(source: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`sample` with OpenCV's Lanczos (8 x 8) on the CPU; same conventions and border."""
    import cv2

    shape = x.shape
    count = x.numel()
    columns = min(max(count, 1), LANCZOS_COLUMNS)
    rows = -(-count // columns)
    maps = []
    for values in (x, y):  # OpenCV puts pixel j's centre at j, not j + 0.5
        flat = torch.full((rows * columns,), -0.5, dtype=torch.float32)
        flat[:count] = values.reshape(-1).float() - 0.5
        maps.append(flat.reshape(rows, columns).numpy())
    image = source.detach().float().permute(1, 2, 0).contiguous().numpy()
    parts = []
    for c in range(0, image.shape[2], 4):  # remap takes up to 4 channels
        part = cv2.remap(np.ascontiguousarray(image[..., c:c + 4]), maps[0], maps[1],
                         cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
        parts.append(part.reshape(rows, columns, -1))
    values = torch.from_numpy(np.concatenate(parts, axis=2)).reshape(-1, image.shape[2])
    return values[:count].T.reshape(image.shape[2], *shape).to(source.dtype)


def pixel_centres(height: int, width: int, device=None, rows: tuple[int, int] | None = None,
                  cols: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of the pixel centres of a region (default: the whole image), each [R, K]."""
    r0, r1 = rows or (0, height)
    c0, c1 = cols or (0, width)
    ys = torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(c0, c1, device=device, dtype=torch.float32) + 0.5
    return xs[None, :].expand(r1 - r0, -1), ys[:, None].expand(-1, c1 - c0)


@dataclass(frozen=True)
class FlowPatch:
    """A backward flow on a low-resolution grid that spans the whole image, stored only on the
    patch where it can be non-zero (zero everywhere else): the warp engine's pokes reach a small
    part of a big still. `values` [2, h, w] in grid pixels start at grid cell `origin` (row,
    column) of a grid of `grid` (rows, columns) cells."""
    values: torch.Tensor
    grid: tuple[int, int]
    origin: tuple[int, int] = (0, 0)

    @classmethod
    def dense(cls, flow: torch.Tensor) -> "FlowPatch":
        return cls(flow, (flow.shape[1], flow.shape[2]))


def upsample_flow(flow: torch.Tensor | FlowPatch, height: int, width: int,
                  rows: tuple[int, int] | None = None,
                  cols: tuple[int, int] | None = None) -> torch.Tensor:
    """A low-resolution flow [2, h, w] in *its own* pixels (or a FlowPatch) -> [2, H, W] in
    full-resolution pixels (or only the full-resolution region rows x cols). Both grids cover
    the same image, pixel centre to pixel centre, so a 64x64 flow from a model scales to any
    still.

    Cubic B-spline weights, not interpolating bicubic: B-spline weights are never negative, so
    the upsampled flow never overshoots its samples (bicubic rings by several percent next to a
    steep fall-off) and a one-to-one map stays one-to-one (no duplicated content). It is C2
    smooth, exact for constant and linear flows, and off by h^2/6 * flow'' elsewhere (h: grid
    spacing). Done as two small matrix products, region = Wy @ flow @ Wx^T, so that any region
    can be upsampled on its own (band-by-band rendering)."""
    patch = flow if isinstance(flow, FlowPatch) else FlowPatch.dense(flow)
    values = patch.values
    (low_h, low_w), (i0, j0) = patch.grid, patch.origin
    r0, r1 = rows or (0, height)
    c0, c1 = cols or (0, width)
    wy = cubic_matrix(r0, r1, height, low_h, i0, values.shape[1], values)
    wx = cubic_matrix(c0, c1, width, low_w, j0, values.shape[2], values)
    out = wy @ values @ wx.T
    scale = torch.tensor([width / low_w, height / low_h], device=values.device,
                         dtype=values.dtype)
    return out * scale[:, None, None]


def cubic_matrix(start: int, stop: int, size: int, low: int, first: int, count: int,
                  like: torch.Tensor) -> torch.Tensor:
    """Weights [stop - start, count] taking low-resolution samples first .. first+count-1 (of
    0 .. low-1; the others are zero) to full-resolution pixels start .. stop-1 (cubic B-spline;
    samples beyond the image border repeat the border one)."""
    position = (torch.arange(start, stop, dtype=torch.float64) + 0.5) * (low / size) - 0.5
    base = torch.floor(position)
    weights = torch.zeros(stop - start, count + 1, dtype=torch.float64)
    rows = torch.arange(stop - start)
    for k in (-1, 0, 1, 2):
        index = (base + k).clamp(0, low - 1).long() - first
        # Taps outside the patch read zero: send them to a spare column, dropped below.
        index = torch.where((index >= 0) & (index < count), index, torch.full_like(index, count))
        weights.index_put_((rows, index), _bspline(position - (base + k)), accumulate=True)
    return weights[:, :count].to(like.device, like.dtype)


def _bspline(t: torch.Tensor) -> torch.Tensor:
    t = t.abs()
    near = (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0
    far = (2.0 - t).clamp_min(0.0) ** 3 / 6.0
    return torch.where(t <= 1, near, far)


def warp_frame(still: torch.Tensor, flow: torch.Tensor, mode: str = DEFAULT_MODE,
               has_alpha: bool | None = None) -> torch.Tensor:
    """One frame: `still` [C, H, W] float (channel 4, if any, is alpha), `flow` [2, H, W] in
    pixels -> [C, H, W], frame(x) = still(x - flow(x)), exact copy where the flow is zero."""
    channels, height, width = still.shape
    has_alpha = channels == 4 if has_alpha is None else has_alpha
    x, y = pixel_centres(height, width, still.device)
    low = still.amin(dim=(1, 2))
    if has_alpha:
        low[3] = 0.0
    warped = _resample(still, x - flow[0], y - flow[1], mode, has_alpha, low)
    moving = (flow != 0).any(dim=0)
    return torch.where(moving[None], warped, still)


def _resample(source, x, y, mode, has_alpha, low=None) -> torch.Tensor:
    """Resample [C, h, w] at x, y; alpha premultiplied while resampling; values never below the
    still's own minimum (`low`, per channel; bicubic undershoots next to sharp edges)."""
    if has_alpha:
        source = torch.cat([source[:3] * source[3:], source[3:]])
    out = sample(source, x, y, mode)
    if has_alpha:
        alpha = out[3:].clamp_(0.0, 1.0)
        colour = out[:3].div_(alpha.clamp_min(1e-12))
        colour.masked_fill_(alpha == 0, 0.0)
    if low is not None:
        out = torch.maximum(out, low[:, None, None])
    return out


class FrameRenderer:
    """Renders frames of one still (native H x W x C array, see engine/frames.py) from low-
    resolution flows, band by band and only where the flow is non-zero.

    `gate` (H x W float32 in [0, 1], optional) multiplies the full-resolution flow: static masks
    use it so that pixels they pin have flow exactly zero, whatever the low-resolution flow's
    interpolation does near them.
    """

    def __init__(self, still: np.ndarray, device: torch.device | str = "cpu",
                 mode: str = DEFAULT_MODE, gate: np.ndarray | None = None):
        self.still = still
        self.height, self.width, self.channels = still.shape
        self.device = torch.device(device)
        self.mode = mode
        self.gate = gate
        self._scale = frames.MAX_VALUE.get(still.dtype)  # None for float stills
        # Bicubic undershoots next to sharp edges; no sample goes below the still's own minimum
        # (for float stills that would be negative light).
        low = still.reshape(-1, self.channels).min(axis=0).astype(np.float32)
        self._low = torch.from_numpy(low / (self._scale or 1.0)).to(self.device)
        if self.channels == 4:
            self._low[3] = 0.0
        self.band_rows = max(1, min(self.height, BAND_PIXELS // max(1, self.width)))

    def render(self, flow: torch.Tensor | FlowPatch) -> np.ndarray:
        """One frame (native array like the still) from a low-resolution flow [2, h, w] in its
        own pixels, or a FlowPatch."""
        patch = flow if isinstance(flow, FlowPatch) else FlowPatch.dense(flow)
        patch = FlowPatch(patch.values.to(self.device, torch.float32), patch.grid, patch.origin)
        out = self.still.copy()
        nonzero = (patch.values != 0).any(dim=0)
        if not bool(nonzero.any()):
            return out  # nothing moves: the still itself, bit for bit
        # Full-resolution rows the patch can reach (interpolation taps included).
        (low_h, _), (i0, _) = patch.grid, patch.origin
        first = max(0, int(np.floor((i0 - SUPPORT) * self.height / low_h)))
        last = min(self.height, int(np.ceil((i0 + nonzero.shape[0] + SUPPORT) * self.height
                                            / low_h)))
        for r0 in range(first, last, self.band_rows):
            r1 = min(last, r0 + self.band_rows)
            columns = self._moving_columns(nonzero, patch, r0, r1)
            if columns is not None:
                self._render_region(patch, out, (r0, r1), columns)
        return out

    def _moving_columns(self, nonzero, patch, r0, r1) -> tuple[int, int] | None:
        """Full-resolution columns of band rows r0..r1 whose upsampled flow can be non-zero:
        those within interpolation reach of a non-zero low-resolution sample."""
        (low_h, low_w), (i0, j0) = patch.grid, patch.origin
        lr0 = int(np.floor((r0 + 0.5) * low_h / self.height - 0.5)) - SUPPORT - i0
        lr1 = int(np.ceil((r1 - 0.5) * low_h / self.height - 0.5)) + SUPPORT + 1 - i0
        columns = torch.nonzero(nonzero[max(0, lr0):max(0, lr1)].any(dim=0)).flatten()
        if columns.numel() == 0:
            return None
        lc0 = int(columns[0]) + j0 - SUPPORT
        lc1 = int(columns[-1]) + j0 + SUPPORT + 1
        c0 = max(0, int(np.floor(lc0 * self.width / low_w)) - 1)
        c1 = min(self.width, int(np.ceil(lc1 * self.width / low_w)) + 1)
        return (c0, c1) if c0 < c1 else None

    def _render_region(self, flow, out, rows, cols) -> None:
        full = upsample_flow(flow, self.height, self.width, rows, cols)
        if self.gate is not None:
            gate = self.gate[rows[0]:rows[1], cols[0]:cols[1]]
            full.mul_(torch.from_numpy(gate).to(self.device))
        moving = (full != 0).any(dim=0)
        # Shrink to the bounding box of the pixels that actually move.
        moving_rows = torch.nonzero(moving.any(dim=1)).flatten()
        if moving_rows.numel() == 0:
            return
        moving_cols = torch.nonzero(moving.any(dim=0)).flatten()
        a, b = int(moving_rows[0]), int(moving_rows[-1]) + 1
        c, d = int(moving_cols[0]), int(moving_cols[-1]) + 1
        full, moving = full[:, a:b, c:d], moving[a:b, c:d]
        r0, r1, c0, c1 = rows[0] + a, rows[0] + b, cols[0] + c, cols[0] + d

        x, y = pixel_centres(self.height, self.width, self.device, (r0, r1), (c0, c1))
        src_x, src_y = x - full[0], y - full[1]
        # The part of the still these samples can reach (bicubic taps included).
        (y_min, y_max), (x_min, x_max) = torch.aminmax(src_y), torch.aminmax(src_x)
        wr0 = max(0, int(np.floor(float(y_min))) - SUPPORT)
        wr1 = min(self.height, int(np.floor(float(y_max))) + SUPPORT + 1)
        wc0 = max(0, int(np.floor(float(x_min))) - SUPPORT)
        wc1 = min(self.width, int(np.floor(float(x_max))) + SUPPORT + 1)
        window = torch.from_numpy(self.still[wr0:wr1, wc0:wc1]).to(self.device)
        window = window.permute(2, 0, 1).float()
        if self._scale is not None:
            window.mul_(1.0 / self._scale)
        warped = _resample(window, src_x.sub_(wc0), src_y.sub_(wr0), self.mode,
                           self.channels == 4, self._low)
        warped = self._to_native(warped).permute(1, 2, 0).cpu().numpy()
        np.copyto(out[r0:r1, c0:c1], warped, where=moving.cpu().numpy()[:, :, None])

    def _to_native(self, values: torch.Tensor) -> torch.Tensor:
        if self._scale is None:
            return values
        values = values.mul_(self._scale).round_().clamp_(0.0, self._scale)
        return values.to(torch.uint8 if self._scale == 255.0 else torch.uint16)
