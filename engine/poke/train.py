"""Training a poke model from video files: `python -m engine train-poke VIDEO ... --out M`.

Three stages, as the original iPOKE (docs/ARCHITECTURE.md), each resumable:

  video   video autoencoder: 10 L1 + 10 VGG-19 perceptual + 1e-7 KL, plus a temporal (3D) and a
          spatial (2D) patch discriminator: hinge, feature matching on the temporal one, R1 on
          real clips. Adam 2e-4, betas (0.5, 0.9), x0.98 per epoch.
  codes   image autoencoder (x0 -> code -> x0; L1 + perceptual) and poke autoencoder
          (poke -> code -> dense flow; L1), each with a learned variance. Adam 2e-4 / 1e-3.
  cinn    cINN on z = mu(clip) given cat(image code, poke code), both frozen: negative
          log-likelihood in bits/dim; AMSGrad 1e-3, linear warm-up then linear decay to 0.

The held-out split is the last 20 % of every video by time (engine/poke/data.py). After every
epoch the held-out metrics are logged: video PSNR/SSIM (stage video), image PSNR and flow
end-point error (codes), bits/dim (cinn). State files go into the run folder (default: next to
--out) after every epoch and when the time budget ends, so the same command continues a run.

Budget: with --max-minutes the stages share the time (--stage-share, default 50/15/35 %); a
stage's schedules (cINN warm-up and decay, when the discriminators join) run on the fraction of
its time spent, so they end where the time does however busy the machine gets. Under `torchrun --nproc_per_node=N` every process takes its share of
every batch (DistributedSampler) and rank 0 writes; see engine/training.py.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import Cancelled, JobError
from engine.poke import losses as L
from engine.poke.data import DataConfig, PokeClipDataset, config_dict
from engine.poke.model import (PokeModel, PokeModelConfig, condition_codes, image_input,
                               save_model)
from engine.poke.motion import warp_with_motion
from engine.poke.video_ae import (SpatialDiscriminator, TemporalDiscriminator,
                                  VideoAutoencoder, image_autoencoder, poke_autoencoder)
from engine.poke.cinn import ConditionalInn
from engine.progress import Progress
from engine.training import (Budget, Distributed, ProgressLine, load_state, save_state, unwrap,
                             warmup_linear_decay)

STAGES = ("video", "codes", "cinn")


@dataclass
class TrainConfig:
    preset: str = "small"
    space: str = "pixels"           # what the video autoencoder encodes: pixels or motion
    parts: bool = False             # facial-part layout as a condition, pokes per part
    batch: int = 8
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    max_minutes: float | None = None
    stage_share: tuple[float, float, float] = (0.5, 0.15, 0.35)
    steps: dict[str, int] = field(default_factory=dict)   # fixed steps per stage (else budget)
    default_steps: dict[str, int] = field(default_factory=lambda: {
        "video": 20000, "codes": 4000, "cinn": 20000})
    epoch_batches: int = 200        # an "epoch" is at most this many batches (original: 2000)
    val_batches: int = 8
    lr_video: float = 2e-4
    lr_image: float = 2e-4
    lr_poke: float = 1e-3
    lr_cinn: float = 1e-3
    cinn_warmup: int = 500
    perceptual_weight: float = 10.0  # 0: no VGG (no weights needed)
    adversarial_after: float = 0.3   # fraction of the video stage trained without the GANs
    grad_clip: float = 10.0
    bf16: bool = False              # autocast the video and code stages (CPU AMX / GPU); the
                                    # cINN stays float32: its log-determinant needs the bits
    workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)


# --- the loop every stage shares ----------------------------------------------------------------

class Stage:
    """One resumable optimisation: subclasses build modules/optimisers, a step and a validation."""

    name = ""

    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self.modules: dict[str, torch.nn.Module] = {}
        self.optimisers: dict[str, torch.optim.Optimizer] = {}

    def start(self, first_batch: dict) -> None:
        """Anything that needs data before training (ActNorm initialisation)."""

    def step(self, batch: dict, step: int, total: int) -> dict[str, float]:
        raise NotImplementedError

    def autocast(self):
        device = self.t.device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.t.config.bf16)

    @torch.no_grad()
    def validate(self, batches: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        pass


class Trainer:
    def __init__(self, videos: list[str], out: str | Path, config: TrainConfig,
                 progress: Progress, run_dir: str | Path | None = None,
                 device: torch.device | str = "cpu", vgg=None, restart: bool = False):
        self.config = config
        self.out = Path(out)
        self.run_dir = Path(run_dir) if run_dir else self.out.with_name(self.out.stem + "_run")
        self.progress = progress
        self.videos = [str(v) for v in videos]
        self.dist = Distributed.from_env(torch.device(device))
        self.device = self.dist.device
        self.restart = restart
        self._vgg = vgg
        self.budget = Budget(config.max_minutes)
        torch.manual_seed(config.seed + self.dist.rank)
        from engine.face.parts import PART_NAMES

        model_config = PokeModelConfig.preset_named(
            config.preset, space=config.space,
            part_channels=len(PART_NAMES) if config.parts else 0, stride=config.data.stride,
            face_crop=config.data.face_crop, face_scale=config.data.face_scale)
        # the motion-space autoencoder reads every frame's flow (so do per-part pokes)
        config.data.motion = config.space == "motion" or config.parts
        config.data.parts = config.parts
        if config.data.size != model_config.video.resolution:
            raise JobError(f"clips are {config.data.size} px but the '{config.preset}' model "
                           f"works at {model_config.video.resolution} px")
        self.model_config = model_config
        self.train_set = PokeClipDataset(self.videos, "train", config.data, seed=config.seed)
        self.val_set = PokeClipDataset(self.videos, "val", config.data, seed=config.seed)
        self.metrics: dict[str, dict[str, float]] = {}
        self.steps_done: dict[str, int] = {}
        self.stage_seconds: dict[str, float] = {}
        # every network, so later stages and the final model see the earlier stages' weights
        video = model_config.video
        self.video_ae = VideoAutoencoder(video).to(self.device)
        self.image_ae = image_autoencoder(video).to(self.device)
        self.poke_ae = poke_autoencoder(video).to(self.device)
        self.cinn = ConditionalInn(model_config.cinn).to(self.device)

    # data
    def loader(self, dataset, shuffle: bool, epoch: int = 0):
        sampler = self.dist.sampler(dataset, shuffle, self.config.seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
        per_process = max(1, self.config.batch // self.dist.world_size)
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        return torch.utils.data.DataLoader(
            dataset, batch_size=per_process, shuffle=shuffle and sampler is None,
            sampler=sampler, num_workers=self.config.workers, drop_last=shuffle,
            generator=generator)

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def val_batches(self) -> list[dict]:
        batches = []
        for batch in self.loader(self.val_set, shuffle=False):
            batches.append(self.to_device(batch))
            if len(batches) >= self.config.val_batches:
                break
        return batches

    def perceptual(self) -> L.PerceptualLoss | None:
        if self.config.perceptual_weight <= 0:
            return None
        if self._vgg is None:
            from engine.vgg import load_vgg19
            self._vgg = load_vgg19(device=self.device)
        return L.PerceptualLoss(self._vgg).to(self.device)

    # budget
    def stage_budget(self, name: str) -> float | None:
        """Seconds this stage may use: its share of what is left for it and the later ones."""
        if self.budget.seconds is None:
            return None
        left = self.budget.seconds - self.budget.elapsed()
        remaining = [s for s in self.config.stages if STAGES.index(s) >= STAGES.index(name)]
        shares = dict(zip(STAGES, self.config.stage_share))
        total = sum(shares[s] for s in remaining)
        return max(0.0, left * shares[name] / total)

    def emit(self, record: dict) -> None:
        if self.dist.is_main:
            self.progress.emit("train", **record)

    # the loop
    def run_stage(self, stage: Stage) -> None:
        name, config = stage.name, self.config
        state_path = self.run_dir / f"stage_{name}.safetensors"
        counters = {"step": 0, "epoch": 0, "total": 0, "done": False, "seconds": 0.0}
        if state_path.exists() and not self.restart:
            counters = load_state(state_path, modules=stage.modules,
                                  optimisers=stage.optimisers)
            self.emit({"stage_name": name, "resumed_at": counters["step"],
                       "of": counters["total"]})
        if counters["done"]:
            self.metrics[name] = counters.get("metrics", {})
            self.steps_done[name] = counters["step"]
            self.stage_seconds[name] = counters["seconds"]
            return
        budget_s = self.stage_budget(name)
        # With a time budget (and no fixed step count) the schedules follow the time: `total`
        # is re-estimated every step from the speed so far, so a machine that gets busier or
        # quieter mid-run still ends its learning-rate schedule when the budget ends.
        time_based = counters.get("time_based", False) if counters["total"] else (
            budget_s is not None and name not in config.steps)
        total = counters["total"] or config.steps.get(name) or config.default_steps[name]
        started = time.monotonic()
        seconds_before = counters["seconds"]
        line = ProgressLine(f"train-poke {name}", total) if self.dist.is_main else None
        step, epoch = counters["step"], counters["epoch"]
        val = self.val_batches()
        first = True
        stop = False
        fraction = 0.0

        def time_fraction() -> float:
            spent = seconds_before + time.monotonic() - started
            return spent / max(1e-6, seconds_before + (budget_s or 0.0))

        while not stop:
            unwrap_modules = [unwrap(m) for m in stage.modules.values()]
            for module in unwrap_modules:
                module.train()
            for index, batch in enumerate(self.loader(self.train_set, True, epoch)):
                if index >= config.epoch_batches:
                    break
                batch = self.to_device(batch)
                if first and step == 0:
                    stage.start(batch)
                first = False
                if time_based:
                    fraction = time_fraction()
                    if step >= 3 and fraction > 0.01:
                        total = max(step + 1, int(round(step / fraction)))
                        if line:
                            line.total = total
                values = stage.step(batch, step, total)
                step += 1
                if line:
                    line.update(step, values)
                if step % 25 == 0:
                    self.emit({"stage_name": name, "done": step, "total": total,
                               **{k: round(v, 5) for k, v in self.dist.mean(values).items()}})
                if time_based:
                    finished = time_fraction() >= 1.0
                else:
                    finished = step >= total
                if self.dist.any(finished):
                    stop = True
                    break
            epoch += 1
            stage.end_epoch(epoch)
            metrics = self.dist.mean(stage.validate(val))
            for module in unwrap_modules:
                module.train()
            self.emit({"stage_name": name, "epoch": epoch, "step": step,
                       "val": {k: round(v, 5) for k, v in metrics.items()}})
            counters = {"step": step, "epoch": epoch, "total": total, "done": stop,
                        "seconds": seconds_before + time.monotonic() - started,
                        "metrics": metrics, "time_based": time_based}
            if self.dist.is_main:
                save_state(state_path, modules=stage.modules, optimisers=stage.optimisers,
                           counters=counters, config=asdict_config(config))
            self.dist.barrier()
        if line:
            line.close()
        self.metrics[name] = counters["metrics"]
        self.steps_done[name] = step
        self.stage_seconds[name] = counters["seconds"]

    def train(self) -> Path:
        stage_types = {"video": VideoStage, "codes": CodesStage, "cinn": CinnStage}
        for name in STAGES:
            stage = stage_types[name](self)
            if name in self.config.stages:
                self.run_stage(stage)
            else:
                self.load_finished(stage)
        return self.save()

    def load_finished(self, stage: Stage) -> None:
        """A stage not asked for this time: its weights come from an earlier run."""
        path = self.run_dir / f"stage_{stage.name}.safetensors"
        if not path.exists():
            raise JobError(f"stage '{stage.name}' has never run in {self.run_dir}; run it "
                           "too (--stages all) or point --run-dir at the folder that has it")
        counters = load_state(path, modules=stage.modules, optimisers={})
        if not counters.get("done"):
            self.progress.warning(f"stage '{stage.name}' in {self.run_dir} stopped before its "
                                  "end; its weights are used as they are")
        self.metrics[stage.name] = counters.get("metrics", {})
        self.steps_done[stage.name] = counters["step"]
        self.stage_seconds[stage.name] = counters["seconds"]

    def save(self) -> Path:
        model = PokeModel(self.model_config)
        model.video_ae.load_state_dict(unwrap(self.video_ae).state_dict())
        model.image_encoder.load_state_dict(unwrap(self.image_ae).encoder.state_dict())
        model.poke_encoder.load_state_dict(unwrap(self.poke_ae).encoder.state_dict())
        model.cinn.load_state_dict(unwrap(self.cinn).state_dict())
        facts = {"videos": json.dumps([Path(v).name for v in self.videos]),
                 "data": json.dumps(config_dict(self.config.data)),
                 "steps": json.dumps(self.steps_done),
                 "stage_seconds": json.dumps({k: round(v) for k, v in self.stage_seconds.items()}),
                 "held_out": json.dumps(self.metrics),
                 "parameters": json.dumps(model.parameters_by_part()),
                 "train_clips": str(len(self.train_set)), "held_out_clips": str(len(self.val_set))}
        if self.dist.is_main:
            save_model(self.out, model, metadata=facts)
            self.progress.emit("saved", path=str(self.out), steps=self.steps_done,
                               held_out=self.metrics)
        self.dist.barrier()
        return self.out


def asdict_config(config: TrainConfig) -> dict:
    values = asdict(config)
    values["data"] = config_dict(config.data)
    return values


# --- the stages ---------------------------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def clip_ssim(recon: torch.Tensor, target: torch.Tensor, limit: int = 32) -> float:
    from engine.metrics import ssim

    frames_a = ((recon.flatten(0, 1)[:limit] + 1) * 0.5).clamp(0, 1)
    frames_b = ((target.flatten(0, 1)[:limit] + 1) * 0.5).clamp(0, 1)
    values = [ssim(a.permute(1, 2, 0).cpu().numpy(), b.permute(1, 2, 0).cpu().numpy())
              for a, b in zip(frames_a, frames_b)]
    return float(np.mean(values))


def flow_epe(recon: torch.Tensor, target: torch.Tensor) -> float:
    """Mean end-point error of flows [..., 2, H, W], in their own pixels."""
    return float((recon.float() - target.float()).square().sum(-3).sqrt().mean())


def _adam(params, lr, betas=(0.9, 0.999), weight_decay=0.0, amsgrad=False):
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay,
                            amsgrad=amsgrad)


class VideoStage(Stage):
    name = "video"

    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        t, video = trainer, trainer.model_config.video
        c = t.config
        betas, wd = (0.5, 0.9), 1e-5
        self.motion = video.space == "motion"
        self.ae = t.dist.wrap(t.video_ae)
        self.modules = {"video_ae": t.video_ae}
        self.optimisers = {"ae": _adam(t.video_ae.parameters(), c.lr_video, betas, wd)}
        self.weights = L.VideoAeLossWeights(perceptual=c.perceptual_weight)
        self.perceptual = None
        if self.motion:
            return  # flows: L1 + KL only; the discriminators and VGG judge pixels
        self.spatial = SpatialDiscriminator(video).to(t.device)
        self.temporal = TemporalDiscriminator(video).to(t.device)
        self.d_spatial = t.dist.wrap(self.spatial)
        self.d_temporal = t.dist.wrap(self.temporal)
        self.modules.update(spatial=self.spatial, temporal=self.temporal)
        self.optimisers["discriminators"] = _adam(
            list(self.spatial.parameters()) + list(self.temporal.parameters()), c.lr_video,
            betas, wd)
        self.perceptual = t.perceptual() if "video" in c.stages else None

    def end_epoch(self, epoch: int) -> None:
        for optimiser in self.optimisers.values():
            for group in optimiser.param_groups:
                group["lr"] = self.t.config.lr_video * 0.98 ** epoch

    def step(self, batch, step, total):
        if self.motion:
            return self._motion_step(batch)
        clip = batch["video"]
        target = clip[:, 1:]
        with self.autocast():
            out = self.ae(clip)
            loss, parts = L.video_ae_reconstruction_loss(out.recon, target, out.mu, out.logvar,
                                                         self.weights, self.perceptual)
        adversarial = step >= self.t.config.adversarial_after * total
        fake = torch.cat([clip[:, :1], out.recon.float()], dim=1)
        if adversarial:
            # generator side through the plain modules: their gradients are thrown away
            logits, features = self.temporal(torch.cat([fake, clip]))
            fake_logits, fake_features = logits[:len(clip)], [f[:len(clip)] for f in features]
            real_features = [f[len(clip):] for f in features]
            spatial_logits, _ = self.spatial(fake[:, 1:])
            g_temporal = L.hinge_generator_loss(fake_logits)
            g_spatial = L.hinge_generator_loss(spatial_logits)
            matching = L.feature_matching_loss(fake_features, real_features)
            w = self.weights
            loss = loss + (w.temporal_adversarial * g_temporal
                           + w.spatial_adversarial * g_spatial + w.feature_matching * matching)
            parts.update(g_temporal=g_temporal.item(), g_spatial=g_spatial.item(),
                         matching=matching.item())
        optimiser = self.optimisers["ae"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.t.video_ae.parameters(), self.t.config.grad_clip)
        optimiser.step()
        if adversarial:
            parts.update(self._discriminator_step(clip, fake.detach()))
        parts["loss"] = loss.item()
        return parts

    def _motion_step(self, batch):
        with self.autocast():
            out = self.ae(batch["video"], motion=batch["motion"])
        loss, parts = L.motion_ae_loss(out.recon.float(), batch["motion"], out.mu, out.logvar,
                                       self.t.model_config.video.flow_scale, self.weights)
        optimiser = self.optimisers["ae"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.t.video_ae.parameters(), self.t.config.grad_clip)
        optimiser.step()
        parts["loss"] = loss.item()
        return parts

    def _discriminator_step(self, clip, fake):
        w = self.weights
        real = clip.detach().requires_grad_(True)
        logits, _ = self.d_temporal(torch.cat([real, fake]))
        real_logits, fake_logits = logits[:len(clip)], logits[len(clip):]
        d_temporal = L.hinge_discriminator_loss(real_logits, fake_logits)
        r1 = L.r1_penalty(real_logits, real)
        frames_real = clip[:, 1:].flatten(0, 1)
        frames_fake = fake[:, 1:].flatten(0, 1)
        pick = torch.randperm(len(frames_real), device=clip.device)[:16]
        s_logits, _ = self.d_spatial(torch.cat([frames_real[pick], frames_fake[pick]]))
        d_spatial = L.hinge_discriminator_loss(s_logits[:len(pick)], s_logits[len(pick):])
        loss = d_temporal + d_spatial + w.r1 * r1
        optimiser = self.optimisers["discriminators"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return {"d_temporal": d_temporal.item(), "d_spatial": d_spatial.item(), "r1": r1.item()}

    @torch.no_grad()
    def validate(self, batches):
        """PSNR/SSIM of the reconstructed frames (motion space: x0 carried along the decoded
        flows, so the two spaces compare on the same pixels) and, in motion space, the flows'
        end-point error."""
        ae = self.t.video_ae.eval()
        psnrs, ssims, errors = [], [], []
        for batch in batches:
            clip = batch["video"]
            out = ae(clip, sample=False, motion=batch.get("motion"))
            recon = out.recon
            if self.motion:
                errors.append(flow_epe(recon, batch["motion"]))
                recon = warp_with_motion(clip[:, 0], recon)
            psnrs.append(psnr(recon, clip[:, 1:]))
            ssims.append(clip_ssim(recon, clip[:, 1:]))
        metrics = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}
        if errors:
            metrics["motion_epe"] = float(np.mean(errors))
        return metrics


class CodesStage(Stage):
    name = "codes"

    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        t, c = trainer, trainer.config
        self.image = t.dist.wrap(t.image_ae)
        self.poke = t.dist.wrap(t.poke_ae)
        self.modules = {"image_ae": t.image_ae, "poke_ae": t.poke_ae}
        self.optimisers = {"image": _adam(t.image_ae.parameters(), c.lr_image),
                           "poke": _adam(t.poke_ae.parameters(), c.lr_poke)}
        self.perceptual = t.perceptual() if "codes" in c.stages else None
        # perceptual distance is ~1 per layer (losses.PerceptualLoss), L1 ~0.1: weight 1
        self.perceptual_weight = 1.0 if self.perceptual is not None else 0.0

    def step(self, batch, step, total):
        x0 = batch["video"][:, 0]
        with self.autocast():
            image_recon = self.image(image_input(unwrap(self.image).encoder, x0,
                                                 batch.get("parts")))
            image_loss, image_parts = L.code_autoencoder_loss(
                image_recon, x0, unwrap(self.image).logvar, perceptual=self.perceptual,
                perceptual_weight=self.perceptual_weight)
            flow_recon = self.poke(batch["poke"])
            poke_loss, poke_parts = L.code_autoencoder_loss(flow_recon.float(), batch["flow"],
                                                            unwrap(self.poke).logvar)
        for name, loss, module in (("image", image_loss, self.t.image_ae),
                                   ("poke", poke_loss, self.t.poke_ae)):
            optimiser = self.optimisers[name]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.t.config.grad_clip)
            optimiser.step()
        return {"image_l1": image_parts["l1"], "flow_l1": poke_parts["l1"],
                "image_loss": image_loss.item(), "poke_loss": poke_loss.item()}

    @torch.no_grad()
    def validate(self, batches):
        image, poke = self.t.image_ae.eval(), self.t.poke_ae.eval()
        psnrs, epes = [], []
        for batch in batches:
            x0 = batch["video"][:, 0]
            psnrs.append(psnr(image(image_input(image.encoder, x0, batch.get("parts"))), x0))
            error = (poke(batch["poke"]) - batch["flow"]).square().sum(1).sqrt()
            epes.append(error.mean().item())
        return {"image_psnr": float(np.mean(psnrs)), "flow_epe": float(np.mean(epes))}


class CinnStage(Stage):
    name = "cinn"

    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        t, c = trainer, trainer.config
        self.flow = t.cinn
        self.modules = {"cinn": t.cinn}
        self.optimisers = {"cinn": _adam(t.cinn.parameters(), c.lr_cinn, weight_decay=1e-5,
                                         amsgrad=True)}
        self.wrapped = None
        self.skipped = 0  # steps left out because their loss or gradient was not finite

    @torch.no_grad()
    def inputs(self, batch):
        """z = mu of the clip and the condition, from the frozen first-stage networks."""
        t = self.t
        video_ae, image_ae, poke_ae = (t.video_ae.eval(), t.image_ae.eval(), t.poke_ae.eval())
        motion_space = t.model_config.video.space == "motion"
        mu, _ = video_ae.encode(batch["motion"] if motion_space else batch["video"])
        x0 = batch["video"][:, 0]
        cond = condition_codes(image_ae.encoder, poke_ae.encoder, x0, batch["poke"],
                               batch.get("parts"))
        return mu, cond

    def start(self, first_batch):
        # ActNorm's data-dependent initialisation, before DDP broadcasts rank 0's values
        z, cond = self.inputs(first_batch)
        self.flow.train()
        with torch.no_grad():
            self.flow(z, cond)
        self.wrapped = self.t.dist.wrap(self.flow)

    def step(self, batch, step, total):
        if self.wrapped is None:  # resumed: ActNorm values come from the state file
            self.wrapped = self.t.dist.wrap(self.flow)
        c = self.t.config
        factor = warmup_linear_decay(step, min(c.cinn_warmup, max(1, total // 10)), total)
        optimiser = self.optimisers["cinn"]
        for group in optimiser.param_groups:
            group["lr"] = c.lr_cinn * factor
        z, cond = self.inputs(batch)
        r, logdet = self.wrapped(z, cond)
        dims = z[0].numel()
        nll = 0.5 * r.flatten(1).pow(2).sum(1) - logdet
        loss = nll.mean() / dims  # nats per dimension: the same scale at any latent size
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), c.grad_clip)
        # A batch whose likelihood or gradient overflows (a rare clip far from the rest: seen
        # on Megamind's large motions) is skipped: one such step would write NaN into every
        # weight, and the rest of the run would train nothing.
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(norm))
        if finite:
            optimiser.step()
        else:
            optimiser.zero_grad(set_to_none=True)
            self.skipped += 1
        bits = (loss.item() + 0.5 * math.log(2 * math.pi)) / math.log(2.0)
        return {"bits_per_dim": bits if finite else float("nan"), "lr": c.lr_cinn * factor,
                "skipped": float(self.skipped)}

    @torch.no_grad()
    def validate(self, batches):
        self.flow.eval()
        values = []
        for batch in batches:
            z, cond = self.inputs(batch)
            values.append(self.flow.bits_per_dim(z, cond).mean().item())
        return {"bits_per_dim": float(np.mean(values))}


# --- command ------------------------------------------------------------------------------------

def parse_stages(text: str) -> tuple[str, ...]:
    if text == "all":
        return STAGES
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise JobError(f"unknown stage '{unknown[0] if unknown else text}'; use all or a comma "
                       f"list of {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in stages)


def parse_stage_share(text: str) -> tuple[float, float, float]:
    try:
        shares = tuple(float(v) for v in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise JobError(f"--stage-share takes three fractions for video,codes,cinn (for example "
                       f"0.5,0.15,0.35), got '{text}'")
    return shares


def run(args, progress: Progress) -> int:
    """The `train-poke` subcommand."""
    from engine.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    data = DataConfig(stride=args.stride, face_crop=args.face_crop, cache_dir=args.cache_dir,
                      held_out=args.held_out)
    steps = {}
    for item in args.steps or []:
        name, _, count = item.partition("=")
        if name not in STAGES or not count.isdigit():
            raise JobError(f"--steps takes STAGE=N (stages: {', '.join(STAGES)}), got '{item}'")
        steps[name] = int(count)
    config = TrainConfig(preset=args.size, space=args.space, parts=args.parts, batch=args.batch,
                         seed=args.seed,
                         stages=parse_stages(args.stages), max_minutes=args.max_minutes,
                         steps=steps, perceptual_weight=args.perceptual_weight,
                         workers=args.workers, bf16=args.bf16, data=data,
                         stage_share=parse_stage_share(args.stage_share),
                         adversarial_after=args.adversarial_after)
    if args.epoch_batches:
        config.epoch_batches = args.epoch_batches
    trainer = Trainer(args.videos, args.out, config, progress, run_dir=args.run_dir,
                      device=resolve_device(args.device), restart=args.restart)
    try:
        trainer.train()
    finally:
        trainer.dist.close()
    return 0
