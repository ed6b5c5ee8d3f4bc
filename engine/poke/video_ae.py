"""iPOKE's non-invertible networks: the video autoencoder, the image and poke encoders, and the
two patch discriminators that train the video decoder.

Data flows through them in this order (iPOKE's first stage; docs/ARCHITECTURE.md):

    clip [B, 11, 3, 64, 64] (x0 first, [-1, 1])
      -> VideoEncoder (3D ResNet, GroupNorm)             -> mu, logvar [B, 32, 8, 8]
      -> z = mu + sigma * eps
      -> VideoDecoder: ConvGRU seeded with z, unrolled 10 steps;
         each step's top hidden state -> frame decoder whose norms are modulated by x0 (SPADE)
                                                          -> [B, 10, 3, 64, 64] in [-1, 1]
    x0   [B, 3, 64, 64] -> ImageEncoder                   -> [B, 64, 8, 8]
    poke [B, 2, 64, 64] -> PokeEncoder                    -> [B, 64, 8, 8]

In motion space (`VideoAeConfig.space = "motion"`, issue 5) the same networks encode and decode
the clip's dense motion instead of its pixels: the encoder reads the 10 DIS flows x0 -> x_t
[B, 10, 2, 64, 64] (64-px units, divided by `flow_scale`), the decoder (still SPADE-conditioned
on x0, so it knows where the face is) returns 10 flows, and the pixels come from warping the
still itself (engine/poke/motion.py), so they keep the still's detail at any resolution. z has
the same shape in both spaces, so the code encoders, the cINN and training are shared.

The image and poke encoders are each trained as an autoencoder (`CodeAutoencoder`): the image
one reconstructs x0, the poke one the *dense* flow x0 -> last frame, so its code says how the
whole face moves given a few pokes. The cINN (cinn.py) is conditioned on the two codes.

Widths are data (`VideoAeConfig.small()/large()/tiny()`), not code edits. `large()` keeps the
original 64-px widths; `small()` trains on a laptop CPU. Everything runs in float32 on CPU with
batch >= 1 and under bf16 autocast; convolutions accept channels_last inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from engine.errors import JobError
from engine.poke import losses


# --------------------------------------------------------------------------------------------
# Configuration

SPACES = ("pixels", "motion")


@dataclass(frozen=True)
class VideoAeConfig:
    resolution: int = 64                     # frame side; the latent grid is `latent_size`
    latent_size: int = 8
    frames: int = 10                         # predicted frames after x0
    z_channels: int = 32                     # video latent z [z_channels, 8, 8]
    encoder_channels: tuple = (48, 96, 128, 128)   # stem, then one layer each (3D ResNet)
    encoder_blocks: int = 1                  # residual blocks per encoder layer
    encoder_full_sequence: bool = True       # encode x0 with the 10 frames (original setting)
    gru_layers: int = 4
    decoder_channels: tuple = (160, 128, 64, 32)   # at 8, 16, 32, 64 px
    spade_hidden: int = 64                   # x0 feature maps that predict SPADE's scale/shift
    code_channels: int = 64                  # image and poke codes [code_channels, 8, 8]
    code_encoder_channels: tuple = (32, 64, 64)    # at 32, 16, 8 px
    code_decoder_channels: tuple = (64, 64, 32, 16)  # at 8, 16, 32, 64 px
    flow_scale: float = 4.0                  # poke/flow pixels are divided by this on the way in
    spatial_disc_channels: int = 32          # PatchGAN width (doubles per layer up to x8)
    temporal_disc_channels: tuple = (32, 64, 128, 128)  # 3D ResNet discriminator stem + layers
    space: str = "pixels"                    # what the autoencoder encodes: pixels or motion
    part_channels: int = 0                   # facial-part layout channels the image encoder
                                             # reads beside x0 (7 with train-poke --parts)

    @classmethod
    def small(cls) -> "VideoAeConfig":
        """The default (laptop CPU): 4.7 M parameters for the video AE (3.9 M) and both code
        autoencoders; a training step at batch 8 is a few seconds on one core with bf16."""
        return cls()

    @classmethod
    def large(cls) -> "VideoAeConfig":
        """The original iPOKE widths at 64 px (GPU)."""
        return cls(encoder_channels=(64, 128, 256, 256), encoder_blocks=2,
                   decoder_channels=(256, 256, 128, 64), spade_hidden=128,
                   code_decoder_channels=(64, 64, 64, 32), spatial_disc_channels=64,
                   temporal_disc_channels=(64, 64, 128, 256))

    @classmethod
    def tiny(cls) -> "VideoAeConfig":
        """For tests: every code path, a few thousand parameters per network."""
        return cls(z_channels=8, encoder_channels=(8, 16, 16, 16), gru_layers=2,
                   decoder_channels=(16, 16, 8, 8), spade_hidden=8, code_channels=8,
                   code_encoder_channels=(8, 8, 8), code_decoder_channels=(8, 8, 8, 8),
                   spatial_disc_channels=8, temporal_disc_channels=(8, 8, 16, 16))

    @classmethod
    def preset(cls, name: str) -> "VideoAeConfig":
        presets = {"tiny": cls.tiny, "small": cls.small, "large": cls.large}
        if name not in presets:
            raise JobError(f"unknown poke model size {name!r}; choose one of "
                           f"{', '.join(presets)}")
        return presets[name]()

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "VideoAeConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise JobError(f"the poke model config has an unknown field {unknown[0]!r}; the "
                           "weights file comes from another version of StillMotion")
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in data.items()})

    def __post_init__(self):
        if self.space not in SPACES:
            raise JobError(f"unknown poke model space {self.space!r}; choose one of "
                           f"{', '.join(SPACES)}")
        ups = self.resolution // self.latent_size
        if ups < 2 or self.resolution % self.latent_size or ups & (ups - 1):
            raise JobError(f"resolution {self.resolution} must be the latent size "
                           f"{self.latent_size} times a power of two (>= 2)")
        levels = int(math.log2(ups))
        # the stem halves the frame; the first layer keeps it; each later layer halves it
        if len(self.encoder_channels) != levels + 1:
            raise JobError(f"encoder_channels needs {levels + 1} entries at {self.resolution} px"
                           f" (stem + {levels} layers), got {len(self.encoder_channels)}")
        for name in ("decoder_channels", "code_decoder_channels"):
            if len(getattr(self, name)) != levels + 1:
                raise JobError(f"{name} needs {levels + 1} entries (one per scale from "
                               f"{self.latent_size} to {self.resolution} px)")
        if len(self.code_encoder_channels) != levels:
            raise JobError(f"code_encoder_channels needs {levels} entries (one per halving)")

    @property
    def levels(self) -> int:
        """How many times the frame side halves to the latent grid."""
        return int(math.log2(self.resolution // self.latent_size))

    @property
    def clip_length(self) -> int:
        return self.frames + 1

    @property
    def channels(self) -> int:
        """Channels per frame of what the autoencoder encodes and decodes."""
        return 2 if self.space == "motion" else 3


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def to_channels_last(module: nn.Module) -> nn.Module:
    """2D weights channels_last, 3D weights channels_last_3d, in place. On CPU, with bf16
    autocast, this about triples the decoder's training speed (oneDNN's native layout)."""
    for param in module.parameters():
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
        elif param.dim() == 5:
            param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
    return module


def _groups(channels: int, most: int = 16) -> int:
    """GroupNorm groups: the largest divisor of `channels` up to `most`."""
    return max(g for g in range(1, most + 1) if channels % g == 0)


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels), channels, affine=affine)


# --------------------------------------------------------------------------------------------
# Video encoder: 3D ResNet -> mu, logvar


class ResBlock3d(nn.Module):
    """Two 3x3x3 convolutions with GroupNorm (batch statistics would tie clips together, and
    training batches here are small)."""

    def __init__(self, cin: int, cout: int, stride=1):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = group_norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = group_norm(cout)
        self.skip = None
        if cin != cout or stride != 1:
            self.skip = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                      group_norm(cout))

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + (x if self.skip is None else self.skip(x)))


class VideoEncoder(nn.Module):
    """clip [B, T, 3, H, W] -> (mu, logvar) [B, z_channels, 8, 8]. With
    `encoder_full_sequence` the clip includes x0 (T = 11), as in the original. In motion space
    the input is the 10 flows [B, 10, 2, H, W] in 64-px units."""

    def __init__(self, config: VideoAeConfig):
        super().__init__()
        self.config = config
        channels = config.encoder_channels
        self.stem = nn.Sequential(
            nn.Conv3d(config.channels, channels[0], (3, 7, 7), 2, (1, 3, 3), bias=False),
            group_norm(channels[0]), nn.ReLU())
        layers = []
        for index, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            stride = (2, 1, 1) if index == 0 else 2
            blocks = [ResBlock3d(cin, cout, stride)]
            blocks += [ResBlock3d(cout, cout) for _ in range(config.encoder_blocks - 1)]
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.to_mu = nn.Conv2d(channels[-1], config.z_channels, 3, padding=1)
        self.to_logvar = nn.Conv2d(channels[-1], config.z_channels, 3, padding=1)

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.config.channels
        if clip.dim() != 5 or clip.shape[2] != channels:
            raise ValueError(f"expected a clip B x T x {channels} x H x W, got "
                             f"{list(clip.shape)}")
        if self.config.space == "motion":
            clip = clip / self.config.flow_scale
        h = self.layers(self.stem(clip.transpose(1, 2)))
        # the time axis is down to 1 for 10-11 frames; averaging keeps other lengths usable
        h = h.mean(dim=2)
        return self.to_mu(h), self.to_logvar(h)


# --------------------------------------------------------------------------------------------
# Video decoder: ConvGRU seeded with z, SPADE frame decoder conditioned on x0


class ConvGruCell(nn.Module):
    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(2 * channels, channels, kernel, padding=kernel // 2)

    def forward(self, x, hidden):
        reset, update = torch.sigmoid(self.gates(torch.cat([x, hidden], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * hidden], 1)))
        return (1 - update) * hidden + update * candidate


class ConvGru(nn.Module):
    """A stack of ConvGRU cells at the latent resolution. Every layer's hidden state starts as z
    and the input of every step is one learned map (the original's `motion_bias`), so the whole
    clip is a function of z alone."""

    def __init__(self, channels: int, layers: int, size: int):
        super().__init__()
        self.cells = nn.ModuleList(ConvGruCell(channels) for _ in range(layers))
        self.step_input = nn.Parameter(torch.zeros(1, channels, size, size))

    def forward(self, z: torch.Tensor, steps: int) -> torch.Tensor:
        """z [B, C, h, w] -> top hidden state of each step [B, steps, C, h, w]."""
        hidden = [z] * len(self.cells)
        step_input = self.step_input.expand(z.shape[0], -1, -1, -1).to(z.dtype)
        outputs = []
        for _ in range(steps):
            x = step_input
            for layer, cell in enumerate(self.cells):
                hidden[layer] = cell(x, hidden[layer])
                x = hidden[layer]
            outputs.append(x)
        return torch.stack(outputs, 1)


class Spade(nn.Module):
    """Normalise without affine parameters, then scale and shift per pixel with maps predicted
    from x0 (Park et al. 2019): the decoder learns where things are from x0 and what moves
    from z. x0's maps are computed once per clip and broadcast over the clip's frames."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.norm = group_norm(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.LeakyReLU(0.2))
        self.to_scale = nn.Conv2d(hidden, channels, 3, padding=1)
        self.to_shift = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """x [B*T, C, h, w] (clip-major), x0 [B, 3, H, W] -> x modulated by x0."""
        batch = x0.shape[0]
        steps = x.shape[0] // batch
        image = F.interpolate(x0, size=x.shape[-2:], mode="area") \
            if x0.shape[-2:] != x.shape[-2:] else x0
        features = self.shared(image.to(x.dtype))
        scale = self.to_scale(features).unsqueeze(1)
        shift = self.to_shift(features).unsqueeze(1)
        normed = self.norm(x).unflatten(0, (batch, steps))
        return (normed * (1 + scale) + shift).flatten(0, 1)


class ResBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, act=nn.SiLU):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.act = act()
        self.skip = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.act(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class SpadeUpBlock(nn.Module):
    """Residual block that doubles the resolution, both norms modulated by x0. Nearest
    upsampling + 3x3 convolution instead of the original's transposed convolution: no
    checkerboard pattern to unlearn."""

    def __init__(self, cin: int, cout: int, hidden: int):
        super().__init__()
        self.spade1 = Spade(cin, hidden)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.spade2 = Spade(cout, hidden)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x, x0):
        h = F.interpolate(F.leaky_relu(self.spade1(x, x0), 0.2), scale_factor=2.0)
        h = self.conv1(h)
        h = self.conv2(F.leaky_relu(self.spade2(h, x0), 0.2))
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


class FrameDecoder(nn.Module):
    """Latent state [B*T, z, 8, 8] + x0 -> frames [B*T, 3, 64, 64] in [-1, 1], or in motion
    space flows [B*T, 2, 64, 64] in 64-px units."""

    def __init__(self, config: VideoAeConfig):
        super().__init__()
        self.motion = config.space == "motion"
        self.flow_scale = config.flow_scale
        channels = config.decoder_channels
        self.entry = ResBlock2d(config.z_channels, channels[0])
        self.ups = nn.ModuleList(SpadeUpBlock(cin, cout, config.spade_hidden)
                                 for cin, cout in zip(channels[:-1], channels[1:]))
        self.out_spade = Spade(channels[-1], config.spade_hidden)
        self.to_rgb = nn.Conv2d(channels[-1], config.channels, 3, padding=1)

    def forward(self, states: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        h = self.entry(states)
        for up in self.ups:
            h = up(h, x0)
        out = self.to_rgb(F.leaky_relu(self.out_spade(h, x0), 0.2))
        return out * self.flow_scale if self.motion else torch.tanh(out)


class VideoDecoder(nn.Module):
    def __init__(self, config: VideoAeConfig):
        super().__init__()
        self.config = config
        self.gru = ConvGru(config.z_channels, config.gru_layers, config.latent_size)
        self.frame_decoder = FrameDecoder(config)

    def forward(self, z: torch.Tensor, x0: torch.Tensor, length: int | None = None
                ) -> torch.Tensor:
        """z [B, z, 8, 8], x0 [B, 3, 64, 64] -> frames after x0 [B, length, 3, 64, 64] (motion
        space: flows x0 -> x_t [B, length, 2, 64, 64])."""
        length = length or self.config.frames
        states = self.gru(z, length)
        frames = self.frame_decoder(states.flatten(0, 1), x0)
        return frames.unflatten(0, (z.shape[0], length))


@dataclass
class VideoAeOutput:
    recon: torch.Tensor   # [B, 10, 3, 64, 64], the frames after x0 (motion: [B, 10, 2, 64, 64])
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    kl: torch.Tensor      # scalar: KL(q(z|clip) || N(0, I)) per clip, mean over the batch


class VideoAutoencoder(nn.Module):
    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder(config)
        self.decoder = VideoDecoder(config)

    def _check_clip(self, clip: torch.Tensor) -> None:
        c = self.config
        if c.space == "motion":
            expected, what = (c.frames, 2, c.resolution, c.resolution), "flows x0 -> x_t"
        else:
            expected, what = (c.clip_length, 3, c.resolution, c.resolution), "x0 first"
        if clip.dim() != 5 or tuple(clip.shape[1:]) != expected:
            raise ValueError(f"expected a clip B x {' x '.join(map(str, expected))} "
                             f"({what}), got {list(clip.shape)}")

    def encode(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clip [B, 11, 3, H, W] with x0 first -> (mu, logvar) [B, z, 8, 8]. In motion space:
        the clip's flows [B, 10, 2, H, W] (engine/poke/data.py's item "motion")."""
        self._check_clip(clip)
        if self.config.space == "motion" or self.config.encoder_full_sequence:
            return self.encoder(clip)
        return self.encoder(clip[:, 1:])

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * noise

    def decode(self, z: torch.Tensor, x0: torch.Tensor, length: int | None = None
               ) -> torch.Tensor:
        """z [B, z, 8, 8], x0 [B, 3, H, W] in [-1, 1] -> [B, length (10), 3, H, W]."""
        return self.decoder(z, x0, length)

    def forward(self, clip: torch.Tensor, sample: bool = True,
                motion: torch.Tensor | None = None) -> VideoAeOutput:
        """clip [B, 11, 3, H, W]; in motion space also its flows `motion` [B, 10, 2, H, W],
        which are what is encoded and reconstructed (the clip gives x0)."""
        if self.config.space == "motion":
            if motion is None:
                raise ValueError("a motion-space autoencoder needs the clip's flows (motion=)")
            mu, logvar = self.encode(motion)
        else:
            mu, logvar = self.encode(clip)
        z = self.reparameterise(mu, logvar) if sample else mu
        recon = self.decode(z, clip[:, 0])
        return VideoAeOutput(recon, mu, logvar, z, losses.kl_divergence(mu, logvar))


# --------------------------------------------------------------------------------------------
# Image and poke encoders, each trained as an autoencoder


class CodeEncoder(nn.Module):
    """[B, cin, 64, 64] -> [B, code_channels, 8, 8], deterministic."""

    def __init__(self, in_channels: int, config: VideoAeConfig):
        super().__init__()
        channels = config.code_encoder_channels
        self.stem = nn.Conv2d(in_channels, channels[0], 3, 2, 1)
        self.downs = nn.Sequential(*(ResBlock2d(cin, cout, 2, act=nn.ELU)
                                     for cin, cout in zip(channels[:-1], channels[1:])))
        self.bottleneck = ResBlock2d(channels[-1], channels[-1], act=nn.ELU)
        self.to_code = nn.Conv2d(channels[-1], config.code_channels, 1)

    def forward(self, x):
        return self.to_code(self.bottleneck(self.downs(self.stem(x))))


class CodeDecoder(nn.Module):
    """[B, code_channels, 8, 8] -> [B, out_channels, 64, 64]."""

    def __init__(self, out_channels: int, config: VideoAeConfig):
        super().__init__()
        channels = config.code_decoder_channels
        self.entry = ResBlock2d(config.code_channels, channels[0], act=nn.ELU)
        self.ups = nn.ModuleList(ResBlock2d(cin, cout, act=nn.ELU)
                                 for cin, cout in zip(channels[:-1], channels[1:]))
        self.out_norm = group_norm(channels[-1])
        self.to_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, code):
        h = self.entry(code)
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2.0))
        return self.to_out(F.elu(self.out_norm(h)))


class ImageEncoder(CodeEncoder):
    """x0 [B, 3, 64, 64] in [-1, 1] -> [B, 64, 8, 8]; with `part_channels` the input is x0
    and its facial-part layout [B, 3 + P, 64, 64] (layout in [0, 1]), so the condition says
    where the eyes and the mouth are, not only what the face looks like."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__(3 + config.part_channels, config)


class PokeEncoder(CodeEncoder):
    """poke map [B, 2, 64, 64] in 64-px units -> [B, 64, 8, 8]. Displacements are divided by
    `flow_scale` first so a typical poke is of order 1, like the image encoder's input."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__(2, config)
        self.flow_scale = config.flow_scale

    def forward(self, poke):
        return super().forward(poke / self.flow_scale)


class ImageDecoder(CodeDecoder):
    """image code -> x0 [B, 3, 64, 64] in [-1, 1]."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__(3, config)

    def forward(self, code):
        return torch.tanh(super().forward(code))


class FlowDecoder(CodeDecoder):
    """poke code -> dense flow x0 -> last frame [B, 2, 64, 64] in 64-px units."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__(2, config)
        self.flow_scale = config.flow_scale

    def forward(self, code):
        return super().forward(code) * self.flow_scale


class CodeAutoencoder(nn.Module):
    """An encoder whose code is what the cINN is conditioned on, trained through a decoder.

    Loss (taming/VQGAN style, as the original): per-pixel L1 (+ perceptual weight x VGG
    distance for images), divided by a learned variance: rec / exp(logvar) + logvar. The
    learned scale keeps the gradient size steady as the error shrinks."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.logvar = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def loss(self, inputs: torch.Tensor, target: torch.Tensor, *,
             perceptual: "losses.PerceptualLoss | None" = None,
             perceptual_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        recon = self(inputs)
        return losses.code_autoencoder_loss(recon, target, self.logvar, perceptual=perceptual,
                                            perceptual_weight=perceptual_weight)


def image_autoencoder(config: VideoAeConfig = VideoAeConfig()) -> CodeAutoencoder:
    """x0 -> code -> x0. Train with `.loss(x0, x0, perceptual=...)`."""
    return CodeAutoencoder(ImageEncoder(config), ImageDecoder(config))


def poke_autoencoder(config: VideoAeConfig = VideoAeConfig()) -> CodeAutoencoder:
    """poke -> code -> dense flow. Train with `.loss(poke, flow)`."""
    return CodeAutoencoder(PokeEncoder(config), FlowDecoder(config))


# --------------------------------------------------------------------------------------------
# Discriminators (training only; not part of the shipped model)


class SpatialDiscriminator(nn.Module):
    """PatchGAN on single frames [N, 3, 64, 64] (Isola et al.): 3 stride-2 layers, spectral
    norm and InstanceNorm as in the original. Returns (patch logits, [layer features])."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig(), layers: int = 3):
        super().__init__()
        width = config.spatial_disc_channels
        blocks = [nn.Sequential(spectral_norm(nn.Conv2d(3, width, 4, 2, 1)),
                                nn.LeakyReLU(0.2))]
        cin = width
        for index in range(1, layers + 1):
            cout = width * min(2 ** index, 8)
            stride = 2 if index < layers else 1
            blocks.append(nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1)),
                                        nn.InstanceNorm2d(cout, affine=True),
                                        nn.LeakyReLU(0.2)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.to_logits = spectral_norm(nn.Conv2d(cin, 1, 4, 1, 1))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if frames.dim() == 5:  # a clip: every frame is one image
            frames = frames.flatten(0, 1)
        features = []
        h = frames
        for block in self.blocks:
            h = block(h)
            features.append(h)
        return self.to_logits(h), features


class SnResBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv3d(cin, cout, 3, stride, 1))
        self.norm1 = group_norm(cout)
        self.conv2 = spectral_norm(nn.Conv3d(cout, cout, 3, 1, 1))
        self.norm2 = group_norm(cout)
        self.skip = spectral_norm(nn.Conv3d(cin, cout, 1, stride))

    def forward(self, x):
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        h = self.norm2(self.conv2(h))
        return F.leaky_relu(h + self.skip(x), 0.2)


class TemporalDiscriminator(nn.Module):
    """3D ResNet on clips [B, T, 3, 64, 64] (T >= 4): judges motion, not single frames.
    Spectral norm and GroupNorm as the original. Returns (spacetime patch logits,
    [stem + layer features]) for the hinge and feature-matching losses."""

    def __init__(self, config: VideoAeConfig = VideoAeConfig()):
        super().__init__()
        channels = config.temporal_disc_channels
        self.stem = nn.Sequential(
            spectral_norm(nn.Conv3d(3, channels[0], (3, 4, 4), (1, 2, 2), (1, 1, 1))),
            nn.LeakyReLU(0.2))
        self.layers = nn.ModuleList(
            SnResBlock3d(cin, cout, (1, 2, 2) if index == 0 else 2)
            for index, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])))
        self.to_logits = spectral_norm(nn.Conv3d(channels[-1], 1, 3, 1, 1))

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected a clip B x T x 3 x H x W, got {list(clip.shape)}")
        h = self.stem(clip.transpose(1, 2))
        features = [h]
        for layer in self.layers:
            h = layer(h)
            features.append(h)
        return self.to_logits(h), features


# --------------------------------------------------------------------------------------------
# Everything of one size together (for parameter reports and the bench)


def build_networks(config: VideoAeConfig) -> dict[str, nn.Module]:
    return {"video_ae": VideoAutoencoder(config), "image_ae": image_autoencoder(config),
            "poke_ae": poke_autoencoder(config),
            "spatial_disc": SpatialDiscriminator(config),
            "temporal_disc": TemporalDiscriminator(config)}


def parameter_report(config: VideoAeConfig) -> dict[str, int]:
    """Parameter counts per network, plus `shipped`: what sampling needs (video decoder,
    image encoder, poke encoder) and `first_stage`: video AE + both code autoencoders."""
    nets = build_networks(config)
    report = {name: parameter_count(net) for name, net in nets.items()}
    report["video_encoder"] = parameter_count(nets["video_ae"].encoder)
    report["video_decoder"] = parameter_count(nets["video_ae"].decoder)
    report["first_stage"] = report["video_ae"] + report["image_ae"] + report["poke_ae"]
    report["shipped"] = (report["video_decoder"] + parameter_count(nets["image_ae"].encoder)
                         + parameter_count(nets["poke_ae"].encoder))
    return report
