"""Motion library: the exemplar clips whose motion a dynamic-texture region imitates.

Built-in exemplars are generated on request, deterministically from a seed, as real dynamic
textures (every frame is synthesised from a physical or procedural model of the motion, never a
panned or looped still):

  water      long-crested swell plus wind chop (two directional wave spectra) with the
             deep-water dispersion omega = sqrt(g k), shaded with Fresnel sky reflection, body
             colour on the crests and a sun glint; loops exactly because every omega is rounded
             to whole cycles per clip.
  clouds     fractal (1/f) noise whose scales drift at different speeds and slowly evolve,
             shaded as soft clouds lit from one side against a sky gradient.
  grass      procedural blades drawn per frame, bent from the root by a travelling gust field
             with per-blade flutter.
  waterfall  vertical streaks falling at column-dependent speeds with lateral turbulence
             (advected with engine/render.warp_frame), foam and mist at the foot.
  ripples    calm water: a reflected scene displaced by small waves running towards the
             camera; loops exactly (whole wave cycles per clip). Its motion oscillates.

Looping (loop=True) for the advected textures uses the two-phase blend of flow-map shaders:
out(t) = ((1-a) f(t) + a f(t-T)) / sqrt((1-a)^2 + a^2), a = t/T, on zero-mean Gaussian fields
*before* their non-linear shaping. Both phases move with the same velocity, so the motion is
unchanged; the sum of two independent Gaussian fields with the normalisation is again a Gaussian
field with the same spectrum, so no cross-fade is visible; and out(T) = out(0), so the clip
wraps seamlessly.

Clips travel as float32 arrays [T, H, W, 3] in [0, 1] (display-referred RGB).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from engine import frames as frames_io
from engine.errors import JobError

EXEMPLARS: dict[str, str] = {
    "water": "open water: long swell and wind chop with deep-water dispersion, sky reflection",
    "clouds": "drifting, slowly evolving fractal clouds against a blue sky",
    "grass": "wind in grass: blades bending from the root under travelling gusts",
    "waterfall": "falling water: downward streaks with turbulence, foam and mist at the foot",
    "ripples": "calm water: a reflection wobbled by small waves running towards the camera",
}

# Built-ins that are a surface seen at a grazing angle: the advect method shrinks their waves
# towards the region's top edge, the far shore or the horizon (motion_field.build_field).
RECEDING = frozenset({"ripples"})

MIN_FRAMES = 2
MAX_SIZE = 1024


# --------------------------------------------------------------------------------------------
# Public API


def make_exemplar(name: str, frames: int = 24, size: int = 128, seed: int = 0,
                  loop: bool = True, **options) -> np.ndarray:
    """A built-in exemplar clip [frames, size, size, 3] float32 in [0, 1]. `options` go to the
    generator (water: wind=(dx, dy), speed; clouds: wind, speed, coverage; grass: wind,
    strength; waterfall: speed). Speeds are pixels per frame at size 128 and scale with the
    size, so a clip shows the same motion at any size. Loops want about 8 frames or more: with
    fewer, whole cycles per clip are too coarse (water flickers)."""
    if name not in _GENERATORS:
        raise JobError(f"unknown exemplar {name!r}; built-in exemplars are "
                       + ", ".join(EXEMPLARS) + " (or give a video file)")
    _check_size(frames, size)
    rng = np.random.default_rng([seed, _SALT[name]])
    clip = _GENERATORS[name](rng, int(frames), int(size), bool(loop), **options)
    return np.clip(clip, 0.0, 1.0).astype(np.float32, copy=False)


def exemplar_from_video(path: str | os.PathLike, frames: int = 24, size: int = 128,
                        start: int = 0, stride: int = 1) -> np.ndarray:
    """Frames start, start+stride, ... of a user video, centre-cropped to a square and resized
    to size x size: [T, size, size, 3] float32 in [0, 1], T = min(frames, frames available)."""
    from engine.video import read_video

    _check_size(frames, size)
    if start < 0 or stride < 1:
        raise JobError(f"start must be >= 0 and stride >= 1 (got {start}, {stride})")
    clip = read_video(path, start=start, stop=start + frames * stride, stride=stride,
                      min_frames=MIN_FRAMES)
    return np.stack([_square(frame, size) for frame in clip]).astype(np.float32) / 255.0


def exemplar_from_folder(folder: str | os.PathLike, frames: int = 24,
                         size: int = 128) -> np.ndarray:
    """A folder of frame_0001.png ... (or .exr) as an exemplar clip, like exemplar_from_video."""
    from engine.preview import frame_files

    _check_size(frames, size)
    files = frame_files(Path(folder))[:frames]
    if len(files) < MIN_FRAMES:
        raise JobError(f"{folder} has {len(files)} frame, at least {MIN_FRAMES} are needed")
    clip = []
    for path in files:
        display = frames_io.to_display(frames_io.read_image(path))  # BGR uint8, sRGB
        clip.append(_square(cv2.cvtColor(display, cv2.COLOR_BGR2RGB), size))
    return np.stack(clip).astype(np.float32) / 255.0


def load_exemplar(source: str | os.PathLike, frames: int = 24, size: int = 128, seed: int = 0,
                  loop: bool = True) -> np.ndarray:
    """A built-in name, a folder of frames or a video file -> clip [T, size, size, 3]."""
    if isinstance(source, str) and source in EXEMPLARS:
        return make_exemplar(source, frames, size, seed, loop)
    path = Path(source)
    if path.is_dir():
        return exemplar_from_folder(path, frames, size)
    if not path.exists():
        raise JobError(f"exemplar {str(source)!r} is neither a built-in ("
                       + ", ".join(EXEMPLARS) + ") nor an existing video file or frames folder")
    return exemplar_from_video(path, frames, size)


def load_mask(path: str | os.PathLike, size: int) -> np.ndarray:
    """A region mask (any image; its brightness) cropped and resized exactly as the clips above
    are: size x size float32 in [0, 1]."""
    pixels = frames_io.to_float(frames_io.read_image(path))
    grey = pixels[..., 0] if pixels.shape[2] == 1 else pixels[..., :3].mean(axis=2)
    mask = np.clip(_square(np.ascontiguousarray(grey, np.float32), size), 0.0, 1.0)
    if not (mask > 0.5).any():
        raise JobError(f"mask {path} is empty (no white pixels in its centre square)")
    return mask


def write_thumbnail(name_or_clip: str | np.ndarray, path: str | os.PathLike,
                    size: int = 96) -> Path:
    """A square PNG of the clip's middle frame (size x size) for the panel's exemplar list.
    A built-in name is generated at a small size first; a path is read as a video/folder."""
    if isinstance(name_or_clip, (str, os.PathLike)):
        clip = load_exemplar(name_or_clip, frames=12, size=max(size, 64))
    else:
        clip = np.asarray(name_or_clip)
    middle = frames_io.to_float(clip[len(clip) // 2]) if clip.dtype != np.float32 \
        else clip[len(clip) // 2]
    thumb = _square((np.clip(middle, 0, 1) * 255 + 0.5).astype(np.uint8), size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the thumbnail")
    buffer.tofile(path)
    return path


def write_clip(clip: np.ndarray, folder: str | os.PathLike) -> list[Path]:
    """frame_0001.png ... (8-bit sRGB) of a float clip into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(clip):
        pixels = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        path = folder / f"frame_{index + 1:04d}.png"
        frames_io.encode_png(pixels, "PNG8").tofile(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_size(frames: int, size: int) -> None:
    if int(frames) < MIN_FRAMES:
        raise JobError(f"an exemplar needs at least {MIN_FRAMES} frames, got {frames}")
    if not 16 <= int(size) <= MAX_SIZE:
        raise JobError(f"exemplar size must be between 16 and {MAX_SIZE} pixels, got {size}")


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to size x size."""
    h, w = frame.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = frame[y0:y0 + side, x0:x0 + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def _wavenumbers(size: int, real: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """kx, ky in radians per pixel on the FFT grid of a size x size periodic tile."""
    ky = 2 * np.pi * np.fft.fftfreq(size)[:, None]
    kx = 2 * np.pi * (np.fft.rfftfreq(size) if real else np.fft.fftfreq(size))[None, :]
    return kx, ky


def _gaussian_spectrum(rng: np.random.Generator, size: int) -> np.ndarray:
    """rfft2 of white Gaussian noise: a Hermitian spectrum, so any real filter keeps it real."""
    return np.fft.rfft2(rng.standard_normal((size, size)))


def _normalise(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / max(float(field.std()), 1e-8)


def power_law_still(rng: np.random.Generator, size: int, slope: float,
                    stretch: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """A periodic grey still in [0, 1] whose power spectrum falls as 1/k^slope (natural pictures
    are near 2), optionally stretched `stretch` times along `angle` (radians) for oriented
    grain. Training MSOE on a spread of slopes teaches it speeds that do not depend on how much
    fine detail a texture has."""
    kx, ky = _wavenumbers(size, real=True)
    along = kx * math.cos(angle) + ky * math.sin(angle)
    across = -kx * math.sin(angle) + ky * math.cos(angle)
    k = np.hypot(along * stretch, across)
    k0 = 2 * np.pi / size
    field = np.fft.irfft2(_gaussian_spectrum(rng, size) * np.maximum(k, k0) ** (-slope / 2),
                          s=(size, size))
    return np.clip(0.5 + 0.18 * _normalise(field), 0.0, 1.0).astype(np.float32)


def _two_phase(field: Callable[[float], np.ndarray], t: int, count: int,
               loop: bool) -> np.ndarray:
    """A zero-mean field at time t, made periodic in time (period `count`) by the two-phase blend
    described in the module docstring."""
    if not loop:
        return field(t)
    a = t / count
    return ((1 - a) * field(t) + a * field(t - count)) / np.sqrt((1 - a) ** 2 + a ** 2)


def _blur_periodic(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a periodic tile (wraps around, as the tile does)."""
    kx, ky = _wavenumbers(field.shape[0], real=True)
    gain = np.exp(-0.5 * sigma ** 2 * (kx ** 2 + ky ** 2))
    return np.fft.irfft2(np.fft.rfft2(field) * gain, s=field.shape)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    u = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _direction(wind) -> np.ndarray:
    w = np.asarray(wind, np.float64)
    norm = float(np.hypot(*w))
    if w.shape != (2,) or norm == 0:
        raise JobError(f"wind must be a non-zero (dx, dy) pair, got {wind!r}")
    return w / norm


# --------------------------------------------------------------------------------------------
# Water: wave spectrum


def _water(rng, count, size, loop, wind=(0.35, 1.0), speed=1.4, waves_across=9.0,
           swell=None, swell_waves=3.0, swell_share=0.45, slope=0.22, foreshorten=1.0):
    """Open water as a sum of two wave systems on one linear surface, seen from a low camera:

    swell  long-crested waves from afar: a narrow spectrum around `swell_waves` wavelengths per
           frame width, directional spread cos^24 around `swell` (default: the wind's
           direction), so the crests run across the frame as broad bright and dark bands;
    chop   the local wind sea: a Phillips spectrum peaking at `waves_across` wavelengths,
           spread cos^4 around the wind with a little cross chop.

    Deep-water dispersion omega = sqrt(g k) for both, g chosen so the chop's peak moves `speed`
    pixels per frame (at size 128); the swell, 3x longer, moves ~1.7x faster, as real swell
    does. `foreshorten` < 1 squeezes the surface vertically (a camera looking across the water),
    wind directions still meant on screen; off by default, because DIS then sees diagonal waves
    move closer to horizontal than the wind. `swell_share` is the swell's
    part of the surface slope, `slope` the total rms slope.

    Looping: every omega is rounded to whole cycles per clip (an exact loop; a wave travelling
    at constant speed can only come back to itself that way). Waves slower than one cycle per
    clip get one cycle, so in short loops the swell runs faster than the dispersion relation
    says (12 frames: about 1.7x); the chop's speed is barely changed.

    Shading: Fresnel-weighted sky reflection, body colour lifted on the swell's crests (where
    light passes through the thinner water), and a sun glint on the chop."""
    w_screen = _direction(wind)
    w_swell = _direction(swell) if swell is not None else w_screen
    squash = float(np.clip(foreshorten, 0.2, 1.0))

    def on_surface(direction):  # a screen direction -> the surface direction that looks like it
        d = np.array([direction[0], squash * direction[1]])
        return d / np.linalg.norm(d)

    w_chop, w_long = on_surface(w_screen), on_surface(w_swell)
    kx_pix, ky_pix = _wavenumbers(size)
    kx, ky = kx_pix, ky_pix * squash  # surface wavenumbers of the pixel grid's frequencies
    k = np.hypot(kx, ky)
    k_safe = np.where(k > 0, k, 1.0)
    unit = 2 * np.pi / size
    k_chop, k_swell = unit * waves_across, unit * swell_waves

    def along(direction):
        return (kx * direction[0] + ky * direction[1]) / k_safe

    length = 1.0 / (k_chop * np.sqrt(2.0))
    chop = np.exp(-1.0 / (k_safe * length) ** 2) / k_safe ** 4 \
        * (np.maximum(along(w_chop), 0.0) ** 4 + 0.03) * np.exp(-(k / (2.5 * k_chop)) ** 2)
    long = np.exp(-0.5 * (np.log(k_safe / k_swell) / 0.25) ** 2) \
        * np.maximum(along(w_long), 0.0) ** 24
    chop[k == 0] = 0.0
    long[k == 0] = 0.0

    def amplitudes(spectrum):
        return np.sqrt(spectrum / 2) * (rng.standard_normal(k.shape)
                                        + 1j * rng.standard_normal(k.shape))

    def slope_rms(a):
        return max(float(np.sqrt(((kx ** 2 + ky ** 2) * np.abs(a) ** 2).sum())), 1e-12)

    a_chop, a_long = amplitudes(chop), amplitudes(long)
    a_chop *= (1 - swell_share) / slope_rms(a_chop)
    a_long *= swell_share / slope_rms(a_long)
    amplitude = a_chop + a_long
    speed = speed * size / 128
    gravity = speed ** 2 * k_chop  # phase speed omega / k = speed at the chop's peak
    omega = np.sqrt(gravity * k)
    if loop:
        quantum = 2 * np.pi / count
        omega = np.where(k > 0, np.maximum(np.round(omega / quantum), 1.0) * quantum, 0.0)
    # Each component Re(A exp(i(k.x - omega t))) travels along +k.
    swell_height, slopes_x, slopes_y = [], [], []
    for t in range(count):
        phase = np.exp(-1j * omega * t)
        a_t = amplitude * phase
        swell_height.append(np.fft.ifft2(a_long * phase).real)
        slopes_x.append(np.fft.ifft2(1j * kx * a_t).real)
        slopes_y.append(np.fft.ifft2(1j * ky * a_t).real)
    h, hx, hy = np.array(swell_height), np.array(slopes_x), np.array(slopes_y)
    scale = slope / max(float(np.sqrt((hx ** 2 + hy ** 2).mean())), 1e-12)
    hx, hy = hx * scale, hy * scale
    h = h / max(float(h.std()), 1e-12)

    normal = np.stack([-hx, -hy, np.ones_like(hx)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    tilt = np.radians(74.0)
    view = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # towards a camera at the bottom edge
    n_dot_v = np.clip(normal @ view, 0.0, 1.0)
    reflected = 2 * n_dot_v[..., None] * normal - view
    fresnel = 0.02 + 0.98 * (1 - n_dot_v) ** 5
    elevation = np.clip(reflected[..., 2], 0.0, 1.0)[..., None]
    horizon, zenith = np.array([0.78, 0.85, 0.90]), np.array([0.22, 0.42, 0.68])
    sky = horizon + (zenith - horizon) * np.sqrt(elevation)
    deep, shallow = np.array([0.02, 0.11, 0.17]), np.array([0.06, 0.34, 0.37])
    crest = _smoothstep(-1.0, 2.0, h)[..., None]
    body = deep + (shallow - deep) * crest
    sun = np.array([0.15, -0.55, 0.82])
    sun /= np.linalg.norm(sun)
    glint = np.clip(reflected @ sun, 0.0, 1.0) ** 250 * 0.9
    colour = (1 - fresnel[..., None]) * body + fresnel[..., None] * sky + glint[..., None]
    return colour


# --------------------------------------------------------------------------------------------
# Clouds: advected, evolving fractal noise


def _clouds(rng, count, size, loop, wind=(1.0, 0.15), speed=0.7, coverage=0.45):
    """1/f^1.8 noise; each spatial scale drifts with its own velocity (small scales faster and a
    few degrees off the wind: different layers) while the field rotates slowly between two
    independent noises (cos/sin mix: constant variance), so shapes form and dissolve."""
    w = _direction(wind)
    kx, ky = _wavenumbers(size, real=True)
    k = np.hypot(kx, ky)
    k0 = 2 * np.pi * 2.0 / size
    filt = np.where(k > 0, (np.maximum(k, k0) / k0) ** -1.8, 0.0)
    filt *= np.exp(-(k / (0.6 * np.pi)) ** 2)
    base_a = _gaussian_spectrum(rng, size) * filt
    base_b = _gaussian_spectrum(rng, size) * filt
    octave = np.log2(np.maximum(k, k0) / k0)
    rate = speed * size / 128 * (0.75 + 0.18 * octave)  # px per frame
    angle = np.radians(6.0) * (octave - 2.0)
    vx = rate * (w[0] * np.cos(angle) - w[1] * np.sin(angle))
    vy = rate * (w[0] * np.sin(angle) + w[1] * np.cos(angle))
    evolve = (np.pi / 2) / count  # a quarter turn per clip: f(t) and f(t - T) independent

    def field(t: float) -> np.ndarray:
        theta = evolve * t
        spectrum = (np.cos(theta) * base_a + np.sin(theta) * base_b) \
            * np.exp(-1j * (kx * vx + ky * vy) * t)
        return np.fft.irfft2(spectrum, s=(size, size))

    norm = float(np.fft.irfft2(base_a, s=(size, size)).std()) or 1.0
    y = np.linspace(0.0, 1.0, size)[:, None, None]
    sky = np.array([0.20, 0.42, 0.78]) * (1 - y) + np.array([0.55, 0.72, 0.92]) * y
    lit, shade = np.array([1.0, 0.99, 0.97]), np.array([0.55, 0.60, 0.70])
    light = (np.array([-0.7, -0.7]) * size / 64).round().astype(int)  # sun up-left
    clip = []
    threshold = 0.9 - 1.8 * coverage
    for t in range(count):
        d = _two_phase(field, t, count, loop) / norm
        density = _smoothstep(threshold, threshold + 1.4, d)
        # Self-shadowing: thicker towards the sun = darker; on a blurred density, so the
        # shading is soft rather than streaked along the light direction.
        soft = _blur_periodic(d, 1.5 * size / 128)
        towards_sun = np.roll(soft, shift=(light[1], light[0]), axis=(0, 1))
        lighting = _smoothstep(-0.5, 0.5, soft - towards_sun + 0.2)
        cloud = shade + (lit - shade) * lighting[..., None]
        cloud = cloud * (0.9 + 0.1 * _smoothstep(-1, 2, d))[..., None]
        alpha = density[..., None] ** 0.8
        clip.append(sky * (1 - alpha) + cloud * alpha)
    return np.array(clip)


# --------------------------------------------------------------------------------------------
# Grass: blades bent by travelling gusts


def _grass(rng, count, size, loop, wind=(1.0, 0.0), strength=0.55):
    """Blades drawn at twice the size (anti-aliased, back to front) and downsampled. A blade is a
    polyline whose angle grows from root to tip with the local gust g(root, t): two travelling
    waves along the wind (whole cycles per clip when looping) plus per-blade flutter."""
    direction = 1.0 if _direction(wind)[0] >= 0 else -1.0
    big = 2 * size
    n_blades = int(1100 * (size / 128) ** 2)
    segments = 6
    root_y = np.sort(rng.uniform(0.02, 1.25, n_blades)) * big  # far (top) to near (bottom)
    root_x = rng.uniform(-0.1, 1.1, n_blades) * big
    depth = np.clip(root_y / (1.25 * big), 0, 1)  # 0 far, 1 near
    length = rng.uniform(0.14, 0.30, n_blades) * big * (0.6 + 0.6 * depth)
    lean = rng.normal(0.0, 0.18, n_blades)
    flex = rng.uniform(0.6, 1.3, n_blades)
    flutter_phase = rng.uniform(0, 2 * np.pi, n_blades)
    gust_phase = rng.uniform(0, 2 * np.pi, 2)
    tone = rng.integers(0, 4, n_blades)
    # About one gust per second at 24 fps; whole cycles per clip when looping.
    cycles = max(1, round(count / 24)) * (1.0 if loop else 0.83)
    palette_root = np.array([[0.10, 0.22, 0.06], [0.13, 0.26, 0.07], [0.16, 0.28, 0.08],
                             [0.12, 0.20, 0.05]])
    palette_tip = np.array([[0.45, 0.62, 0.20], [0.55, 0.70, 0.25], [0.62, 0.72, 0.30],
                            [0.40, 0.55, 0.16]])
    layers = 10
    layer = np.minimum((depth * layers).astype(int), layers - 1)
    ground = cv2.GaussianBlur(rng.standard_normal((big, big)).astype(np.float32), (0, 0), 3)
    ground = 0.07 + 0.03 * _normalise(ground)[..., None] * np.ones(3)
    ground = ground * np.array([1.0, 1.6, 0.7])
    fraction = (np.arange(segments + 1) / segments)[None, :]
    thick = max(1, round(size / 128))  # pixels at twice the size
    clip = []
    for t in range(count):
        phase = 2 * np.pi * cycles * t / count
        gust = (0.55 + 0.30 * np.sin(2 * np.pi * root_x / big - phase + gust_phase[0])
                + 0.15 * np.sin(2 * np.pi * 2 * root_x / big + 0.7 * root_y / big
                                - 2 * phase + gust_phase[1]))
        flutter = 0.12 * np.sin(3 * phase + flutter_phase)
        bend = direction * strength * flex * (gust + flutter)
        angle = lean[:, None] + bend[:, None] * fraction ** 1.6
        step = length[:, None] / segments
        offsets = np.zeros((n_blades, segments + 1, 2))
        offsets[:, 1:, 0] = np.cumsum(step * np.sin(angle[:, 1:]), axis=1)
        offsets[:, 1:, 1] = np.cumsum(-step * np.cos(angle[:, 1:]), axis=1)
        points = np.stack([root_x, root_y], -1)[:, None, :] + offsets
        points = np.round(points * 4).astype(np.int32)  # 2 fractional bits (shift=2)
        image = ground.copy()
        half = segments // 2 + 1
        # Bent blades show more of their lit side: the gust sweeps a sheen across the field.
        sheen = np.clip(((gust - 0.25) / 0.6 * 3).astype(int), 0, 2)
        for level in range(layers):
            dim = 0.65 + 0.5 * level / (layers - 1)  # far blades in shadow
            for shade in range(4):
                for lift in range(3):
                    chosen = np.nonzero((layer == level) & (tone == shade) & (sheen == lift))[0]
                    if chosen.size == 0:
                        continue
                    light = dim * (0.82 + 0.2 * lift)
                    lower = [points[i, :half] for i in chosen]
                    upper = [points[i, half - 1:] for i in chosen]
                    cv2.polylines(image, lower, False, (palette_root[shade] * light).tolist(),
                                  thick + 1, cv2.LINE_AA, 2)
                    cv2.polylines(image, upper, False, (palette_tip[shade] * light).tolist(),
                                  thick, cv2.LINE_AA, 2)
        clip.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    return np.array(clip)


# --------------------------------------------------------------------------------------------
# Waterfall: falling streaks, turbulence, foam


def _waterfall(rng, count, size, loop, speed=2.2):
    """A vertically stretched, periodic noise tile (a broad sheet octave plus fine streaks) falls
    and accelerates: its speed grows down the frame, v(y) = speed (0.6 + 0.8 y / size), and the
    tile row shown at y is v0 * (s(y) - t) with s(y) the time to fall to y, so streaks stretch as
    they fall while the picture stays statistically steady. Columns fall at slightly different
    rates and wobble sideways. Advected by backward warping with engine/render.warp_frame. A
    finer isotropic noise churns as foam and mist at the foot. Both loop by the two-phase blend."""
    import torch

    from engine.render import warp_frame

    speed = speed * size / 128
    kx, ky = _wavenumbers(size, real=True)
    cycles = 2 * np.pi / size

    def band(across: float, along: float) -> np.ndarray:
        shape = np.exp(-(ky / (cycles * along)) ** 2) * np.exp(-(kx / (cycles * across)) ** 2)
        return _normalise(np.fft.irfft2(_gaussian_spectrum(rng, size) * shape * (kx != 0),
                                        s=(size, size)))

    streaks = _normalise(0.5 * band(7, 1.5) + 0.7 * band(28, 3) + 0.3 * band(48, 10))
    k = np.hypot(kx, ky)
    foam_filter = np.exp(-(k / (cycles * 22)) ** 2) * (k > 0)
    foam_a = _normalise(np.fft.irfft2(_gaussian_spectrum(rng, size) * foam_filter, s=(size, size)))
    foam_b = _normalise(np.fft.irfft2(_gaussian_spectrum(rng, size) * foam_filter, s=(size, size)))
    column_noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(size))
                                * np.exp(-(np.arange(size // 2 + 1) / 6.0) ** 2), n=size)
    column_rate = 1.0 + 0.2 * _normalise(column_noise)
    wobble_phase = rng.uniform(0, 2 * np.pi, 2)

    ys = np.arange(size, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(size, dtype=np.float64)[None, :] + 0.5
    # Fall time to row y under v(y) = speed * (0.6 + 0.8 y / size), times speed: tile rows.
    fallen = size / 0.8 * np.log1p(0.8 * ys / (0.6 * size))
    pad = 4 + size // 64
    # The tile repeated above (frame(y) = source(y - flow)) and wrapped at the sides.
    source = np.pad(np.concatenate([streaks, streaks]), ((0, 0), (pad, pad)), mode="wrap")
    source_t = torch.from_numpy(source.astype(np.float32))[None]

    def falling(t: float) -> np.ndarray:
        row = np.mod(column_rate * (fallen - speed * t), size)  # tile row shown at y
        drop = np.mod(ys - row, size)  # >= 0: sampled from the copy above
        wobble = size / 128 * np.sin(2 * np.pi * ys / size * 2 + 0.35 * t + wobble_phase[0]) \
            + size / 256 * np.sin(2 * np.pi * xs / size * 3 - 0.5 * t + wobble_phase[1])
        flow = np.zeros((2,) + source.shape, np.float32)
        flow[0, size:, pad:pad + size] = wobble
        flow[1, size:, pad:pad + size] = drop
        out = warp_frame(source_t, torch.from_numpy(flow), mode="bilinear", has_alpha=False)
        return out[0, size:, pad:pad + size].numpy().astype(np.float64)

    def churning(t: float) -> np.ndarray:
        theta = 2 * np.pi * 0.6 * t / count
        mixed = np.cos(theta) * foam_a + np.sin(theta) * foam_b
        return np.roll(mixed, int(round(0.7 * t * size / 128)), axis=0)  # carried down, slowly

    foot = _smoothstep(0.55, 0.92, ys / size)  # where the water hits the pool
    thin, thick = np.array([0.20, 0.32, 0.36]), np.array([0.93, 0.96, 0.98])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiles this small: thread start-up costs more than it saves
    try:
        falling_fields = [_two_phase(falling, t, count, loop) for t in range(count)]
    finally:
        torch.set_num_threads(threads)
    clip = []
    for t in range(count):
        streak = falling_fields[t]
        churn = _two_phase(churning, t, count, loop)
        water = _smoothstep(-1.9, 1.2, streak) ** 1.3
        colour = thin + (thick - thin) * water[..., None]
        foam = _smoothstep(-0.9, 1.8, churn + 0.5 * streak) * foot
        colour = colour + (np.array([0.97, 0.98, 1.0]) - colour) * foam[..., None]
        mist = 0.45 * foot * _smoothstep(-2.0, 1.5, 0.6 * churn + 0.4 * streak)
        clip.append(colour * (1 - mist[..., None]) + 0.92 * mist[..., None])
    return np.array(clip)


# --------------------------------------------------------------------------------------------
# Ripples: a calm, reflecting surface


def _ripples(rng, count, size, loop, wind=(0.0, 1.0), waves_across=3.0, amplitude=2.0,
             period=24.0):
    """Calm water seen as a mirror: what moves is the reflection, wobbled by small waves that
    run towards the camera (`wind`, on screen), not carried anywhere. The reflected scene is a
    periodic 1/k^2 tile coloured from dusk sky to deep water, smeared along the wind as
    reflections are. Each frame samples it displaced along the wind (a slope towards the camera
    moves a reflection up and down) by one long-crested wave train (`waves_across` wavelengths
    per frame width, `amplitude` px at size 128, `period` frames a cycle) and two weaker ones
    turned up to 25 degrees, each a whole number of cycles per clip when looping, so the clip
    wraps exactly. DIS reads it as an oscillation along the wind travelling with the main
    train. (Shorter or steeper waves read as a drift: DIS follows the travelling bands of
    compression instead of the reflection, as it would on footage.)"""
    import torch

    from engine.render import warp_frame

    direction = _direction(wind)
    scene = power_law_still(rng, size, 2.0, stretch=0.35, angle=math.atan2(direction[1],
                                                                        direction[0]))
    dusk, deep = np.array([0.78, 0.52, 0.62]), np.array([0.16, 0.20, 0.42])
    colour = deep + (dusk - deep) * scene[..., None]
    amplitude = amplitude * size / 128
    # the tile wrapped round itself, so a displaced sample near an edge reads the other side
    pad = int(math.ceil(2.0 * amplitude)) + 4
    source = torch.from_numpy(np.pad(colour, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
                              .transpose(2, 0, 1).astype(np.float32))
    base = count / period
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    trains = []
    for number, (weight, turn) in enumerate(((1.0, 0.0), (0.35, rng.uniform(-0.44, 0.44)),
                                             (0.35, rng.uniform(-0.44, 0.44)))):
        axis = np.array([direction[0] * math.cos(turn) - direction[1] * math.sin(turn),
                         direction[0] * math.sin(turn) + direction[1] * math.cos(turn)])
        across = waves_across * (1.0 if number == 0 else rng.uniform(0.7, 1.4))
        # whole wavelengths across the tile, so the displaced tile stays periodic
        k = np.round(axis * across) * 2 * np.pi / size
        cycles = base * (1.0 if number == 0 else rng.uniform(0.6, 1.5))
        cycles = max(1, round(cycles)) if loop else cycles
        trains.append((k, 2 * np.pi * cycles / count, rng.uniform(0, 2 * np.pi), weight))
    clip = []
    flow = torch.zeros((2,) + source.shape[1:])
    for t in range(count):
        shift = sum(weight * np.sin(k[0] * xs + k[1] * ys - omega * t + phase)
                    for k, omega, phase, weight in trains) * amplitude
        # frame(x) = tile(x + shift * direction): the renderer's flow points the other way
        for axis in (0, 1):
            flow[axis, pad:pad + size, pad:pad + size] = torch.from_numpy(
                -shift * direction[axis])
        out = warp_frame(source, flow, has_alpha=False)
        clip.append(out[:, pad:pad + size, pad:pad + size].permute(1, 2, 0).numpy())
    return np.array(clip, dtype=np.float64)


_GENERATORS = {"water": _water, "clouds": _clouds, "grass": _grass, "waterfall": _waterfall,
               "ripples": _ripples}
_SALT = {"water": 1, "clouds": 2, "grass": 3, "waterfall": 4, "ripples": 5}
