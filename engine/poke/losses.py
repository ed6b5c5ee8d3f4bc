"""Losses of iPOKE's first stage: the video autoencoder, the image/poke autoencoders and the
patch discriminators (as in the iPOKE paper's first stage).

Video AE (generator side):  10 * L1 + 10 * VGG-19 perceptual + 1e-7 * KL
                            + hinge adversarial (both discriminators) + feature matching (temporal)
Discriminators:             hinge, + R1 gradient penalty on real clips (temporal)
Code autoencoders:          (L1 [+ perceptual]) / exp(logvar) + logvar, logvar learned

Frames are in [-1, 1] throughout. The perceptual loss maps them to [0, 1] for engine/vgg.py,
which applies the Caffe preprocessing itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine import vgg as vgg_module

# pix2pixHD's VGG loss slices (as the original's VGGLoss), each ending at the first ReLU of a
# block; at 64 px relu5_1 is 4 x 4.
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (recon.float() - target.float()).abs().mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the latent, mean over the batch."""
    mu, logvar = mu.float(), logvar.float()
    per_sample = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    return per_sample.mean()


class PerceptualLoss(nn.Module):
    """L1 between VGG-19 features of two images or clips ([..., 3, H, W] in [-1, 1]).

    Each layer's distance is divided by the mean magnitude of the target's features, then the
    layers are averaged: with Caffe's 0-255 input the raw activations run to the hundreds and
    grow with depth, and this keeps every layer (and the whole term) of order 1, so the
    original's weight of 10 means what it meant with torchvision's normalised VGG.

    vgg: any `engine.vgg.Vgg19Features` (tests inject random weights); default: the shared
    ImageNet weights from `load_vgg19()`. The network stays frozen; gradients flow to the
    input only."""

    def __init__(self, vgg: vgg_module.Vgg19Features | None = None,
                 layers: tuple[str, ...] = PERCEPTUAL_LAYERS, eps: float = 1e-6):
        super().__init__()
        self.vgg = vgg if vgg is not None else vgg_module.load_vgg19()
        self.vgg.requires_grad_(False).eval()
        self.layers = tuple(layers)
        self.eps = eps

    def train(self, mode: bool = True):  # the VGG never leaves eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def _features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.reshape(-1, *images.shape[-3:])
        return self.vgg((images.float() + 1.0) * 0.5, self.layers)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if recon.shape != target.shape:
            raise ValueError(f"perceptual loss: shapes differ {list(recon.shape)} vs "
                             f"{list(target.shape)}")
        with torch.no_grad():
            wanted = self._features(target)
        got = self._features(recon)
        total = 0.0
        for name in self.layers:
            scale = wanted[name].abs().mean() + self.eps
            total = total + (got[name] - wanted[name]).abs().mean() / scale
        return total / len(self.layers)


def pick_frames(recon: torch.Tensor, target: torch.Tensor, count: int | None,
                generator: torch.Generator | None = None):
    """The same `count` random frames (per batch) of two clips [B, T, ...]: VGG on every frame
    of every clip dominates a CPU training step, and a few frames per step give the same
    expected loss."""
    frames = recon.shape[1]
    if count is None or count >= frames:
        return recon, target
    index = torch.randperm(frames, generator=generator)[:count].to(recon.device)
    return recon.index_select(1, index), target.index_select(1, index)


@dataclass(frozen=True)
class VideoAeLossWeights:
    """The original's weights (first_stage.yaml)."""
    l1: float = 10.0
    perceptual: float = 10.0
    kl: float = 1e-7
    temporal_adversarial: float = 1.0
    spatial_adversarial: float = 1.0
    feature_matching: float = 1.0
    r1: float = 1.0
    perceptual_frames: int | None = 4   # frames per clip that go through VGG (None: all)


def video_ae_reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,
                                 logvar: torch.Tensor, weights: VideoAeLossWeights =
                                 VideoAeLossWeights(), perceptual: PerceptualLoss | None = None,
                                 generator: torch.Generator | None = None
                                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """recon, target: the 10 frames after x0 [B, 10, 3, H, W]. Returns (total, parts)."""
    parts = {"l1": l1(recon, target), "kl": kl_divergence(mu, logvar)}
    total = weights.l1 * parts["l1"] + weights.kl * parts["kl"]
    if perceptual is not None and weights.perceptual > 0:
        picked_recon, picked_target = pick_frames(recon, target, weights.perceptual_frames,
                                                  generator)
        parts["perceptual"] = perceptual(picked_recon, picked_target)
        total = total + weights.perceptual * parts["perceptual"]
    return total, {name: float(value.detach()) for name, value in parts.items()}


def motion_ae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,
                   logvar: torch.Tensor, flow_scale: float, weights: VideoAeLossWeights =
                   VideoAeLossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """Motion-space autoencoder: L1 between decoded and DIS flows [B, 10, 2, H, W] (64-px
    units, divided by flow_scale so it is of the order of the pixel loss) + the same KL.
    No perceptual or adversarial term: sharpness comes from warping the still itself."""
    parts = {"flow_l1": l1(recon, target) / flow_scale, "kl": kl_divergence(mu, logvar)}
    total = weights.l1 * parts["flow_l1"] + weights.kl * parts["kl"]
    return total, {name: float(value.detach()) for name, value in parts.items()}


def code_autoencoder_loss(recon: torch.Tensor, target: torch.Tensor, logvar: torch.Tensor, *,
                          perceptual: PerceptualLoss | None = None,
                          perceptual_weight: float = 1.0
                          ) -> tuple[torch.Tensor, dict[str, float]]:
    """rec / exp(logvar) + logvar with rec = mean L1 (+ weight x perceptual distance)."""
    rec_l1 = l1(recon, target)
    rec = rec_l1
    parts = {"l1": float(rec_l1.detach())}
    if perceptual is not None and perceptual_weight > 0:
        distance = perceptual(recon, target)
        rec = rec + perceptual_weight * distance
        parts["perceptual"] = float(distance.detach())
    total = rec / logvar.exp() + logvar
    parts["logvar"] = float(logvar.detach())
    return total, parts


# --------------------------------------------------------------------------------------------
# Adversarial


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor
                             ) -> torch.Tensor:
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


def feature_matching_loss(fake_features: list[torch.Tensor],
                          real_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of L1 between the discriminator's features of generated and real clips
    (the real ones are targets: no gradient)."""
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature matching needs the same non-empty list of layers for both")
    total = 0.0
    for fake, real in zip(fake_features, real_features):
        total = total + (fake.float() - real.detach().float()).abs().mean()
    return total / len(fake_features)


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """E[|grad_x D(x)|^2] on real inputs (Mescheder et al. 2018). `real_inputs` must have had
    requires_grad set before the discriminator saw them."""
    grad, = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()
