"""Per-region two-stream synthesis: the still's masked regions move like their exemplars.

    still (full res, native type) + regions (mask, exemplar) [+ painting]
      -> working resolution (longer side = config.size), levels of a pyramid, coarse first
      -> per level: clip = still·(1 − M) + x·M, x optimised by L-BFGS (or Adam) on DyntexLoss
      -> change = clip − still at the working resolution, upsampled, added to the full-res
         still inside the masks; outside every mask the output IS the still (same array values)

Start: every frame is the still, drifting inside each region with its exemplar's mean motion
(`start="drift"`, `_drift_start`; "still": no drift), plus small independent noise. Starting at
the still puts the layout (L2) and the region's own texture statistics (appearance Gram) at
their optimum, so the optimiser only has to add motion instead of inventing a picture from a
flat colour as the paper does; the drift gives it coherent motion at the exemplar's speed to
refine where the region has texture; the noise breaks the symmetry between identical frames
(through MSOE's per-pair contrast normalisation, equal frames give zero temporal energy and
nearly equal gradients for every frame) and gives each frame its own way to move. (One noise
field drifting with the region instead, tried on a flat sky: speed ratio 22 vs 25, frame-0
SSIM 0.70 vs 0.73; no clear gain, not kept.)

Outside the regions: the mask composition makes their gradient zero, and at the end the output
is assembled in the still's own sample type with `np.where(mask > 0, ..., still)`, so those
pixels are bit-identical to the still in every frame.

Full resolution: only the *change* is upsampled, so the still's own detail survives wherever
the synthesis leaves the region alone. Longer clips: `synthesize_blocks`, blocks that share a
frame (`python -m engine dyntex --block N`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine import frames as frames_io
from engine.dyntex.losses import DyntexLoss, LossWeights
from engine.dyntex.msoe import MsoeNet
from engine.errors import JobError
from engine.vgg import Vgg19Features

MIN_WORK = 32  # MSOE's 5-level pyramid needs 32 px (2^5) on the shorter side


@dataclass
class Region:
    """One masked region: mask H x W float in [0, 1] at the still's resolution, and its motion:
    a built-in exemplar name, a video file or frames folder, or a clip [T, S, S, 3] float."""
    mask: np.ndarray
    exemplar: str | os.PathLike | np.ndarray
    name: str = ""


@dataclass
class SynthesisConfig:
    frames: int = 12
    size: int = 256              # working resolution: the still's longer side (never up)
    loop: bool = True            # wrap-around pair in the dynamics loss: a seamless loop
    iterations: int = 100        # optimiser steps per pyramid level
    optimizer: str = "lbfgs"     # "lbfgs" (the paper's) or "adam"
    history: int = 10            # L-BFGS history (SciPy's default, as the paper ran it)
    lr: float = 0.02             # Adam step, in [0, 1] pixel units
    levels: int = 1              # coarse-to-fine pyramid levels (1 = working size only)
    noise: float = 0.02          # std of the start noise inside the regions
    start: str = "drift"         # "drift": the still drifting with each exemplar's mean flow;
    #                              "still": the still itself (both plus the noise)
    seed: int = 0
    exemplar_frames: int = 0     # frames read from each exemplar (0: same as frames, >= 2)
    preview_every: int = 10      # steps between preview frames
    chunk: int = 4               # frames (and pairs) per gradient pass: memory of a few frames
    #                              for any clip length (DyntexLoss.backward; exact)
    weights: LossWeights = field(default_factory=LossWeights)

    def check(self) -> None:
        if self.frames < 2:
            raise JobError(f"a dynamic texture needs at least 2 frames, got {self.frames}")
        if self.size < MIN_WORK:
            raise JobError(f"the working size must be at least {MIN_WORK} pixels, got {self.size}")
        if self.iterations < 1:
            raise JobError(f"iterations must be at least 1, got {self.iterations}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise JobError(f"optimizer must be 'lbfgs' or 'adam', not {self.optimizer!r}")
        if self.levels < 1:
            raise JobError(f"levels must be at least 1, got {self.levels}")
        if self.start not in ("drift", "still"):
            raise JobError(f"start must be 'drift' or 'still', not {self.start!r}")
        if self.chunk < 1:
            raise JobError(f"chunk must be at least 1 frame, got {self.chunk}")
        self.weights.check()


Callback = Callable[[int, int, float, "Path | None"], None]


@dataclass
class Synthesis:
    """The result: `clip` [T, 3, h, w] at the working resolution (float, [0, 1], display RGB),
    the loss after every step, and `frames()` at the still's full resolution."""
    still: np.ndarray
    clip: torch.Tensor
    work_still: torch.Tensor
    mask: np.ndarray                     # union of the regions, full resolution, [0, 1]
    losses: list[float]
    seconds: float

    def __len__(self) -> int:
        return self.clip.shape[0]

    def frames(self) -> Iterator[np.ndarray]:
        """Full-resolution frames in the still's sample type (one at a time)."""
        height, width = self.still.shape[:2]
        display = display_float(self.still)            # H x W x 3 float32, [0, 1] sRGB
        weight = self.edge_weight()
        change = (self.clip - self.work_still).float().cpu()
        for t in range(change.shape[0]):
            yield add_change(self.still, change[t], weight, display)

    def edge_weight(self, working_pixels: float = 2.0) -> np.ndarray:
        """How much of the change each full-resolution pixel takes: the mask, faded to 0 over
        `working_pixels` working-size pixels *inside* the region's edge, so a synthesized
        region meets the untouched still without a seam (and never spills over it)."""
        height, width = self.mask.shape
        feather = working_pixels * width / self.clip.shape[-1]
        core = (self.mask >= 0.5).astype(np.uint8)
        if feather <= 1 or not core.any():
            return self.mask.astype(np.float32)
        # distance to the nearest pixel outside; the image border does not count as an edge
        padded = cv2.copyMakeBorder(core, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
        return (self.mask * np.clip(distance / feather, 0.0, 1.0)).astype(np.float32)

    def work_frames(self) -> np.ndarray:
        """[T, h, w, 3] float32 at the working resolution (for metrics)."""
        return self.clip.permute(0, 2, 3, 1).float().cpu().numpy()


def add_change(frame: np.ndarray, change: torch.Tensor, weight: np.ndarray,
               display: np.ndarray | None = None) -> np.ndarray:
    """A native frame plus a working-size change [3, h, w] (display units), upsampled
    (bicubic) and taken at `weight` [H, W] per pixel; pixels of weight 0 are the frame's own,
    bit for bit. display: the frame's display_float, when already at hand."""
    height, width = frame.shape[:2]
    delta = change.permute(1, 2, 0).numpy()
    if delta.shape[:2] != (height, width):
        delta = cv2.resize(delta, (width, height), interpolation=cv2.INTER_CUBIC)
    display = display_float(frame) if display is None else display
    moved = from_display(np.clip(display + weight[..., None] * delta, 0.0, 1.0), frame)
    return np.where((weight > 0)[..., None], moved, frame)


def loss_weights(settings) -> LossWeights:
    """The loss weights of a job's "dyntex" object (engine/job.py DyntexSettings)."""
    return LossWeights(style=settings.lambda_style, l2=settings.lambda_l2,
                       appearance=settings.lambda_app, dynamics=settings.lambda_dyn,
                       painting=settings.lambda_paint,
                       dynamics_contrast=settings.motion_contrast)


def working_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The still scaled so its longer side is `size` (never up); shorter side >= MIN_WORK."""
    factor = min(1.0, size / max(width, height))
    w, h = max(1, round(width * factor)), max(1, round(height * factor))
    if min(w, h) < MIN_WORK:
        raise JobError(f"at working size {size} the still becomes {w}x{h}; the motion network "
                       f"needs at least {MIN_WORK} pixels on each side: raise --size")
    return w, h


def synthesize(still: np.ndarray, regions: list[Region], config: SynthesisConfig, *,
               vgg: Vgg19Features, msoe: MsoeNet, painting: np.ndarray | None = None,
               device: torch.device | str = "cpu", callback: Callback | None = None,
               preview_dir: str | os.PathLike | None = None,
               first_frame: torch.Tensor | None = None,
               initial: torch.Tensor | None = None,
               basis: torch.Tensor | None = None) -> Synthesis:
    """Animate `regions` of `still` (H x W x C native array, see engine/frames.py).

    painting: H' x W' x 3 (any type) for the style stream. callback(done, total, loss, preview)
    after every step; preview is a PNG of frame 1 at the working size, rewritten every
    `config.preview_every` steps into preview_dir (None: no previews). first_frame [3, h, w]
    (working size): frame 1 is held fixed to it (the shared frame of incremental blocks).
    initial [T, 3, h, w] (working size, display float): a clip to refine instead of the still:
    the optimisation starts from it and the pixels outside the regions are its (the advect
    method's refiner, engine/dyntex/refine.py); `config.start` and the noise are not used.
    basis [T, K] (with initial): the change to the initial clip is not free per frame but
    Σ_k basis[t, k] · change_k, K images optimised instead of T frames: a change smooth in time
    (the refiner's, which otherwise flickered).
    Raises JobError for bad input; a Cancelled raised by a signal handler passes through."""
    from engine.dyntex.exemplars import load_exemplar

    config.check()
    if not regions:
        raise JobError("no region to animate: give at least one mask with a motion label")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    height, width = still.shape[:2]
    masks = []
    for index, region in enumerate(regions, 1):
        mask = np.asarray(region.mask, np.float32)
        if mask.shape != (height, width):
            raise JobError(f"mask {index} is {mask.shape[1] if mask.ndim > 1 else '?'}x"
                           f"{mask.shape[0]} but the still is {width}x{height}")
        if not (mask >= 0.5).any():
            raise JobError(f"mask {index}{' (' + region.name + ')' if region.name else ''} is "
                           "empty: it has no pixel inside (>= 0.5)")
        masks.append(np.clip(mask, 0.0, 1.0))
    union = np.maximum.reduce(masks)

    work_w, work_h = working_size(width, height, config.size)
    levels = _level_sizes(work_w, work_h, config.levels)
    exemplar_frames = config.exemplar_frames or max(config.frames, 2)
    side = min(work_w, work_h)
    clips = []
    for index, region in enumerate(regions, 1):
        if isinstance(region.exemplar, np.ndarray):
            clip = np.asarray(region.exemplar, np.float32)
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 2:
                raise JobError(f"the exemplar of region {index} must be a clip [T >= 2, S, S, 3], "
                               f"got shape {list(clip.shape)}")
        else:
            clip = load_exemplar(region.exemplar, exemplar_frames, max(16, side), config.seed,
                                 config.loop)
        clips.append(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))
    paint = None
    if painting is not None:
        paint = torch.from_numpy(display_float(painting)).permute(2, 0, 1)[None]

    display = torch.from_numpy(display_float(still)).permute(2, 0, 1)[None]
    losses: list[float] = []
    total = config.iterations * len(levels)
    start = time.perf_counter()
    previous = None  # the change (clip - base) found at the previous, coarser level
    done = 0
    for (w, h) in levels:
        work_still = resize(display, w, h).to(device)
        work_masks = [resize(torch.from_numpy(m)[None, None], w, h).to(device) for m in masks]
        if any(float(m.max()) <= 0 for m in work_masks):
            raise JobError(f"a mask vanishes at the {w}x{h} working size; draw a larger region "
                           "or raise --size")
        scale = h / work_h
        exemplars = [_exemplar_at(c, scale).to(device) for c in clips]
        paint_here = resize(paint, *_fit(paint, max(w, h))).to(device) \
            if paint is not None else None
        loss_fn = DyntexLoss(vgg, msoe, work_still[0], work_masks, exemplars, config.weights,
                             painting=paint_here, loop=config.loop)
        mask = torch.stack(work_masks).amax(0)  # [1, 1, h, w]
        if initial is not None:
            if initial.shape[0] != config.frames or initial.shape[1] != 3:
                raise ValueError(f"the initial clip is {list(initial.shape)}, expected "
                                 f"[{config.frames}, 3, h, w]")
            base = resize(initial.float(), w, h).to(device)
        else:
            base = work_still.expand(config.frames, -1, -1, -1)
        if basis is not None:
            if initial is None or basis.shape[0] != config.frames:
                raise ValueError("a temporal basis needs an initial clip and a row per frame")
            if previous is not None:
                raise ValueError("a temporal basis works at one level")
            weights_t = basis.float().to(device)
            x = torch.zeros(basis.shape[1], 3, h, w, device=device)
        elif initial is not None and previous is None:
            x = base.clone()
        elif previous is None:
            noise = torch.randn(config.frames, 3, h, w) * config.noise
            x = base + noise.to(device)
            if config.start == "drift":
                x = x + _drift_start(work_still[0], work_masks, exemplars, config.frames,
                                     config.loop)
        else:
            x = base + F.interpolate(previous, size=(h, w), mode="bilinear",
                                     align_corners=False)
        x = (x if basis is not None else x.clamp(0, 1)).contiguous().requires_grad_(True)

        fixed = None if first_frame is None else \
            resize(first_frame.reshape(1, 3, *first_frame.shape[-2:]), w, h).to(device)

        def compose(x=x, base=base, mask=mask, fixed=fixed):
            if basis is not None:
                change = torch.einsum("tk,kchw->tchw", weights_t, x)
                clip = (base + change * mask).clamp(0, 1)
            else:
                clip = base * (1 - mask) + x * mask
            return clip if fixed is None else torch.cat([fixed, clip[1:]])

        state = {"step": 0}

        def closure(x=x, loss_fn=loss_fn, compose=compose, state=state):
            optimiser.zero_grad()
            # the loss's gradient a few frames at a time (DyntexLoss.backward), then through
            # the composition to x
            clip = compose().detach().requires_grad_(True)
            value = loss_fn.backward(clip, config.chunk)["total"]
            compose().backward(clip.grad)
            loss = torch.tensor(value)
            if config.optimizer == "lbfgs" and basis is None:
                # L-BFGS has no bounds: a penalty keeps the pixels in [0, 1]
                penalty = _bounds_penalty(x, mask)
                penalty.backward()
                loss = loss + penalty.detach()
            if not math.isfinite(value):
                raise JobError("the synthesis diverged (the loss is not finite); lower the "
                               "loss weights or use --optimizer adam")
            losses.append(value)
            step = (optimiser.state[x].get("n_iter", 0) if config.optimizer == "lbfgs"
                    else state["step"] + 1)
            if step > state["step"]:  # a new iteration (L-BFGS also evaluates in line searches)
                state["step"] = step
                here = done + min(step, config.iterations)
                preview = None
                if preview_dir is not None and here % config.preview_every == 0:
                    with torch.no_grad():
                        preview = _write_preview(compose()[0], Path(preview_dir))
                if callback is not None:
                    callback(here, total, value, preview)
            return loss

        if config.optimizer == "lbfgs":
            # One step() call runs every iteration: torch's L-BFGS does not move when step()
            # is called again with max_iter=1 (seen with torch 2.13), so progress, previews and
            # cancel (a signal raising Cancelled) happen inside the closure. Strong Wolfe line
            # search, history 10 and an evaluation cap of 1.25 x iterations (SciPy's maxfun,
            # as the paper ran it); no tolerance stop; pixels are clipped when composed.
            optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=config.iterations,
                                          max_eval=config.iterations * 5 // 4 + 1,
                                          history_size=config.history,
                                          line_search_fn="strong_wolfe", tolerance_grad=0.0,
                                          tolerance_change=0.0)
            optimiser.step(closure)
        else:
            optimiser = torch.optim.Adam([x], lr=config.lr)
            for _ in range(config.iterations):
                optimiser.step(closure)
                if basis is None:
                    with torch.no_grad():
                        x.clamp_(0, 1)
        done += config.iterations
        with torch.no_grad():
            result = compose().clamp(0, 1)
            # the final loss, last in the history
            losses.append(loss_fn.backward(result, config.chunk)["total"])
            previous = result - base
        if preview_dir is not None:
            preview = _write_preview(result[0], Path(preview_dir))
            if callback is not None:
                callback(done, total, losses[-1], preview)
    return Synthesis(still=still, clip=result.cpu(), work_still=work_still.cpu(), mask=union,
                     losses=losses, seconds=time.perf_counter() - start)


def synthesize_blocks(still: np.ndarray, regions: list[Region], config: SynthesisConfig,
                      frames: int, *, vgg: Vgg19Features, msoe: MsoeNet, **kwargs) -> Synthesis:
    """A clip of `frames` frames built from blocks of config.frames that share a frame: the
    first block is synthesized freely, each later block starts from the previous block's last
    frame, held fixed (the paper's incremental mode), so the motion carries across the joint.
    Not for loops (the wrap-around pair spans one block only)."""
    if config.loop:
        raise JobError("incremental blocks cannot loop; bake a loop as one block")
    if config.frames < 2 or frames < 1:
        raise JobError(f"blocks need at least 2 frames each, got {config.frames}")
    first = synthesize(still, regions, config, vgg=vgg, msoe=msoe, **kwargs)
    clips, losses, seconds = [first.clip], list(first.losses), first.seconds
    count = len(first)
    block = 1
    while count < frames:
        config_b = SynthesisConfig(**{**config.__dict__, "seed": config.seed + block})
        nxt = synthesize(still, regions, config_b, vgg=vgg, msoe=msoe,
                         first_frame=clips[-1][-1], **kwargs)
        clips.append(nxt.clip[1:])
        losses += nxt.losses
        seconds += nxt.seconds
        count += len(nxt) - 1
        block += 1
    clip = torch.cat(clips)[:frames]
    return Synthesis(still=still, clip=clip, work_still=first.work_still, mask=first.mask,
                     losses=losses, seconds=seconds)


# --------------------------------------------------------------------------------------------
# Helpers


def mean_motion(clip: torch.Tensor) -> tuple[float, float]:
    """The exemplar's mean DIS flow (dx, dy) in px/frame over its textured pixels (gradient
    above the median: flat sky between clouds has no measurable flow and would dilute it)."""
    from engine.flow import dis_flow

    frames = clip.permute(0, 2, 3, 1).float().cpu().numpy()
    grey = frames.mean(-1)
    total, weight = np.zeros(2), 0.0
    for a, b, g in zip(frames[:-1], frames[1:], grey[:-1]):
        gy, gx = np.gradient(g)
        textured = np.hypot(gx, gy) > np.median(np.hypot(gx, gy))
        total += dis_flow(a, b)[textured].sum(0)
        weight += textured.sum()
    return tuple(total / max(weight, 1.0))


def _drift_start(still: torch.Tensor, masks: list[torch.Tensor], exemplars: list[torch.Tensor],
                 frames: int, loop: bool) -> torch.Tensor:
    """The change [T, 3, h, w] that makes each region start as the still drifting with its
    exemplar's mean motion (looped by the two-phase blend of engine/dyntex/exemplars.py).

    Why: from the still plus independent noise per frame, the first thing the dynamics loss
    meets is flicker (energy at every orientation), and after a bake's worth of iterations the
    sky still flickered: DIS read it as motion 9x faster than the exemplar. A start that already
    moves at the exemplar's speed and direction leaves the optimiser the texture to fix."""
    h, w = still.shape[-2:]
    image = still.permute(1, 2, 0).float().cpu().numpy()
    change = np.zeros((frames, h, w, 3), np.float32)
    for mask, exemplar in zip(masks, exemplars):
        scale = h / exemplar.shape[-2]  # the exemplar is square at the level's shorter side
        dx, dy = (v * scale for v in mean_motion(exemplar))
        m = mask.reshape(h, w, 1).float().cpu().numpy()

        def shifted(t: float) -> np.ndarray:
            matrix = np.float32([[1, 0, dx * t], [0, 1, dy * t]])
            return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)

        for t in range(frames):
            if loop:  # frame T would be frame 0 again; the copies differ by T x the drift
                a = t / frames
                moved = (1 - a) * shifted(t) + a * shifted(t - frames)
            else:
                moved = shifted(t)
            change[t] += m * (moved - image)
    return torch.from_numpy(change).permute(0, 3, 1, 2).to(still.device)


def _bounds_penalty(x: torch.Tensor, mask: torch.Tensor, weight: float = 1000.0) -> torch.Tensor:
    """weight x the mean squared overshoot outside [0, 1] over the region's pixels: 0 inside the
    range, so it never competes with the losses there (Adam is clamped instead)."""
    overshoot = (x - x.detach().clamp(0, 1)) * mask
    return weight * (overshoot ** 2).sum() / (mask.sum() * x.shape[0] * 3).clamp_min(1)


def _level_sizes(width: int, height: int, levels: int) -> list[tuple[int, int]]:
    """Coarse to fine; coarser levels that would fall under MIN_WORK are dropped."""
    sizes = []
    for level in reversed(range(levels)):
        w, h = round(width / 2 ** level), round(height / 2 ** level)
        if min(w, h) >= MIN_WORK:
            sizes.append((w, h))
    return sizes


def _fit(image: torch.Tensor, longest: int) -> tuple[int, int]:
    h, w = image.shape[-2:]
    factor = longest / max(h, w)
    return max(MIN_WORK, round(w * factor)), max(MIN_WORK, round(h * factor))


def resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Area average down, bilinear up ([N, C, h, w] float)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image.float()
    if height <= image.shape[-2] and width <= image.shape[-1]:
        return F.interpolate(image.float(), size=(height, width), mode="area")
    return F.interpolate(image.float(), size=(height, width), mode="bilinear",
                         align_corners=False)


def _exemplar_at(clip: torch.Tensor, scale: float) -> torch.Tensor:
    """An exemplar for a coarser level: the same clip scaled like the still (motion in pixels
    per frame scales with it), at least MIN_WORK pixels."""
    if scale >= 1:
        return clip
    h, w = clip.shape[-2:]
    return resize(clip, max(MIN_WORK, round(w * scale)), max(MIN_WORK, round(h * scale)))


def display_float(pixels: np.ndarray) -> np.ndarray:
    """H x W x 3 float32 in [0, 1], display-referred RGB (the networks' input): integer samples
    scaled, float (linear) samples encoded to sRGB, grey repeated, alpha dropped."""
    values = frames_io.to_float(pixels)
    if pixels.dtype == np.float32:
        values = frames_io.linear_to_srgb(values[..., :3] if values.shape[2] >= 3 else values)
    channels = values.shape[2]
    if channels == 1:
        values = np.repeat(values, 3, axis=2)
    elif channels == 4:
        values = values[..., :3]
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0), np.float32)


def from_display(frame: np.ndarray, still: np.ndarray) -> np.ndarray:
    """Inverse of display_float into the still's sample type and channels (alpha kept)."""
    channels = still.shape[2]
    colour = frame.mean(axis=2, keepdims=True) if channels == 1 else frame
    if still.dtype == np.float32:
        colour = frames_io.srgb_to_linear(colour)
    native = frames_io.from_float(colour, still.dtype)
    if channels == 4:
        native = np.concatenate([native, still[..., 3:]], axis=2)
    return native


def _write_preview(frame: torch.Tensor, folder: Path) -> Path:
    """Frame [3, h, w] -> folder/preview.png, replaced atomically (a reader never sees half)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (frame.permute(1, 2, 0).float().cpu().numpy().clip(0, 1) * 255 + 0.5)
    data = frames_io.encode_png(pixels.astype(np.uint8), "PNG8")
    path = folder / "preview.png"
    temporary = folder / f".preview-{os.getpid()}.png"
    data.tofile(temporary)
    os.replace(temporary, path)
    return path




# --------------------------------------------------------------------------------------------
# A whole bake from files: `python -m engine dyntex`


def parse_mask_spec(spec: str) -> tuple[Path, str]:
    """"MASK.png:LABEL" -> (mask path, label). LABEL is a built-in exemplar name or a video
    file / frames folder. The split is at the first colon after an existing file, so Windows
    drive letters ("C:\\masks\\sky.png:clouds") work."""
    for index, char in enumerate(spec):
        if char == ":" and index and Path(spec[:index]).is_file():
            label = spec[index + 1:]
            if not label:
                break
            return Path(spec[:index]), label
    if ":" not in spec:
        raise JobError(f"--mask {spec!r} needs a label: MASK.png:water (or clouds, grass, "
                       "waterfall, or a video file)")
    path = spec.rsplit(":", 1)[0]
    raise JobError(f"--mask {spec!r}: the mask file {path!r} does not exist or has no label")


def read_regions(specs: list[tuple[Path, str]], width: int, height: int, work_side: int,
                 frames: int, seed: int = 0, loop: bool = True) -> list[Region]:
    """Masks at the still's size and their exemplars (read now, so bad input fails before any
    network is loaded). Each exemplar is a square of the working size's shorter side."""
    from engine.dyntex.exemplars import EXEMPLARS, load_exemplar

    regions = []
    for index, (path, label) in enumerate(specs, 1):
        mask = frames_io.read_mask(path, width, height, name=f"mask {index}")
        if not (mask >= 0.5).any():
            raise JobError(f"mask {index} ({Path(path).name}) is empty: no pixel is white; "
                           "paint the region to animate in white")
        source = label if label in EXEMPLARS else Path(label)
        clip = load_exemplar(source, max(frames, 2), max(16, work_side), seed, loop)
        if len(clip) < 2:
            raise JobError(f"the exemplar {label} of mask {index} has {len(clip)} frame; at "
                           "least 2 are needed for motion")
        regions.append(Region(mask=mask, exemplar=clip, name=label))
    return regions


def load_networks(vgg_weights: str | os.PathLike | None, msoe_weights: str | os.PathLike | None,
                  device: torch.device, bf16: bool = False) -> tuple[Vgg19Features, MsoeNet]:
    """VGG-19 (converted on first use) and the trained MSOE (models/msoe.safetensors unless
    given). Both refuse a file for another network with a message naming the mismatch."""
    from engine.dyntex.msoe import SHIPPED, load_msoe
    from engine.vgg import VggConfig, load_vgg19

    msoe_path = Path(msoe_weights) if msoe_weights else SHIPPED
    if not msoe_path.is_file():
        raise JobError(f"the MSOE dynamics weights are missing ({msoe_path}); train them with "
                       "`python -m engine train-msoe --out FILE` and pass --msoe-weights FILE")
    msoe = load_msoe(msoe_path, device=device)  # the small file first: a mismatch fails fast
    return load_vgg19(vgg_weights, device, config=VggConfig(bf16=bf16)), msoe


def bake(image: str | os.PathLike, masks: list[tuple[Path, str]], out: str | os.PathLike,
         config: SynthesisConfig, progress, *, style: str | os.PathLike | None = None,
         vgg_weights=None, msoe_weights=None, device: str = "auto", bf16: bool = False,
         networks: tuple[Vgg19Features, MsoeNet] | None = None, block: int = 0) -> dict:
    """Read, check, synthesize and write frame_0001.png ... + preview.mp4 + contact_sheet.png
    into a new folder `out` (staged: nothing is left behind on failure or cancel). block > 0:
    clips longer than that are made of blocks of `block` frames sharing a frame (no loop)."""
    from engine.device import resolve_device
    from engine.preview import write_preview
    from engine.staging import staged_folder

    out = Path(out)
    if out.exists():
        raise JobError(f"{out} already exists; choose a new folder for the frames")
    config.check()
    progress.emit("load", 0, 1)
    still = frames_io.read_image(image)
    height, width = still.shape[:2]
    work_w, work_h = working_size(width, height, config.size)
    if not masks:
        raise JobError("no mask given: add --mask MASK.png:water (or clouds, grass, waterfall, "
                       "or a video file)")
    regions = read_regions(masks, width, height, min(work_w, work_h), config.exemplar_frames
                           or config.frames, config.seed, config.loop)
    painting = frames_io.read_image(style) if style is not None else None
    torch_device = resolve_device(device)
    vgg, msoe = networks or load_networks(vgg_weights, msoe_weights, torch_device, bf16)
    progress.emit("load", 1, 1)

    fmt = {np.dtype(np.uint16): "PNG16", np.dtype(np.float32): "EXR"}.get(still.dtype, "PNG8")
    with staged_folder(out) as folder:
        def report(done, total, loss, preview):
            extra = {"preview": str(preview)} if preview is not None else {}
            progress.emit("synthesize", done, total, loss=round(loss, 6), **extra)

        options = dict(vgg=vgg, msoe=msoe, painting=painting, device=torch_device,
                       callback=report, preview_dir=folder)
        if block and block < config.frames:  # a long clip in blocks that share a frame
            blocks = SynthesisConfig(**{**config.__dict__, "frames": block})
            result = synthesize_blocks(still, regions, blocks, config.frames, **options)
        else:
            result = synthesize(still, regions, config, **options)
        (folder / "preview.png").unlink(missing_ok=True)
        for index, frame in enumerate(result.frames(), 1):
            name = f"frame_{index:04d}.{'exr' if fmt == 'EXR' else 'png'}"
            frames_io.write_image(folder / name, frame, fmt)
            progress.emit("render", index, len(result))
        previews = write_preview(folder, folder)
    summary = {"out": str(out), "frames": len(result), "seconds": round(result.seconds, 2),
               "loss_start": round(result.losses[0], 6), "loss_end": round(result.losses[-1], 6),
               "working_size": f"{work_w}x{work_h}",
               "preview": str(out / previews["preview"].name),
               "contact_sheet": str(out / previews["contact_sheet"].name)}
    progress.emit("done", **summary)
    return summary


__all__ = ["Region", "SynthesisConfig", "Synthesis", "synthesize", "synthesize_blocks",
           "working_size", "bake",
           "read_regions", "load_networks", "parse_mask_spec", "MIN_WORK"]
