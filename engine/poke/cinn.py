"""Conditional invertible network (cINN) of iPOKE: z [32, 8, 8] <-> r ~ N(0, I), given the codes.

The video autoencoder squeezes a clip into z; the image and poke encoders give the condition
h = cat(phi_x0(x0), phi_c(poke)) [128, 8, 8]. This network is a bijection z <-> r for every h.
Training maximises log p(z | h) = log N(r; 0, I) + log|det dr/dz|; sampling draws r and inverts.

Layout follows the original (CompVis/ipoke `MultiScaleInternal(MaCowStep)`, after MaCow, Ma et al.
2019; the iPOKE paper's cINN). Everything stays at 8x8; there is no spatial squeeze:

    z -> [level 0] -> [level 1] -> ... -> r        level = flow steps, then factor channels out
    level:  MaCowStep x n  ->  prior (shuffle, coupling on the channels to leave, ActNorm on them)
            -> the last `factor_out` channels leave as part of r (prior N(0, I) for every part)
    MaCowStep: ActNorm, shuffle,
               MaCowUnit x k, coupling (halves, 2nd half changes), coupling (1st half changes),
               ActNorm,
               MaCowUnit x k, coupling (even/odd, odd change), coupling (even change)
    MaCowUnit: masked-conv flow top, bottom, ActNorm, left, right, ActNorm

A masked-conv flow is affine and autoregressive over rows: the scale and shift at row i come
from rows < i only (plus the condition), so its Jacobian is triangular (log-det = sum of log
scales) and the inverse recovers one row after another (H sequential passes). "Bottom", "left"
and "right" are the same module run on a flipped / transposed view.

`r` has z's shape [B, C, H, W]: its channels are the factored-out groups in level order,
followed by the channels that went through every level.

Differences from the original, on purpose: the affine scale is exp(soft-clamped log-scale)
instead of 1 + tanh(.) (bounded both ways, so the inverse cannot blow up); the zero-initialised
output convolutions are plain (no weight norm); a small shared network may reshape the condition
first, and the half-split couplings may see the condition too (the original's do not). With
`CinnConfig.original()` both are off and the widths/depths are the published ones (~1.05 B
parameters).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURE = "poke-cinn"


@dataclass
class CinnConfig:
    z_channels: int = 32                  # video autoencoder code z [z_channels, z_size, z_size]
    z_size: int = 8
    cond_channels: int = 128              # image code 64 + poke code 64, at z_size x z_size
    levels: tuple[int, ...] = (3, 2, 1)   # MaCowSteps per level; each level then factors out
    factor_out: int = 8                   # channels leaving r at the end of every level
    macow_units: int = 1                  # MaCowUnits before each pair of couplings (original 2)
    mcf_hidden_factor: int = 4            # masked-conv hidden width = factor * channels
    mcf_layers: int = 1                   # masked convolutions stacked in one conditioner
    mcf_kernel: tuple[int, int] = (2, 3)  # rows above x columns (on the oriented view)
    coupling_hidden: int = 192            # width of the coupling networks
    condition_couplings: bool = True      # couplings see the condition (original: no)
    cond_net_channels: int = 64           # shared condition network width (0: use h as given)
    scale_clamp: float = 2.0              # |log scale| < clamp per affine transform
    shuffle_seed: int = 0                 # fixed channel permutations come from this seed
    # 3: the couplings' outer convolutions are 3x3 (latent maps); 1: on a 1x1 latent (a code
    # vector, engine/poke/mesh) a 3x3 kernel would only add weights that always meet padding.
    coupling_kernel: int = 3

    @classmethod
    def tiny(cls) -> "CinnConfig":
        """For tests: every kind of block, 14.5 k parameters, 4x4 latents."""
        return cls(z_channels=4, z_size=4, cond_channels=3, levels=(1, 1), factor_out=1,
                   macow_units=1, mcf_hidden_factor=2, mcf_layers=2, coupling_hidden=8,
                   condition_couplings=True, cond_net_channels=4)

    @classmethod
    def small(cls) -> "CinnConfig":
        """Default: trains and samples on a laptop CPU (4.6 M parameters; 32 -> 24 -> 16 -> 8
        channels over three levels, one MaCowUnit per half-step)."""
        return cls()

    @classmethod
    def large(cls) -> "CinnConfig":
        """GPU setting (65.6 M parameters): the original's two units per half-step and 4x
        masked-conv width, seven levels, 512-wide conditioned couplings."""
        return cls(levels=(6, 4, 3, 2, 2, 1, 1), factor_out=4, macow_units=2,
                   mcf_hidden_factor=4, mcf_layers=2, coupling_hidden=512,
                   condition_couplings=True, cond_net_channels=128)

    @classmethod
    def original(cls) -> "CinnConfig":
        """The published iPOKE cINN (config/pretrained_models/*.yaml, z_dim 32): 15 levels,
        50 MaCowSteps, 2048-wide unconditional couplings, condition only in the 800 masked-conv
        flows. 1,054,385,160 parameters (4.2 GB in float32): benchmarks only."""
        return cls(levels=(10, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1), factor_out=2,
                   macow_units=2, mcf_hidden_factor=4, mcf_layers=1, coupling_hidden=2048,
                   condition_couplings=False, cond_net_channels=0)

    @classmethod
    def preset(cls, name: str) -> "CinnConfig":
        presets = {"tiny": cls.tiny, "small": cls.small, "large": cls.large,
                   "original": cls.original}
        if name not in presets:
            raise ValueError(f"unknown cINN preset '{name}'; choose one of {sorted(presets)}")
        return presets[name]()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CinnConfig":
        return config_from_dict(cls, values, "cINN", ("levels", "mcf_kernel"))

    @property
    def dims(self) -> int:
        return self.z_channels * self.z_size * self.z_size

    def check(self) -> None:
        left = self.z_channels - len(self.levels) * self.factor_out
        if not self.levels or self.factor_out < 1 or left < 1:
            raise ValueError(f"cINN config: {len(self.levels)} levels each factoring out "
                             f"{self.factor_out} of {self.z_channels} channels leaves {left}; "
                             "use fewer levels or a smaller factor_out")
        if self.mcf_kernel[1] % 2 != 1 or self.mcf_kernel[0] < 1:
            raise ValueError(f"cINN config: mcf_kernel {self.mcf_kernel} needs an odd width "
                             "(centred on the column) and at least one row")
        if self.coupling_kernel not in (1, 3):
            raise ValueError(f"cINN config: coupling_kernel must be 1 or 3 "
                             f"(got {self.coupling_kernel})")
        if self.mcf_layers < 1 or self.macow_units < 0 or self.scale_clamp <= 0:
            raise ValueError("cINN config: mcf_layers >= 1, macow_units >= 0, scale_clamp > 0")


def config_from_dict(cls, values: dict, what: str, tuples: tuple[str, ...] = ()):
    """A config dataclass from a model file's JSON header: unknown fields refused by name,
    JSON lists turned back into the tuples the dataclass holds."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} config field '{unknown[0]}' (known: {sorted(known)})")
    values = dict(values)
    for name in tuples:
        if name in values:
            values[name] = tuple(values[name])
    return cls(**values)


def count_parameters(config: CinnConfig) -> int:
    """Parameters of ConditionalInn(config), counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = ConditionalInn(config)
    return sum(p.numel() for p in model.parameters())


def soft_clamp(raw: torch.Tensor, clamp: float) -> torch.Tensor:
    """Smoothly bound a log-scale to (-clamp, clamp); slope 1 at 0 so zero-init stays identity."""
    return clamp * torch.tanh(raw / clamp)


# --------------------------------------------------------------------------------------------
# Invertible blocks. Each owns forward (x -> y, log|det| per sample) and reverse (y -> x).
# `cond` is the (already processed) condition [B, cond, H, W]; unconditional blocks ignore it.
# --------------------------------------------------------------------------------------------

class ActNorm(nn.Module):
    """Per-channel affine y = x * exp(log_scale) + bias; on the first forward batch the two are
    set so the output has zero mean and unit variance per channel (Glow's data-dependent init)."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        # Reading the buffer is a device sync on CUDA: once it says yes, remember that here.
        self._seen_initialized = False

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = per_channel.mean(dim=1)
        std = per_channel.std(dim=1) if per_channel.shape[1] > 1 else torch.ones_like(mean)
        self.log_scale.copy_((-torch.log(std + 1e-6)).view_as(self.log_scale))
        self.bias.copy_((-mean / (std + 1e-6)).view_as(self.bias))
        self.initialized.fill_(1)

    def forward(self, x, cond=None):
        if not self._seen_initialized:
            if self.initialized.item():
                self._seen_initialized = True
            elif self.training:
                self._initialize(x)
                self._seen_initialized = True
        y = x * self.log_scale.exp() + self.bias
        logdet = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def reverse(self, y, cond=None):
        return (y - self.bias) * torch.exp(-self.log_scale)


class Shuffle(nn.Module):
    """A fixed channel permutation (|det| = 1): mixes which channels condition which."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        order = list(range(channels))
        random.Random(seed).shuffle(order)
        inverse = sorted(range(channels), key=order.__getitem__)
        self.register_buffer("permutation", torch.tensor(order, dtype=torch.long))
        self.register_buffer("inverse", torch.tensor(inverse, dtype=torch.long))

    def forward(self, x, cond=None):
        return x.index_select(1, self.permutation), x.new_zeros(x.shape[0])

    def reverse(self, y, cond=None):
        return y.index_select(1, self.inverse)


class MaskedConditioner(nn.Module):
    """Shift and raw log-scale for every pixel from the rows strictly above it (and the condition).

    The first convolution sees rows i-kh .. i-1 (padding kh rows on top, dropping the extra last
    row); later ones see rows i-kh+1 .. i of the hidden map, which itself only knows rows < i.
    So the output at row i never depends on input rows >= i: causal in raster order.
    """

    def __init__(self, channels: int, hidden: int, cond_channels: int, kernel: tuple[int, int],
                 layers: int):
        super().__init__()
        self.kernel = tuple(kernel)
        # How many rows above an output row can reach it (the window the inverse needs).
        self.rows_above = kernel[0] + (layers - 1) * (kernel[0] - 1)
        self.first = nn.Conv2d(channels, hidden, self.kernel, bias=False)
        self.more = nn.ModuleList(nn.Conv2d(hidden, hidden, self.kernel)
                                  for _ in range(layers - 1))
        self.out = nn.Conv2d(hidden + cond_channels, 2 * channels, 1)
        # Zero output: every flow starts as the identity, so deep stacks train from step one.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, cond):
        rows, cols = self.kernel
        side = cols // 2
        hidden = self.first(F.pad(x, (side, side, rows, 0)))[:, :, :-1]
        for conv in self.more:
            hidden = conv(F.pad(F.elu(hidden), (side, side, rows - 1, 0)))
        if cond is not None:
            hidden = torch.cat([hidden, cond], dim=1)
        shift, raw_log_scale = self.out(F.elu(hidden)).chunk(2, dim=1)
        return shift, raw_log_scale


# Masked-conv orientations as views: the conditioner always looks "up" on the view.
def _orient(x: torch.Tensor, direction: str) -> torch.Tensor:
    if direction == "top":
        return x
    if direction == "bottom":
        return x.flip(-2)
    if direction == "left":
        return x.transpose(-2, -1)
    return x.transpose(-2, -1).flip(-2)  # right


def _unorient(x: torch.Tensor, direction: str) -> torch.Tensor:
    if direction in ("top", "bottom", "left"):
        return _orient(x, direction)      # each is its own inverse
    return x.flip(-2).transpose(-2, -1)   # right


class MaskedConvFlow(nn.Module):
    """MaCow masked-convolution flow: y = x * exp(s(x_<row)) + t(x_<row), per pixel and channel.

    direction "top": rows depend on rows above; "bottom": below; "left"/"right": columns.
    """

    def __init__(self, channels: int, hidden: int, cond_channels: int, kernel: tuple[int, int],
                 layers: int, direction: str, clamp: float):
        super().__init__()
        if direction not in ("top", "bottom", "left", "right"):
            raise ValueError(f"unknown masked-conv direction '{direction}'")
        self.direction = direction
        self.clamp = clamp
        self.conditioner = MaskedConditioner(channels, hidden, cond_channels, kernel, layers)

    def _params(self, x_view, cond_view):
        shift, raw = self.conditioner(x_view, cond_view)
        return shift, soft_clamp(raw, self.clamp)

    def forward(self, x, cond=None):
        x_view = _orient(x, self.direction)
        cond_view = None if cond is None else _orient(cond, self.direction)
        shift, log_scale = self._params(x_view, cond_view)
        y_view = x_view * log_scale.exp() + shift
        return _unorient(y_view, self.direction), log_scale.flatten(1).sum(dim=1)

    def reverse(self, y, cond=None):
        y_view = _orient(y, self.direction)
        cond_view = None if cond is None else _orient(cond, self.direction)
        reach = self.conditioner.rows_above
        solved = []
        # Row i's parameters need the true rows < i, so rows are recovered top to bottom; each
        # pass runs the conditioner on the window of rows it can see, not on the whole map.
        for row in range(y_view.shape[-2]):
            start = max(0, row - reach)
            window = torch.cat(solved[start:row] + [torch.zeros_like(y_view[:, :, :1])], dim=2)
            cond_window = None if cond_view is None else cond_view[:, :, start:row + 1]
            shift, log_scale = self._params(window, cond_window)
            solved.append((y_view[:, :, row:row + 1] - shift[:, :, -1:])
                          * torch.exp(-log_scale[:, :, -1:]))
        return _unorient(torch.cat(solved, dim=2), self.direction)


class AffineCoupling(nn.Module):
    """Affine coupling: one group of channels is scaled and shifted by a network of the other
    group (and, if given, the condition). 3x3 conv -> 1x1 conv -> [cat cond] -> 3x3 conv, ELU
    between; the last conv starts at zero (identity)."""

    def __init__(self, channels: int, hidden: int, cond_channels: int, split: str,
                 change_second: bool, clamp: float, kernel: int = 3):
        super().__init__()
        if split == "halves":
            first, second = list(range(channels - channels // 2)), \
                list(range(channels - channels // 2, channels))
        elif split == "even_odd":
            first, second = list(range(0, channels, 2)), list(range(1, channels, 2))
        elif split.startswith("last_"):  # the multi-scale prior: the channels about to leave
            leaving = int(split[5:])
            first, second = list(range(channels - leaving)), list(range(channels - leaving,
                                                                         channels))
        else:
            raise ValueError(f"unknown coupling split '{split}'")
        keep, change = (first, second) if change_second else (second, first)
        order = keep + change
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.register_buffer("change", torch.tensor(change, dtype=torch.long), persistent=False)
        self.register_buffer("merge", torch.tensor(sorted(range(channels), key=order.__getitem__),
                                                   dtype=torch.long), persistent=False)
        self.clamp = clamp
        self.uses_condition = cond_channels > 0
        self.conv_in = nn.Conv2d(len(keep), hidden, kernel, padding=kernel // 2, bias=False)
        self.conv_mid = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.conv_out = nn.Conv2d(hidden + cond_channels, 2 * len(change), kernel,
                                  padding=kernel // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _params(self, kept, cond):
        hidden = self.conv_mid(F.elu(self.conv_in(kept)))
        if self.uses_condition:
            hidden = torch.cat([hidden, cond], dim=1)
        shift, raw = self.conv_out(F.elu(hidden)).chunk(2, dim=1)
        return shift, soft_clamp(raw, self.clamp)

    def forward(self, x, cond=None):
        kept, changed = x.index_select(1, self.keep), x.index_select(1, self.change)
        shift, log_scale = self._params(kept, cond)
        changed = changed * log_scale.exp() + shift
        y = torch.cat([kept, changed], dim=1).index_select(1, self.merge)
        return y, log_scale.flatten(1).sum(dim=1)

    def reverse(self, y, cond=None):
        kept, changed = y.index_select(1, self.keep), y.index_select(1, self.change)
        shift, log_scale = self._params(kept, cond)
        changed = (changed - shift) * torch.exp(-log_scale)
        return torch.cat([kept, changed], dim=1).index_select(1, self.merge)


class FlowSequence(nn.Module):
    """Invertible blocks in order; log-dets add up, the inverse runs them backwards."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x, cond=None):
        logdet = x.new_zeros(x.shape[0])
        for block in self.blocks:
            x, block_logdet = block(x, cond)
            logdet = logdet + block_logdet
        return x, logdet

    def reverse(self, y, cond=None):
        for block in reversed(self.blocks):
            y = block.reverse(y, cond)
        return y


def macow_unit(channels: int, config: CinnConfig, cond_channels: int) -> FlowSequence:
    hidden = config.mcf_hidden_factor * channels

    def mcf(direction):
        return MaskedConvFlow(channels, hidden, cond_channels, config.mcf_kernel,
                              config.mcf_layers, direction, config.scale_clamp)

    return FlowSequence([mcf("top"), mcf("bottom"), ActNorm(channels),
                         mcf("left"), mcf("right"), ActNorm(channels)])


def macow_step(channels: int, config: CinnConfig, cond_channels: int, seed: int) -> FlowSequence:
    coupling_cond = cond_channels if config.condition_couplings else 0

    def coupling(split, change_second):
        return AffineCoupling(channels, config.coupling_hidden, coupling_cond, split,
                              change_second, config.scale_clamp, config.coupling_kernel)

    units = lambda: [macow_unit(channels, config, cond_channels)  # noqa: E731
                     for _ in range(config.macow_units)]
    return FlowSequence([ActNorm(channels), Shuffle(channels, seed), *units(),
                         coupling("halves", True), coupling("halves", False),
                         ActNorm(channels), *units(),
                         coupling("even_odd", True), coupling("even_odd", False)])


def split_prior(channels: int, leaving: int, config: CinnConfig, cond_channels: int,
                seed: int) -> FlowSequence:
    """Before channels leave: shuffle, couple them on the ones that stay, normalise them."""
    coupling_cond = cond_channels if config.condition_couplings else 0
    return FlowSequence([Shuffle(channels, seed),
                         AffineCoupling(channels, config.coupling_hidden, coupling_cond,
                                        f"last_{leaving}", True, config.scale_clamp,
                                        config.coupling_kernel),
                         _LastChannels(ActNorm(leaving), leaving)])


class _LastChannels(nn.Module):
    """Apply an invertible block to the last `count` channels only."""

    def __init__(self, block: nn.Module, count: int):
        super().__init__()
        self.block = block
        self.count = count

    def forward(self, x, cond=None):
        stay, leave = x[:, :-self.count], x[:, -self.count:]
        leave, logdet = self.block(leave, cond)
        return torch.cat([stay, leave], dim=1), logdet

    def reverse(self, y, cond=None):
        stay, leave = y[:, :-self.count], y[:, -self.count:]
        return torch.cat([stay, self.block.reverse(leave, cond)], dim=1)


class ConditionNet(nn.Module):
    """Reshapes h = cat(image code, poke code) once per call; every conditioned block reads it."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, cond):
        return self.conv2(F.elu(self.conv1(cond)))


class ConditionalInn(nn.Module):
    """z [B, C, H, W] <-> r [B, C, H, W] given cond [B, cond_channels, H, W].

    forward(z, cond) -> (r, logdet [B]);  reverse(r, cond) -> z;  nll / bits_per_dim per sample;
    sample(cond) draws one z per row of cond (repeat cond for several samples of one poke).
    ActNorms initialise from the first forward batch in training mode: run a forward pass on
    real data before training (reverse alone uses them as they are).
    """

    def __init__(self, config: CinnConfig | None = None):
        super().__init__()
        self.config = config = config or CinnConfig.small()
        config.check()
        if config.cond_net_channels:
            self.cond_net = ConditionNet(config.cond_channels, config.cond_net_channels)
            cond_channels = config.cond_net_channels
        else:
            self.cond_net = None
            cond_channels = config.cond_channels
        self.levels = nn.ModuleList()
        channels = config.z_channels
        seed = config.shuffle_seed * 100003
        for steps in config.levels:
            blocks = []
            for _ in range(steps):
                seed += 1
                blocks.append(macow_step(channels, config, cond_channels, seed))
            seed += 1
            blocks.append(split_prior(channels, config.factor_out, config, cond_channels, seed))
            self.levels.append(FlowSequence(blocks))
            channels -= config.factor_out

    def _condition(self, z_or_r: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.config
        expected = (c.z_channels, c.z_size, c.z_size)
        if z_or_r.dim() != 4 or tuple(z_or_r.shape[1:]) != expected:
            raise ValueError(f"cINN input has shape {list(z_or_r.shape)}; expected "
                             f"[batch, {c.z_channels}, {c.z_size}, {c.z_size}]")
        want = (z_or_r.shape[0], c.cond_channels, c.z_size, c.z_size)
        if tuple(cond.shape) != want:
            raise ValueError(f"cINN condition has shape {list(cond.shape)}; expected "
                             f"{list(want)} (image code and poke code concatenated)")
        return self.cond_net(cond) if self.cond_net is not None else cond

    def forward(self, z: torch.Tensor, cond: torch.Tensor):
        h = self._condition(z, cond)
        leaving = self.config.factor_out
        logdet = z.new_zeros(z.shape[0])
        parts = []
        x = z
        for level in self.levels:
            x, level_logdet = level(x, h)
            logdet = logdet + level_logdet
            parts.append(x[:, -leaving:])
            x = x[:, :-leaving]
        return torch.cat(parts + [x], dim=1), logdet

    def reverse(self, r: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self._condition(r, cond)
        leaving = self.config.factor_out
        count = len(self.levels)
        parts = list(r[:, :count * leaving].split(leaving, dim=1))
        x = r[:, count * leaving:]
        for level, part in zip(reversed(self.levels), reversed(parts)):
            x = level.reverse(torch.cat([x, part], dim=1), h)
        return x

    def nll(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """-log p(z | cond) in nats per sample [B] (standard-normal prior on all of r)."""
        r, logdet = self(z, cond)
        dims = r[0].numel()
        log_prior = -0.5 * r.flatten(1).pow(2).sum(dim=1) - 0.5 * dims * math.log(2 * math.pi)
        return -(log_prior + logdet)

    def bits_per_dim(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.nll(z, cond) / (z[0].numel() * math.log(2.0))

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """One z per condition row: r ~ N(0, temperature^2 I), z = reverse(r). The noise is
        drawn on the generator's device, so a CPU generator gives the same z on any device."""
        c = self.config
        shape = (cond.shape[0], c.z_channels, c.z_size, c.z_size)
        noise_device = generator.device if generator is not None else cond.device
        r = torch.randn(shape, generator=generator, device=noise_device, dtype=cond.dtype)
        return self.reverse(r.to(cond.device) * temperature, cond)
