"""Motion fields for the motion-first Dynamic Texture method (`dyntex.method: "advect"`, issue 15):
measure how a region's exemplar moves, then build a smooth velocity (drift) or sway (oscillation)
field over the region's mask that engine/dyntex/advect.py renders by moving the still's own
pixels.

Measuring (DIS flow, engine/flow.py, on the exemplar clip at EXEMPLAR_SIZE px, wrapping from the
last frame to the first, weighted to pixels with texture: flat sky between clouds has no
measurable flow):
  drift coherence  |mean flow| / mean |flow|: clouds 0.99, water 0.99, waterfall 0.98 (a steady
                   mean flow: the region *drifts*), grass 0.02 (flow whose time mean is small
                   against its size, its sign alternating: the region *oscillates*); the kind is
                   decided at DRIFT_COHERENCE.
  drift            direction = the mean flow's, speed = |mean flow| in px/frame / exemplar size.
  oscillation      the flow summed over time per pixel (the displacement, its mean removed);
                   the sway axis = its principal direction, the amplitude = sqrt(2 x its variance
                   along the axis) / exemplar size, the period = the dominant temporal frequency,
                   and the travelling wave (gusts across the grass) = the mean spatial gradient of
                   the displacement's phase at that frequency (wave vector x exemplar size).
  scale            the flow's spatial correlation length (where its autocorrelation falls to
                   one half) / exemplar size: the size of the gentle spatial variation.

Scaling to the still: a region's speed in px/frame = the exemplar's relative speed x the still's
shorter side (at the working size). The exemplar is a whole view of its texture, as the still is
of the landscape, and the texture's scale in a picture belongs to the picture, not to the mask
that happens to outline it: a thin strip of sky drifts as fast as a wide one, two masks on one
sky drift alike, and the two-stream method reads its exemplar at the same scale (a square of the
working size's shorter side). Amplitudes and wavelengths scale the same way.

Arrows (job pokes, in still pixels) whose start lies in a motion region steer it: at each point
the region's velocity is a normalised Gaussian-weighted sum of the arrows' vectors (sigma a third
of the region's size, sqrt of its area), with a constant fall-back of the mean arrow (weight
ARROW_FALLBACK, an arrow's weight two sigmas away), so one arrow sets one velocity everywhere.
An arrow's length is the distance its content drifts over the clip: speed = length / steps, steps
= frames - 1 (frames when looping, where frame N+1 is frame 1 again). In an oscillating region
an arrow sets the sway instead: its axis, and a swing over the arrow's length (amplitude half of
it). Zero-length pokes are pins: a disc (the poke's radius, or 2 % of the shorter side) held
still like a `static` mask.

Shaping: a drift's velocity loses its component across the region's boundary over an EDGE_BAND
of the shorter side inside the edge (and entirely outside it), so content slides along the edge
instead of pulling in the neighbour (the image border is not an edge: content leaves and enters
the picture there); a sway fades to zero over the same band instead (swaying blades sliding past
the still outside a ragged mask show a seam); both fade to zero over the band towards static
masks and pins.
A receding surface (Motion.receding: the built-in ripples, calm water seen from a low camera)
shrinks its sway's amplitude and wavelength linearly towards the region's top edge (the far
shore or the horizon), to RECEDING_NEAR there.
Fields live on a coarse grid (GRID cells on the shorter side; they are smooth) over the region's
bounding box; engine/render.upsample_flow brings them to full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from engine.errors import JobError
from engine.render import smoothstep

EXEMPLAR_SIZE = 128
EXEMPLAR_FRAMES = 24
# Between the built-ins' measured coherences (drifts 0.98-0.99, grass 0.02).
DRIFT_COHERENCE = 0.5
GRID = 128                 # coarse cells on the still's shorter side (a field is smooth)
EDGE_BAND = 0.04           # of the shorter side: where the flow turns to slide along edges
ARROW_FALLBACK = math.exp(-2.0)
VARIATION_SPEED = 0.15     # relative spread of the drift speed over the region
VARIATION_ANGLE = 0.12     # radians of spread of its direction
PHASE_NOISE = 1.0          # radians of irregularity in the sway's travelling wave
MAX_SWAY_STRAIN = 0.3      # the sway's displacement may change by at most this per pixel
SCALE_RANGE = (0.05, 0.5)  # of the shorter side: the variation's correlation length
WAVELENGTH_RANGE = (0.25, 4.0)  # of the shorter side: the sway's travelling wave
RECEDING_NEAR = 0.15       # a receding surface's wave scale at its region's top edge


@dataclass(frozen=True)
class Motion:
    """An exemplar's motion, in units of the exemplar's side (`size` px) and frames."""
    kind: str                        # "drift" or "oscillate"
    direction: tuple[float, float]   # unit: the drift's direction, or the sway axis
    speed: float                     # drift: |mean flow| / size, per frame
    coherence: float                 # |mean flow| / mean |flow|
    amplitude: float                 # oscillation: sway amplitude / size
    period: float                    # oscillation: frames per cycle
    wave: tuple[float, float]        # oscillation: wave vector (radians per px) x size
    scale: float                     # correlation length of the flow / size
    magnitude: float                 # mean |flow| / size, per frame
    size: int = EXEMPLAR_SIZE
    receding: bool = False           # a surface seen at a grazing angle (exemplars.RECEDING)


def measure(clip: np.ndarray, wraps: bool = False) -> Motion:
    """The motion of an exemplar clip [T, S, S, 3] float in [0, 1] (T >= 2); `wraps`: the clip
    loops, so the last frame -> the first is a pair too (the built-ins)."""
    from engine.flow import dis_flow

    clip = np.asarray(clip, np.float32)
    count, size = len(clip), clip.shape[1]
    pairs = [(t, t + 1) for t in range(count - 1)] + ([(count - 1, 0)] if wraps else [])
    flows = np.stack([dis_flow(clip[a], clip[b]) for a, b in pairs]).astype(np.float64)
    grey = clip.mean(axis=-1).mean(axis=0)
    gy, gx = np.gradient(grey)
    gradient = np.hypot(gx, gy)
    weight = (gradient > np.median(gradient)).astype(np.float64)
    total = weight.sum() * len(flows)
    mean = np.einsum("tyxi,yx->i", flows, weight) / total
    magnitude = float((np.hypot(flows[..., 0], flows[..., 1]) * weight).sum() / total)
    coherence = float(np.hypot(*mean)) / magnitude if magnitude > 0 else 0.0
    scale = _correlation_length(flows) / size
    if magnitude == 0:
        return Motion("drift", (1.0, 0.0), 0.0, 0.0, 0.0, 0.0, (0.0, 0.0), scale, 0.0, size)
    if coherence >= DRIFT_COHERENCE:
        direction = mean / np.hypot(*mean)
        return Motion("drift", (float(direction[0]), float(direction[1])),
                      float(np.hypot(*mean)) / size, coherence, 0.0, 0.0, (0.0, 0.0), scale,
                      magnitude / size, size)
    # Oscillation: the displacement at each pixel, its time mean (and any steady drift) removed.
    steps = len(flows)
    shift = np.cumsum(flows, axis=0)
    trend = np.arange(1, steps + 1)[:, None, None, None] / steps * shift[-1:]
    shift = shift - trend
    shift -= shift.mean(axis=0, keepdims=True)
    cov = np.einsum("tyxi,tyxj,yx->ij", shift, shift, weight) / total
    values, vectors = np.linalg.eigh(cov)
    axis = vectors[:, -1] * (1.0 if vectors[0, -1] >= 0 else -1.0)
    along = shift @ axis
    amplitude = math.sqrt(2.0 * max(float(values[-1]), 0.0))
    spectrum = np.abs(np.fft.rfft(along, axis=0)) ** 2
    power = np.einsum("fyx,yx->f", spectrum, weight)
    cycles = int(np.argmax(power[1:])) + 1 if len(power) > 1 else 1
    period = steps / cycles
    phasor = np.einsum("tyx,t->yx", along, np.exp(-2j * np.pi * cycles * np.arange(steps)
                                                  / steps))
    py, px = np.gradient(phasor)
    energy = float((np.abs(phasor) ** 2 * weight).sum()) or 1.0
    # phasor ~ exp(-i k.x) for a wave sin(w t - k.x): k = -grad(arg phasor)
    wave = -np.array([(np.imag(np.conj(phasor) * px) * weight).sum(),
                      (np.imag(np.conj(phasor) * py) * weight).sum()]) / energy
    return Motion("oscillate", (float(axis[0]), float(axis[1])), 0.0, coherence,
                  amplitude / size, float(period), (float(wave[0] * size), float(wave[1] * size)),
                  scale, magnitude / size, size)


def _correlation_length(flows: np.ndarray) -> float:
    """Where the spatial autocorrelation of the flow (its per-frame mean removed; periodic)
    falls to one half, in px: radial profile, linear between whole-pixel lags."""
    size = flows.shape[1]
    centred = flows - flows.mean(axis=(1, 2), keepdims=True)
    spectrum = np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2
    auto = np.fft.ifft2(spectrum.sum(axis=(0, 3))).real
    if auto[0, 0] <= 0:
        return float(size)
    auto /= auto[0, 0]
    lag = np.fft.fftfreq(size) * size
    radius = np.hypot(lag[:, None], lag[None, :])
    previous = 1.0
    for r in range(1, size // 2):
        value = float(auto[np.abs(radius - r) < 0.5].mean())
        if value < 0.5:
            return r - 1 + (previous - 0.5) / max(previous - value, 1e-9)
        previous = value
    return float(size // 2)


def check_label(label: str, index: int) -> None:
    """A motion mask's label must be a built-in exemplar or an existing video file / frames
    folder (a JobError naming the mask otherwise)."""
    from pathlib import Path

    from engine.dyntex.exemplars import EXEMPLARS

    if label not in EXEMPLARS and not Path(label).exists():
        raise JobError(f"mask {index} has label {label!r}, which is neither a built-in motion ("
                       + ", ".join(EXEMPLARS) + ") nor an existing video file or frames folder; "
                       "pick its motion or label it static")


def load_motion(label: str, index: int, seed: int = 0) -> Motion:
    """A mask's label (a built-in exemplar or a video file / frames folder) -> its Motion; a
    label that names neither, or a clip of one frame, is a JobError naming the mask."""
    from pathlib import Path

    from engine.dyntex.exemplars import EXEMPLARS, RECEDING, load_exemplar

    check_label(label, index)
    builtin = label in EXEMPLARS
    clip = load_exemplar(label if builtin else Path(label), EXEMPLAR_FRAMES, EXEMPLAR_SIZE, seed,
                         True)
    if len(clip) < 2:
        raise JobError(f"the exemplar {label} of mask {index} has {len(clip)} frame; at least 2 "
                       "are needed to measure its motion")
    return replace(measure(clip, wraps=builtin), receding=label in RECEDING)


# --------------------------------------------------------------------------------------------
# Fields


@dataclass(frozen=True)
class Grid:
    """The coarse grid over a width x height still: rows x cols cells, cell (i, j) centred at
    still pixel ((j + 0.5) * cell_x, (i + 0.5) * cell_y)."""
    width: int
    height: int
    rows: int
    cols: int

    @classmethod
    def over(cls, width: int, height: int, cells: int = GRID) -> "Grid":
        cell = max(1.0, min(width, height) / cells)
        return cls(width, height, max(1, round(height / cell)), max(1, round(width / cell)))

    @property
    def cell(self) -> tuple[float, float]:
        return self.width / self.cols, self.height / self.rows

    def coarse(self, values: np.ndarray) -> np.ndarray:
        """A still-sized map (area average) on the grid."""
        if values.shape == (self.rows, self.cols):
            return values.astype(np.float32)
        return cv2.resize(values.astype(np.float32), (self.cols, self.rows),
                          interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Arrow:
    """A poke in working pixels: where it starts and its vector."""
    start: tuple[float, float]
    vector: tuple[float, float]


@dataclass
class RegionField:
    """One region's motion on the coarse grid, over the patch rows i0:i1, cols j0:j1.

    drift:     `velocity` [2, h, w] in cells per frame (x, y).
    oscillate: `sway` [2, h, w] the amplitude times the axis, in cells; `phase` [h, w] radians;
               displacement(t) = sway * (sin(omega t + phase) - sin(phase)), so frame 0 is the
               still and frame N is again (whole cycles per clip when looping).
    `trust` [h + 2m, w + 2m] (m = `margin` cells around the patch): 1 where a source position
    lies in the region, falling to 0 `ramp` cells outside it (outside the image it is 0)."""
    kind: str
    motion: Motion
    grid: Grid
    box: tuple[int, int, int, int]   # i0, i1, j0, j1
    velocity: np.ndarray | None = None
    sway: np.ndarray | None = None
    phase: np.ndarray | None = None
    omega: float = 0.0
    trust: np.ndarray | None = None
    margin: int = 0
    speed: float = 0.0               # the region's mean speed, px per frame (drift) or the sway
                                     # amplitude, px (oscillation), as asked (before shaping)


def region_side(width: int, height: int) -> float:
    """The size a region's motion scales with: the still's shorter side (module docstring)."""
    return float(min(width, height))


def build_field(motion: Motion, mask: np.ndarray, held: np.ndarray | None,
                arrows: list[Arrow], frames: int, loop: bool, seed: int = 0,
                grid: Grid | None = None) -> RegionField:
    """The region's field. `mask` (H x W, [0, 1]) is the region with static masks and pins
    already taken out; `held` (H x W, [0, 1] or None) the static masks and pins, towards which
    the field fades to zero; `arrows` the pokes that start in this region."""
    height, width = mask.shape
    grid = grid or Grid.over(width, height)
    cx, cy = grid.cell
    side = region_side(width, height)
    coverage = grid.coarse(mask)
    inside = coverage >= 0.5
    if not inside.any():  # a region thinner than a cell: take the cells it touches
        inside = coverage > 0
    band = max(2.0, EDGE_BAND * side / cx)  # cells

    # The patch: every cell the region touches and the reach of the cubic upsampling (3) + 1.
    rows = np.nonzero((coverage > 0).any(axis=1))[0]
    cols = np.nonzero((coverage > 0).any(axis=0))[0]
    i0, i1 = max(0, rows[0] - 4), min(grid.rows, rows[-1] + 5)
    j0, j1 = max(0, cols[0] - 4), min(grid.cols, cols[-1] + 5)
    ys, xs = np.mgrid[i0:i1, j0:j1].astype(np.float32)
    px, py = (xs + 0.5) * cx, (ys + 0.5) * cy  # cell centres in still pixels
    rng = np.random.default_rng([seed, 15, int(inside.sum())])
    scale = float(np.clip(motion.scale, *SCALE_RANGE)) * side

    # Edge shaping: distance to the region's edge; the image border is not an edge.
    pad = int(math.ceil(band)) + 2
    padded = cv2.copyMakeBorder(inside.astype(np.uint8), pad, pad, pad, pad,
                                cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    away = cv2.distanceTransform(1 - padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    signed = cv2.GaussianBlur(depth - away, (0, 0), max(1.0, band / 3))  # ragged edges
    gy, gx = np.gradient(signed)
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    normal = np.stack([gx / norm, gy / norm])[:, pad + i0:pad + i1, pad + j0:pad + j1]
    slide = 1.0 - smoothstep(depth[pad + i0:pad + i1, pad + j0:pad + j1], 0.0, band)
    gate = np.ones_like(slide)
    if held is not None and held.any():
        hold = grid.coarse(held)[i0:i1, j0:j1] >= 0.5
        if hold.any():
            gap = cv2.distanceTransform((~hold).astype(np.uint8), cv2.DIST_L2,
                                        cv2.DIST_MASK_PRECISE)
            gate = smoothstep(gap, 0.0, band)

    def shaped(vectors: np.ndarray) -> np.ndarray:
        across = (vectors * normal).sum(axis=0)
        return (vectors - slide * across * normal) * gate

    steps = frames if loop else max(1, frames - 1)
    patch_inside = inside[i0:i1, j0:j1]
    area_side = math.sqrt(float((mask >= 0.5).sum()) or 1.0)
    field = RegionField(motion.kind, motion, grid, (i0, i1, j0, j1))
    if motion.kind == "drift":
        if arrows:
            vx, vy = _arrow_field(arrows, px, py, area_side / 3.0)
            vx, vy = vx / steps, vy / steps
        else:
            speed = motion.speed * side
            vx = np.full_like(px, speed * motion.direction[0])
            vy = np.full_like(px, speed * motion.direction[1])
        field.speed = float(np.hypot(vx, vy).mean())
        spread = 1.0 + VARIATION_SPEED * _region_noise(rng, px.shape, scale / cx, patch_inside)
        turn = VARIATION_ANGLE * _region_noise(rng, px.shape, scale / cx, patch_inside)
        cos, sin = np.cos(turn), np.sin(turn)
        velocity = np.stack([(cos * vx - sin * vy) * spread, (sin * vx + cos * vy) * spread])
        velocity = shaped(velocity / np.array([cx, cy], np.float32)[:, None, None])
        field.velocity = velocity.astype(np.float32)
    else:
        if arrows:
            ax, ay = _arrow_field(arrows, px, py, area_side / 3.0)
            amplitude = np.hypot(ax, ay) / 2.0
            axis = np.stack([ax, ay]) / np.maximum(np.hypot(ax, ay), 1e-9)
        else:
            amplitude = np.full_like(px, motion.amplitude * side)
            axis = np.broadcast_to(np.array(motion.direction, np.float32)[:, None, None],
                                   (2,) + px.shape)
        wave = np.array(motion.wave, np.float64) / side  # radians per still pixel
        length = 2 * np.pi / max(float(np.hypot(*wave)), 1e-12)
        length = float(np.clip(length, WAVELENGTH_RANGE[0] * side, WAVELENGTH_RANGE[1] * side))
        if np.hypot(*wave) > 0:
            wave = wave / np.hypot(*wave) * (2 * np.pi / length)
        else:
            wave = np.array([2 * np.pi / length, 0.0])
        # |d displacement / dx| <= 2 A |k| stays under MAX_SWAY_STRAIN: no folding
        amplitude = np.minimum(amplitude, MAX_SWAY_STRAIN * length / (4 * np.pi))
        amplitude = amplitude * (1.0 + VARIATION_SPEED * _region_noise(rng, px.shape,
                                                                       scale / cx,
                                                                       patch_inside))
        depth = None
        if motion.receding:
            depth, travelled = _recession(mask, py)
            amplitude = amplitude * depth
        field.speed = float(amplitude.mean())
        sway = axis * amplitude / np.array([cx, cy], np.float32)[:, None, None]
        # A sway fades out towards the edge instead of sliding along it: blades that shear
        # past the still outside a ragged mask show a seam; a drift needs the slide.
        field.sway = (sway * (1.0 - slide) * gate).astype(np.float32)
        noise = PHASE_NOISE * _smooth_noise(rng, px.shape, length / 4 / cx)
        if depth is None:
            field.phase = (-(wave[0] * px + wave[1] * py) + noise).astype(np.float32)
        else:  # wavelengths shrink with the depth: the phase runs faster towards the top
            field.phase = (-(wave[0] * px / depth + wave[1] * travelled) + noise
                           ).astype(np.float32)
        period = motion.period or float(frames)
        cycles = max(1, round(frames / period)) if loop else frames / period
        field.omega = 2 * np.pi * cycles / frames

    # Trust of a source position (advect.py): 1 in the region, 0 `ramp` cells outside it.
    largest = float(np.hypot(*field.velocity).max()) if field.velocity is not None else 0.0
    ramp = max(2.0, 4.0 * largest, 0.01 * side / cx)
    margin = int(math.ceil(min(largest * steps, 0.5 * side / cx))) + 4
    field.margin = margin
    canvas = np.zeros((i1 - i0 + 2 * margin, j1 - j0 + 2 * margin), np.uint8)
    top, left = i0 - margin, j0 - margin
    si0, si1 = max(0, top), min(grid.rows, i1 + margin)
    sj0, sj1 = max(0, left), min(grid.cols, j1 + margin)
    canvas[si0 - top:si1 - top, sj0 - left:sj1 - left] = inside[si0:si1, sj0:sj1]
    outside = cv2.distanceTransform(1 - canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    field.trust = (1.0 - smoothstep(outside, 0.0, ramp)).astype(np.float32)
    return field


def _recession(mask: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A receding surface (water to the horizon) seen from a low camera: how near each row `py`
    (still pixels) is, as the scale of its waves, RECEDING_NEAR at the region's top row (the far
    shore or the horizon) to 1 at its bottom row, linear in between (a flat surface's image
    scale grows linearly below the horizon); and the distance in near-wave pixels travelled from
    the top to py, the integral of 1 / depth, for a wave's phase."""
    rows = np.nonzero((mask >= 0.5).any(axis=1))[0]
    top, bottom = float(rows[0]), float(rows[-1] + 1)
    span = max(bottom - top, 1.0)
    slope = (1.0 - RECEDING_NEAR) / span
    depth = RECEDING_NEAR + slope * np.clip(py - top, 0.0, span)
    travelled = (np.log(depth / RECEDING_NEAR) / slope + np.minimum(py - top, 0.0) / RECEDING_NEAR
                 + np.maximum(py - bottom, 0.0))
    return depth.astype(np.float64), travelled


def _arrow_field(arrows: list[Arrow], px: np.ndarray, py: np.ndarray,
                 sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Gaussian-weighted sum of the arrows' vectors at (px, py), plus the mean arrow
    with weight ARROW_FALLBACK."""
    sigma = max(sigma, 1.0)
    mean = np.mean([a.vector for a in arrows], axis=0)
    total = np.full(px.shape, ARROW_FALLBACK, np.float64)
    vx, vy = total * mean[0], total * mean[1]
    for arrow in arrows:
        weight = np.exp(-((px - arrow.start[0]) ** 2 + (py - arrow.start[1]) ** 2)
                        / (2 * sigma ** 2))
        vx += weight * arrow.vector[0]
        vy += weight * arrow.vector[1]
        total += weight
    return (vx / total).astype(np.float32), (vy / total).astype(np.float32)


def _region_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float,
                  inside: np.ndarray) -> np.ndarray:
    """_smooth_noise with its mean over the region's cells removed: a variation whose scale is
    the region's own size would otherwise shift the whole region (a sky drifted at 0.8 of its
    arrow's speed)."""
    noise = _smooth_noise(rng, shape, sigma)
    return noise - float(noise[inside].mean()) if inside.any() else noise


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise with unit standard deviation (sigma in cells)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0.5:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    std = float(noise.std())
    return noise / std if std > 0 else noise
