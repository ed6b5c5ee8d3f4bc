"""MSOE: the dynamics stream of two-stream dynamic texture synthesis (Tesfaldet et al. 2018).

Multi-scale spacetime-oriented energy of a greyscale frame pair, read top to bottom in the
order data flows (shared/research/dst.md, section 1):

    pair [N, 2, H, W] in [0, 1]
      -> contrast normalisation over the pair
      -> 5-level Gaussian pyramid (5x5, sigma 2, stride 2)
      -> per level, shared weights: 32 filters 11x11 over the 2 frames, square (energy),
         5x5 max-pool stride 1, 1x1 conv to 64, channel-wise L1 normalisation
      -> each level upsampled to H x W, concatenated -> features [N, 320, H, W]  (Grams use this)
      -> flow decoder (training only): [N, 2, H, W], (dx, dy) pixels per frame, the same
         convention as engine.flow.dis_flow (content at p in frame a is at p + flow in frame b)

Weights: models/msoe.safetensors (model card models/msoe.md), trained by
engine/dyntex/train_msoe.py. `load_msoe()` gives the shipped network.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.errors import JobError

ARCHITECTURE = "msoe"
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "msoe.safetensors"
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # the weights of engine.flow.to_grey (OpenCV RGB2GRAY)


@dataclass
class MsoeConfig:
    levels: int = 5            # pyramid scales, one shared MsoeLevel
    filters: int = 32          # spacetime-oriented filters (conv over space, 2 frames as channels)
    kernel: int = 11           # filter side
    pool: int = 5              # max-pool window, stride 1
    channels: int = 64         # per-level output channels -> features = levels * channels
    blur_size: int = 5         # pyramid Gaussian
    blur_sigma: float = 2.0
    decoder_hidden: int = 64   # flow decoder widths (training head; optional at load)
    decoder_mid: int = 32
    eps: float = 1e-12         # contrast and L1 normalisation

    @property
    def feature_channels(self) -> int:
        return self.levels * self.channels

    @property
    def min_size(self) -> int:
        """Smallest H or W: the coarsest level keeps at least 2 pixels."""
        return 2 ** self.levels


def contrast_normalise(pair: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Zero mean, unit std over each sample's two frames (invariant to brightness/contrast)."""
    mean = pair.mean(dim=(1, 2, 3), keepdim=True)
    std = pair.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (pair - mean) / (std + eps)


class GaussianPyramid(nn.Module):
    """Blur (5x5 Gaussian, replicate padding) and keep every second pixel, levels - 1 times."""

    def __init__(self, config: MsoeConfig):
        super().__init__()
        half = config.blur_size // 2
        x = torch.arange(config.blur_size, dtype=torch.float32) - half
        g = torch.exp(-x ** 2 / (2 * config.blur_sigma ** 2))
        g = g / g.sum()
        self.register_buffer("kernel", (g[:, None] * g[None, :])[None, None], persistent=False)
        self.levels = config.levels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        n, c, h, w = x.shape
        out = [x]
        pad = self.kernel.shape[-1] // 2
        for _ in range(self.levels - 1):
            x = F.pad(x.reshape(n * c, 1, *x.shape[-2:]), (pad,) * 4, mode="replicate")
            x = F.conv2d(x, self.kernel, stride=2)
            x = x.reshape(n, c, *x.shape[-2:])
            out.append(x)
        return out


class MsoeLevel(nn.Module):
    """One scale: oriented filters -> energy -> max-pool -> 1x1 -> channel L1 normalisation."""

    def __init__(self, config: MsoeConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(2, config.filters, config.kernel)  # 11x11 x 2 frames
        self.conv2 = nn.Conv2d(config.filters, config.channels, 1)
        self.pad = config.kernel // 2
        self.pool = config.pool
        self.eps = config.eps

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        x = F.pad(pair, (self.pad,) * 4, mode="replicate")
        x = self.conv1(x) ** 2
        x = F.max_pool2d(x, self.pool, stride=1, padding=self.pool // 2)
        x = self.conv2(x)
        return x / x.abs().sum(dim=1, keepdim=True).clamp_min(self.eps)


class FlowDecoder(nn.Module):
    """320 feature channels -> (dx, dy). Used to train MSOE; synthesis needs only features."""

    def __init__(self, config: MsoeConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(config.feature_channels, config.decoder_hidden, 1)
        self.conv2 = nn.Conv2d(config.decoder_hidden, config.decoder_mid, 3)
        self.conv3 = nn.Conv2d(config.decoder_mid, 2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(features))
        x = F.relu(self.conv2(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        return self.conv3(x)


class MsoeNet(nn.Module):
    """features(pair) -> [N, 320, H, W]; flow(pair) -> [N, 2, H, W] (needs the decoder)."""

    def __init__(self, config: MsoeConfig | None = None, decoder: bool = True):
        super().__init__()
        self.config = config or MsoeConfig()
        self.pyramid = GaussianPyramid(self.config)
        self.level = MsoeLevel(self.config)  # one module: every scale shares its weights
        self.decoder = FlowDecoder(self.config) if decoder else None

    def check_input(self, pair: torch.Tensor) -> None:
        if pair.ndim != 4 or pair.shape[1] != 2:
            raise JobError(f"MSOE takes greyscale frame pairs shaped [N, 2, H, W], got "
                           f"{list(pair.shape)}")
        h, w = pair.shape[-2:]
        least = self.config.min_size
        if h < least or w < least:
            raise JobError(f"MSOE needs frames of at least {least}x{least} pixels "
                           f"({self.config.levels} pyramid levels), got {w}x{h}")

    def features(self, pair: torch.Tensor) -> torch.Tensor:
        self.check_input(pair)
        h, w = pair.shape[-2:]
        levels = self.pyramid(contrast_normalise(pair, self.config.eps))
        out = []
        for index, x in enumerate(levels):
            y = self.level(x)
            if index:
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            out.append(y)
        return torch.cat(out, dim=1)

    def flow(self, pair: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise JobError("this MSOE was loaded without its flow decoder")
        return self.decoder(self.features(pair))

    forward = features


def rgb_to_grey(frames: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [0, 1] -> [..., H, W], differentiable, engine.flow.to_grey weights."""
    r, g, b = GREY_WEIGHTS
    return r * frames[..., 0, :, :] + g * frames[..., 1, :, :] + b * frames[..., 2, :, :]


def clip_pairs(clip: torch.Tensor, wrap: bool = False) -> torch.Tensor:
    """[T, 3, H, W] RGB (or [T, H, W] grey) clip -> [T-1, 2, H, W] consecutive grey pairs;
    with wrap, also the pair (last, first) for seamless loops -> [T, 2, H, W]."""
    grey = rgb_to_grey(clip) if clip.ndim == 4 else clip
    if grey.shape[0] < 2:
        raise JobError(f"a clip needs at least 2 frames for motion, got {grey.shape[0]}")
    nxt = torch.roll(grey, -1, dims=0) if wrap else grey[1:]
    first = grey if wrap else grey[:-1]
    return torch.stack([first, nxt], dim=1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_msoe(path: str | os.PathLike | None = None, decoder: bool = False,
              device: torch.device | str = "cpu") -> MsoeNet:
    """The trained network in eval mode, gradients off for its weights (they stay fixed during
    synthesis). Without decoder, a file's decoder tensors are ignored; a file without a
    decoder cannot give flow."""
    from engine.checkpoints import load_weights, read_metadata

    path = Path(path) if path is not None else SHIPPED
    meta = read_metadata(path)
    config = MsoeConfig(**{k: v for k, v in (meta.get("stillmotion.config") or {}).items()
                           if k in MsoeConfig.__dataclass_fields__})
    has_decoder = "decoder" in meta.get("stillmotion.parts", "features,decoder")
    model = MsoeNet(config, decoder=has_decoder)
    load_weights(path, model, architecture=ARCHITECTURE)
    if not decoder:
        model.decoder = None
    model.to(device).eval().requires_grad_(False)
    return model


def save_msoe(path: str | os.PathLike, model: MsoeNet, metadata: dict | None = None) -> Path:
    from engine.checkpoints import save_weights

    meta = {"stillmotion.parts": "features,decoder" if model.decoder is not None else "features"}
    meta.update(metadata or {})
    return save_weights(path, model, architecture=ARCHITECTURE, config=asdict(model.config),
                        metadata=meta)


__all__ = ["MsoeConfig", "MsoeNet", "GaussianPyramid", "MsoeLevel", "FlowDecoder",
           "contrast_normalise", "rgb_to_grey", "clip_pairs", "load_msoe", "save_msoe",
           "parameter_count", "ARCHITECTURE", "SHIPPED"]
