"""The advect method's refiner (`dyntex.refine`, issue 15): a few two-stream iterations started
from the advected clip add what moving the still's pixels cannot (clouds that change shape as
they drift, sparkle on water, a painting's brushwork in motion), while the motion and the
still's full-resolution detail come from advection.

    advected clip (engine/dyntex/advect.py, full resolution)
      -> every frame at the working size (dyntex.size, display float)
      -> synthesize(initial=..., basis=...) (engine/dyntex/synthesis.py): dyntex.refine Adam
         steps of the three-stream loss against the still (appearance, layout), each region's
         exemplar (dynamics) and the dyntex.style painting, on a change that is smooth in time
         (temporal_basis: a few images on slow waves over the loop), frame 1 held
      -> the change it made (refined - advected, working size), upsampled and added to each
         advected full-resolution frame inside the regions (faded in over two working pixels
         inside their edge); pixels outside every region stay the still, bit for bit

Only the change travels to full resolution, so where the refiner leaves a region alone the
advected frame is untouched. Frame 1 is held (a loop still starts and ends on the still).
Each iteration costs about one two-stream iteration at the same size and frame count; the
gradient is taken a few frames at a time (DyntexLoss.backward), so memory does not grow with
the clip's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from engine.dyntex import synthesis
from engine.dyntex.advect import AdvectClip

# A few iterations have to move the pixels: L-BFGS's first steps are tiny (a 2-iteration refine
# changed the meadow by under 0.01 levels), Adam's move each pixel by about its rate at once. At
# 0.01 four steps added 4-15 levels of grain to the meadow's sky and grass; 0.003 keeps the
# texture it adds faint.
REFINE_OPTIMIZER = "adam"
REFINE_LR = 0.003
# The change is smooth in time: HARMONICS sine and cosine waves over the loop (whole cycles),
# each with its own image, zero at frame 1. Free per frame, a few steps of the three-stream loss
# were independent noise in every frame: flicker (the meadow's sky went from 0.69 to 0.83-0.87
# of its change unexplained by motion).
HARMONICS = 2


class RefinedClip:
    """The advected clip with the refiner's change added: iterate it for frames 1 .. N."""

    def __init__(self, advected: AdvectClip, change: torch.Tensor, weight: np.ndarray):
        self.advected = advected
        self.change = change        # [T, 3, h, w] at the working size, display units
        self.weight = weight        # [H, W] how much of the change each pixel takes

    def __len__(self) -> int:
        return len(self.advected)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t, frame in enumerate(self.advected):
            if not self.change[t].any():  # the held first frame: the advected one, bit for bit
                yield frame
            else:
                yield synthesis.add_change(frame, self.change[t], self.weight)


def temporal_basis(frames: int, loop: bool, harmonics: int = HARMONICS) -> torch.Tensor:
    """[frames, 2 x harmonics]: sin(w h t) and 1 - cos(w h t) for h = 1 .. harmonics, all 0 at
    t = 0; w = 2 pi / frames when looping (whole cycles: frame N+1 is frame 1 again), else
    pi / (frames - 1) (half waves over the clip)."""
    t = torch.arange(frames, dtype=torch.float64)
    omega = 2 * math.pi / frames if loop else math.pi / max(1, frames - 1)
    columns = []
    for h in range(1, harmonics + 1):
        columns += [torch.sin(omega * h * t), 1 - torch.cos(omega * h * t)]
    return torch.stack(columns, dim=1).float()


def refine(clip: AdvectClip, job, device, progress) -> AdvectClip | RefinedClip:
    """The job's refiner on an advected clip (`clip` itself when dyntex.refine is 0)."""
    from engine.dyntex.exemplars import EXEMPLARS

    settings = job.dyntex
    if not settings.refine or not clip.regions:
        return clip
    height, width = clip.still.shape[:2]
    config = synthesis.SynthesisConfig(
        frames=clip.frames, size=settings.size, loop=clip.loop, iterations=settings.refine,
        levels=1, optimizer=REFINE_OPTIMIZER, lr=REFINE_LR, seed=job.seed,
        weights=synthesis.loss_weights(settings))
    config.check()
    work_w, work_h = synthesis.working_size(width, height, config.size)
    regions = [synthesis.Region(mask=region.weight,
                                exemplar=region.label if region.label in EXEMPLARS
                                else Path(region.label), name=region.label)
               for region in clip.regions]

    progress.emit("advect", 0, clip.frames)
    frames = []
    for t, frame in enumerate(clip):
        display = torch.from_numpy(synthesis.display_float(frame)).permute(2, 0, 1)[None]
        frames.append(synthesis.resize(display, work_w, work_h)[0])
        progress.emit("advect", t + 1, clip.frames)
    initial = torch.stack(frames)

    painting = None
    if settings.style is not None:
        from engine import frames as frames_io
        painting = frames_io.read_image(settings.style)
    vgg, msoe = synthesis.load_networks(None, None, device)

    def report(done, total, loss, preview):
        progress.emit("refine", done, total, loss=round(loss, 6))

    result = synthesis.synthesize(clip.still, regions, config, vgg=vgg, msoe=msoe,
                                  painting=painting, device=device, callback=report,
                                  first_frame=initial[0], initial=initial,
                                  basis=temporal_basis(clip.frames, clip.loop))
    progress.emit("refine", config.iterations, config.iterations)  # L-BFGS may stop short
    change = (result.clip - initial).float().cpu()
    return RefinedClip(clip, change, result.edge_weight())
