"""Losses of two-stream dynamic texture synthesis with the landscape study's additions.

For one masked region r of a clip x (T frames, working resolution), with m_r its mask:

    L_app   = λ3 · L_style + λ4 · L2                 appearance: keep the still's look
    L_style = Gram(VGG(x_t), m_r) vs Gram(VGG(still), m_r)      per layer, mean over frames
    L2      = masked mean |VGG(x_t) − VGG(still)|² inside m_r   per layer, mean over frames
    L_dyn   = (1 − c) · L_pairs + c · L_contrast                   c = dynamics_contrast
    L_pairs = Gram(MSOE(x_t, x_t+1), m_r) vs the exemplar's mean pair Gram; mean over pairs,
              plus the wrap-around pair (x_T, x_1) when the clip loops (grey = mean of RGB)
    L_contrast = the same with each pair's Gram minus the Gram of its first frame held still,
              Gram(MSOE(x_t, x_t+1)) − Gram(MSOE(x_t, x_t)), on both sides
    L_paint = Gram(VGG(x_t), m_r) vs Gram(VGG(painting))       the optional style stream
    L       = Σ_r  λ5 · L_app + λ6 · L_dyn + λ7 · L_paint

Grams are `engine.vgg.gram` (mean of f fᵀ over the mask's positions), so a region's
statistics ignore everything outside it and do not depend on its size.

Why the motion contrast. MSOE's energies respond to spatial structure as much as to motion, so a
pair's Gram is mostly the texture's appearance: between two draws of the clouds exemplar the
appearance difference swamps the motion, and the plain pair Gram of the clouds or the waterfall
moving backwards, shuffled (flicker) or frozen is as close to the exemplar's as the right
motion (ratios 1.0-1.5 at 64-128 px, `train-msoe --evaluate`, library_separation). Subtracting
the Gram of the same frame held still removes most of that appearance part: the clouds'
reversed and shuffled ratios rise to 11 at 128 px, the waterfall's to 3.5 and 6.6
(docs/dyntex.md). On the sky of a real photo (Big Buck Bunny's frame 0, a flat pale sky, 128 px)
the plain Gram let the sky flicker at 31x the clouds exemplar's speed; with the share 0.5 it
moves at 1.8x, its direction matches 0.90 instead of 0.55 and frame 0 keeps more of the still
(SSIM 0.81 instead of 0.77). The cost: a still clip has no contrast at all (each pair is its
own held frame), so where two draws' contrasts disagree freezing is the nearest answer (64 px
clouds of the library slow to 0.18 of their speed), and on the library's own textured stills at
128 px, where the plain Gram already finds the motion, it loses a little (clouds' direction
0.91 -> 0.86). A sky that holds still is a smaller failure than one that boils, so 0.5 is the
default; L_pairs keeps half the weight against freezing.

Normalisation. The VGG here is not Gatys-normalised: per-layer Gram magnitudes differ by
~500x, and every magnitude changes with resolution. So each layer's term of each stream is
divided by its own reference value, and the layers are then averaged: every term is ~1 when the
clip is as far from its target as the reference, whatever the resolution, and the weights
(the report's λ3 = 1, λ4 ∈ {0, 0.1}, λ5 = 1, λ7 = 0.1; λ6 = 1 rather than its 10, see
LossWeights) keep their meaning.

The reference is the value "at the start" of a two-stream synthesis as the paper runs it: a
featureless clip (the still with the region filled by its mean colour, not moving). We do not
use the value at *our* start, because synthesis starts from the still itself (see
synthesis.py): there the appearance and L2 terms are ~0 (only the start noise), and dividing by
them would make any change of the region cost thousands and freeze it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from engine.dyntex.msoe import MsoeNet, clip_pairs
from engine.errors import JobError
from engine.vgg import APPEARANCE_LAYERS, Vgg19Features, gram, layer_stride


@dataclass
class LossWeights:
    """The λ of the landscape study and which VGG layers each term reads."""
    style: float = 1.0       # λ3: appearance Gram (the still's own texture statistics)
    l2: float = 0.0          # λ4: L2 feature term (layout); 0.1 for clouds/wheat, rivers liked
    #                              appearance from L2 only (style 0, l2 1)
    appearance: float = 1.0  # λ5: the appearance stream L_app
    dynamics: float = 1.0    # λ6: the dynamics stream (MSOE Grams vs the exemplar). The study
    #                          used 10 under its own normalisation; under ours 10 sacrificed the
    #                          appearance (a cloudless sky grew flickering grey blobs, its style
    #                          term ended above a flat fill's) and 1 matched the library's motion
    #                          statistics as well or better (docs/dyntex.md)
    painting: float = 0.1    # λ7: the style stream (VGG Grams vs a painting), when given one
    appearance_layers: tuple[str, ...] = APPEARANCE_LAYERS
    l2_layers: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4")
    painting_layers: tuple[str, ...] = APPEARANCE_LAYERS
    border: int = 16         # px of reflected still around the clip before VGG, on the sides a
    #                          region comes near (0: VGG's own zero padding); a multiple of 16
    erode: int = 1           # feature cells a region's mask is eroded by for the VGG Grams
    dynamics_erode: int = 4  # pixels it is eroded by for the MSOE Gram (the finest level sees
    #                          7 px around a pixel: 11x11 filters, 5x5 max-pool)
    dynamics_contrast: float = 0.5  # share of L_dyn taken by the motion contrast (module doc:
    #                          stops a flat sky flickering; 0 = the paper's loss); > 0 costs a
    #                          second MSOE pass over the frames held still

    def check(self) -> None:
        for name in ("style", "l2", "appearance", "dynamics", "painting"):
            value = getattr(self, name)
            if not value >= 0:
                raise JobError(f"loss weight {name} must be >= 0, got {value}")
        if self.appearance * (self.style + self.l2) + self.dynamics + self.painting <= 0:
            raise JobError("all loss weights are zero, so there is nothing to optimise")
        if self.border < 0 or self.border % 16:
            raise JobError(f"border must be a multiple of 16 pixels (VGG's pool4 stride), got "
                           f"{self.border}")
        if self.erode < 0 or self.dynamics_erode < 0:
            raise JobError("mask erosion must be >= 0")
        if not 0 <= self.dynamics_contrast <= 1:
            raise JobError(f"dynamics_contrast is a share between 0 and 1, got "
                           f"{self.dynamics_contrast}")


@dataclass
class RegionTarget:
    """What one region's frames are pulled towards (all at the working resolution)."""
    mask: torch.Tensor                        # [1, 1, h, w] in [0, 1]
    appearance: dict[str, torch.Tensor]       # layer -> [1, C, C] Gram of the still in the mask
    still_features: dict[str, torch.Tensor]   # layer -> [1, C, h', w'] (for L2)
    dynamics: torch.Tensor                    # [1, 320, 320] mean pair Gram of the exemplar
    contrast: torch.Tensor | None             # [1, 320, 320] mean of pair minus held Grams
    scales: dict[str, torch.Tensor] = field(default_factory=dict)  # "term/layer" -> reference
    statistics: dict[str, torch.Tensor] = field(default_factory=dict)  # layer (or "dynamics")
    #                                   -> [1, 1, h', w'] the eroded mask its Gram is taken over


def flat_grey(clip: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] -> [T, H, W], the plain mean of R, G and B: the grey the dynamics stream
    sees. Its gradient moves the three channels equally, so motion changes brightness and never
    hue. (With the 0.299/0.587/0.114 luma weights green takes five times the push of blue, and
    our first real bakes grew green and magenta blotches in a pale sky.) MSOE normalises the
    contrast of each pair, so the slightly different grey is immaterial to it."""
    return clip.mean(1)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the mask's positions (weighted, area-resampled like `gram`) and channels of
    (a − b)², per sample: [N, C, h, w] x [1 or N, C, h, w] -> [N]."""
    n, c, h, w = a.shape
    weights = torch.nn.functional.adaptive_avg_pool2d(mask.float(), (h, w))
    area = weights.sum()
    if area <= 0:
        raise JobError(f"a mask is empty at the {w}x{h} feature resolution; draw a larger "
                       "region or synthesize at a higher resolution")
    return (((a - b) ** 2).mean(1, keepdim=True) * weights).sum((1, 2, 3)) / area


def eroded_mask(mask: torch.Tensor, size: tuple[int, int], cells: int) -> torch.Tensor:
    """The mask area-resampled to `size` ([1, 1, h, w]) and eroded by `cells` cells, the image
    border not counting as an edge. A feature next to the mask's edge sees the still outside
    (a tree's edge in a sky); left in, it teaches the region's Gram to grow tree-coloured
    blotches. Falls back to the plain resampled mask where erosion would leave less than one
    cell (a small region at a deep layer)."""
    weights = F.adaptive_avg_pool2d(mask.float(), size)
    if cells <= 0:
        return weights
    # max_pool pads with -inf, so -max(-m) is a min over the window that ignores the border
    eroded = -F.max_pool2d(-weights, 2 * cells + 1, stride=1, padding=cells)
    return eroded if float(eroded.sum()) >= 1.0 else weights


def border_padding(masks: list[torch.Tensor], border: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) pixels of reflected still to add before VGG: `border` on each
    side that some mask comes within `border` pixels of, else 0. VGG pads every convolution
    with zeros, which is the ImageNet mean grey after Caffe preprocessing: features along the
    border see a dark frame, and a region touching it (a sky at the top) grew a dark band."""
    if border <= 0:
        return (0, 0, 0, 0)
    union = torch.stack([m.reshape(m.shape[-2:]) for m in masks]).amax(0) > 0
    rows, cols = union.any(1), union.any(0)
    return (border * int(bool(cols[:border].any())), border * int(bool(cols[-border:].any())),
            border * int(bool(rows[:border].any())), border * int(bool(rows[-border:].any())))


def gram_distance(features: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """Σ (Gram(f, mask) − target)² per sample: [N, C, h, w] -> [N]."""
    return ((gram(features, mask) - target) ** 2).sum((1, 2))


class DyntexLoss:
    """L(clip) for a clip [T, 3, h, w] in [0, 1] at the working resolution, over every region.

    `terms(clip)` gives each weighted term (for logs and tests); calling the object gives their
    sum. Targets and reference scales are computed once, at construction, without gradients."""

    def __init__(self, vgg: Vgg19Features, msoe: MsoeNet, still: torch.Tensor,
                 masks: list[torch.Tensor], exemplars: list[torch.Tensor],
                 weights: LossWeights | None = None, painting: torch.Tensor | None = None,
                 loop: bool = False):
        self.vgg, self.msoe = vgg, msoe
        self.weights = weights or LossWeights()
        self.weights.check()
        self.loop = loop
        if len(masks) != len(exemplars) or not masks:
            raise JobError("every region needs one mask and one exemplar")
        still = still.reshape(1, *still.shape[-3:]).float()
        self.shape = tuple(still.shape[-2:])
        w = self.weights
        self.layers = tuple(dict.fromkeys(
            (w.appearance_layers if w.style and w.appearance else ())
            + (w.l2_layers if w.l2 and w.appearance else ())
            + (w.painting_layers if w.painting and painting is not None else ())))
        self.painting = None
        for mask in masks:
            if tuple(mask.shape[-2:]) != self.shape:
                raise JobError(f"a region mask is {mask.shape[-1]}x{mask.shape[-2]} but the "
                               f"still is {self.shape[1]}x{self.shape[0]}")
        self.padding = border_padding(masks, w.border) if min(self.shape) > w.border else \
            (0, 0, 0, 0)
        with torch.no_grad():
            still_features = self._vgg(still)
            if painting is not None and w.painting:
                painting = painting.reshape(1, *painting.shape[-3:]).float()
                feats = self.vgg(painting.to(still.device), w.painting_layers)
                self.painting = {name: gram(feats[name]) for name in w.painting_layers}
            self.regions = []
            for mask, exemplar in zip(masks, exemplars):
                mask = mask.reshape(1, 1, *mask.shape[-2:]).float().to(still.device)
                if float(mask.sum()) <= 0:
                    raise JobError("a region mask is empty at the working resolution; draw a "
                                   "larger region or raise the working size")
                if exemplar.shape[0] < 2:
                    raise JobError(f"an exemplar needs at least 2 frames for motion, got "
                                   f"{exemplar.shape[0]}")
                pairs = clip_pairs(flat_grey(exemplar.float().to(still.device)), wrap=False)
                # pair by pair: 320 feature channels per pixel add up fast at 256 px
                dyn = torch.cat([gram(self.msoe.features(pair[None])) for pair in pairs])
                contrast = None
                if w.dynamics_contrast:
                    held = torch.cat([gram(self.msoe.features(pair[None, :1].expand(1, 2, -1, -1)))
                                      for pair in pairs])
                    contrast = (dyn - held).mean(0, keepdim=True)
                dyn = dyn.mean(0, keepdim=True)
                statistics = {n: eroded_mask(mask, tuple(f.shape[-2:]), w.erode)
                              for n, f in still_features.items()}
                statistics["dynamics"] = eroded_mask(mask, self.shape, w.dynamics_erode)
                target = RegionTarget(
                    mask=mask,
                    appearance={n: gram(still_features[n], statistics[n])
                                for n in w.appearance_layers if n in still_features},
                    still_features={n: still_features[n] for n in w.l2_layers
                                    if n in still_features},
                    dynamics=dyn, contrast=contrast, statistics=statistics)
                self.regions.append(target)
            # Reference scales: the terms of a featureless, motionless clip (module docstring).
            flat = still.clone()
            for target in self.regions:
                m = target.mask[0]
                area = m.sum()
                mean = (flat[0] * m).sum((1, 2), keepdim=True) / area
                flat[0] = flat[0] * (1 - m) + mean * m
            reference = flat.expand(2, -1, -1, -1)
            features, motion = self._vgg(reference), self._motion(reference)
            for index, target in enumerate(self.regions):
                raw = self._raw_terms(reference, index, features, motion)
                target.scales = {key: value.clamp_min(1e-12) if float(value) > 1e-12
                                 else torch.ones_like(value) for key, value in raw.items()}

    def _vgg(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of the clip, as if VGG had reflect-padded its input (border_padding):
        the clip is padded with its own reflection and each feature map cropped back to the
        size the unpadded clip would give (exact: the border is a multiple of every stride)."""
        if not self.layers:
            return {}
        left, right, top, bottom = self.padding
        if not any(self.padding):
            return self.vgg(clip, self.layers)
        padded = F.pad(clip, (left, right, top, bottom), mode="reflect")
        out = {}
        h, w = self.shape
        for name, f in self.vgg(padded, self.layers).items():
            s = layer_stride(name)
            out[name] = f[..., top // s:top // s + h // s, left // s:left // s + w // s]
        return out

    def _motion(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """MSOE features of the clip's pairs (with the wrap-around pair when looping)."""
        if not self.weights.dynamics:
            return None
        return self._pair_motion(clip_pairs(flat_grey(clip), wrap=self.loop and clip.shape[0] > 2))

    def _pair_motion(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """MSOE features of grey pairs [P, 2, h, w] and, for the motion contrast, of each pair's
        first frame held still (one batch: the same network pass for both)."""
        if not self.weights.dynamics_contrast:
            return self.msoe.features(pairs), None
        held = pairs[:, :1].expand(-1, 2, -1, -1)
        features = self.msoe.features(torch.cat([pairs, held]))
        return features[:len(pairs)], features[len(pairs):]

    def _raw_terms(self, clip: torch.Tensor | None, index: int, features: dict[str, torch.Tensor],
                   motion, counts: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Unnormalised per-layer terms of region `index`, each averaged over frames/pairs
        (features: VGG of the clip; motion: MSOE of its pairs, shared by all regions). With
        `counts` (frames, pairs) the features are those of a part of the clip, and each term is
        its part's sum over the whole clip's count: the parts' terms add up to the whole's."""
        w, target = self.weights, self.regions[index]
        mask = target.mask

        def frames_mean(values: torch.Tensor) -> torch.Tensor:
            return values.mean() if counts is None else values.sum() / counts[0]

        def pairs_mean(values: torch.Tensor) -> torch.Tensor:
            return values.mean() if counts is None else values.sum() / counts[1]

        raw = {}
        statistics = target.statistics
        if w.appearance and w.style and features:
            for name, g in target.appearance.items():
                raw[f"style/{name}"] = frames_mean(gram_distance(features[name], g,
                                                                 statistics[name]))
        if w.appearance and w.l2 and features:
            for name, f in target.still_features.items():
                raw[f"l2/{name}"] = frames_mean(masked_mse(features[name], f, mask))
        if self.painting is not None and features:
            for name, g in self.painting.items():
                raw[f"painting/{name}"] = frames_mean(gram_distance(features[name], g,
                                                                    statistics[name]))
        if motion is not None:
            moving, held = motion
            where = statistics["dynamics"]
            moving_gram = gram(moving, where)
            raw["dynamics/pairs"] = pairs_mean(((moving_gram - target.dynamics) ** 2).sum((1, 2)))
            if held is not None:
                contrast = moving_gram - gram(held, where)
                raw["dynamics/contrast"] = pairs_mean(
                    ((contrast - target.contrast) ** 2).sum((1, 2)))
        return raw

    def _check(self, clip: torch.Tensor) -> None:
        if clip.ndim != 4 or clip.shape[1] != 3 or tuple(clip.shape[-2:]) != self.shape:
            raise ValueError(f"expected a clip [T, 3, {self.shape[0]}, {self.shape[1]}], got "
                             f"{list(clip.shape)}")

    def _combine(self, raws: list[dict[str, torch.Tensor]], like: torch.Tensor
                 ) -> dict[str, torch.Tensor]:
        """Per-region raw terms -> the normalised, weighted terms (see `terms`); linear in
        every raw term, so terms of a clip's parts add up to the whole clip's."""
        zero = like.new_zeros(())
        sums = {"style": zero, "l2": zero, "dynamics": zero, "painting": zero}
        share = {"dynamics/pairs": 1 - self.weights.dynamics_contrast,
                 "dynamics/contrast": self.weights.dynamics_contrast}
        for target, raw in zip(self.regions, raws):
            for kind in sums:
                keys = [k for k in raw if k.split("/")[0] == kind]
                if kind == "dynamics" and keys:  # a weighted pair, not a mean over layers
                    sums[kind] = sums[kind] + sum(share[k] * raw[k] / target.scales[k]
                                                  for k in keys) / sum(share[k] for k in keys)
                elif keys:
                    sums[kind] = sums[kind] + sum(raw[k] / target.scales[k] for k in keys) \
                        / len(keys)
        w = self.weights
        out = dict(sums)
        out["appearance"] = w.style * sums["style"] + w.l2 * sums["l2"]
        out["total"] = (w.appearance * out["appearance"] + w.dynamics * sums["dynamics"]
                        + w.painting * sums["painting"])
        return out

    def terms(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"appearance", "style", "l2", "dynamics", "painting"}: the normalised terms summed
        over regions; "appearance" = λ3·style + λ4·l2 and the total is
        λ5·appearance + λ6·dynamics + λ7·painting (`total`)."""
        self._check(clip)
        features, motion = self._vgg(clip), self._motion(clip)
        return self._combine([self._raw_terms(clip, index, features, motion)
                              for index in range(len(self.regions))], clip)

    def backward(self, clip: torch.Tensor, chunk: int = 4) -> dict[str, float]:
        """The terms of `clip` (a tensor that requires grad) as floats, with d total / d clip
        accumulated into clip.grad, computed `chunk` frames (then `chunk` pairs) at a time.
        Exact (every term is a mean over frames or over pairs, and `_combine` is linear), and
        its memory is that of a chunk, whatever the clip's length: the whole graph of a 48-frame
        clip at 256 px is tens of GB."""
        self._check(clip)
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        count = clip.shape[0]
        wrap = self.loop and count > 2
        pairs = [(t, t + 1) for t in range(count - 1)] + ([(count - 1, 0)] if wrap else [])
        counts = (count, len(pairs))
        totals: dict[str, float] = {}

        def add(raws) -> None:
            out = self._combine(raws, clip)
            if out["total"].requires_grad:
                out["total"].backward()
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach())

        regions = range(len(self.regions))
        if self.layers:
            for a in range(0, count, chunk):
                features = self._vgg(clip[a:a + chunk])
                add([self._raw_terms(None, i, features, None, counts) for i in regions])
        if self.weights.dynamics:
            for a in range(0, len(pairs), chunk):
                first, second = zip(*pairs[a:a + chunk])
                grey = torch.stack([flat_grey(clip[list(first)]),
                                    flat_grey(clip[list(second)])], dim=1)
                motion = self._pair_motion(grey)
                add([self._raw_terms(None, i, {}, motion, counts) for i in regions])
        for key in ("style", "l2", "dynamics", "painting", "appearance", "total"):
            totals.setdefault(key, 0.0)
        return totals

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.terms(clip)["total"]


__all__ = ["LossWeights", "RegionTarget", "DyntexLoss", "gram_distance", "masked_mse",
           "flat_grey"]
