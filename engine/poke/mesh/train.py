"""`python -m engine train-mesh-poke`: the face-mesh poke model from face clips, in minutes.

    python -m engine train-mesh-poke media/carphone.mp4 --out models/poke_mesh.safetensors

1. Track: MediaPipe's mesh through every clip (the first 1 - held_out of each; the rest is the
   held-out set), smoothed in time.
2. Clips: TRACK_SHARE real windows of the tracks (rigid ones, forwards and backwards), the rest
   from the identity-free prior (engine/poke/mesh/motion.py) on the tracked faces.
3. Bases: principal directions of the per-frame motion (K codes) and of the still layouts.
4. cINN: maximum likelihood of the codes given (layout, poke), a fresh poke drawn for every
   clip at every pass (iPOKE's sampling of pokes where the clip moves). Adam, cosine decay.

Reports the held-out negative log-likelihood (nats per code number) on the held-out windows
and on a held-out draw of the prior.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import JobError
from engine.poke.mesh import motion as mesh_motion
from engine.poke.mesh.model import MeshPokeConfig, MeshPokeModel, save_mesh_model

TRACK_SHARE = 0.25


def track_clip(path: str | Path) -> np.ndarray:
    """[N, 468, 3] landmarks (pixels) of the largest face in every frame of a clip, NaN where
    none was found. MediaPipe in tracking mode: the mesh follows the face between frames."""
    from engine import video as video_io
    from engine.face.landmarks import import_mediapipe

    face_mesh, _ = import_mediapipe()
    out = []
    with face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                            refine_landmarks=False) as mesh:
        for frame in video_io.iter_frames(path):
            rgb = np.ascontiguousarray(frame[:, :, :3])
            height, width = rgb.shape[:2]
            result = mesh.process(rgb)
            if result.multi_face_landmarks:
                out.append(np.array([(p.x * width, p.y * height, p.z * width) for p in
                                     result.multi_face_landmarks[0].landmark], np.float32))
            else:
                out.append(np.full((468, 3), np.nan, np.float32))
    if not out:
        raise JobError(f"{path}: no frames could be read; is it a video file OpenCV opens?")
    return np.stack(out)


def make_clips(rng, faces, basis, windows, count: int, frames: int):
    """`count` training clips, TRACK_SHARE of them real windows (when there are any)."""
    real = int(round(count * TRACK_SHARE)) if windows is not None and windows.starts else 0
    parts = []
    for start in range(0, count - real, 4096):
        parts.append(mesh_motion.synthetic_clips(rng, faces, basis,
                                                 min(4096, count - real - start), frames))
    if real:
        parts.append(windows.sample(rng, real))
    layouts = np.concatenate([p[0] for p in parts])
    motion = np.concatenate([p[1] for p in parts])
    order = rng.permutation(len(layouts))
    return layouts[order], motion[order]


def run(args, progress) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = MeshPokeConfig(frames=args.frames, codes=args.codes)
    started = time.perf_counter()

    progress.emit("track", 0, len(args.videos))
    train_tracks, held_tracks = [], []
    for number, video in enumerate(args.videos, 1):
        track = track_clip(video)
        boundary = int(math.floor(len(track) * (1.0 - args.held_out)))
        train_tracks.append(track[:boundary])
        held_tracks.append(track[boundary:])
        found = int(np.isfinite(track[:, 0, 0]).sum())
        progress.emit("track", number, len(args.videos), video=str(video), frames=len(track),
                      faces=found)
        if found < config.frames + 1:
            raise JobError(f"{video}: a face was found in {found} of {len(track)} frames; a "
                           "face clip needs a face in most frames")
    faces = np.concatenate([mesh_motion.smooth_track(t[np.isfinite(t[:, 0, 0])])
                            for t in train_tracks])
    faces = np.stack([mesh_motion.to_face_units(f) for f in faces])
    reference = faces.mean(0)
    basis = mesh_motion.expression_basis(reference)
    windows = mesh_motion.TrackWindows.cut(train_tracks, config.frames)
    # Every held-out window counts, rigid or not: the measure is how likely real motion is.
    held_windows = mesh_motion.TrackWindows.cut(held_tracks, config.frames, residual=np.inf)
    progress.emit("clips", 0, args.clips, windows=len(windows.starts),
                  held_out_windows=len(held_windows.starts))
    layouts, motion = make_clips(rng, faces, basis, windows, args.clips, config.frames)
    held_rng = np.random.default_rng(args.seed + 1_000_003)
    held_prior = mesh_motion.synthetic_clips(held_rng, faces, basis, 2048, config.frames)
    held_real = held_windows.sample(held_rng, 512) if held_windows.starts else None
    progress.emit("clips", args.clips, args.clips,
                  seconds=round(time.perf_counter() - started, 1))

    model = MeshPokeModel(config)
    explained = model.fit_bases(layouts, motion, reference)
    progress.emit("bases", 1, 1, **{k: round(v, 4) for k, v in explained.items()})
    with torch.no_grad():
        codes = model.encode_motion(torch.from_numpy(motion))      # [N, T, K]
    layouts_t = torch.from_numpy(layouts)

    def batch_condition(index, generator):
        start, drag = mesh_motion.clip_pokes(generator, layouts[index], motion[index])
        return model.condition(layouts_t[index], torch.from_numpy(start),
                               torch.from_numpy(drag))

    def held_nll(clips) -> float:
        if clips is None:
            return float("nan")
        lay, mot = clips
        generator = np.random.default_rng(7)
        start, drag = mesh_motion.clip_pokes(generator, lay, mot)
        with torch.no_grad():
            cond = model.condition(torch.from_numpy(lay), torch.from_numpy(start),
                                   torch.from_numpy(drag))
            nll = model.nll(model.encode_motion(torch.from_numpy(mot)), cond)
        return float(nll.mean()) / (config.codes * config.frames)

    model.train()
    with torch.no_grad():  # ActNorm initialises from the first batch
        first = rng.choice(len(codes), min(len(codes), 1024), replace=False)
        model.nll(codes[first], batch_condition(first, rng))
    optimiser = torch.optim.Adam(model.cinn.parameters(), lr=args.lr)
    progress.emit("train", 0, args.steps)
    report_every = max(1, args.steps // 20)
    running = []
    for step in range(1, args.steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        index = rng.integers(0, len(codes), args.batch)
        # Dequantisation: the prior's motion lies on fewer dimensions than the code has, and a
        # flow fitted to a degenerate direction contracts it without bound, so that sampling
        # (the inverse) blows ordinary noise up by orders of magnitude. A little noise on the
        # codes bounds that.
        noisy = codes[index] + args.code_noise * torch.randn(codes[index].shape)
        loss = model.nll(noisy, batch_condition(index, rng)).mean() \
            / (config.codes * config.frames)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.cinn.parameters(), 10.0)
        optimiser.step()
        running.append(float(loss.detach()))
        if step % report_every == 0 or step == args.steps:
            progress.emit("train", step, args.steps, nll=round(float(np.mean(running)), 4),
                          seconds=round(time.perf_counter() - started, 1))
            running = []
    model.eval()
    minutes = (time.perf_counter() - started) / 60
    facts = {"held_out_nll_prior": round(held_nll(held_prior), 4),
             "held_out_nll_tracks": round(held_nll(held_real), 4),
             "train_minutes": round(minutes, 1), "steps": args.steps, "clips": args.clips,
             "videos": " ".join(Path(v).name for v in args.videos),
             "held_out": args.held_out, "seed": args.seed, "code_noise": args.code_noise,
             **{k: round(v, 4) for k, v in explained.items()}}
    save_mesh_model(args.out, model, facts)
    progress.emit("done", 1, 1, output=str(args.out), **facts)
    return 0
