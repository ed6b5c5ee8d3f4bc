"""`python -m engine.poke.bench` (to become `python -m engine bench poke`): what the poke model
costs on a CPU, next to the original iPOKE cINN.

Rows, each in a process of its own (forked, so the peak resident memory is that row's alone):
  sample K      one still + poke -> K clips of 10 frames at 64 px: condition, cINN reverse,
                decoder; K = 1 and 8. Median of --repeat runs after one warm-up.
  train STAGE   one optimisation step of each training stage (engine/poke/train.py, the real
                step code) at batch 8: video (autoencoder + both discriminators, the adversarial
                phase), codes (image and poke autoencoders), cinn (NLL, AMSGrad).
  mesh          the shipped face-mesh model on a real face at --full-size: per still (face
                mesh, person, field basis), one sample (draw + projection + frame fields),
                and its 11 frames rendered.
  full res      one sample of 11 frames rendered at the still's resolution (--full-size,
                default 1024 px square), for both spaces of the small model: pixels (the
                generated change upsampled into the still) and motion (issue 5: decoded flows
                warp the still, uncovered pixels inpainted). Sampling included.
The same for the original cINN configuration (CinnConfig.original(): 1.05 B parameters, random
weights; its zero-initialised output layers get small random values so the flows are not the
identity) at batch 1, with our small video decoder behind it: sample K = 1 (and 8 without
--quick) and the cinn train step, when the machine has the memory for it (else the row says
what it would need). Weights are random: time does not depend on their values.
Perceptual loss (VGG-19) is in the video and codes steps when its weights are available.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import types

from pathlib import Path

import torch

from engine.bench import _peak_rss_mb, _ratio, run_forked, summary_line
from engine.poke.cinn import CinnConfig, count_parameters
from engine.poke.model import PokeModel, PokeModelConfig

BATCH = 8
REPO = Path(__file__).resolve().parents[2]
ORIGINAL_BATCH = 1
BYTES = 4  # float32


# --------------------------------------------------------------------------------------------
# Inputs and models


def synthetic_batch(batch: int, size: int = 64, frames: int = 10, seed: int = 0) -> dict:
    """Smooth random clips (a blob drifting over a gradient), pokes and flows of training's
    shapes."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                            indexing="ij")
    colour = torch.rand(batch, 3, 1, 1, generator=generator) * 2 - 1
    clips = []
    for t in range(frames + 1):
        blob = torch.exp(-((xs - 0.3 + 0.04 * t) ** 2 + ys ** 2) * 8)
        clips.append((0.5 * xs + blob * colour).clamp(-1, 1))
    video = torch.stack(clips, dim=1)                               # [B, T, 3, H, W]
    poke = torch.zeros(batch, 2, size, size)
    poke[:, 0, 30:35, 40:45] = 2.5
    flow = torch.zeros(batch, 2, size, size)
    flow[:, 0] = 2.5 * torch.exp(-((xs - 0.3) ** 2 + ys ** 2) * 8)
    return {"video": video, "poke": poke, "flow": flow, "static": torch.zeros(batch, dtype=bool)}


def nudge_zero_layers(module: torch.nn.Module, scale: float = 1e-3, seed: int = 0) -> int:
    """Give parameters that are exactly zero (the flows' zero-initialised output convolutions)
    small random values, so every block really transforms; returns how many tensors."""
    generator = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
                count += 1
    return count


def build_model(cinn: str, space: str = "pixels") -> PokeModel:
    """The small model, or the small video side with the original cINN behind it."""
    config = PokeModelConfig.preset_named("small", space=space)
    if cinn == "original":
        original = CinnConfig.original()
        original.z_channels, original.z_size = config.cinn.z_channels, config.cinn.z_size
        original.cond_channels = config.cinn.cond_channels
        config.cinn = original
    torch.manual_seed(0)
    model = PokeModel(config)
    nudge_zero_layers(model)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Cases (each runs in its own forked process)


def _median_seconds(work, repeat: int) -> float:
    work()  # warm-up: one-off allocations and kernel selection
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample_case(cinn: str, samples: int, repeat: int) -> dict:
    model = build_model(cinn)
    batch = synthetic_batch(1)
    x0, poke = batch["video"][:, 0], batch["poke"]
    c = model.cinn.config
    shape = (samples, c.z_channels, c.z_size, c.z_size)
    timings = {}

    @torch.no_grad()
    def whole():
        h = model.condition(x0, poke).expand(samples, -1, -1, -1)
        z = model.cinn.reverse(torch.randn(shape), h)
        model.video_ae.decode(z, x0.expand(samples, -1, -1, -1))

    @torch.no_grad()
    def cinn_only():
        h = model.condition(x0, poke).expand(samples, -1, -1, -1)
        model.cinn.reverse(torch.randn(shape), h)

    timings["seconds"] = _median_seconds(whole, repeat)
    timings["cinn_seconds"] = _median_seconds(cinn_only, repeat)
    return timings


def full_resolution_case(space: str, side: int, repeat: int) -> dict:
    """Seconds for one sample's 11 frames at side x side: sampling + every frame rendered."""
    import numpy as np

    from engine.poke.sample import clip_frames, sample_clips

    model = build_model("small", space)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    still = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, ramp[::-1]) / 2,
                      np.full((side, side), 128.0)], axis=2).astype(np.uint8)
    poke = [(side * 0.5, side * 0.5, side * 0.05, 0.0)]

    def work():
        result = sample_clips(model, still, poke, samples=1, seed=0)
        for _ in clip_frames(still, result, 0):
            pass

    return {"seconds": _median_seconds(work, repeat), "side": side}


def mesh_case(side: int, repeat: int) -> dict:
    """The shipped face-mesh model (models/poke_mesh.safetensors) on the astronaut at side x
    side: seconds per still (face mesh, person mask, field operator, the code's basis fields),
    per sample (cINN draw, the poke/pin projection, the 8 frames' fields), and the 11 frames
    rendered at full resolution (the backward flows and the renderer)."""
    import cv2
    import numpy as np

    from engine.job import DEFAULT_POKE_MODEL
    from engine.poke.mesh.model import load_mesh_model
    from engine.poke.mesh.sample import MotionSampler, face_scene, render_clip

    path = REPO / "media" / "astronaut.png"
    if not path.is_file() or not DEFAULT_POKE_MODEL.is_file():
        return {"error": "skipped: needs media/astronaut.png (make media) and "
                         "models/poke_mesh.safetensors"}
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return {"error": "skipped: needs mediapipe (requirements/face.txt)"}
    still = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (side, side),
                       interpolation=cv2.INTER_CUBIC)
    model = load_mesh_model(DEFAULT_POKE_MODEL)
    scale = side / 512  # the lower inner lip of the 512-px astronaut, dragged down
    poke = [(223.1 * scale, 149.6 * scale, 0.0, 11.0 * scale)]
    rgb = still.astype(np.float32) / 255
    state = {}

    def per_still():
        state["scene"] = face_scene(still, rgb, poke, None)
        state["sampler"] = MotionSampler(model, state["scene"])

    def per_sample():
        codes = state["sampler"].codes(poke, [], 1, seed=0, temperature=1.0)
        state["fields"] = state["sampler"].frame_fields(codes[0])
        state["landmarks"] = state["sampler"].frame_landmarks(codes[0])

    def frames():  # as a bake renders them: exact inverse on the face, the mouth filled
        for _ in render_clip(state["scene"], state["fields"], 11,
                             landmarks=state["landmarks"]):
            pass

    return {"side": side, "still_seconds": _median_seconds(per_still, repeat),
            "seconds": _median_seconds(per_sample, repeat),
            "render_11_seconds": _median_seconds(frames, repeat)}


def _stand_in_trainer(model: PokeModel, perceptual: bool):
    """What the stages of engine/poke/train.py read from their Trainer, without data sets."""
    from engine.poke.train import Trainer, TrainConfig
    from engine.poke.video_ae import image_autoencoder, poke_autoencoder
    from engine.training import Distributed

    trainer = types.SimpleNamespace()
    trainer.config = TrainConfig(perceptual_weight=10.0 if perceptual else 0.0)
    trainer.device = torch.device("cpu")
    trainer.dist = Distributed(device=trainer.device)
    trainer.model_config = model.config
    trainer.video_ae = model.video_ae
    trainer.image_ae = image_autoencoder(model.config.video)
    trainer.poke_ae = poke_autoencoder(model.config.video)
    trainer.cinn = model.cinn
    trainer._vgg = None
    trainer.perceptual = types.MethodType(Trainer.perceptual, trainer)
    return trainer


class _NoStep:
    """Stands in for an optimiser where its state would not fit: the step keeps its forward,
    backward and gradient clipping, and leaves the weights as they are."""

    def __init__(self, optimiser: torch.optim.Optimizer):
        self.param_groups = [{"lr": group["lr"]} for group in optimiser.param_groups]
        self.parameters = [p for group in optimiser.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def step(self) -> None:
        pass


def train_case(cinn: str, stage: str, batch_size: int, repeat: int, perceptual: bool,
               optimiser_step: bool = True) -> dict:
    from engine.poke.train import CinnStage, CodesStage, VideoStage

    model = build_model(cinn)
    model.train()
    trainer = _stand_in_trainer(model, perceptual)
    stage_type = {"video": VideoStage, "codes": CodesStage, "cinn": CinnStage}[stage]
    runner = stage_type(trainer)
    if not optimiser_step:
        runner.optimisers = {name: _NoStep(o) for name, o in runner.optimisers.items()}
    batch = synthetic_batch(batch_size)
    runner.start(batch)
    # step == total: the video stage is in its adversarial phase (its steady-state cost)
    seconds = _median_seconds(lambda: runner.step(batch, 100, 100), repeat)
    return {"seconds": seconds, "optimiser_step": optimiser_step}


def _available_gb() -> float | None:
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def isolated(function, *args) -> dict:
    """function(*args) in a forked child; its result plus the child's peak RSS (MB)."""
    def measured():
        result = function(*args)
        result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        return result

    status, value = run_forked(measured)
    return value if status == "ok" else {"error": value}


# --------------------------------------------------------------------------------------------
# The report


def run_bench(args, out=print) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    # getattr: `python -m engine bench poke` may hand over its own argparse namespace
    perceptual = (not getattr(args, "no_perceptual", False) and not args.quick
                  and _vgg_available())
    # counted on the meta device: the parent runs no torch kernel before forking the rows
    # (an OpenMP pool started before fork() can hang the children)
    with torch.device("meta"):
        small = PokeModel(PokeModelConfig.preset_named("small")).parameters_by_part()
    small_config = PokeModelConfig.preset_named("small").cinn
    original_config = CinnConfig.original()
    original_config.cond_channels = small_config.cond_channels
    original_params = count_parameters(original_config)
    results = {"engine": "poke", "threads": torch.get_num_threads(), "repeat": repeat,
               "perceptual_in_train_steps": perceptual,
               "parameters": {"small": small, "original_cinn": original_params,
                              "original_with_small_first_stage":
                                  small["total"] - small["cinn"] + original_params},
               "small": {}, "original": {}}
    out(f"poke bench: CPU, {results['threads']} threads, median of {repeat} after a warm-up; "
        "each row in its own process (peak RSS = that row alone); random weights")
    out(f"parameters: small model {small['total'] / 1e6:.1f} M (cINN {small['cinn'] / 1e6:.2f} M)"
        f"; original cINN {original_params / 1e6:.0f} M")
    out(f"{'model':>9} {'what':>15} {'batch':>5} {'seconds':>8} {'cINN s':>7} {'peak MB':>8}")

    def row(model, what, batch, result):
        if "error" in result:
            out(f"{model:>9} {what:>15} {batch:>5}  {result['error']}")
            return
        cinn = result.get("cinn_seconds")
        out(f"{model:>9} {what:>15} {batch:>5} {result['seconds']:8.3f} "
            f"{'' if cinn is None else f'{cinn:7.3f}':>7} {result['peak_rss_mb']:8.0f}")

    for samples in (1, 8):
        result = isolated(sample_case, "small", samples, repeat)
        results["small"][f"sample_{samples}"] = result
        row("small", f"sample {samples} clip{'s' if samples > 1 else ''}", samples, result)
    # `python -m engine bench poke --size N` shares the warp bench's --size
    side = getattr(args, "full_size", None) or getattr(args, "size", None) or 1024
    for space in ("pixels", "motion"):
        result = isolated(full_resolution_case, space, side, repeat)
        results["small"][f"full_resolution_{space}"] = result
        row("small", f"{side}px {space}", 1, result)
    result = isolated(mesh_case, side, repeat)
    results["mesh"] = result
    if "error" in result:
        out(f"{'mesh':>9} {f'{side}px sample':>15} {1:>5}  {result['error']}")
    else:
        out(f"{'mesh':>9} {f'{side}px sample':>15} {1:>5} {result['seconds']:8.3f} "
            f"{'':>7} {result['peak_rss_mb']:8.0f}   (+ {result['still_seconds']:.2f} s per "
            f"still, {result['render_11_seconds']:.2f} s to render 11 frames)")
    for stage in ("video", "codes", "cinn"):
        result = isolated(train_case, "small", stage, BATCH, repeat, perceptual)
        results["small"][f"train_{stage}"] = result
        row("small", f"train {stage}", BATCH, result)

    original_sizes = (1,) if args.quick else (1, 8)
    for samples in original_sizes:
        result = isolated(sample_case, "original", samples, repeat)
        results["original"][f"sample_{samples}"] = result
        row("original", f"sample {samples} clip{'s' if samples > 1 else ''}", samples, result)
    # weights, gradients and AMSGrad's three moment buffers, before any activation; without
    # the optimiser state (forward, backward, clipping) weights and gradients only
    full_gb = original_params * BYTES * 5 / 2 ** 30
    bare_gb = original_params * BYTES * 2 / 2 ** 30
    available = _available_gb()
    if available is None or available > full_gb * 1.2:
        result = isolated(train_case, "original", "cinn", ORIGINAL_BATCH, repeat, False)
    elif available > bare_gb * 1.7:  # measured: peak 1.55x weights + gradients
        out(f"(original cINN train step without the AMSGrad update: its state needs "
            f"{full_gb:.0f} GB in all, {available:.0f} GB are available)")
        result = isolated(train_case, "original", "cinn", ORIGINAL_BATCH, repeat, False, False)
    else:
        result = {"error": f"skipped: a training step of the original cINN holds "
                           f"{full_gb:.0f} GB of weights, gradients and AMSGrad state before "
                           f"activations; this machine has {available:.0f} GB available"}
    results["original"]["train_cinn"] = result
    row("original", "train cinn", ORIGINAL_BATCH, result)

    headline = _headline(results)
    results["headline"] = headline
    for line in headline.values():
        out(line)
    out(json.dumps(results))
    out(_summary(results))
    return results


def _summary(results: dict) -> str:
    small, original = results["small"], results["original"]
    counts = results["parameters"]

    def figure(rows, key, field="seconds"):  # None where the row did not run
        return rows.get(key, {}).get(field)

    return summary_line(
        "poke", small_sample_1_s=figure(small, "sample_1"),
        small_sample_8_s=figure(small, "sample_8"),
        small_train_cinn_s=figure(small, "train_cinn"),
        cinn_parameters_original_over_small=_ratio(counts["original_cinn"],
                                                   counts["small"]["cinn"]),
        cinn_sampling_original_over_small=_ratio(figure(original, "sample_1", "cinn_seconds"),
                                                 figure(small, "sample_1", "cinn_seconds")),
        peak_memory_original_over_small=_ratio(figure(original, "sample_1", "peak_rss_mb"),
                                               figure(small, "sample_1", "peak_rss_mb")))


def _headline(results: dict) -> dict:
    small, original = results["small"], results["original"]
    counts = results["parameters"]
    lines = {"parameters": f"cINN parameters: original / small = "
                           f"{counts['original_cinn'] / counts['small']['cinn']:.0f}x"}
    for key, label in (("sample_1", "1 clip"), ("sample_8", "8 clips")):
        a, b = small.get(key, {}), original.get(key, {})
        if "seconds" in a and "seconds" in b:
            # the decoder is the same small one in both rows: the cINN columns are the model
            lines[key] = (f"sampling {label}: cINN original {b['cinn_seconds']:.2f} s / small "
                          f"{a['cinn_seconds']:.2f} s = "
                          f"{b['cinn_seconds'] / a['cinn_seconds']:.0f}x; whole clip "
                          f"{b['seconds'] / a['seconds']:.1f}x; peak memory "
                          f"{b['peak_rss_mb'] / a['peak_rss_mb']:.0f}x")
    a, b = small.get("train_cinn", {}), original.get("train_cinn", {})
    if "seconds" in a and "seconds" in b:
        bare = "" if b.get("optimiser_step", True) else " (forward + backward, no update)"
        lines["train_cinn"] = (f"cINN train step: original at batch 1{bare} "
                               f"{b['seconds']:.2f} s vs small at batch {BATCH} "
                               f"{a['seconds']:.3f} s = "
                               f"{b['seconds'] * BATCH / a['seconds']:.0f}x per clip")
    return lines


def _vgg_available() -> bool:
    try:
        from engine.vgg import load_vgg19
        load_vgg19()
        return True
    except Exception:  # noqa: BLE001 - any reason means "bench without it", said in the output
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="one run per row, no VGG, the original sampled at K = 1 only")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; median reported")
    parser.add_argument("--no-perceptual", action="store_true",
                        help="train steps without the VGG-19 perceptual loss")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--full-size", type=int, default=1024,
                        help="side of the square still for the full-resolution rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.poke.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run_bench(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
