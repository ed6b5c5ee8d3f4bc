"""One poke model: the video autoencoder, the image and poke encoders and the cINN, with the
settings they were trained with, saved as one safetensors file (engine/checkpoints.py).

    model = PokeModel(PokeModelConfig.preset("small"))
    clips = model.sample(x0, poke, generator=torch.Generator().manual_seed(0))   # [K, 10, 3, 64, 64]

Sizes are presets of the two halves (video_ae.VideoAeConfig, cinn.CinnConfig), so a GPU
setting is a config choice, not a code edit. The discriminators and the code decoders are
training-only and live in train.py's state files, not in the model file an artist loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from engine.checkpoints import CONFIG_KEY, load_weights, read_metadata, save_weights
from engine.errors import JobError
from engine.poke.cinn import CinnConfig, ConditionalInn
from engine.poke.video_ae import (VideoAeConfig, VideoAutoencoder, image_autoencoder,
                                  parameter_count, poke_autoencoder)

ARCHITECTURE = "stillmotion-poke"
PRESETS = ("tiny", "small", "large")


@dataclass
class PokeModelConfig:
    video: VideoAeConfig = field(default_factory=VideoAeConfig.small)
    cinn: CinnConfig = field(default_factory=CinnConfig.small)
    preset: str = "small"
    # How the training clips were made; sampling must see its input the same way.
    stride: int = 1
    face_crop: bool = False
    face_scale: float = 2.2

    @classmethod
    def preset_named(cls, name: str, space: str = "pixels", part_channels: int = 0,
                     **data_fields) -> "PokeModelConfig":
        if name not in PRESETS:
            raise JobError(f"unknown poke model size '{name}'; choose one of {', '.join(PRESETS)}")
        video = replace(VideoAeConfig.preset(name), space=space, part_channels=part_channels)
        cinn = CinnConfig.preset(name)
        cinn.z_channels = video.z_channels
        cinn.z_size = video.latent_size
        cinn.cond_channels = 2 * video.code_channels
        if name == "tiny":  # the tiny cINN preset is built for 4x4 tests; widen it to fit
            cinn.levels, cinn.factor_out = (1, 1), max(1, video.z_channels // 4)
        return cls(video=video, cinn=cinn, preset=name, **data_fields)

    def to_dict(self) -> dict:
        return {"video": self.video.to_dict(), "cinn": self.cinn.to_dict(),
                "preset": self.preset, "stride": self.stride, "face_crop": self.face_crop,
                "face_scale": self.face_scale}

    @classmethod
    def from_dict(cls, data: dict) -> "PokeModelConfig":
        try:
            return cls(video=VideoAeConfig.from_dict(data["video"]),
                       cinn=CinnConfig.from_dict(data["cinn"]), preset=data.get("preset", "?"),
                       stride=int(data.get("stride", 1)),
                       face_crop=bool(data.get("face_crop", False)),
                       face_scale=float(data.get("face_scale", 2.2)))
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"the poke model's config is unreadable ({exc}); the file comes from "
                           "another version of StillMotion: retrain it") from None


class PokeModel(nn.Module):
    """What sampling needs (plus the video encoder, for held-out bits/dim and kinematics
    transfer): video autoencoder, image encoder, poke encoder, cINN."""

    def __init__(self, config: PokeModelConfig | None = None):
        super().__init__()
        self.config = config = config or PokeModelConfig.preset_named("small")
        self.video_ae = VideoAutoencoder(config.video)
        self.image_encoder = image_autoencoder(config.video).encoder
        self.poke_encoder = poke_autoencoder(config.video).encoder
        self.cinn = ConditionalInn(config.cinn)

    @property
    def size(self) -> int:
        return self.config.video.resolution

    def condition(self, x0: torch.Tensor, poke: torch.Tensor,
                  parts: torch.Tensor | None = None) -> torch.Tensor:
        """x0 [B, 3, 64, 64] in [-1, 1], poke [B, 2, 64, 64] (and for models trained with
        --parts x0's part layout [B, 7, 64, 64]; None: no face found) -> h [B, 128, 8, 8]."""
        return condition_codes(self.image_encoder, self.poke_encoder, x0, poke, parts)

    @torch.no_grad()
    def sample(self, x0: torch.Tensor, poke: torch.Tensor, samples: int = 1,
               generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> torch.Tensor:
        """`samples` clips for one x0 [1, 3, H, W] and poke [1, 2, H, W]: [K, 10, 3, H, W] in
        [-1, 1] (x0 itself is not regenerated), or for a motion-space model the forward flows
        x0 -> x_t [K, 10, 2, H, W] (engine/poke/motion.py renders them). The same generator
        seed gives the same clips."""
        if x0.shape[0] != 1 or poke.shape[0] != 1:
            raise ValueError("sample() takes one image and one poke map; it repeats them itself")
        h = self.condition(x0, poke).expand(samples, -1, -1, -1)
        z = self.cinn.sample(h, generator=generator, temperature=temperature)
        return self.video_ae.decode(z, x0.expand(samples, -1, -1, -1))

    def parameters_by_part(self) -> dict[str, int]:
        parts = {"video_encoder": parameter_count(self.video_ae.encoder),
                 "video_decoder": parameter_count(self.video_ae.decoder),
                 "image_encoder": parameter_count(self.image_encoder),
                 "poke_encoder": parameter_count(self.poke_encoder),
                 "cinn": parameter_count(self.cinn)}
        parts["total"] = sum(parts.values())
        return parts


def image_input(encoder: nn.Module, x0: torch.Tensor, parts: torch.Tensor | None
                ) -> torch.Tensor:
    """What an image encoder reads: x0, with the part layout when it was built for one (zeros
    stand for "no face found", as for training frames without a face)."""
    wanted = encoder.stem.in_channels - 3
    if wanted == 0:
        return x0
    if parts is None:
        parts = x0.new_zeros(x0.shape[0], wanted, *x0.shape[-2:])
    if parts.shape[1] != wanted:
        raise ValueError(f"the image encoder reads {wanted} part channels, got {parts.shape[1]}")
    return torch.cat([x0, parts.to(x0.dtype)], dim=1)


def condition_codes(image_encoder: nn.Module, poke_encoder: nn.Module, x0: torch.Tensor,
                    poke: torch.Tensor, parts: torch.Tensor | None = None) -> torch.Tensor:
    """The cINN's condition: image code and poke code side by side [B, 128, 8, 8]."""
    return torch.cat([image_encoder(image_input(image_encoder, x0, parts)),
                      poke_encoder(poke)], dim=1)


def save_model(path: str | os.PathLike, model: PokeModel, metadata: dict | None = None,
               half: bool = False) -> Path:
    """The model file an artist loads: weights + config (+ training facts for the model card).
    half: float tensors stored as float16 (half the file; loading casts them back to float32,
    so the stored model is exactly what is evaluated and sampled)."""
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return save_weights(path, state, architecture=ARCHITECTURE, config=model.config.to_dict(),
                        metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> PokeModel:
    """Build the model the file's config describes and load it (shapes checked per tensor)."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("stillmotion.architecture") != ARCHITECTURE:
        found = meta.get("stillmotion.architecture", "no architecture tag")
        raise JobError(f"{path.name} is not a StillMotion poke model ({found}); pick a file "
                       "made by `python -m engine train-poke`")
    model = PokeModel(PokeModelConfig.from_dict(meta.get(CONFIG_KEY) or {}))
    load_weights(path, model, architecture=ARCHITECTURE)
    return model.to(device).eval()


def model_facts(path: str | os.PathLike) -> dict:
    """The training facts stored in the header (data, steps, metrics), for panels and cards."""
    meta = read_metadata(path)
    return {k: v for k, v in meta.items() if not k.startswith("stillmotion.")}
