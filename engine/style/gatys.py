"""Painting statistics onto a still: Gatys et al.'s optimisation, coarse to fine, at a fixed cost.

The image is optimised so its VGG-19 Gram matrices (relu1_1 .. relu4_1) match a target and its
relu4_1 features stay the still's. The target at strength s is (1 - s) x the still's own Grams +
s x the painting's: at 0 the still is already the optimum, at 1 it is Gatys' full style loss.

Cost is what decides the design on a CPU: one forward and backward pass through VGG-19 to relu4_1
costs ~1.4 s at 512 x 288 on two cores and grows with the pixel count, so a 1920 x 1080 level
(~28 s an evaluation) is out of reach of a one-minute budget. The optimisation therefore runs on a
pyramid whose finest level has a fixed pixel count (`StyleConfig.area`), whatever the still's
size, and the full-resolution result is

    colour-transferred still (per pixel, exact at any size; colour.py)
    + the optimisation's residual over that starting point, upsampled (bicubic)

so the still's own fine detail (edges, texture finer than the working level) is kept at full
resolution, and the brushwork, which the painting carries at its own scale anyway, is drawn at
the working level. The painting is resampled to the same pixel count as each level, so its strokes
keep their size relative to the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.style.colour import lab_statistics, transfer_colour
from engine.vgg import Vgg19Features, gram

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_1"
# Levels narrower than this on their shorter side carry too few relu4_1 positions (1/8 scale)
# for a Gram to mean anything.
MIN_LEVEL_SIDE = 64


@dataclass(frozen=True)
class StyleConfig:
    area: int = 160_000             # pixels of the finest optimised level (~533 x 300 at 16:9)
    levels: int = 2                 # pyramid levels, each half the side of the next
    # loss evaluations per level, coarsest first: (50, 16) is ~50 s at 1920 x 1080 on two cores
    # and measures as (60, 24) did at ~70 s (docs/style.md)
    evaluations: tuple[int, ...] = (50, 16)
    content_weight: float = 0.5     # relu4_1 match (1: timid strokes; 0.3: outlines start to go)
    range_weight: float = 10.0      # keeps L-BFGS (which has no bounds) inside [0, 1]

    def total_evaluations(self, levels: int) -> int:
        return sum(self.level_evaluations(levels))

    def level_evaluations(self, levels: int) -> list[int]:
        """Evaluations for `levels` levels (coarsest first); a still too small for the full
        pyramid gets the finest levels' budgets."""
        counts = list(self.evaluations[-levels:])
        return [counts[0]] * (levels - len(counts)) + counts


def level_sizes(width: int, height: int, config: StyleConfig) -> list[tuple[int, int]]:
    """(w, h) of each optimised level, coarsest first; never above the still's own size."""
    scale = min(1.0, math.sqrt(config.area / (width * height)))
    sizes = []
    for level in range(config.levels):
        factor = scale / 2 ** level
        w, h = max(1, round(width * factor)), max(1, round(height * factor))
        if min(w, h) < MIN_LEVEL_SIDE and sizes:
            break
        sizes.append((w, h))
    return sizes[::-1]


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def painting_at(painting: np.ndarray, area: int) -> np.ndarray:
    """The painting resampled to `area` pixels, its aspect kept."""
    h, w = painting.shape[:2]
    scale = math.sqrt(area / (w * h))
    return resize_rgb(painting, max(1, round(w * scale)), max(1, round(h * scale)))


def _tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)


def _grams(vgg: Vgg19Features, rgb: torch.Tensor, mask: torch.Tensor | None = None
           ) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        features = vgg(rgb, STYLE_LAYERS)
    return {name: gram(features[name], mask) for name in STYLE_LAYERS}


def stylize_rgb(rgb: np.ndarray, painting: np.ndarray, strength: float, vgg: Vgg19Features,
                config: StyleConfig = StyleConfig(),
                callback: Callable[[int, int], None] | None = None,
                region: np.ndarray | None = None) -> np.ndarray:
    """float32 sRGB H x W x 3 in [0, 1] -> the same, with the painting's statistics at
    `strength` (0..1). painting: float32 sRGB h x w x 3 in [0, 1]. callback(done, total) after
    each loss evaluation. region: H x W weights of the part that will be kept (style "masks"):
    its colour statistics and Grams, not the whole picture's, are moved to the painting's, so a
    sky stylized alone takes the painting's palette and strokes rather than a share of the whole
    still's shift."""
    device = next(vgg.parameters()).device
    height, width = rgb.shape[:2]
    painting_stats = lab_statistics(painting)
    picture_stats = lab_statistics(rgb, region)
    base = transfer_colour(rgb, painting_stats, strength, picture_stats)
    sizes = level_sizes(width, height, config)
    budgets = config.level_evaluations(len(sizes))
    total, done = sum(budgets), 0

    residual = None  # the optimisation's change over the colour-transferred still, last level
    for (w, h), budget in zip(sizes, budgets):
        base_level = resize_rgb(base, w, h)
        mask = None if region is None else torch.from_numpy(
            np.ascontiguousarray(resize_rgb(region.astype(np.float32), w, h))).to(device)
        start = base_level if residual is None else np.clip(
            base_level + resize_rgb(residual, w, h), 0.0, 1.0)
        painting_grams = _grams(vgg, _tensor(painting_at(painting, w * h), device))
        # From the colour-transferred still, not the still: the palette step is not undone.
        base_grams = _grams(vgg, _tensor(base_level, device), mask)
        targets = {name: torch.lerp(base_grams[name], painting_grams[name], strength)
                   for name in STYLE_LAYERS}
        scales = {name: targets[name].square().mean().clamp_min(1e-12) for name in STYLE_LAYERS}
        with torch.no_grad():
            content = vgg(_tensor(base_level, device), (CONTENT_LAYER,))[CONTENT_LAYER]
        content_scale = content.square().mean().clamp_min(1e-12)

        x = _tensor(start, device).clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=budget, max_eval=budget,
                                      history_size=20, tolerance_grad=0.0,
                                      tolerance_change=0.0)

        def closure():
            nonlocal done
            optimiser.zero_grad()
            features = vgg(x, STYLE_LAYERS)
            loss = sum((gram(features[name], mask) - targets[name]).square().mean()
                       / scales[name] for name in STYLE_LAYERS) / len(STYLE_LAYERS)
            loss = loss + config.content_weight * (
                (features[CONTENT_LAYER] - content).square().mean() / content_scale)
            loss = loss + config.range_weight * (F.relu(x - 1.0).square().mean()
                                                 + F.relu(-x).square().mean())
            loss.backward()
            done += 1
            if callback is not None:
                callback(min(done, total), total)
            return loss

        optimiser.step(closure)
        done = sum(budgets[:sizes.index((w, h)) + 1])
        result = x.detach().clamp(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy()
        residual = result - base_level

    out = base + resize_rgb(residual, width, height)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
