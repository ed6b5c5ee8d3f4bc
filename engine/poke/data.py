"""Training data for the poke engine: video files -> 64x64 clips, DIS flow and simulated pokes.

What one item is (docs/ARCHITECTURE.md, the poke engine's contract and training pokes):
  video   float32 [frames + 1, 3, 64, 64] in [-1, 1], x0 first, frames `stride` apart
  flow    float32 [2, 64, 64], DIS flow x0 -> last frame, in 64-px units (dx, dy)
  poke    float32 [2, 64, 64], zero except 1..max_patches patches of patch x patch pixels, each
          filled with the flow vector at its centre (iPOKE's equal_poke_val)
  static  bool: x0 repeated, zero flow, and a poke on the background ("poking the background
          does nothing"); static_fraction of the items
  motion  float32 [frames, 2, 64, 64], DIS flows x0 -> x_t for every frame t of the clip, in
          64-px units; only with DataConfig.motion (the motion-space autoencoder's input)
  parts   float32 [7, 64, 64], x0's facial-part layout (engine/face/parts.py part_layout: one
          channel per part); only with DataConfig.parts. Then `part_pokes` of the moving items
          draw their pokes inside one small part (an eye, a brow, the mouth), taking each
          pixel's vector from the frame where it moves most (a blink closes and opens within
          the clip, so the flow to the last frame would miss it; research: the face study's
          finding (c))

Preparation (decode, crop, resize, flow) runs once per video and is cached; items are cut from
the prepared arrays. The held-out split is by time: the last `held_out` of every video, so
validation clips are later moments of the same person, never frames the model trained on.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from engine import video as video_io
from engine.errors import JobError
from engine.flow import dis_flow, resize_flow
from engine.poke import faces

# Bump when the prepared arrays change meaning, so old cache files are not read as new ones.
CACHE_VERSION = 1


@dataclass
class DataConfig:
    size: int = 64
    frames: int = 10            # frames to predict; a clip is x0 + frames
    stride: int = 1             # frame step inside a clip (iPOKE: 1 for iPER, 2 for plants)
    face_crop: bool = False     # square crop that follows the face; else a centre square
    face_scale: float = 2.2     # crop side / detected face width (face plus hair and chin)
    # Frames in the centred median (then mean) window that steadies the box. Longer than a
    # clip on purpose: a crop that kept up with the head would cancel the head motion that the
    # model should learn, so it only follows the slow drift.
    face_smooth: int = 31
    face_every: int = 2         # run the face detector on every n-th frame (it is the slow part)
    held_out: float = 0.2       # last fraction of each video (by time) kept for validation
    static_fraction: float = 1 / 12
    max_patches: int = 5
    patch: int = 5
    augment: bool = True        # training split only
    augment_probability: float = 0.8  # per kind (colour, geometry), as iPOKE
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03           # fraction of a full turn of the hue circle
    rotate_degrees: float = 10.0
    scale_range: float = 0.1    # zoom factor drawn from [1 - r, 1 + r]
    translate: float = 0.05     # fraction of the frame side
    flow_preset: str = "medium"
    motion: bool = False        # also the flows x0 -> x_t of every frame (motion space)
    parts: bool = False         # also x0's facial-part layout, and pokes per part
    part_pokes: float = 0.5     # with parts: share of moving items poked inside one small part
    cache_dir: str | None = None

    @property
    def span(self) -> int:
        """Frames from x0 to the clip's last frame."""
        return self.frames * self.stride

    def check(self) -> None:
        if self.frames < 1 or self.stride < 1 or self.size < 8:
            raise JobError(f"poke data: frames ({self.frames}) and stride ({self.stride}) must "
                           f"be >= 1 and size ({self.size}) >= 8")
        if not 0.0 <= self.held_out < 1.0 or not 0.0 <= self.static_fraction < 1.0:
            raise JobError("poke data: held_out and static_fraction must be in [0, 1)")
        if self.patch < 1 or self.patch % 2 == 0 or 3 * self.patch > self.size:
            raise JobError(f"poke data: patch must be odd and small against size, got "
                           f"{self.patch} for {self.size}")
        if self.max_patches < 1:
            raise JobError("poke data: max_patches must be >= 1")

    def preparation_key(self) -> dict:
        """The fields the prepared arrays depend on (the cache key); split, pokes and
        augmentation are decided per item and stay out of it."""
        return {"size": self.size, "span": self.span, "face_crop": self.face_crop,
                "face_scale": self.face_scale if self.face_crop else None,
                "face_smooth": self.face_smooth if self.face_crop else None,
                "face_every": self.face_every if self.face_crop else None,
                **({"detector": faces.detector_name()} if self.face_crop else {}),
                "flow_preset": self.flow_preset, "version": CACHE_VERSION,
                **({"motion": True} if self.motion else {}),
                **({"parts": True, "detector": faces.detector_name()} if self.parts else {})}


# --------------------------------------------------------------------------------------------
# Preparation: decode, crop, resize, flow (once per video, cached)

@dataclass
class PreparedVideo:
    path: str
    frames: np.ndarray      # uint8 [n, size, size, 3] RGB, every decoded frame
    flows: np.ndarray       # float16 [n - span, size, size, 2]: flow t -> t + span, 64-px units
    motions: np.ndarray | None  # float16 [n - span, frames, size, size, 2]: flows t -> t + k *
                                # stride for k = 1..frames (DataConfig.motion), else None
    boxes: np.ndarray       # int32 [n, 3]: crop square (x, y, side) in source pixels
    face_found: bool        # False: centre crop (face_crop off, or no face detected)
    layouts: np.ndarray | None = None  # uint8 [n, 7, size, size]: part layout per frame x 255


def _cache_path(path: Path, config: DataConfig) -> Path | None:
    if not config.cache_dir:
        return None
    stat = path.stat()
    key = repr((str(path.resolve()), stat.st_mtime_ns, stat.st_size,
                sorted(config.preparation_key().items())))
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]
    return Path(config.cache_dir) / f"{path.stem[:40]}-{digest}.npz"


def _load_cached(cache_file: Path) -> PreparedVideo | None:
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            return PreparedVideo(str(data["path"]), data["frames"], data["flows"],
                                 data["motions"] if "motions" in data.files else None,
                                 data["boxes"], bool(data["face_found"]),
                                 data["layouts"] if "layouts" in data.files else None)
    except (OSError, KeyError, ValueError):
        return None  # unreadable or half-written by an older run: prepare again


def _save_cached(cache_file: Path, prepared: PreparedVideo) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a killed run or a second process never leaves a torn file.
    partial = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.partial.npz")
    extra = {} if prepared.motions is None else {"motions": prepared.motions}
    if prepared.layouts is not None:
        extra["layouts"] = prepared.layouts
    np.savez(partial, path=np.array(prepared.path), frames=prepared.frames,
             flows=prepared.flows, boxes=prepared.boxes,
             face_found=np.array(prepared.face_found), **extra)
    os.replace(partial, cache_file)


def prepare_video(path: str | os.PathLike, config: DataConfig) -> PreparedVideo:
    """The video's cropped 64x64 frames and x0 -> x0 + span flows, from the cache when the
    file (path, modification time, size) and the preparation settings are unchanged."""
    config.check()
    path = Path(path)
    if not path.is_file():
        raise JobError(f"training video not found: {path}")
    cache_file = _cache_path(path, config)
    if cache_file is not None and cache_file.is_file():
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached
    prepared = _prepare(path, config)
    if cache_file is not None:
        _save_cached(cache_file, prepared)
    return prepared


def _too_short(path: Path, count: int, config: DataConfig) -> JobError:
    return JobError(f"video {path} has {count} frames, one clip needs {config.span + 1} "
                    f"(x0 + {config.frames} frames {config.stride} apart); use a longer video "
                    "or a smaller stride")


def _prepare(path: Path, config: DataConfig) -> PreparedVideo:
    info = video_io.video_info(path)
    width, height = info["width"], info["height"]
    if width <= 0 or height <= 0:
        raise JobError(f"cannot read frames from {path}; convert it to MP4/H.264")
    face_found = False
    if config.face_crop:
        track = faces.track_face(video_io.iter_frames(path), config.face_scale,
                                 config.face_smooth, detect_every=config.face_every)
        if track.count < config.span + 1:
            raise _too_short(path, track.count, config)
        face_found = track.found
        if faces.default_detector() is None:
            warnings.warn(f"no face detector: MediaPipe is not installed (run Install Engine, "
                          f"or pip install --no-deps -r requirements/face.txt) and neither is "
                          f"{faces.CASCADE_NAME}; training on a centre crop of {path}. Or put "
                          "the cascade into media/, or set STILLMOTION_FACE_CASCADE to it",
                          stacklevel=2)
        elif not face_found:
            warnings.warn(f"no face found in {path}: training on a centre crop instead; "
                          "use a clip where the face is frontal and well lit, or crop it "
                          "yourself", stacklevel=2)
        boxes = track.boxes
    else:
        boxes = None
    centre = faces.centre_square(width, height)

    size, span = config.size, config.span
    small_frames: list[np.ndarray] = []
    flows: list[np.ndarray] = []
    motions: list[np.ndarray] = []
    layouts: list[np.ndarray] = []
    recent = deque(maxlen=span + 1)  # source-resolution crops of the last span + 1 frames
    used_boxes: list[tuple[int, int, int]] = []
    for index, frame in enumerate(video_io.iter_frames(path)):
        if frame.shape[:2] != (height, width):
            raise JobError(f"video {path} changes frame size at frame {index}; re-encode it "
                           "at one size")
        box = centre if boxes is None else tuple(int(v) for v in boxes[min(index,
                                                                             len(boxes) - 1)])
        x, y, side = box
        crop = frame[y:y + side, x:x + side]
        used_boxes.append(box)
        small_frames.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
        if config.parts:
            layouts.append(_part_layout(crop, size))
        # Flow at the crop's own resolution (where DIS sees the real texture), then in 64-px
        # units: the same pixels the model sees move by these vectors.
        recent.append(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
        if len(recent) == span + 1:
            flow = resize_flow(dis_flow(recent[0], recent[-1], config.flow_preset), size, size)
            flows.append(flow.astype(np.float16))
            if config.motion:
                steps = [resize_flow(dis_flow(recent[0], recent[k * config.stride],
                                              config.flow_preset), size, size)
                         for k in range(1, config.frames)] + [flow]
                motions.append(np.stack(steps).astype(np.float16))
    if not small_frames:
        raise JobError(f"cannot read frames from {path}; convert it to MP4/H.264")
    if len(small_frames) < span + 1:
        raise _too_short(path, len(small_frames), config)
    return PreparedVideo(str(path), np.stack(small_frames), np.stack(flows),
                         np.stack(motions) if config.motion else None,
                         np.asarray(used_boxes, np.int32), face_found,
                         np.stack(layouts) if config.parts else None)


def _part_layout(crop: np.ndarray, size: int) -> np.ndarray:
    """uint8 [7, size, size] facial-part layout of an RGB crop (zeros when no face): found at
    the crop's own resolution, drawn at the model's."""
    from engine.face.landmarks import detect_face
    from engine.face.parts import PART_NAMES, part_layout

    face = detect_face(crop)
    if face is None:
        return np.zeros((len(PART_NAMES), size, size), np.uint8)
    layout = part_layout(face, size, size)
    return np.round(layout * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Split by time

def split_starts(frame_count: int, config: DataConfig, split: str) -> range:
    """Clip start frames of a split: the training clips lie wholly before the boundary, the
    validation clips wholly after it (clips that straddle it belong to neither)."""
    boundary = int(math.floor(frame_count * (1.0 - config.held_out)))
    if split == "train":
        return range(0, max(0, boundary - config.span))
    if split == "val":
        return range(boundary, max(boundary, frame_count - config.span))
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")


# --------------------------------------------------------------------------------------------
# Pokes (iPOKE data/base_dataset.py _get_poke, data/samplers.py zero pokes)

THRESHOLD_LEVELS = ("mean+2std", "mean+std", "mean", "all")


def poke_candidates(magnitude: np.ndarray, border: int) -> tuple[np.ndarray, str]:
    """Boolean map of the pixels a poke may be centred on, and which threshold gave it: above
    mean + 2 std of the magnitude (statistics over the image less a border), else above
    mean + std, else above the mean, else (uniform magnitude) anywhere inside the border."""
    inside = np.zeros(magnitude.shape, bool)
    inside[border:magnitude.shape[0] - border, border:magnitude.shape[1] - border] = True
    values = magnitude[inside]
    mean, std = float(values.mean()), float(values.std())
    for level, threshold in zip(THRESHOLD_LEVELS, (mean + 2 * std, mean + std, mean)):
        candidates = inside & (magnitude > threshold)
        if candidates.any():
            return candidates, level
    return inside, "all"


def _fill_patches(shape: tuple[int, int], centres: np.ndarray, vectors: np.ndarray,
                  patch: int) -> np.ndarray:
    poke = np.zeros((2, *shape), np.float32)
    half = patch // 2
    for (x, y), vector in zip(centres, vectors):
        poke[:, y - half:y + half + 1, x - half:x + half + 1] = vector[:, None, None]
    return poke


def sample_poke(flow: np.ndarray, rng: np.random.Generator, max_patches: int = 5,
                patch: int = 5, within: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """A poke map [2, H, W] from a flow field [H, W, 2]: 1..min(max_patches, #candidates)
    patches centred on distinct candidate pixels drawn uniformly, each holding the flow vector
    at its centre. Also the centres, int [k, 2] as (x, y). `within` [H, W] bool: only pixels
    there are candidates (the thresholds are then statistics of that region's motion)."""
    magnitude = np.linalg.norm(flow, axis=2)
    if within is not None:
        magnitude = np.where(within, magnitude, 0.0)
    candidates, _ = poke_candidates(magnitude, border=patch)
    ys, xs = np.nonzero(candidates)
    count = int(rng.integers(1, min(max_patches, len(xs)) + 1))
    chosen = rng.choice(len(xs), size=count, replace=False)
    centres = np.stack([xs[chosen], ys[chosen]], axis=1)
    vectors = flow[centres[:, 1], centres[:, 0]]
    return _fill_patches(flow.shape[:2], centres, vectors, patch), centres


def sample_background_poke(flow: np.ndarray, rng: np.random.Generator,
                           patch: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One patch on a pixel that does not move (magnitude at or below the 5th percentile)
    holding a vector copied from a moving pixel: the poke of a static item, whose target is
    "nothing happens"."""
    magnitude = np.linalg.norm(flow, axis=2)
    inside = np.zeros(magnitude.shape, bool)
    inside[patch:-patch, patch:-patch] = True
    still = inside & (magnitude <= np.percentile(magnitude[inside], 5))
    ys, xs = np.nonzero(still)
    pick = int(rng.integers(len(xs)))
    centre = np.array([[xs[pick], ys[pick]]])
    moving, _ = poke_candidates(magnitude, border=patch)
    my, mx = np.nonzero(moving)
    source = int(rng.integers(len(mx)))
    vector = flow[my[source], mx[source]][None]
    return _fill_patches(flow.shape[:2], centre, vector, patch), centre


# --------------------------------------------------------------------------------------------
# Augmentation: one colour change and one affine map for the whole clip; the flow follows the
# geometry (positions moved, vectors turned and scaled), which iPOKE's own code does not do.

@dataclass
class Augmentation:
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0            # turns (1.0 = 360 degrees)
    angle: float = 0.0          # degrees, counter-clockwise on screen (OpenCV's convention)
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)   # pixels (x, y)

    @classmethod
    def random(cls, rng: np.random.Generator, config: DataConfig, size: int) -> Augmentation:
        out = cls()
        if rng.random() < config.augment_probability:
            out.brightness = float(rng.uniform(1 - config.brightness, 1 + config.brightness))
            out.contrast = float(rng.uniform(1 - config.contrast, 1 + config.contrast))
            out.saturation = float(rng.uniform(1 - config.saturation, 1 + config.saturation))
            out.hue = float(rng.uniform(-config.hue, config.hue))
        if rng.random() < config.augment_probability:
            out.angle = float(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
            out.scale = float(rng.uniform(1 - config.scale_range, 1 + config.scale_range))
            limit = config.translate * size
            out.shift = (float(rng.uniform(-limit, limit)), float(rng.uniform(-limit, limit)))
        return out

    def matrix(self, size: int) -> np.ndarray:
        """2x3 map from source to augmented pixel positions (pixel centres at integers)."""
        centre = ((size - 1) / 2.0, (size - 1) / 2.0)
        matrix = cv2.getRotationMatrix2D(centre, self.angle, self.scale)
        matrix[:, 2] += self.shift
        return matrix

    def is_identity_geometry(self) -> bool:
        return self.angle == 0.0 and self.scale == 1.0 and self.shift == (0.0, 0.0)


# Hue turns as a rotation of the chroma plane of YIQ: linear, so one 3x3 matrix per clip.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)
_LUMA = _RGB_TO_YIQ[0]


def jitter_colours(clip: np.ndarray, aug: Augmentation) -> np.ndarray:
    """clip float32 [T, H, W, 3] in [0, 1]; the same change for every frame. Contrast pivots
    on x0's mean grey (not each frame's), so the frames keep their relative brightness."""
    out = clip * aug.brightness
    pivot = float((out[0] @ _LUMA).mean())
    out = (out - pivot) * aug.contrast + pivot
    grey = (out @ _LUMA)[..., None]
    out = grey + (out - grey) * aug.saturation
    if aug.hue:
        turn = 2 * math.pi * aug.hue
        rotate = np.array([[1, 0, 0],
                           [0, math.cos(turn), -math.sin(turn)],
                           [0, math.sin(turn), math.cos(turn)]], np.float32)
        out = out @ (_YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ).T
    return np.clip(out, 0.0, 1.0)


def warp_clip(clip: np.ndarray, aug: Augmentation) -> np.ndarray:
    """clip [T, H, W, C] through the augmentation's affine map (reflected borders)."""
    size = clip.shape[1]
    matrix = aug.matrix(size)
    return np.stack([cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101).reshape(frame.shape)
                     for frame in clip])


def warp_flow(flow: np.ndarray, aug: Augmentation) -> np.ndarray:
    """flow [H, W, 2] of a clip that is then warped by the affine map A p + b: content at p
    went to p + f(p), so after the warp content at A p goes to A p + A f(p). The field is
    moved like the frames and each vector is multiplied by A's linear part."""
    size = flow.shape[0]
    linear = aug.matrix(size)[:, :2]
    moved = cv2.warpAffine(flow, aug.matrix(size), (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    return (moved @ linear.T.astype(np.float32)).astype(np.float32)


def augment(clip: np.ndarray, flow: np.ndarray, aug: Augmentation,
            motion: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """clip uint8 [T, H, W, 3], flow [H, W, 2] and optionally the per-frame flows
    [T - 1, H, W, 2] -> float32 clip in [0, 1], flow, per-frame flows."""
    out = jitter_colours(clip.astype(np.float32) / 255.0, aug)
    if not aug.is_identity_geometry():
        out = warp_clip(out, aug)
        flow = warp_flow(flow, aug)
        if motion is not None:
            motion = np.stack([warp_flow(step, aug) for step in motion])
    return out, flow, motion


# Parts a per-part poke goes to: the small motions (blinks, brows, lips) that a poke drawn on
# the largest motion would almost never pick; head turns are covered by the other items.
SMALL_PARTS = ("left_eye", "right_eye", "left_brow", "right_brow", "mouth")


def warp_layout(layout: np.ndarray, aug: Augmentation) -> np.ndarray:
    """A part layout [P, H, W] through the augmentation's affine map, like the frames."""
    size = layout.shape[-1]
    matrix = aug.matrix(size)
    return np.stack([cv2.warpAffine(channel, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT) for channel in layout])


def pick_part_region(layout: np.ndarray, config: DataConfig, rng: np.random.Generator,
                     ) -> np.ndarray | None:
    """With probability part_pokes, the pixels [H, W] bool of one small part of the layout
    drawn uniformly (grown by half a patch, so an eye a few pixels tall still has room for a
    centre), else None."""
    from engine.face.parts import PART_NAMES

    if rng.random() >= config.part_pokes:
        return None
    present = [PART_NAMES.index(name) for name in SMALL_PARTS
               if layout[PART_NAMES.index(name)].max() > 0.3]
    if not present:
        return None
    region = (layout[present[int(rng.integers(len(present)))]] > 0.3).astype(np.uint8)
    grow = np.ones((config.patch // 2 * 2 + 1,) * 2, np.uint8)
    region = cv2.dilate(region, grow) > 0
    border = config.patch
    region[:border], region[-border:], region[:, :border], region[:, -border:] = (False,) * 4
    return region if region.any() else None


def peak_flow(motion: np.ndarray) -> np.ndarray:
    """[T, H, W, 2] flows x0 -> x_t -> [H, W, 2]: per pixel the vector of the frame where
    that pixel is furthest from x0."""
    magnitude = np.linalg.norm(motion, axis=3)
    frame = magnitude.argmax(axis=0)
    return np.take_along_axis(motion, frame[None, :, :, None], axis=0)[0]


# --------------------------------------------------------------------------------------------
# The dataset

class PokeClipDataset(torch.utils.data.Dataset):
    """Clips, flows and pokes from a list of videos (see the module docstring for the items).

    Items [0, clip count) are the clips of the split in order; the items after them are the
    static items (static_fraction of the total), each built on a clip drawn by the item's
    random generator. Validation items depend only on (seed, index); training items draw fresh
    pokes and augmentation every time (from torch's generator, so DataLoader workers differ
    and torch.manual_seed reproduces a run).
    """

    def __init__(self, videos: list[str | os.PathLike], split: str,
                 config: DataConfig | None = None, seed: int = 0):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if not videos:
            raise JobError("no training videos given; pass at least one video file")
        self.config = config or DataConfig()
        self.split = split
        self.seed = seed
        self.videos = [prepare_video(path, self.config) for path in videos]
        self.clips = [(number, start) for number, prepared in enumerate(self.videos)
                      for start in split_starts(len(prepared.frames), self.config, split)]
        if not self.clips:
            counts = ", ".join(f"{Path(v.path).name}: {len(v.frames)}" for v in self.videos)
            raise JobError(
                f"no {split} clips: a clip spans {self.config.span + 1} frames and the "
                f"{'first' if split == 'train' else 'last'} "
                f"{(1 - self.config.held_out if split == 'train' else self.config.held_out):.0%}"
                f" of each video is shorter than that ({counts} frames); use longer videos, "
                "a smaller stride or another held-out fraction")
        fraction = self.config.static_fraction
        self.static_count = int(round(len(self.clips) * fraction / (1.0 - fraction)))

    def __len__(self) -> int:
        return len(self.clips) + self.static_count

    def _generator(self, index: int) -> np.random.Generator:
        if self.split == "val":
            return np.random.default_rng([self.seed, index])
        fresh = int(torch.randint(0, 2**62, ()).item())
        return np.random.default_rng([self.seed, index, fresh])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        config = self.config
        rng = self._generator(index)
        static = index >= len(self.clips)
        number, start = self.clips[int(rng.integers(len(self.clips))) if static else index]
        prepared = self.videos[number]
        clip = prepared.frames[start:start + config.span + 1:config.stride]
        flow = prepared.flows[start].astype(np.float32)
        motion = None
        if config.motion:
            if prepared.motions is None:
                raise JobError(f"{prepared.path} was prepared without per-frame flows; delete "
                               "its cache file and train again")
            motion = prepared.motions[start].astype(np.float32)
        if static:
            clip = np.repeat(clip[:1], len(clip), axis=0)
        aug = Augmentation()
        if config.augment and self.split == "train":
            aug = Augmentation.random(rng, config, config.size)
        clip, flow, motion = augment(clip, flow, aug, motion)
        layout = None
        if config.parts:
            layout = prepared.layouts[start].astype(np.float32) / 255.0
            if not aug.is_identity_geometry():
                layout = warp_layout(layout, aug)
        if static:
            poke, _ = sample_background_poke(flow, rng, config.patch)
            flow = np.zeros_like(flow)
            motion = None if motion is None else np.zeros_like(motion)
        else:
            region = pick_part_region(layout, config, rng) if layout is not None else None
            if region is not None:
                peak = flow if motion is None else peak_flow(motion)
                poke, _ = sample_poke(peak, rng, config.max_patches, config.patch, region)
            else:
                poke, _ = sample_poke(flow, rng, config.max_patches, config.patch)
        video = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2))) * 2.0 - 1.0
        item = {"video": video.float(),
                "poke": torch.from_numpy(poke),
                "flow": torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))),
                "static": static}
        if motion is not None:
            item["motion"] = torch.from_numpy(np.ascontiguousarray(motion.transpose(0, 3, 1, 2)))
        if layout is not None:
            item["parts"] = torch.from_numpy(np.ascontiguousarray(layout, np.float32))
        return item


def config_dict(config: DataConfig) -> dict:
    """Plain fields, for checkpoints and model cards."""
    return asdict(config)
