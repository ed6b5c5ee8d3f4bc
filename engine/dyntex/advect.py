"""Motion first (`dyntex.method: "advect"`, issue 15): every frame moves the still's own pixels at
full resolution along each region's motion field (engine/dyntex/motion_field.py); nothing is
synthesised, so nothing flickers and nothing blurs beyond one resampling.

Drift (clouds, water, waterfall, a river clip): the velocity field v is constant in time and the
content is carried along it (Eulerian integration on the field's coarse grid, bilinear lookups
of v, cached per step): the source of a pixel x after k steps forward is x_k, x_{k+1} = x_k -
v(x_k) ("the still advected forward k steps" samples the still there), and after k steps
backward x_{k+1} = x_k + v(x_k). A seamless loop blends the two as Holynski et al. (CVPR 2021,
Animating Pictures with Eulerian Motion Fields) do: frame t (0 .. N-1) = (1 - t/N) x the still
advected forward t steps + t/N x the still advected backward N - t steps; both layers move with
the same v, frame 0 is the still and frame N would be the still again, so the loop closes
exactly. A region that runs out of its own content sooner (a lake flowing towards its shore)
blends over a whole fraction of the clip instead (loop_period). Without `loop` the clip is the
forward layer alone: a steady drift from the still, with
no cross-fade and so no mid-clip double image.

Where a layer's source leaves the region (content that enters the picture at the image border,
where the field does not slide), or where it stretches a little content over a wide area (behind
an edge the flow slides along, the content that moved on is replaced by the edge band drawn
out), its weight falls with the source's *trust* (1 in the region and where lengths are kept, 0
a few steps outside or where some direction is stretched 3-fold) and the other layer fills in:
moving texture from the other side of the loop rather than a smear. (Without `loop` the
backward layer, anchored at the last frame, fills in only there.) Before sampling, each region's
pixels are extended outward past its mask (a push-pull fill of the region's own colours; beyond
the image border, mirrored), so interpolation taps and sources that stray over the edge never
drag the neighbouring tree or rock into the sky.

Oscillation (grass, leaves, ripples): a periodic displacement d(p, t) = A(p) u(p) (sin(omega t
+ phi(p)) - sin(phi(p))), phi a travelling wave with a smooth irregularity (blades sway in
waves), whole cycles per clip when looping; frame(x) = still(x - d(x, t)), so frame 0 is the
still. A and phi are upsampled from the field's grid and the sine taken per pixel.

The cross-fade keeps the detail's contrast (blend_layers: the layers' detail above DETAIL_SIGMA
is blended with weights normalised to keep its variance), so mid-loop is not a softer double
exposure of the two layers.

A drifting region holds what its mask took in at the edge and that does not look like the rest
of it (engine/dyntex/foreign.py: a tree's twigs in a rough sky mask), like a static mask.

Composition: frame = still (1 - m) + moved m, with m each region's mask (static masks and pins
taken out) feathered a few pixels *inside* its edge; pixels no region covers are copied from the
still, bit for bit, in its own sample type. Sampling is engine/render.py's (Lanczos, SAMPLING);
one frame at a time (a generator), one band of rows at a time, with the source positions cached
on the coarse grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field as dataclass_field

import cv2
import numpy as np
import torch

from engine import frames as frames_io
from engine import render
from engine.dyntex import motion_field
from engine.dyntex.foreign import foreign_content
from engine.dyntex.motion_field import Arrow, Grid, RegionField
from engine.errors import JobError
from engine.warp.pins import pin_discs

FEATHER = 0.003      # of the shorter side: the composition's soft edge, inside the mask
MAX_SUBSTEP = 0.5    # cells an integration sub-step may move
# A layer whose source length per target length (in the direction stretched most) falls from
# STRETCH[1] to STRETCH[0] hands over to the other layer: edge content drawn out is not texture.
STRETCH = (0.35, 0.8)
# The loop's cross-fade keeps the detail's contrast: the layers' detail above this scale (the
# canvas minus its Gaussian blur of this sigma, in pixels) is blended with weights normalised to
# keep its variance, the rest linearly.
DETAIL_SIGMA = 2.0
# A looping drift's blend period (loop_period): the mean trust of the region's sources it keeps,
# and the fewest frames it may take.
TRUST_KEEP = 0.7
MIN_PERIOD = 6
# A drift shows the still at a new sub-pixel offset in every frame, so the kernel's softening is
# seen all the time: Lanczos keeps more of the finest detail than bicubic (engine/render.py).
SAMPLING = "lanczos"


@dataclass
class Region:
    """A prepared region: its field, composition weight m (working size, 0 outside), the
    bounding box of m > 0, and its source canvas (the still's pixels of the region extended
    outward) with its origin (row, column) in still pixels."""
    index: int
    label: str
    field: RegionField
    weight: np.ndarray
    box: tuple[int, int, int, int]
    canvas: torch.Tensor
    origin: tuple[int, int]
    # drift: [N + 1, 3, h, w] after k steps: the source minus the start (x, y in cells), and
    # the trust at the source
    forward: torch.Tensor | None = None
    backward: torch.Tensor | None = None
    weights: dict = dataclass_field(default_factory=dict)  # the upsampling matrices per band
    bands: list | None = None  # the covered pixels per band (AdvectClip._bands)
    smooth: torch.Tensor | None = None  # the canvas blurred by DETAIL_SIGMA (drift only)
    wave: torch.Tensor | None = None  # oscillation: [3, h, w] the sway (x, y cells), the phase
    period: float = 0.0  # frames of the loop's blend (drift; 0: the whole clip), loop_period


class AdvectClip:
    """The clip: iterate it for frames 1 .. N, or `frame(t)` for any t in 0 .. N (t = N is the
    frame after the last: the still again when looping)."""

    def __init__(self, still: np.ndarray, regions: list[Region], frames: int, loop: bool,
                 device: torch.device | str = "cpu", mode: str = SAMPLING):
        self.still = still
        self.regions = regions
        self.frames = frames
        self.loop = loop
        self.device = torch.device(device)
        self.mode = mode
        self.height, self.width = still.shape[:2]
        self._scale = frames_io.MAX_VALUE.get(still.dtype)
        # Bicubic overshoots next to sharp edges: no value leaves the still's own range.
        channels = still.reshape(-1, still.shape[2])
        low = channels.min(axis=0).astype(np.float32) / (self._scale or 1.0)
        high = channels.max(axis=0).astype(np.float32) / (self._scale or 1.0)
        if still.shape[2] == 4:  # premultiplied colour: anything from 0 up
            low[:] = 0.0
        self._low = torch.from_numpy(low).to(self.device)[:, None]
        self._high = torch.from_numpy(high).to(self.device)[:, None]

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.frames):
            yield self.frame(t)

    def frame(self, t: int) -> np.ndarray:
        if not 0 <= t <= self.frames:
            raise ValueError(f"frame {t} is outside 0..{self.frames}")
        out = self.still.copy()
        if t == 0 or (self.loop and t == self.frames):
            # Nothing has moved yet (or the loop is back): the still, bit for bit. Rendered, a
            # corner of a mask inside the picture took a rounding step from the backward layer
            # (the trust, upsampled from the coarse grid, is a little under 1 there).
            return out
        for region in self.regions:
            self._render(region, out, t)
        return out

    # ----------------------------------------------------------------------------------------

    def _render(self, region: Region, out: np.ndarray, t: int) -> None:
        for band in self._bands(region):
            (a, b), (c0, c1), covered, index, weight = band
            moved = self._moved(region, t, band)                      # [C, P]
            view = out[a:b, c0:c1]
            current = _to_work(view[covered], self._scale).to(self.device)  # [C, P]
            mixed = moved.sub_(current).mul_(weight).add_(current)
            mixed = mixed.clamp_(self._low, self._high)
            if out.shape[2] == 4:
                alpha = mixed[3:].clamp(0.0, 1.0)
                mixed = torch.cat([mixed[:3] / alpha.clamp_min(1e-12) * (alpha > 0), alpha])
            view[covered] = _to_native(mixed, out.dtype, self._scale)

    def _bands(self, region: Region) -> list:
        """The region's box in bands of rows (memory O(a band)), each with the pixels it covers
        (m > 0): (rows, cols, covered [R, K] bool, their flat indices [P], m [P]); kept."""
        if region.bands is None:
            r0, r1, c0, c1 = region.box
            step = max(1, min(r1 - r0, render.BAND_PIXELS // max(1, c1 - c0)))
            region.bands = []
            for a in range(r0, r1, step):
                b = min(r1, a + step)
                weight = region.weight[a:b, c0:c1]
                covered = weight > 0
                if covered.any():
                    index = torch.from_numpy(np.flatnonzero(covered)).to(self.device)
                    m = torch.from_numpy(weight[covered]).to(self.device)
                    region.bands.append(((a, b), (c0, c1), covered, index, m))
        return region.bands

    def _moved(self, region: Region, t: int, band) -> torch.Tensor:
        """The region's moved pixels [C, P] at the band's covered pixels (working float,
        premultiplied)."""
        field = region.field
        rows, cols, _, index, _ = band
        width = cols[1] - cols[0]
        x = (index % width).float().add_(cols[0] + 0.5)[None]
        y = torch.div(index, width, rounding_mode="floor").float().add_(rows[0] + 0.5)[None]
        if field.kind == "oscillate":
            # The phase and the amplitude are smooth on the grid, the sine of the phase is not
            # (ripples a few cells long would alias): upsample those, take the sine per pixel.
            if region.wave is None:
                region.wave = torch.from_numpy(
                    np.concatenate([field.sway, field.phase[None]])).to(self.device)
            maps = self._upsample(region, region.wave, rows, cols, index)
            phase = maps[2:3]
            d = maps[:2] * (torch.sin(field.omega * t + phase) - torch.sin(phase))
            return self._sample(region, x - d[0], y - d[1])
        n = self.frames
        if self.loop:  # the blend runs over the region's period: whole periods per loop
            period = region.period or n
            steps = math.fmod(t, period)
            if period - steps < 1e-6:
                steps = 0.0
            a, k_back = steps / period, period - steps
        else:
            steps, a, k_back = t, 0.0, max(0, n - 1 - t)
        if self.loop and a == 0.0:
            layers = _steps(region.forward, steps)
        else:
            layers = torch.cat([_steps(region.forward, steps), _steps(region.backward, k_back)])
        maps = self._upsample(region, layers, rows, cols, index)
        if len(maps) == 3:
            return self._sample(region, x + maps[0], y + maps[1])
        trust_f, trust_b = maps[2].clamp_(0.0, 1.0), maps[5].clamp_(0.0, 1.0)
        if not self.loop and not bool((trust_f < 1.0).any()):
            return self._sample(region, x + maps[0], y + maps[1])
        xf, yf, xb, yb = x + maps[0], y + maps[1], x + maps[3], y + maps[4]
        forward = self._sample(region, xf, yf)
        backward = self._sample(region, xb, yb)
        if self.loop:
            w_f, w_b = (1.0 - a) * trust_f, a * trust_b
        else:
            w_f, w_b = trust_f, (1.0 - trust_f) * trust_b
        total = w_f + w_b
        usable = total > 1e-3
        w_f = torch.where(usable, w_f / total.clamp_min(1e-12), torch.full_like(w_f, 1.0 - a))
        w_b = 1.0 - w_f
        return self._blend(region, forward, backward, w_f, w_b, xf - xb, yf - yb,
                           (xf, yf, xb, yb))

    def _blend(self, region: Region, forward: torch.Tensor, backward: torch.Tensor,
               w_f: torch.Tensor, w_b: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
               positions) -> torch.Tensor:
        """The two layers cross-faded by blend_layers, their blurred parts sampled from the
        region's blurred canvas (made on first use) at the same positions."""
        if not bool((w_f * w_b > 1e-6).any()):
            return w_f * forward + w_b * backward
        if region.smooth is None:
            canvas = region.canvas.permute(1, 2, 0).cpu().numpy()
            smooth = cv2.GaussianBlur(canvas, (0, 0), DETAIL_SIGMA,
                                      borderType=cv2.BORDER_REFLECT)
            smooth = smooth.reshape(canvas.shape).transpose(2, 0, 1)
            region.smooth = torch.from_numpy(np.ascontiguousarray(smooth)).to(self.device)
        top, left = region.origin
        xf, yf, xb, yb = positions
        low_f = render.sample(region.smooth, xf - left, yf - top, "bilinear")[:, 0]
        low_b = render.sample(region.smooth, xb - left, yb - top, "bilinear")[:, 0]
        return blend_layers(forward, backward, low_f, low_b, w_f, w_b, dx * dx + dy * dy)

    def _upsample(self, region: Region, values: torch.Tensor, rows, cols,
                  index: torch.Tensor) -> torch.Tensor:
        """Maps [3k, h, w] on the region's patch (x, y in cells, then a plain value: the trust)
        or [2, h, w] (displacements) -> [3k or 2, P] at the covered pixels (flat `index` into
        rows x cols), x and y in pixels: engine/render.upsample_flow's cubic B-spline, its
        matrices kept per band."""
        key = (rows, cols)
        if key not in region.weights:
            grid, (i0, i1, j0, j1) = region.field.grid, region.field.box
            region.weights[key] = (
                render.cubic_matrix(rows[0], rows[1], self.height, grid.rows, i0, i1 - i0,
                                     values),
                render.cubic_matrix(cols[0], cols[1], self.width, grid.cols, j0, j1 - j0,
                                     values))
        wy, wx = region.weights[key]
        out = (wy @ values @ wx.T).flatten(1)[:, index]
        grid = region.field.grid
        period = 2 if len(values) == 2 else 3
        out[0::period] *= self.width / grid.cols
        out[1::period] *= self.height / grid.rows
        return out

    def _sample(self, region: Region, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The region's canvas at still pixel positions x, y [1, P] -> [C, P]."""
        top, left = region.origin
        return render.sample(region.canvas, x - left, y - top, self.mode)[:, 0]


# --------------------------------------------------------------------------------------------
# Preparing a job


def prepare(job, device, progress) -> AdvectClip:
    """The job-file entry for `dyntex.method: "advect"` (engine/dyntex/__init__.py routes here):
    reads and checks every input, measures each exemplar, builds the fields; iterating the
    result renders the frames."""
    from engine.job import read_working_still

    still, width, height, sx, sy = read_working_still(job)
    work_h, work_w = still.shape[:2]
    scale = math.sqrt(sx * sy)
    motions, statics = [], []
    for index, mask in enumerate(job.masks, 1):
        values = frames_io.read_mask(mask.path, width, height, name=f"mask {index}")
        if not (values >= 0.5).any():
            if mask.label == "static":
                progress.warning(f"mask {index} ({mask.path.name}) is empty; it is ignored")
                continue
            raise JobError(f"mask {index} ({mask.path.name}) is empty: no pixel is white; paint "
                           "the region to animate in white")
        if values.shape != (work_h, work_w):
            values = cv2.resize(values, (work_w, work_h), interpolation=cv2.INTER_AREA)
        if mask.label == "static":
            statics.append(values)
        else:
            motion_field.check_label(mask.label, index)
            motions.append((index, mask.label, values))
    if not motions:
        raise JobError("the job has no motion mask; label a mask water, clouds, grass, "
                       "waterfall or a clip file")

    pins, arrows = [], {index: [] for index, _, _ in motions}
    for number, poke in enumerate(job.pokes, 1):
        x, y = poke.start[0] * sx, poke.start[1] * sy
        if poke.is_pin(width, height):
            pins.append((x, y, poke.radius * scale))
            continue
        column, row = min(work_w - 1, int(x)), min(work_h - 1, int(y))
        owners = [index for index, _, values in motions if values[row, column] >= 0.5]
        if not owners:
            raise JobError(f"poke {number} starts at ({poke.start[0]:g}, {poke.start[1]:g}), "
                           "outside every motion mask; an arrow steers the region it starts in: "
                           "start it inside a water, clouds, grass, waterfall or clip mask, or "
                           "delete it")
        arrows[owners[-1]].append(Arrow((x, y), (poke.vector[0] * sx, poke.vector[1] * sy)))
    held = None
    if statics or pins:
        # a pin holds its disc exactly (the poke engine's soft fall-off outside it is left to
        # the field, which fades towards everything held)
        discs = pin_discs(pins, work_w, work_h)
        held = (np.zeros((work_h, work_w), np.float32) if discs is None
                else (discs >= 1.0).astype(np.float32))
        for values in statics:
            np.maximum(held, values, out=held)

    progress.emit("measure", 0, len(motions))
    measured, known = [], {}
    for done, (index, label, values) in enumerate(motions, 1):
        if label not in known:  # the same exemplar measures the same
            known[label] = motion_field.load_motion(label, index, job.seed)
        measured.append(known[label])
        progress.emit("measure", done, len(motions))

    progress.emit("field", 0, len(motions))
    grid = Grid.over(work_w, work_h)
    regions = []
    for done, ((index, label, values), motion) in enumerate(zip(motions, measured), 1):
        effective = values if held is None else np.where(held >= 0.5, 0.0, values)
        effective = effective.astype(np.float32)
        if not (effective >= 0.5).any():
            progress.warning(f"mask {index} is covered by static masks or pins; it does not move")
            progress.emit("field", done, len(motions))
            continue
        region_held = held
        if motion.kind == "drift":  # what the mask took in at its edge does not drift off
            band = motion_field.EDGE_BAND * motion_field.region_side(work_w, work_h)
            foreign = foreign_content(still, effective, band)
            if foreign is not None:
                share = float(foreign.sum()) / float((effective >= 0.5).sum())
                progress.warning(
                    f"mask {index} ({label}): {share:.0%} of it, at its edge, does not look like "
                    "the rest of the region (a tree, a ridge, a rock?) and is held still; draw "
                    "the mask closer to the region to move it")
                effective = np.where(foreign, 0.0, effective).astype(np.float32)
                region_held = foreign.astype(np.float32) if held is None else \
                    np.maximum(held, foreign.astype(np.float32))
        field = motion_field.build_field(motion, effective, region_held, arrows[index],
                                         job.frames, job.loop, job.seed, grid)
        regions.append(_region(still, index, label, field, effective, job.frames, device))
        progress.emit("field", done, len(motions))
    return AdvectClip(still, regions, job.frames, job.loop, device)


def _region(still: np.ndarray, index: int, label: str, region_field: RegionField,
            mask: np.ndarray, frames: int, device) -> Region:
    height, width = mask.shape
    side = min(width, height)
    weight = feathered(mask, max(1.0, FEATHER * side))
    rows = np.nonzero(weight.any(axis=1))[0]
    cols = np.nonzero(weight.any(axis=0))[0]
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    cx, cy = region_field.grid.cell
    forward = backward = None
    if region_field.kind == "drift":
        forward = integrate(region_field, frames, -1.0, device)
        backward = integrate(region_field, frames, +1.0, device)
        period = loop_period(forward, backward, frames)
        cells = max(float(forward[:, :2].abs().amax()), float(backward[:, :2].abs().amax()))
        reach = cells * max(cx, cy)
    else:
        reach = 2.0 * float(np.abs(region_field.sway).max()) * max(cx, cy)
    reach = int(math.ceil(min(reach, max(width, height)))) + render.SUPPORT + 2
    r0, r1, c0, c1 = box
    top, left = r0 - reach, c0 - reach
    bottom, right = r1 + reach, c1 + reach
    a0, a1, b0, b1 = max(0, top), min(height, bottom), max(0, left), min(width, right)
    scale = frames_io.MAX_VALUE.get(still.dtype)
    values = _to_work(still[a0:a1, b0:b1], scale).permute(1, 2, 0).numpy()
    filled = push_pull(values, mask[a0:a1, b0:b1] >= 0.5)
    # Beyond the image border: the filled region mirrored (texture, not a smear; a drift's
    # layers trust no source there, a sway reaches a few pixels past the border).
    filled = np.pad(filled, ((a0 - top, bottom - a1), (b0 - left, right - b1), (0, 0)),
                    mode="symmetric")
    canvas = torch.from_numpy(np.ascontiguousarray(filled.transpose(2, 0, 1))).to(device)
    region = Region(index, label, region_field, weight, box, canvas, (top, left), forward,
                    backward)
    if region_field.kind == "drift":
        region.period = period
    return region


def loop_period(forward: torch.Tensor, backward: torch.Tensor, frames: int) -> float:
    """Frames over which a looping drift blends its two layers: the whole clip, or a whole
    fraction of it when the region runs out of its own content sooner. A lake flowing towards
    its shore, a waterfall between rocks: after some steps most sources lie outside the region
    (or are stretched), and the loop's half-way frames were streaks and doubled posts. So the
    blend restarts every `period` frames (frames / whole cycles), the longest that keeps
    the mean trust of the region's sources (forward and backward) at TRUST_KEEP; a sky that
    drifts along its long side keeps the whole clip. Every cycle starts on the still; with the
    detail-keeping blend the restart reads as flowing water, not a jump."""
    inside = forward[0, 2] >= 0.99
    if not bool(inside.any()):
        return float(frames)
    reach = frames
    for k in range(1, frames + 1):
        kept = min(float(forward[k, 2][inside].mean()), float(backward[k, 2][inside].mean()))
        if kept < TRUST_KEEP:
            reach = k - 1
            break
    reach = max(MIN_PERIOD, reach)
    return frames / math.ceil(frames / reach)


def _steps(maps: torch.Tensor, steps: float) -> torch.Tensor:
    """Integrated maps [N + 1, 3, h, w] after a fractional number of steps (linear between
    whole steps)."""
    low = int(math.floor(steps))
    share = steps - low
    if share < 1e-6 or low + 1 >= len(maps):
        return maps[min(low, len(maps) - 1)]
    return maps[low] * (1.0 - share) + maps[low + 1] * share


def integrate(field: RegionField, frames: int, sign: float, device) -> torch.Tensor:
    """Source positions of the patch's cells after k = 0 .. frames steps (x_{k+1} = x_k + sign
    v(x_k), sub-stepped so no sub-step moves more than MAX_SUBSTEP cells): [frames + 1, 3, h, w],
    the displacement (x, y in cells) and the trust of the source."""
    i0, i1, j0, j1 = field.box
    velocity = torch.from_numpy(field.velocity).to(device)
    trust = torch.from_numpy(field.trust).to(device)[None]
    margin = field.margin
    ys, xs = torch.meshgrid(torch.arange(i1 - i0, dtype=torch.float32, device=device) + 0.5,
                            torch.arange(j1 - j0, dtype=torch.float32, device=device) + 0.5,
                            indexing="ij")
    start = torch.stack([xs, ys])
    substeps = max(1, math.ceil(float(velocity.abs().amax()) / MAX_SUBSTEP))
    step = sign / substeps
    position = start.clone()
    maps = []
    for k in range(frames + 1):
        if k:
            for _ in range(substeps):
                v = render.sample(velocity, position[0], position[1], "bilinear")
                position = position + step * v
        value = render.sample(trust, position[0] + margin, position[1] + margin, "bilinear")
        maps.append(torch.cat([position - start, value * _unstretched(position)[None]]))
    return torch.stack(maps)


def _unstretched(position: torch.Tensor) -> torch.Tensor:
    """1 where the source map [2, h, w] keeps lengths, falling to 0 where it stretches a little
    content over a long stretch in any direction (its Jacobian's smaller singular value: source
    length per target length, 1 for a drift, from STRETCH[1] down to STRETCH[0]): next to an
    edge the flow slides along, upstream, the content that moved on is replaced by the edge band
    drawn out into streaks."""
    if min(position.shape[1:]) < 2:
        return torch.ones(position.shape[1:], device=position.device)
    dxy, dxx = torch.gradient(position[0])
    dyy, dyx = torch.gradient(position[1])
    frobenius = dxx * dxx + dxy * dxy + dyx * dyx + dyy * dyy
    determinant = dxx * dyy - dxy * dyx
    root = (frobenius * frobenius - 4 * determinant * determinant).clamp_min(0).sqrt()
    smallest = ((frobenius - root) / 2).clamp_min(0).sqrt().cpu().numpy()
    low, high = STRETCH
    return torch.from_numpy(render.smoothstep(smallest, low, high)).to(position.device)


def blend_layers(forward: torch.Tensor, backward: torch.Tensor, low_f: torch.Tensor,
                 low_b: torch.Tensor, w_f: torch.Tensor, w_b: torch.Tensor,
                 distance2: torch.Tensor) -> torch.Tensor:
    """Two layers [C, P] cross-faded with weights w_f + w_b = 1 [1, P], keeping their detail's
    contrast. A linear blend of two unrelated textures halves the variance of their detail
    half-way through the loop (a drifting sky's sharpness measured 0.58 of the still's there):
    the detail (each layer minus its blurred part, low_f / low_b) is divided by the blend's
    standard deviation sqrt(w_f^2 + w_b^2 + 2 w_f w_b rho), rho the detail's correlation
    between the two sources, Gaussian in their squared distance `distance2` (px^2; 1 where
    they coincide, so one source blended with itself is itself), as in Heitz and Neyret's
    histogram-preserving blending (HPG 2018); the blurred parts are blended linearly."""
    rho = torch.exp(-distance2 / (4.0 * DETAIL_SIGMA ** 2))
    spread = (w_f * w_f + w_b * w_b + 2.0 * w_f * w_b * rho).clamp_min(1e-6).sqrt()
    low = w_f * low_f + w_b * low_b
    return low + (w_f * (forward - low_f) + w_b * (backward - low_b)) / spread


def feathered(mask: np.ndarray, feather: float) -> np.ndarray:
    """The composition weight: the mask, faded to 0 over `feather` pixels *inside* its edge
    (pixels under half covered are 0); the image border is not an edge."""
    core = (mask >= 0.5).astype(np.uint8)
    padded = cv2.copyMakeBorder(core, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return (mask * core * np.clip(distance / feather, 0.0, 1.0)).astype(np.float32)


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of values [H, W, C] from the known ones (push-pull: area-average
    pyramid of the known pixels, then coarse-to-fine fill); known pixels keep their values."""
    weight = known.astype(np.float32)
    colour = values * weight[..., None]
    levels = [(colour, weight)]
    while max(colour.shape[:2]) > 1:
        h, w = colour.shape[:2]
        size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        colour = cv2.resize(colour, size, interpolation=cv2.INTER_AREA).reshape(
            size[1], size[0], -1)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0])
        levels.append((colour, weight))
    colour, weight = levels[-1]
    filled = colour / np.maximum(weight, 1e-12)[..., None]
    for colour, weight in reversed(levels[:-1]):
        h, w = colour.shape[:2]
        up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        filled = colour + (1.0 - weight)[..., None] * up
    return filled.astype(np.float32)


def _to_work(pixels: np.ndarray, scale: float | None) -> torch.Tensor:
    """Native pixels [..., C] -> [C, ...] float32 (integers scaled to [0, 1]; alpha
    premultiplied)."""
    values = torch.from_numpy(np.ascontiguousarray(pixels)).movedim(-1, 0).float()
    if scale is not None:
        values = values * (1.0 / scale)
    if values.shape[0] == 4:
        values = torch.cat([values[:3] * values[3:], values[3:]])
    return values


def _to_native(values: torch.Tensor, dtype, scale: float | None) -> np.ndarray:
    """[C, ...] float -> native [..., C]."""
    if scale is not None:
        values = (values * scale).round_().clamp_(0.0, scale)
        values = values.to(torch.uint8 if scale == 255.0 else torch.uint16)
    return values.movedim(0, -1).cpu().numpy().astype(dtype, copy=False)
