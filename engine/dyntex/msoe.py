"""MSOE: the dynamics stream of two-stream dynamic texture synthesis (Tesfaldet et al. 2018).

Multi-scale spacetime-oriented energy of a greyscale frame pair, read top to bottom in the
order data flows (Tesfaldet et al. 2018; docs/ARCHITECTURE.md, dyntex):

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

import functools
import math
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
    decoder_context: int = 4   # dilated 3x3 convs at half resolution (dilation 1, 2, 4, ...)
    decoder_bins: int = 0      # 0: regress (dx, dy); n*n: softmax over an n x n velocity grid
    decoder_range: float = 8.0  # the grid spans +/- this many pixels per frame
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


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n_out: int, n_in: int, device: str) -> torch.Tensor:
    """[n_out, n_in] weights of 1-D linear interpolation, F.interpolate's align_corners=False
    convention (source coordinate (i + 0.5) * n_in / n_out - 0.5, clamped at the edges)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    lower = src.floor().long().clamp(max=n_in - 1)
    upper = (lower + 1).clamp(max=n_in - 1)
    frac = src - lower
    rows = torch.arange(n_out)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.index_put_((rows, lower), 1 - frac, accumulate=True)
    matrix.index_put_((rows, upper), frac, accumulate=True)
    return matrix.float().to(device)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False) for upsampling, as two
    matrix products: the same values (to float rounding) and several times faster on a CPU,
    backward included."""
    h, w = int(size[0]), int(size[1])
    rows = _interpolation_matrix(h, x.shape[-2], str(x.device)).to(x.dtype)
    cols = _interpolation_matrix(w, x.shape[-1], str(x.device)).to(x.dtype)
    return rows @ x @ cols.T


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
        # k x k max = k x 1 max of 1 x k max (exactly); the separable form is faster on a CPU
        half = self.pool // 2
        x = F.max_pool2d(x, (1, self.pool), stride=1, padding=(0, half))
        x = F.max_pool2d(x, (self.pool, 1), stride=1, padding=(half, 0))
        x = self.conv2(x)
        return x / x.abs().sum(dim=1, keepdim=True).clamp_min(self.eps)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class FlowDecoder(nn.Module):
    """320 feature channels -> (dx, dy). Used to train MSOE; synthesis needs only features.

    1x1 320 -> 64, 3x3 -> 32 at full resolution, then a context branch at half resolution
    (dilated 3x3 convs, residual) added back, 1x1 -> 2 (or -> scores of a velocity grid, whose
    softmax-weighted mean is the flow). One pixel's energies are noisy for large
    motions (the 11x11 filters see few periods of the texture at coarse levels); the context
    branch pools evidence over ~60 px the way a coarse-to-fine estimator would, while the
    full-resolution path keeps spatially varying flow (rotations) local."""

    def __init__(self, config: MsoeConfig):
        super().__init__()
        mid = config.decoder_mid
        self.conv1 = nn.Conv2d(config.feature_channels, config.decoder_hidden, 1)
        self.conv2 = nn.Conv2d(config.decoder_hidden, mid, 3)
        self.context = nn.ModuleList(
            nn.Conv2d(mid, mid, 3, dilation=2 ** i, padding=2 ** i, padding_mode="replicate")
            for i in range(config.decoder_context))
        self.conv3 = nn.Conv2d(mid, config.decoder_bins or 2, 1)
        if config.decoder_bins:
            side = math.isqrt(config.decoder_bins)
            if side * side != config.decoder_bins:
                raise JobError(f"decoder_bins must be a square number, got {config.decoder_bins}")
            axis = torch.linspace(-config.decoder_range, config.decoder_range, side)
            gy, gx = torch.meshgrid(axis, axis, indexing="ij")
            self.register_buffer("velocities", torch.stack([gx.flatten(), gy.flatten()], 1),
                                 persistent=False)
        else:
            self.velocities = None
        # L1-normalised levels have channel values ~1/channels: scaled by `channels` they reach
        # the ~1 that the default init expects; unscaled, conv1's biases swamp them and most
        # ReLUs die in the first steps (seen: 3/4 of the units dead, flow stuck on one axis).
        # Leaky units keep a gradient where a ReLU would stop learning for good.
        self.input_scale = float(config.channels)
        nn.init.zeros_(self.conv1.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.from_hidden(self.conv1(features * self.input_scale))

    def hidden_from_levels(self, levels: list[torch.Tensor], size: tuple[int, int]):
        """conv1 applied to the upsampled concatenation of `levels`, computed per level before
        upsampling: a 1x1 conv and bilinear upsampling are both linear per pixel, so they
        commute, and the full-resolution product shrinks from 320 to 64 input channels."""
        weights = (self.conv1.weight * self.input_scale).split([y.shape[1] for y in levels], dim=1)
        out = self.conv1.bias[None, :, None, None]
        for index, (y, w) in enumerate(zip(levels, weights)):
            y = F.conv2d(y, w)
            out = out + (upsample_bilinear(y, size) if index else y)
        return out

    def from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        x = _leaky(self.conv2(F.pad(_leaky(hidden), (1, 1, 1, 1), mode="replicate")))
        if len(self.context):
            pooled = F.avg_pool2d(x, 2, ceil_mode=True)
            c = pooled
            for conv in self.context:
                c = c + _leaky(conv(c))
            x = x + upsample_bilinear(c - pooled, x.shape[-2:])
        if self.velocities is None:
            return self.conv3(x)
        # expected velocity under a softmax over the grid: a bounded, classification-like
        # output that learns large motions faster than regressing them (cost-volume style)
        weights = torch.softmax(self.conv3(x), dim=1)
        return torch.einsum("nkhw,kc->nchw", weights, self.velocities)


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

    def level_outputs(self, pair: torch.Tensor) -> list[torch.Tensor]:
        """The 64-channel output of each pyramid level at that level's own resolution."""
        self.check_input(pair)
        levels = self.pyramid(contrast_normalise(pair, self.config.eps))
        return [self.level(x) for x in levels]

    def features(self, pair: torch.Tensor) -> torch.Tensor:
        h, w = pair.shape[-2:]
        out = [upsample_bilinear(y, (h, w)) if index else y
               for index, y in enumerate(self.level_outputs(pair))]
        return torch.cat(out, dim=1)

    def flow(self, pair: torch.Tensor) -> torch.Tensor:
        """decoder(features(pair)), without building the 320-channel map (see
        FlowDecoder.hidden_from_levels)."""
        if self.decoder is None:
            raise JobError("this MSOE was loaded without its flow decoder")
        levels = self.level_outputs(pair)
        return self.decoder.from_hidden(self.decoder.hidden_from_levels(levels, pair.shape[-2:]))

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
    stored = dict(meta.get("stillmotion.config") or {})
    # files written before the decoder had a context branch or velocity bins
    stored.setdefault("decoder_context", 0)
    stored.setdefault("decoder_bins", 0)
    config = MsoeConfig(**{k: v for k, v in stored.items() if k in MsoeConfig.__dataclass_fields__})
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
