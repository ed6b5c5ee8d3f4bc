"""The warp engine: deterministic, instant, full resolution.

Pokes become a drag field (field.py), eased over the clip (timing.py), static masks pin pixels
(pins.py), and every frame is the full-resolution still backward-warped by the shared renderer
(engine/render.py). `prepare` does all reading and checking, so a bad input fails before any
output folder exists; iterating the result renders one frame at a time (memory O(one frame)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engine import frames
from engine.errors import JobError
from engine.job import Job, read_working_still
from engine.progress import Progress
from engine.render import FrameRenderer
from engine.warp.field import Drag, DragField
from engine.warp.pins import pin_map
from engine.warp.timing import frame_times

# Fall-off radius when neither the poke nor warp.falloff sets one: a fraction of the shorter
# side, about the size of a "part" (a head, a branch) in a typical picture.
DEFAULT_FALLOFF = 0.15


@dataclass
class WarpClip:
    """A prepared warp job: iterate it for the frames (native arrays like the still)."""
    renderer: FrameRenderer
    field: DragField
    times: list[float]

    def __len__(self) -> int:
        return len(self.times)

    def __iter__(self) -> Iterator[np.ndarray]:
        for tau in self.times:
            yield self.renderer.render(self.field.flow(tau))


def prepare(job: Job, device: torch.device, progress: Progress) -> WarpClip:
    if not job.pokes:
        raise JobError("the job has no pokes, so nothing would move; draw at least one arrow "
                       "on the Pokes layer")
    still, width, height, sx, sy = read_working_still(job)
    work_h, work_w = still.shape[:2]
    scale = math.sqrt(sx * sy)  # for lengths (radii, feather): the two differ by rounding only

    static = []
    for index, mask in enumerate(job.masks, 1):
        if mask.label != "static":
            progress.warning(f"mask {index} has label '{mask.label}', which the warp engine does "
                             "not use (only 'static' masks pin pixels); it is ignored")
            continue
        values = frames.read_mask(mask.path, width, height, name=f"mask {index}")
        if not (values >= 0.5).any():
            progress.warning(f"mask {index} ({mask.path.name}) is empty; it is ignored")
            continue
        static.append(_resize_mask(values, work_w, work_h))
    pin = pin_map(static, job.warp.feather * scale)
    del static

    falloff = job.warp.falloff or DEFAULT_FALLOFF * min(width, height)
    drags = [Drag(start=(p.start[0] * sx, p.start[1] * sy),
                  vector=(p.vector[0] * sx, p.vector[1] * sy),
                  radius=max((p.radius or falloff) * scale, 0.5))
             for p in job.pokes]
    if pin is not None:
        for index, drag in enumerate(drags, 1):
            column = min(work_w - 1, int(drag.start[0]))
            row = min(work_h - 1, int(drag.start[1]))
            if pin[row, column] >= 1.0:
                progress.warning(f"poke {index} starts inside a static mask, so it cannot move "
                                 "anything; move the poke or the mask")
    field = DragField(drags, work_w, work_h, pin=pin)
    gate = None
    if pin is not None:  # the renderer multiplies flows by 1 - pin; reuse the memory
        gate = np.subtract(1.0, pin, out=pin)
        del pin
    renderer = FrameRenderer(still, device, gate=gate)
    return WarpClip(renderer, field, frame_times(job.frames, job.easing, job.loop))


def working_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """The render size: the still's, or scaled so its longer side is max_size (never up)."""
    longest = max(width, height)
    if max_size <= 0 or longest <= max_size:
        return width, height
    factor = max_size / longest
    return max(1, round(width * factor)), max(1, round(height * factor))


def _resize_mask(values: np.ndarray, width: int, height: int) -> np.ndarray:
    if values.shape == (height, width):
        return values
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_AREA)
