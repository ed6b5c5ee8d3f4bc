"""Pokes -> a smooth, invertible displacement field: the warp engine's motion model.

What an artist expects from dragging an arrow across a picture is that the part under the arrow's
start is carried along the arrow and ends up at its tip, its surroundings following less and
less with distance, and nothing far away moving. We model exactly that as a *drag*: every poke i
has a brush centre travelling along its path, c_i(tau) = start_i + tau * vector_i, tau: 0 -> 1,
and the content moves with the velocity field

    u(p, tau) = (1 - pin(p)) * sum_i w_i * vector_i / max(1, sum_i w_i),
    w_i = bell(|p - c_i(tau)| / radius_i).

- The bell is 1 on a core (a quarter of the radius) and falls smoothly (C2) to exactly 0 at the
  radius: the part under the brush is carried rigidly, and beyond the radius of every path the
  still is untouched. (A Gaussian never reaches zero, and truncating one leaves a seam; this
  bell is Gaussian-like in shape with compact support.)
- The point under start_i moves with the brush centre (u = vector_i there), so at tau = 1 it is
  exactly at end_i, unless another poke or a mask overlaps it.
- The motion is the flow of a smooth velocity field, so it is invertible for any drag length:
  content is pushed ahead and stretched behind but never folds over or tears.
- Overlapping pokes blend by weight and are normalised once their weights add beyond 1, so two
  pokes side by side never push further than their own vectors.
- `pin` (static masks, feathered) scales the velocity: pinned content does not move and nothing
  is dragged into it.

Rendering is a backward warp (engine/render.py), so each frame needs, for every output pixel x,
the point of the still that arrived there: integrate the field backward from (x, tau) to 0 (RK4).
The field is smooth on the scale of the radius, so this runs on a coarse grid (NODES_PER_RADIUS
nodes per radius, more for long drags, and only on nodes a brush can reach: a FlowPatch), which
the renderer upsamples with non-overshooting B-spline weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engine.render import FlowPatch, sample

CORE = 0.25  # fraction of the radius that moves rigidly with the brush
# Flow grid spacing: radius / (NODES_PER_RADIUS * (1 + length / radius)). A drag pushes the
# content ahead of it into the fall-off band in front of the brush; the longer the drag, the
# thinner that band, and the grid must resolve it or the upsampled map rings (duplicated content).
NODES_PER_RADIUS = 8
STEP_PER_RADIUS = 1 / 8  # RK4 step: the brush moves at most this fraction of its radius
# ... for drags up to 128 radii; beyond, the step count stays at MAX_STEPS, so a node costs at
# most 4 * MAX_STEPS velocity evaluations per frame whatever the drag (unbounded, a 1e6 px drag
# hung and 1e308 overflowed). A job reaches the cap only with a radius under 1/128 of its drag:
# the default fall-off (15 % of the shorter side) on the longest drag a job may have (3 picture
# diagonals, engine/job.py) needs 160 * diagonal / shorter side steps, under the cap for
# pictures up to 6:1. Past it the step grows with the drag: the field's error, 1e-4 radius at
# 1/8, is 2 % of the radius at 1/2 (a drag of 512 radii) and half a radius at 1/1 (1024).
MAX_STEPS = 1024
PIN_GRID = 1024  # longer side of the copy of the pin map the velocity samples (the renderer
#                  applies the full-resolution one exactly)


@dataclass(frozen=True)
class Drag:
    """One poke in working-resolution pixels."""
    start: tuple[float, float]
    vector: tuple[float, float]
    radius: float


def bell(q: torch.Tensor) -> torch.Tensor:
    """Fall-off by normalised distance q = d / radius: 1 for q <= CORE, smootherstep down to
    exactly 0 at q = 1, 0 beyond."""
    u = ((q - CORE) / (1.0 - CORE)).clamp(0.0, 1.0)
    return 1.0 - u * u * u * (u * (6.0 * u - 15.0) + 10.0)


def grid_size(width: int, height: int, drags: list[Drag]) -> tuple[int, int]:
    """(rows, columns) of the flow grid over the whole image (only the part the pokes reach is
    ever computed or stored): fine enough for the smallest radius and the longest drag."""
    if not drags:
        return (1, 1)
    spacing = min(d.radius / (NODES_PER_RADIUS * (1 + math.hypot(*d.vector) / d.radius))
                  for d in drags)
    spacing = max(1.0, spacing)  # finer than the pixels is pointless
    return (min(height, math.ceil(height / spacing)), min(width, math.ceil(width / spacing)))


def _points(values: list[tuple[float, float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 2)


class DragField:
    """The velocity field above, and backward flows from it on a coarse grid.

    `pin` is an optional H x W map in [0, 1] at the working resolution; the field keeps a small
    area-averaged copy and samples it bilinearly. Computation is in float64 on the CPU: a few
    thousand nodes, and the result must land within a fraction of a pixel after dozens of
    integration steps.
    """

    def __init__(self, drags: list[Drag], width: int, height: int,
                 pin: np.ndarray | None = None, grid: tuple[int, int] | None = None):
        self.width, self.height = width, height
        self.drags = list(drags)
        self.grid = grid or grid_size(width, height, self.drags)
        self.starts = _points([d.start for d in self.drags])
        self.vectors = _points([d.vector for d in self.drags])
        self.radii = torch.tensor([d.radius for d in self.drags], dtype=torch.float64)
        self.pin = None
        if pin is not None:
            factor = min(1.0, PIN_GRID / max(pin.shape))
            rows = max(1, round(pin.shape[0] * factor))
            columns = max(1, round(pin.shape[1] * factor))
            small = cv2.resize(np.asarray(pin, np.float32), (columns, rows),
                               interpolation=cv2.INTER_AREA).reshape(rows, columns)
            self.pin = torch.from_numpy(small.astype(np.float64))[None]

    def velocity(self, points: torch.Tensor, tau: float) -> torch.Tensor:
        """u(points, tau) for points [N, 2] (x, y) in pixels -> [N, 2] pixels per unit tau."""
        centres = self.starts + tau * self.vectors  # [P, 2]
        distance = (points[:, None, :] - centres[None]).norm(dim=-1)  # [N, P]
        weights = bell(distance / self.radii)
        total = weights.sum(dim=1, keepdim=True)
        u = weights @ self.vectors / total.clamp_min(1.0)
        if self.pin is not None:
            _, pin_h, pin_w = self.pin.shape
            pinned = sample(self.pin, points[:, 0:1] * (pin_w / self.width),
                            points[:, 1:2] * (pin_h / self.height), "bilinear")[0]
            u = u * (1.0 - pinned)
        return u

    def sources(self, points: torch.Tensor, tau: float) -> torch.Tensor:
        """Where the content shown at `points` [N, 2] at time tau was in the still: integrate the
        field backward from tau to 0 with classic RK4."""
        if tau == 0 or points.numel() == 0 or not self.drags:
            return points.clone()
        reach = float((self.vectors.norm(dim=1) / self.radii).max()) * abs(tau)
        steps = max(4, math.ceil(reach / STEP_PER_RADIUS)) \
            if reach < MAX_STEPS * STEP_PER_RADIUS else MAX_STEPS  # also inf and nan
        h = -tau / steps
        p, t = points.clone(), tau
        for _ in range(steps):
            k1 = self.velocity(p, t)
            k2 = self.velocity(p + 0.5 * h * k1, t + 0.5 * h)
            k3 = self.velocity(p + 0.5 * h * k2, t + 0.5 * h)
            k4 = self.velocity(p + h * k3, t + h)
            p = p + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            t += h
        return p

    def flow(self, tau: float) -> FlowPatch:
        """Backward flow at time tau on the grid, in *grid* pixels (engine/render.py's
        convention for low-resolution flows), computed and stored only on the part of the grid
        the brushes can reach; zero elsewhere."""
        rows, columns = self.grid
        (r0, r1), (c0, c1) = self._reach_box(tau)
        if tau == 0 or not self.drags or r0 >= r1 or c0 >= c1:
            return FlowPatch(torch.zeros(2, 1, 1), self.grid)
        cell = torch.tensor([self.width / columns, self.height / rows], dtype=torch.float64)
        ys, xs = torch.meshgrid(torch.arange(r0, r1, dtype=torch.float64),
                                torch.arange(c0, c1, dtype=torch.float64), indexing="ij")
        nodes = (torch.stack([xs, ys], dim=-1) + 0.5) * cell  # [rows, columns, 2] in pixels
        reached = self._reachable(nodes, tau)
        points = nodes[reached]
        values = torch.zeros(2, r1 - r0, c1 - c0, dtype=torch.float64)
        values[:, reached] = ((points - self.sources(points, tau)) / cell).T
        return FlowPatch(values.float(), self.grid, (r0, c0))

    def _reach_box(self, tau: float) -> tuple[tuple[int, int], tuple[int, int]]:
        """Grid rows and columns (start, stop) of the box around every brush path up to tau."""
        rows, columns = self.grid
        ends = self.starts + tau * self.vectors
        low = torch.minimum(self.starts, ends) - self.radii[:, None]
        high = torch.maximum(self.starts, ends) + self.radii[:, None]
        x0, y0 = low.min(dim=0).values.tolist()
        x1, y1 = high.max(dim=0).values.tolist()
        cw, ch = self.width / columns, self.height / rows
        c0, c1 = max(0, math.floor(x0 / cw - 0.5)), min(columns, math.ceil(x1 / cw + 0.5))
        r0, r1 = max(0, math.floor(y0 / ch - 0.5)), min(rows, math.ceil(y1 / ch + 0.5))
        return (r0, r1), (c0, c1)

    def _reachable(self, nodes: torch.Tensor, tau: float) -> torch.Tensor:
        """Nodes within a radius of some brush path start_i -> c_i(tau): the field is zero
        everywhere else for all times up to tau, so those nodes do not move."""
        reached = torch.zeros(nodes.shape[:2], dtype=torch.bool)
        for start, vector, radius in zip(self.starts, self.vectors, self.radii):
            segment = tau * vector
            length2 = float(segment @ segment)
            offset = nodes - start
            along = (offset @ segment / length2).clamp(0.0, 1.0) if length2 > 0 else 0.0
            closest = start + along[..., None] * segment if length2 > 0 else start
            reached |= (nodes - closest).norm(dim=-1) < radius
        return reached
