"""Landmark motion -> a dense motion field over the still.

Inside the face the field is piecewise-affine over a triangulation of the still's 468 face-mesh
landmarks (Delaunay on their positions in the still, so the triangles tile the face without
overlap whatever its pose): at a landmark it is exactly that landmark's displacement, and
along every triangle it is the affine blend of its corners'. Outside the face it is the
harmonic (membrane) extension of those values over the person: it carries the head's motion
into hair, ears, neck and shoulders and falls to zero where the person mask ends, so the
background is never touched, and there is no tear at the silhouette for a backward warp to
show. Other faces in the still are held (zero), so only the face under the poke moves.

Everything runs on a grid whose longer side is GRID_LONG cells (the field is smooth; the
shared renderer samples the still's own pixels at full resolution). Grid coordinates put the
centre of cell (i, j) at (j, i); a still pixel position p maps to p * grid / size - 0.5.

The map displacement -> field is linear. `MeshField.fields` takes a batch of landmark
displacements, so the sampler builds one field per basis vector of its motion code once per
still and every frame of every sample is then a weighted sum of those.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.render import smoothstep

GRID_LONG = 256
# Person-mask confidence over which the field fades in (the segmenter's soft fringe holds, as
# the pixel engine's background hold does: engine/poke/parts.py PERSON_SURE).
PERSON_SURE = (0.5, 0.8)
# How far from the moving face (inter-ocular distances) the person's motion fades out.
PERSON_REACH = (2.0, 3.0)
# The face's hull is grown by this share of the inter-ocular distance before the person mask is
# trusted: the segmenter sometimes misses a forehead under a hat or a cheek against a dark wall.
HULL_MARGIN = 0.15
# Coarsest level of the cascadic solve, and conjugate-gradient steps per level.
COARSEST = 24
CG_STEPS = 60


def grid_size(height: int, width: int, long_side: int = GRID_LONG) -> tuple[int, int]:
    """(rows, columns) of the field's grid: the longer side `long_side` cells (never more
    cells than pixels), the aspect kept."""
    scale = min(1.0, long_side / max(height, width))
    return max(2, round(height * scale)), max(2, round(width * scale))


def delaunay(points: np.ndarray) -> np.ndarray:
    """[N, 2] points -> [M, 3] vertex indices of their Delaunay triangles (counter-clockwise
    or not; degenerate ones dropped)."""
    points = np.asarray(points, np.float64)
    low, high = points.min(0) - 1.0, points.max(0) + 1.0
    subdiv = cv2.Subdiv2D((int(np.floor(low[0])), int(np.floor(low[1])),
                           int(np.ceil(high[0] - low[0])) + 2,
                           int(np.ceil(high[1] - low[1])) + 2))
    # Subdiv2D merges coincident points and numbers vertices itself: map back by position.
    for x, y in points:
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    lookup = {}
    for index, (x, y) in enumerate(points.astype(np.float32)):
        lookup.setdefault((float(x), float(y)), index)
    triangles = []
    for triangle in corners.astype(np.float32):
        keys = [(float(x), float(y)) for x, y in triangle]
        if all(key in lookup for key in keys):
            triangles.append([lookup[key] for key in keys])
    triangles = np.array(triangles, np.int64).reshape(-1, 3)
    a, b, c = (points[triangles[:, k]] for k in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return triangles[np.abs(area) > 1e-9]


def _barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """[N, 2] points and their triangles' corners [N, 3, 2] -> weights [N, 3]."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    wb = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / det
    wc = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / det
    return np.stack([1.0 - wb - wc, wb, wc], axis=1)


def _cells_in_triangles(corners: np.ndarray, grid: tuple[int, int]):
    """For each triangle [M, 3, 2] (grid coordinates): (index, rows, columns, barycentric
    weights) of the grid cells whose centres lie in it, tested exactly (a rasteriser's edge
    pixels can lie just outside their triangle and would extrapolate it)."""
    gh, gw = grid
    low = np.clip(np.floor(corners.min(1)).astype(int), 0, [gw - 1, gh - 1])
    high = np.clip(np.ceil(corners.max(1)).astype(int), 0, [gw - 1, gh - 1])
    for index in range(len(corners)):
        (x0, y0), (x1, y1) = low[index], high[index]
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        centres = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
        weights = _barycentric(centres, np.repeat(corners[index][None], len(centres), 0))
        hit = (weights >= -1e-9).all(1)
        if hit.any():
            yield index, ys.ravel()[hit], xs.ravel()[hit], weights[hit]


def _hull_mask(points: np.ndarray, shape: tuple[int, int], grow: float = 0.0) -> np.ndarray:
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    if grow >= 1.0:
        size = 2 * int(round(grow)) + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask.astype(bool)


class MeshField:
    """The dense-field operator of one face in one still.

    mesh: [468, 2+] the moving face's landmarks in the still's pixels; size: (height, width) of
    the still; person: [H, W] soft person mask in [0, 1] (None: only the face's grown hull
    moves); others: the other faces' meshes, held still; hold: [H, W] in [0, 1], what must not
    move (static masks, pins): the field is solved to fade to zero at it.
    """

    def __init__(self, mesh: np.ndarray, size: tuple[int, int], person: np.ndarray | None = None,
                 others=(), hold: np.ndarray | None = None, long_side: int = GRID_LONG):
        self.height, self.width = size
        self.grid = grid_size(self.height, self.width, long_side)
        gh, gw = self.grid
        self.scale = np.array([gw / self.width, gh / self.height])
        self.points = self.to_grid(np.asarray(mesh, np.float64)[:, :2])
        self.triangles = delaunay(self.points)

        # Which triangle holds each cell centre (the last one on a shared edge, where both give
        # the same value).
        owner = np.full((gh, gw), -1, np.int64)
        for index, rows, cols, _ in _cells_in_triangles(self.points[self.triangles], self.grid):
            owner[rows, cols] = index
        self.inside = owner >= 0
        cells = np.argwhere(self.inside)                      # [N, 2] (row, column)
        centres = cells[:, ::-1].astype(np.float64)
        vertices = self.triangles[owner[self.inside]]         # [N, 3]
        self.cells = torch.from_numpy(np.flatnonzero(self.inside))
        self.vertices = torch.from_numpy(vertices)
        self.weights = torch.from_numpy(_barycentric(centres, self.points[vertices])).float()

        self._inputs = (np.asarray(mesh, np.float64)[:, :2], person,
                        [np.asarray(o, np.float64)[:, :2] for o in others], hold)
        support = self.support_at(self.grid)
        support[self.inside] = 1.0
        self.support = torch.from_numpy(support.astype(np.float32))
        # Solved for: cells of the person outside the face; fixed: the face (its affine values)
        # and everything the person mask leaves out (zero).
        self.free = torch.from_numpy(~self.inside & (support > 0))

    def support_at(self, shape: tuple[int, int]) -> np.ndarray:
        """[rows, columns] float32 over the still at that resolution: where the field may be
        non-zero. The face's hull grown by HULL_MARGIN and the sure part of the person mask,
        less the other faces' hulls, times 1 - hold. The solve uses it on the grid; the
        renderer gates with it at full resolution, so what it holds is the still, bit for bit."""
        mesh, person, others, hold = self._inputs
        rows, cols = shape
        scale = np.array([cols / self.width, rows / self.height])
        points = mesh * scale
        interocular = float(np.hypot(*(points[263] - points[33])))
        face = _hull_mask(points, shape, HULL_MARGIN * interocular)
        support = face.astype(np.float32)
        if person is not None:
            sure = np.asarray(person, np.float32)
            if sure.shape != shape:
                sure = cv2.resize(sure, (cols, rows), interpolation=cv2.INTER_AREA)
            # The person mask does not tell people apart: beyond a reach of the moving face
            # (hair, neck, shoulders lie within it) the motion fades out, so a neighbour's
            # hair and shoulders hold like their face.
            away = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 5)
            near = 1.0 - smoothstep(away / max(interocular, 1e-6), *PERSON_REACH)
            support = np.maximum(support, smoothstep(sure, *PERSON_SURE) * near)
        for other in others:
            other = other * scale
            gap = float(np.hypot(*(other[263] - other[33])))
            support[_hull_mask(other, shape, HULL_MARGIN * gap)] = 0.0
        if hold is not None:
            held = np.asarray(hold, np.float32)
            if held.shape != shape:
                held = cv2.resize(held, (cols, rows), interpolation=cv2.INTER_AREA)
            support *= 1.0 - np.clip(held, 0.0, 1.0)
        return support

    def interpolate(self, points: np.ndarray, displacements: np.ndarray) -> np.ndarray:
        """The face's piecewise-affine field, exactly, at still pixel positions [P, 2] inside
        it, for landmark displacements [468, 2] (pixels): [P, 2] pixels (NaN outside the
        face). The grid's face cells hold this at their centres."""
        grid = self.to_grid(points)
        corners = self.points[self.triangles]                     # [M, 3, 2]
        out = np.full((len(grid), 2), np.nan)
        for number, point in enumerate(grid):
            weights = _barycentric(np.repeat(point[None], len(corners), 0), corners)
            inside = np.flatnonzero((weights >= -1e-9).all(1))
            if len(inside):
                k = inside[0]
                out[number] = weights[k] @ np.asarray(displacements, np.float64)[
                    self.triangles[k]]
        return out

    def backward(self, forward: torch.Tensor, displacement: np.ndarray) -> torch.Tensor:
        """The backward flow [2, gh, gw] (grid cells) the renderer needs, for one frame's
        forward field and its landmark displacement [468, 2] (pixels). On the moved face the
        inverse is exact: each moved triangle maps back affinely onto its place in the still
        (a fixed-point inversion is not, where the lips part and the field is steep). Off the
        face the field is smooth and the fixed point (engine/poke/motion.py) serves."""
        from engine.poke.motion import backward_flow

        back = backward_flow(forward[None])[0].clone()
        moved = self.points + np.asarray(displacement, np.float64) * self.scale
        sources = self.points[self.triangles]
        rows, cols, values = [], [], []
        for index, hit_rows, hit_cols, weights in _cells_in_triangles(moved[self.triangles],
                                                                      self.grid):
            rows.append(hit_rows)
            cols.append(hit_cols)
            centres = np.stack([hit_cols, hit_rows], 1).astype(np.float64)
            values.append(centres - weights @ sources[index])
        if rows:
            rows, cols = np.concatenate(rows), np.concatenate(cols)
            values = torch.from_numpy(np.concatenate(values).T.astype(np.float32))
            back[:, torch.from_numpy(rows), torch.from_numpy(cols)] = values
        return back

    def to_grid(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(pixels, np.float64) * self.scale - 0.5

    def fields(self, displacements) -> torch.Tensor:
        """Landmark displacements [M, 468, 2] in still pixels -> fields [M, 2, gh, gw] in grid
        cells (the renderer's convention: `engine.render.upsample_flow` scales them up)."""
        d = torch.as_tensor(np.asarray(displacements, np.float32)) \
            if not torch.is_tensor(displacements) else displacements.float()
        count = d.shape[0]
        d = d * torch.tensor(self.scale, dtype=torch.float32)
        gh, gw = self.grid
        face = (d[:, self.vertices] * self.weights[None, :, :, None]).sum(dim=2)  # [M, N, 2]
        values = torch.zeros(count, 2, gh * gw)
        values[:, :, self.cells] = face.transpose(1, 2)
        values = values.reshape(count * 2, gh, gw)
        fixed = ~self.free
        filled = harmonic_fill(values, fixed)
        return (filled * self.support).reshape(count, 2, gh, gw)


def _laplacian(u: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """Graph Laplacian of the 4-neighbour grid with no edges off the image (Neumann border)."""
    padded = F.pad(u[:, None], (1, 1, 1, 1))[:, 0]
    neighbours = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1]
                  + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:])
    return degree * u - neighbours


def _degree(height: int, width: int) -> torch.Tensor:
    degree = torch.full((height, width), 4.0)
    degree[0] -= 1
    degree[-1] -= 1
    degree[:, 0] -= 1
    degree[:, -1] -= 1
    return degree


def _conjugate_gradient(values: torch.Tensor, free: torch.Tensor, steps: int) -> torch.Tensor:
    """Solve the Laplace equation for the free cells, the others fixed at `values` [B, H, W],
    starting from `values` on the free cells; `steps` conjugate-gradient iterations."""
    degree = _degree(*values.shape[1:])
    mask = free.to(values.dtype)[None]
    x = values * mask
    fixed = values * (1.0 - mask)
    b = -_laplacian(fixed, degree) * mask                 # fixed neighbours move to the right
    r = b - _laplacian(x, degree) * mask
    p = r.clone()
    rr = (r * r).sum(dim=(1, 2))
    for _ in range(steps):
        if float(rr.max()) < 1e-12:
            break
        ap = _laplacian(p, degree) * mask
        alpha = rr / (p * ap).sum(dim=(1, 2)).clamp_min(1e-20)
        x = x + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        rr_new = (r * r).sum(dim=(1, 2))
        p = r + (rr_new / rr.clamp_min(1e-20))[:, None, None] * p
        rr = rr_new
    return x + fixed


def harmonic_fill(values: torch.Tensor, fixed: torch.Tensor, steps: int = CG_STEPS
                  ) -> torch.Tensor:
    """[B, H, W] values kept where `fixed` [H, W] is True; the rest solved so the result is
    harmonic there (the smoothest membrane through the fixed values). Cascadic: the free cells
    start from the solution on a grid half as fine, so a few dozen iterations per level do."""
    height, width = fixed.shape
    free = ~fixed
    if not bool(free.any()):
        return values
    start = values * fixed.to(values.dtype)
    if min(height, width) > COARSEST:
        small = (max(2, height // 2), max(2, width // 2))
        weight = F.adaptive_avg_pool2d(fixed[None, None].float(), small)[0, 0]
        coarse_values = F.adaptive_avg_pool2d(start[:, None], small)[:, 0] \
            / weight.clamp_min(1e-6)
        coarse = harmonic_fill(coarse_values, weight > 0.5, steps)
        guess = F.interpolate(coarse[:, None], size=(height, width), mode="bilinear",
                              align_corners=False)[:, 0]
        start = torch.where(fixed[None], values, guess)
    else:
        steps = max(steps, 4 * (height + width))
    return _conjugate_gradient(start, free, steps)
