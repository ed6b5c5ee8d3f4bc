"""Held-out numbers of a poke model (its model card): `python -m engine evaluate-poke --model M
VIDEO ...` prints one JSON object.

The held-out clips are the model's own validation split (engine/poke/data.py, split "val": the
last `held_out` of every video by time, with the stride, crop and held-out fraction the model
was trained with), each with its deterministic poke. Measures (docs/ARCHITECTURE.md):

  video_ae          PSNR (dB, frames in [-1, 1]) and SSIM of the reconstruction from mu
  cinn_bits_per_dim -log2 p(mu | x0, poke) per latent dimension
  poke_following    per generated sample: DIS flow from x0 to the last generated frame,
                    averaged over each poke patch; cosine to the patch's (dx, dy) and the
                    magnitude ratio (1 = as far as asked); the same for the real clip as a
                    reference
  diversity         per-pixel std across the samples of one poke (colour values in [0, 1],
                    over the 10 generated frames), mean over the frame, and over the motion
                    region (pixels whose real flow x0 -> last moves at least
                    MOTION_THRESHOLD 64-px pixels); averaged over clips

A motion-space model (issue 5) decodes flows; its frames are x0 carried along them
(engine/poke/motion.warp_with_motion), and every pixel measure above is taken on those frames,
so the two spaces are compared on the same terms. It also reports `motion_epe`, the end-point
error of the reconstructed flows (64-px units).

Sample i of clip n draws its noise from (seed, n, i), so the numbers repeat for a given seed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import JobError
from engine.flow import dis_flow
from engine.metrics import poke_following
from engine.poke.data import DataConfig, PokeClipDataset
from engine.poke.model import PokeModel, load_model, model_facts
from engine.poke.motion import warp_with_motion
from engine.poke.sample import reverse_finite
from engine.poke.train import clip_ssim, flow_epe, psnr

MOTION_THRESHOLD = 1.0   # 64-px pixels of real motion x0 -> last frame


def held_out_fraction(model_path: str | Path) -> float:
    """The fraction the model was trained with (its header), else the training default."""
    try:
        return float(json.loads(model_facts(model_path).get("data", "{}")).get("held_out", 0.2))
    except (ValueError, TypeError, AttributeError):
        return 0.2


def _generator(seed: int, clip: int, sample: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, clip, sample]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3]."""
    values = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return values.movedim(-3, -1).cpu().numpy()


def _patches(poke: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask, vector) per poke patch: pixels of the map holding the same non-zero vector
    (every patch holds one constant vector, data.py)."""
    nonzero = np.abs(poke).sum(0) > 0
    vectors = np.unique(poke[:, nonzero].T, axis=0)
    return [(np.all(poke == vector[:, None, None], axis=0) & nonzero, vector)
            for vector in vectors]


@torch.no_grad()
def evaluate(model: PokeModel, videos: list[str], samples: int = 8, seed: int = 0,
             held_out: float = 0.2, max_clips: int = 0, cache_dir: str | None = None,
             progress=None) -> dict:
    if samples < 2:
        raise JobError("--samples must be at least 2 (diversity is a spread across samples)")
    config = model.config
    data = DataConfig(size=model.size, frames=config.video.frames, stride=config.stride,
                      face_crop=config.face_crop, face_scale=config.face_scale,
                      held_out=held_out, augment=False, cache_dir=cache_dir,
                      motion=config.video.space == "motion" or config.video.part_channels > 0,
                      parts=config.video.part_channels > 0)
    motion_space = data.motion
    dataset = PokeClipDataset(videos, "val", data, seed=seed)
    clip_count = len(dataset.clips)  # the items after these are the static ones
    chosen = list(range(clip_count))
    if max_clips and max_clips < clip_count:
        chosen = sorted({int(round(v)) for v in np.linspace(0, clip_count - 1, max_clips)})
    device = next(model.parameters()).device
    started = time.monotonic()
    psnrs, ssims, bits, epes = [], [], [], []
    cosines, ratios, real_cosines, real_ratios = [], [], [], []
    spread_frame, spread_motion = [], []
    for number, index in enumerate(chosen):
        item = dataset[index]
        clip = item["video"][None].to(device)
        poke = item["poke"][None].to(device)
        x0 = clip[:, 0]
        motion = item["motion"][None].to(device) if motion_space else None
        out = model.video_ae(clip, sample=False, motion=motion)
        recon = out.recon
        if motion_space:
            epes.append(flow_epe(recon, motion))
            recon = warp_with_motion(x0, recon)
        psnrs.append(psnr(recon, clip[:, 1:]))
        ssims.append(clip_ssim(recon, clip[:, 1:]))
        parts = item["parts"][None].to(device) if "parts" in item else None
        cond = model.condition(x0, poke, parts)
        bits.append(float(model.cinn.bits_per_dim(out.mu, cond).mean()))

        shape = out.mu.shape[1:]
        noise = torch.cat([torch.randn((1, *shape), generator=_generator(seed, index, i))
                           for i in range(samples)]).to(device)
        z = reverse_finite(model, noise, cond.expand(samples, -1, -1, -1),
                           lambda row, attempt: torch.randn(shape, generator=_generator(
                               seed, index, row + 1000 * attempt)))
        generated = model.video_ae.decode(z, x0.expand(samples, -1, -1, -1))
        if motion_space:
            generated = warp_with_motion(x0.expand(samples, -1, -1, -1), generated)
        first = _to_uint8(x0[0])
        last_frames = _to_uint8(generated[:, -1])
        patches = _patches(item["poke"].numpy())
        for last in last_frames:
            flow = dis_flow(first, last)
            for mask, vector in patches:
                cosine, ratio = poke_following(flow, mask, vector)
                cosines.append(cosine)
                ratios.append(ratio)
        real_flow = dis_flow(first, _to_uint8(clip[0, -1]))
        for mask, vector in patches:
            cosine, ratio = poke_following(real_flow, mask, vector)
            real_cosines.append(cosine)
            real_ratios.append(ratio)

        values = (generated.float().clamp(-1, 1) + 1) * 0.5          # [K, T, 3, H, W]
        spread = values.std(dim=0).mean(dim=(0, 1)).cpu().numpy()    # [H, W]
        spread_frame.append(float(spread.mean()))
        motion = np.hypot(*item["flow"].numpy()) >= MOTION_THRESHOLD
        if motion.any():
            spread_motion.append(float(spread[motion].mean()))
        if progress is not None:
            progress.emit("evaluate", number + 1, len(chosen))

    def mean(values):
        return round(float(np.mean(values)), 4) if values else None

    return {
        "model": None, "videos": [Path(v).name for v in videos],
        "held_out_fraction": held_out, "held_out_clips": clip_count,
        "evaluated_clips": len(chosen), "samples_per_clip": samples, "seed": seed,
        "space": model.config.video.space,
        "video_ae": {"psnr_db": mean(psnrs), "ssim": mean(ssims),
                     **({"motion_epe": mean(epes)} if epes else {})},
        "cinn_bits_per_dim": mean(bits),
        "poke_following": {"cosine": mean(cosines), "magnitude_ratio": mean(ratios),
                           "median_magnitude_ratio": round(float(np.median(ratios)), 4),
                           "patches": len(cosines)},
        "poke_following_real_clips": {"cosine": mean(real_cosines),
                                      "magnitude_ratio": mean(real_ratios)},
        "diversity": {"frame": mean(spread_frame), "motion_region": mean(spread_motion),
                      "motion_region_clips": len(spread_motion),
                      "motion_threshold_px64": MOTION_THRESHOLD},
        "seconds": round(time.monotonic() - started, 1),
    }


def run(args, progress) -> int:
    """The `evaluate-poke` subcommand: one JSON line on stdout (progress lines before it)."""
    from engine.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.model)
    if not path.is_file():
        raise JobError(f"poke model not found: {path}; pass the file train-poke wrote")
    for video in args.videos:
        if not Path(video).is_file():
            raise JobError(f"video not found: {video}; pass the videos the model was trained on")
    held_out = args.held_out if args.held_out is not None else held_out_fraction(path)
    if not 0.0 < held_out < 1.0:
        raise JobError(f"--held-out must be between 0 and 1 (got {held_out})")
    torch.manual_seed(args.seed)
    model = load_model(path, resolve_device(args.device))
    result = evaluate(model, args.videos, samples=args.samples, seed=args.seed,
                      held_out=held_out, max_clips=args.max_clips, cache_dir=args.cache_dir,
                      progress=progress)
    result["model"] = path.name
    result["parameters"] = model.parameters_by_part()["total"]
    result["command"] = ("python -m engine evaluate-poke --model " + str(path) + " "
                         + " ".join(str(v) for v in args.videos)
                         + f" --samples {args.samples} --seed {args.seed}"
                         + (f" --max-clips {args.max_clips}" if args.max_clips else ""))
    print(json.dumps(result), flush=True)
    return 0
