"""Training and evaluating MSOE (engine/dyntex/msoe.py) on optical-flow targets.

    python -m engine train-msoe --out models/msoe.safetensors [--minutes M | --steps N] [--seed S]
    python -m engine train-msoe --evaluate models/msoe.safetensors

Targets (end-point error of the flow decoder's output):
  (a) synthetic warps of real pictures with KNOWN flow: translations 0-7 px in any direction,
      small rotations/scales about the patch centre, smooth random fields, zero motion. Both
      frames are resampled from the source with the same bicubic kernel at a random subpixel
      offset, so neither frame is sharper than the other:
          b(q) = S(o + q + d),   a(p) = S(o + p + d + flow(p))   =>   a(p) = b(p + flow(p))
  (b) OpenCV DIS flow (engine.flow.dis_flow) between consecutive frames of real videos, masked
      where forward and backward flow disagree.
Held out (never trained on): the pictures astronaut.png and starry_night.jpg and the video
Megamind.avi; the evaluation uses fixed shifts (1-6 px, 8 directions) and rotations on those.

The learning rate is constant for 50 steps, then follows a cosine to 1/50. With --steps N the
cosine runs over steps and the run is deterministic for a seed. With --minutes M it runs over
wall time (the budget minus data preparation and the final evaluation), so the schedule always
completes even when a shared CPU slows down; the steps done are recorded in the weights header.

Resumable: every couple of minutes the model, optimiser, step, elapsed training time and random
states go to OUT.resume.safetensors (engine/training.py, the training-state format every
training command shares; never a pickle); a run with the same --out and the same settings
continues from it (and deletes it once the weights are written).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.checkpoints import load_matching
from engine.dyntex.exemplars import power_law_still
from engine.dyntex.msoe import (ARCHITECTURE, MsoeConfig, MsoeNet, load_msoe, parameter_count,
                               save_msoe)
from engine.errors import JobError
from engine.flow import dis_flow, to_grey
from engine.progress import Progress
from engine.training import load_state, save_state
from engine.video import read_video

MEDIA = Path(__file__).resolve().parents[2] / "media"
# name -> (frame scale, frame stride) for DIS pairs; all also give stills for synthetic warps
TRAIN_VIDEOS = {"bigbuckbunny.mp4": (0.5, 1), "bikes.mp4": (0.5, 1), "tree.avi": (1.0, 2),
                "carphone.mp4": (1.0, 1)}
TRAIN_IMAGES = ["grass.png"]
HELD_OUT_IMAGES = ["astronaut.png", "starry_night.jpg"]
HELD_OUT_VIDEO = ("Megamind.avi", 0.5)
SHIFT_MAGNITUDES = (1, 2, 3, 4, 5, 6)
ROTATIONS_DEG = (-4.0, -2.0, -1.0, 1.0, 2.0, 4.0)
EVAL_CROP, EVAL_BORDER = 128, 16
WARM_STEPS = 50


@dataclass
class TrainConfig:
    minutes: float = 20.0
    steps: int = 0             # 0: from --minutes and the speed of steps 10-50
    seed: int = 0
    batch: int = 4
    patch: int = 96            # coarsest level 6 px: large enough for the 11x11 filters
    init: str = ""             # warm start from these weights (tensors of equal name and shape)
    context: int = 4           # the decoder's dilated context convs (MsoeConfig.decoder_context)
    noise_stills: int = 0      # generated 1/k^slope stills added to the pictures (0: none)
    freeze_features: bool = False  # train only the flow decoder: the Grams synthesis uses stay
    scales: tuple[float, ...] = (0.71, 0.5)  # each still also at these sizes (finer textures)
    lr: float = 2e-3           # Adam, cosine decay to lr/50
    synthetic_share: float = 0.7
    max_shift: float = 7.5     # translations uniform in magnitude: 4-6 px are ~40 % of them
    dis_pairs_per_video: int = 40
    log_every: int = 50
    checkpoint_every_s: float = 120.0
    eval_reserve_s: float = 240.0  # of a --minutes budget, kept for the final evaluation


# --- data ----------------------------------------------------------------------------------

def _grey_float(rgb: np.ndarray) -> np.ndarray:
    return to_grey(rgb).astype(np.float32) / 255.0


def load_image(name: str) -> np.ndarray:
    path = MEDIA / name
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise JobError(f"{path} is missing; fetch it with `python tools/fetch_media.py --set train`")
    return _grey_float(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


def _scaled(grey: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return grey
    h, w = grey.shape
    return cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _checked_dis(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DIS a->b and a validity mask: forward-backward disagreement under 0.75 px."""
    a8, b8 = (np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8) for x in (a, b))
    fwd, bwd = dis_flow(a8, b8), dis_flow(b8, a8)
    h, w = a.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    back = cv2.remap(bwd, gx + fwd[..., 0], gy + fwd[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    valid = np.linalg.norm(fwd + back, axis=2) < 0.75
    return fwd, valid.astype(np.float32)


def video_pairs(name: str, scale: float, stride: int, count: int, start_fraction=0.0):
    """`count` evenly spaced (a, b, DIS flow, valid) of consecutive (by stride) grey frames."""
    frames = read_video(MEDIA / name, min_frames=2)
    first = int(start_fraction * len(frames))
    starts = np.linspace(first, len(frames) - 1 - stride, count).round().astype(int)
    out = []
    for s in sorted(set(starts.tolist())):
        a = _scaled(_grey_float(frames[s]), scale)
        b = _scaled(_grey_float(frames[s + stride]), scale)
        flow, valid = _checked_dis(a, b)
        out.append((a, b, flow, valid))
    return out


def warp_pair(source: np.ndarray, origin: tuple[float, float], flow: np.ndarray):
    """(a, b) of flow's size from source: b(q) = S(o+q), a(p) = S(o+p+flow(p)); bicubic."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx, gy = gx + np.float32(origin[0]), gy + np.float32(origin[1])
    b = cv2.remap(source, gx, gy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    a = cv2.remap(source, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_CUBIC,
                  borderMode=cv2.BORDER_REFLECT)
    return a, b


def affine_flow(size: int, angle_deg=0.0, scale=1.0, shift=(0.0, 0.0)) -> np.ndarray:
    """Flow of a rotation/scale about the patch centre plus a shift (pixels, +y down)."""
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - c
    t = math.radians(angle_deg)
    cos, sin = math.cos(t) * scale, math.sin(t) * scale
    fx = cos * x - sin * y - x + shift[0]
    fy = sin * x + cos * y - y + shift[1]
    return np.stack([fx, fy], axis=2).astype(np.float32)


def smooth_field(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    cells = int(rng.integers(2, 6))
    coarse = rng.normal(size=(cells, cells, 2)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    peak = float(np.abs(field).max()) or 1.0
    return field * np.float32(amplitude / peak)


class Sampler:
    """Training batches: synthetic known-flow pairs and DIS-labelled video pairs."""

    def __init__(self, config: TrainConfig, progress: Progress):
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.sources: list[np.ndarray] = [load_image(n) for n in TRAIN_IMAGES]
        self.pairs = []
        for name, (scale, stride) in TRAIN_VIDEOS.items():
            pairs = video_pairs(name, scale, stride, config.dis_pairs_per_video)
            self.pairs += pairs
            self.sources += [p[0] for p in pairs[:: max(1, len(pairs) // 6)]]
            progress.emit("data", video=name, pairs=len(pairs))
        # finer apparent textures too: each source also at config.scales of its size
        self.sources += [_scaled(s, f) for s in list(self.sources) for f in config.scales
                         if min(s.shape) * f > config.patch + 40]
        # spectra pictures do not cover: slopes 1.2-3.2, half of them with oriented grain
        for _ in range(config.noise_stills):
            stretch = 1.0 if self.rng.random() < 0.5 else self.rng.uniform(1.5, 3.0)
            self.sources.append(power_law_still(self.rng, 384, self.rng.uniform(1.2, 3.2),
                                                stretch, self.rng.uniform(0, math.pi)))
        # a crop needs a 12 px margin on each side (carphone's 144 rows are too few for 128)
        self.sources = [s for s in self.sources if min(s.shape) >= config.patch + 24]

    def _synthetic(self, size: int):
        rng, cfg = self.rng, self.config
        kind = rng.random()
        angle = rng.uniform(0, 2 * math.pi)
        shift = rng.uniform(0, cfg.max_shift) * np.array([math.cos(angle), math.sin(angle)])
        if kind < 0.05:
            flow = np.zeros((size, size, 2), np.float32)
        elif kind < 0.5:
            flow = affine_flow(size, shift=shift)
        elif kind < 0.75:  # corners of a 96 px patch move up to ~6 px more at 5 degrees
            flow = affine_flow(size, rng.uniform(-5, 5), rng.uniform(0.95, 1.05), shift * 0.6)
        else:
            flow = affine_flow(size, shift=shift * 0.6) + smooth_field(rng, size,
                                                                         rng.uniform(0.5, 3))
        source = self.sources[rng.integers(len(self.sources))]
        h, w = source.shape
        origin = (rng.uniform(12, w - size - 12), rng.uniform(12, h - size - 12))
        a, b = warp_pair(source, origin, flow)
        return a, b, flow, np.ones((size, size), np.float32)

    def _video(self, size: int):
        rng = self.rng
        a, b, flow, valid = self.pairs[rng.integers(len(self.pairs))]
        h, w = a.shape
        for _ in range(10):  # prefer crops with motion DIS trusts and that MSOE can see
            x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
            f = flow[y:y + size, x:x + size]
            if np.abs(f).max() < 9 and valid[y:y + size, x:x + size].mean() > 0.6:
                break
        crop = (slice(y, y + size), slice(x, x + size))
        a, b, f, v = a[crop], b[crop], flow[crop].copy(), valid[crop]
        if rng.random() < 0.5:  # mirror left-right
            a, b, f, v = a[:, ::-1], b[:, ::-1], f[:, ::-1].copy(), v[:, ::-1]
            f[..., 0] *= -1
        if rng.random() < 0.5:  # mirror up-down
            a, b, f, v = a[::-1], b[::-1], f[::-1].copy(), v[::-1]
            f[..., 1] *= -1
        if rng.random() < 0.5:  # transpose
            a, b, v = a.T, b.T, v.T
            f = f.transpose(1, 0, 2)[..., ::-1]
        return a, b, f, v

    @property
    def synthetic_count(self) -> int:
        """The first this many samples of each batch have known flow, the rest DIS flow."""
        return round(self.config.batch * self.config.synthetic_share)

    def batch(self):
        cfg, rng = self.config, self.rng
        pairs, flows, masks = [], [], []
        for i in range(cfg.batch):
            synthetic = i < self.synthetic_count
            a, b, f, v = self._synthetic(cfg.patch) if synthetic else self._video(cfg.patch)
            # photometric: contrast/gamma per pair, a little noise per frame
            gamma = rng.uniform(0.7, 1.5)
            a, b = (np.clip(x, 0, 1) ** gamma for x in (a, b))
            a = a + rng.normal(0, rng.uniform(0, 0.015), a.shape)
            b = b * rng.uniform(0.98, 1.02) + rng.normal(0, rng.uniform(0, 0.015), b.shape)
            pairs.append(np.stack([a, b]))
            flows.append(np.ascontiguousarray(np.moveaxis(f, 2, 0)))
            masks.append(np.ascontiguousarray(v))
        as_tensor = lambda x: torch.from_numpy(np.stack(x).astype(np.float32))  # noqa: E731
        return as_tensor(pairs), as_tensor(flows), as_tensor(masks)


def epe_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, border: int = 4):
    inner = (slice(None), slice(border, -border), slice(border, -border))
    err = torch.linalg.vector_norm(pred - target, dim=1)[inner]
    m = mask[inner]
    return (err * m).sum() / m.sum().clamp_min(1.0)


# --- held-out evaluation ---------------------------------------------------------------------

def _held_out_crops() -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Fixed (source, origin) of EVAL_CROP squares on the held-out pictures."""
    crops = []
    for name in HELD_OUT_IMAGES:
        source = load_image(name)
        h, w = source.shape
        for fx, fy in ((0.3, 0.3), (0.7, 0.35), (0.35, 0.7), (0.65, 0.65)):
            crops.append((source, (fx * (w - EVAL_CROP), fy * (h - EVAL_CROP))))
    return crops


def _epe_map(pred: np.ndarray, flow: np.ndarray) -> np.ndarray:
    b = EVAL_BORDER
    return np.linalg.norm(pred - flow, axis=2)[b:-b, b:-b]


@torch.no_grad()
def _predict(model: MsoeNet, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    x = torch.from_numpy(np.stack([np.stack(p) for p in pairs]).astype(np.float32))
    return [f.permute(1, 2, 0).numpy() for f in model.flow(x)]


def shift_cases():
    """(name, flow) for the fixed shifts (1-6 px, 8 directions) and rotations."""
    cases = []
    for m in SHIFT_MAGNITUDES:
        for k in range(8):
            a = k * math.pi / 4
            cases.append((f"shift_{m}px", affine_flow(EVAL_CROP, shift=(m * math.cos(a),
                                                                           m * math.sin(a)))))
    for deg in ROTATIONS_DEG:
        cases.append((f"rotate_{deg:+.0f}deg", affine_flow(EVAL_CROP, deg)))
    return cases


@torch.no_grad()
def library_separation(model: MsoeNet, size: int = 128, frames: int = 8) -> dict:
    """What the dynamics loss can tell apart, per built-in exemplar: the mean over pairs of the
    squared distance between a clip's MSOE Gram and the exemplar's (seed 0) mean Gram, for the
    same motion in another draw (seed 1, "same"), and for that draw reversed in time, with its
    frames shuffled (flicker) and frozen at its first frame. Reported as ratios to "same": the
    synthesis can only find the exemplar's motion where every ratio is well above 1."""
    from engine.dyntex.exemplars import EXEMPLARS, make_exemplar
    from engine.dyntex.losses import flat_grey
    from engine.dyntex.msoe import clip_pairs
    from engine.vgg import gram

    def grams(clip: np.ndarray) -> torch.Tensor:
        grey = flat_grey(torch.from_numpy(clip).permute(0, 3, 1, 2))
        return torch.cat([gram(model.features(pair[None])) for pair in clip_pairs(grey)])

    order = np.random.default_rng(0).permutation(frames)
    out = {}
    for name in EXEMPLARS:
        target = grams(make_exemplar(name, frames, size, seed=0)).mean(0, keepdim=True)
        other = make_exemplar(name, frames, size, seed=1)
        cases = {"same": other, "reversed": other[::-1].copy(), "shuffled": other[order],
                 "frozen": np.repeat(other[:1], frames, axis=0)}
        distance = {k: float(((grams(c) - target) ** 2).sum((1, 2)).mean())
                    for k, c in cases.items()}
        out[name] = {k: round(v / max(distance["same"], 1e-20), 2)
                     for k, v in distance.items() if k != "same"}
    return out


def evaluate(model: MsoeNet, video: bool = True, with_dis: bool = True) -> dict:
    """Held-out EPE (px, mean over pixels more than 16 px from the border): known shifts per
    magnitude and rotations for MSOE (and DIS on the same pairs), and MSOE vs DIS on
    Megamind.avi pairs."""
    model.eval()
    results: dict[str, dict[str, list[float]]] = {"msoe": {}, "dis": {}}
    for source, origin in _held_out_crops():
        cases = shift_cases()
        pairs = [warp_pair(source, origin, flow) for _, flow in cases]
        preds = []
        for i in range(0, len(pairs), 16):
            preds += _predict(model, pairs[i:i + 16])
        for (name, flow), pred, (a, b) in zip(cases, preds, pairs):
            results["msoe"].setdefault(name, []).append(float(_epe_map(pred, flow).mean()))
            if with_dis:
                d = dis_flow(*(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8) for x in (a, b)))
                results["dis"].setdefault(name, []).append(float(_epe_map(d, flow).mean()))
    report = {k: {n: round(float(np.mean(v)), 3) for n, v in r.items()}
              for k, r in results.items() if r}
    if video:
        name, scale = HELD_OUT_VIDEO
        errs, mags = [], []
        for a, b, flow, valid in video_pairs(name, scale, 1, 24):
            pred = _predict(model, [(a, b)])[0]
            e, v = _epe_map(pred, flow), _epe_map(valid[..., None].repeat(2, 2), 0 * flow)
            v = v > 0
            errs.append(float(e[v].mean()))
            mags.append(float(np.linalg.norm(flow, axis=2)[EVAL_BORDER:-EVAL_BORDER,
                                                         EVAL_BORDER:-EVAL_BORDER][v].mean()))
        report["video_vs_dis"] = {"video": name, "scale": scale, "pairs": len(errs),
                                  "epe": round(float(np.mean(errs)), 3),
                                  "dis_mean_magnitude": round(float(np.mean(mags)), 3)}
    report["library_separation"] = library_separation(model)
    return report


# --- initialisation ---------------------------------------------------------------------------

def velocity_tuned_init(model: MsoeNet, sigma: float = 1.2) -> None:
    """Start conv1 as 32 motion-tuned filters instead of noise (the original trained from noise
    for ~10^5 steps; a CPU budget cannot). Filter k is [g, -g(. - v_k)] for a centre-surround g
    (difference of Gaussians) and a velocity v_k on rings of 0, 0.75, 1.5 and 2.5 px: its
    response is g * (a - b(. + v_k)), zero where frame b is frame a moved by v_k, so the squared
    energies form a cost over velocities at each scale (4x the range at the 5th level). conv2
    starts as +/- copies of the 32 energies; training then adjusts everything."""
    conv1, conv2 = model.level.conv1, model.level.conv2
    k = conv1.kernel_size[0]
    half = k // 2
    velocities = [(0.0, 0.0)]
    for radius, count, offset in ((0.75, 8, 0.0), (1.5, 8, math.pi / 8), (2.5, 15, 0.0)):
        velocities += [(radius * math.cos(offset + 2 * math.pi * i / count),
                        radius * math.sin(offset + 2 * math.pi * i / count))
                       for i in range(count)]
    velocities = velocities[:conv1.out_channels]
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)

    def dog(cx, cy):
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        return (np.exp(-r2 / (2 * sigma ** 2)) / sigma ** 2
                - np.exp(-r2 / (2 * (2 * sigma) ** 2)) / (2 * sigma) ** 2)

    weight = np.zeros(tuple(conv1.weight.shape), np.float64)
    for i, (vx, vy) in enumerate(velocities):
        g = dog(0.0, 0.0)
        weight[i, 0] = g / np.abs(g).sum()
        gv = dog(vx, vy)
        weight[i, 1] = -gv / np.abs(gv).sum()
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(weight * 4.0))
        conv1.bias.zero_()
        eye = torch.eye(conv1.out_channels)
        w2 = torch.cat([eye, -eye])[:conv2.out_channels]
        conv2.weight.copy_((w2 + 0.01 * torch.randn_like(w2))[:, :, None, None])
        conv2.bias.fill_(0.01)


# --- the loop ---------------------------------------------------------------------------------

def _resume_path(out: str | Path) -> Path:
    return Path(str(out) + ".resume.safetensors")


def _save_resume(path: Path, model, optimiser, sampler, step: int, trained_s: float,
                 config: TrainConfig, running) -> None:
    counters = {"config": asdict(config), "step": step, "trained_s": trained_s,
                "numpy_rng": sampler.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state().tolist(),
                "running": None if running is None else [float(v) for v in running]}
    save_state(path, modules={"msoe": model}, optimisers={"adam": optimiser}, counters=counters)


def _load_resume(path: Path, model, optimiser, sampler, config: TrainConfig):
    counters = load_state(path, modules={"msoe": model}, optimisers={"adam": optimiser})
    if counters["config"] != json.loads(json.dumps(asdict(config))):
        raise JobError(f"{path} is from a run with other settings ({counters['config']}); "
                       "delete it to start afresh, or repeat that run's options to go on")
    sampler.rng.bit_generator.state = counters["numpy_rng"]
    torch.set_rng_state(torch.tensor(counters["torch_rng"], dtype=torch.uint8))
    running = None if counters["running"] is None else np.array(counters["running"])
    return counters["step"], counters["trained_s"], running


def _learning_rate(config: TrainConfig, step: int, progress_fraction: float) -> float:
    """Constant for WARM_STEPS, then a cosine to lr/50 over `progress_fraction` (0..1)."""
    if step < WARM_STEPS:
        return config.lr
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress_fraction, 1.0))))


def warm_start(model: MsoeNet, path: str | Path) -> list[str]:
    """Load the tensors of `path` that fit and return the names that start afresh. A context
    conv the file lacks starts at zero: its residual branch then adds nothing, so the warm
    model's flow is the file's flow at step 0 and the new layer only learns what helps."""
    fresh = load_matching(path, model, architecture=ARCHITECTURE)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name in fresh and name.startswith("decoder.context."):
                tensor.zero_()
    return fresh


def train(out: str | Path, config: TrainConfig, progress: Progress) -> dict:
    torch.manual_seed(config.seed)
    started = time.time()
    model = MsoeNet(MsoeConfig(decoder_context=config.context))
    velocity_tuned_init(model)
    if config.init:
        fresh = warm_start(model, config.init)
        progress.emit("warm_start", weights=config.init, fresh=fresh)
    sampler = Sampler(config, progress)
    if config.freeze_features:
        model.level.requires_grad_(False)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    step, trained_s, running = 0, 0.0, None
    resume = _resume_path(out)
    if resume.is_file():
        step, trained_s, running = _load_resume(resume, model, optimiser, sampler, config)
        progress.emit("resume", done=step, trained_s=round(trained_s))
    # training time: --steps counts steps; --minutes counts seconds after data preparation
    budget_s = config.minutes * 60 - (time.time() - started) - config.eval_reserve_s
    if not config.steps and budget_s < 60:
        raise JobError(f"--minutes {config.minutes} leaves {budget_s:.0f} s for training after "
                       "loading data and reserving the evaluation; give more minutes")
    segment_start, last_checkpoint = time.time(), time.time()
    done_before = trained_s

    def fraction_done() -> float:
        if config.steps:
            return (step - WARM_STEPS) / max(1, config.steps - WARM_STEPS)
        return trained_s / budget_s

    while (step < config.steps) if config.steps else (trained_s < budget_s):
        lr = _learning_rate(config, step, fraction_done())
        for group in optimiser.param_groups:
            group["lr"] = lr
        pairs, flows, masks = sampler.batch()
        model.train()
        pred = model.flow(pairs)
        loss = epe_loss(pred, flows, masks)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        trained_s = done_before + time.time() - segment_start
        with torch.no_grad():  # running EPE of the known-flow and the DIS-labelled samples
            n = sampler.synthetic_count
            now = np.array([loss.item(), epe_loss(pred[:n], flows[:n], masks[:n]).item(),
                            epe_loss(pred[n:], flows[n:], masks[n:]).item() if n < len(pred)
                            else 0.0])
        running = now if running is None else 0.95 * running + 0.05 * now
        if step % config.log_every == 0:
            progress.emit("train", done=step, total=config.steps or None,
                          epe=round(running[0], 3), epe_known=round(running[1], 3),
                          epe_dis=round(running[2], 3), lr=round(lr, 6),
                          trained_s=round(trained_s), budget_s=round(budget_s))
        if time.time() - last_checkpoint > config.checkpoint_every_s:
            _save_resume(resume, model, optimiser, sampler, step, trained_s, config, running)
            last_checkpoint = time.time()
    wall = time.time() - started
    card = {"steps": step, "seed": config.seed, "trained_seconds": round(trained_s),
            "wall_seconds_this_session": round(wall), "parameters": parameter_count(model),
            "train_config": json.dumps(asdict(config))}
    save_msoe(out, model, metadata={k: str(v) for k, v in card.items()})
    resume.unlink(missing_ok=True)
    progress.emit("saved", path=str(out), **{k: v for k, v in card.items()
                                              if k != "train_config"})
    return card


def run(args, progress: Progress) -> int:
    """The `train-msoe` subcommand."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.evaluate:
        model = load_msoe(args.evaluate, decoder=True)
        report = evaluate(model)
        progress.emit("evaluate", weights=str(args.evaluate), **report)
        return 0
    if not args.out:
        raise JobError("train-msoe needs --out FILE.safetensors (or --evaluate FILE)")
    if not 0.0 <= args.synthetic_share <= 1.0:
        raise JobError(f"--synthetic-share {args.synthetic_share} is a share of each batch: "
                       "give a number from 0 to 1")
    if args.noise_stills < 0:
        raise JobError(f"--noise-stills {args.noise_stills}: give a count, 0 or more")
    if args.max_shift <= 0:
        raise JobError(f"--max-shift {args.max_shift}: give a positive number of pixels")
    if args.freeze_features and not args.init:
        raise JobError("--freeze-features trains only the flow decoder on features that are "
                       "already trained: give them with --init WEIGHTS")
    config = TrainConfig(minutes=args.minutes, steps=args.steps, seed=args.seed, lr=args.lr,
                         patch=args.patch, init=args.init or "", context=args.context,
                         scales=tuple(args.scales), max_shift=args.max_shift,
                         synthetic_share=args.synthetic_share,
                         freeze_features=args.freeze_features, noise_stills=args.noise_stills)
    train(args.out, config, progress)
    model = load_msoe(args.out, decoder=True)
    progress.emit("evaluate", weights=str(args.out), **evaluate(model))
    return 0

