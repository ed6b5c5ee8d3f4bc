"""Motion-space clips: a poke model's decoded flows -> frames that warp the still itself.

A motion-space model (VideoAeConfig.space = "motion") decodes *forward* flows F_t, x0 -> x_t, on
its 64 x 64 grid: content at p in x0 is at p + F_t(p) in frame t. The shared renderer
(engine/render.py) takes a *backward* flow B (frame(x) = still(x - B(x))), so F_t is inverted by
the fixed point B(x) = F(x - B(x)), which converges where the motion is smooth (a few
iterations at 64 px). The still is warped at its own resolution (cubic B-spline flow upsampling,
bicubic sampling), so the clip keeps every pixel of detail the still has, at 1-4K as at 64 px.

Where content moves away it uncovers pixels nothing in x0 maps to (disocclusion: behind a
turning head, inside an opening mouth). A backward warp fills them by stretching the edge
(smear). They are found by forward-splatting x0's pixels along F_t (an uncovered pixel receives
no mass) and filled by inpainting (OpenCV Telea) at full resolution from their neighbours on
the *slow* side only: what a moving part uncovers is what was behind it, so the fast-moving
part's own pixels next to the hole are kept out of the fill (`background_side`).

Outside the model's square nothing moves, and the flow is tapered to zero over the square's
last few pixels, so the square never shows a seam; where the generated flow is below a small
threshold the frame is the still, bit for bit (the renderer copies pixels with zero flow).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.render import FrameRenderer, smoothstep

# Flow magnitudes (64-px units) below LOW are dropped, above HIGH kept whole: the decoder's
# residual motion on still regions is a few hundredths of a pixel, and rounding it to zero is
# what keeps those pixels bit-identical to the still.
MOTION_LOW = 0.05
MOTION_HIGH = 0.2
# The flow fades to zero over this many 64-px cells at the square's edge.
TAPER_CELLS = 4
# A pixel receiving less than this much splatted mass (1 = exactly one source pixel) is
# uncovered.
UNCOVERED_BELOW = 0.5
INPAINT_RADIUS = 3
# How far (64-px cells) a poke's or pin's correction reaches into the sampled motion: about an
# eye or a mouth corner on a face crop.
GUIDE_RADIUS_CELLS = 6.0


def _base_grid(height: int, width: int, device, dtype) -> torch.Tensor:
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # [2, H, W] as (x, y)


def sample_at(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of `values` [N, C, H, W] at pixel positions [N, 2, H, W] (x, y with
    pixel centres at integers); outside the grid the border repeats."""
    height, width = values.shape[-2:]
    grid = torch.stack([(positions[:, 0] + 0.5) * (2.0 / width) - 1.0,
                        (positions[:, 1] + 0.5) * (2.0 / height) - 1.0], dim=-1)
    return F.grid_sample(values, grid.to(values.dtype), mode="bilinear",
                         padding_mode="border", align_corners=False)


def _splat(flow: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-splat `values` [N, C, H, W] bilinearly from p to p + flow(p) (flow [N, 2, H, W]).
    Returns the mass received per pixel [N, H, W] and the splatted sums [N, C, H, W]."""
    count, _, height, width = flow.shape
    channels = values.shape[1]
    base = _base_grid(height, width, flow.device, flow.dtype)[None]
    target = base + flow
    x0, y0 = target[:, 0].floor(), target[:, 1].floor()
    fx, fy = target[:, 0] - x0, target[:, 1] - y0
    mass = torch.zeros(count, height * width, device=flow.device, dtype=flow.dtype)
    sums = torch.zeros(count, channels, height * width, device=flow.device, dtype=flow.dtype)
    flat_values = values.flatten(2)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                           (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = (x0 + dx).long(), (y0 + dy).long()
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).flatten(1)
        w = (weight * inside).flatten(1)
        mass.scatter_add_(1, index, w)
        sums.scatter_add_(2, index[:, None].expand(-1, channels, -1), flat_values * w[:, None])
    return mass.reshape(count, height, width), sums.reshape(count, channels, height, width)


def backward_flow(forward: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """Invert forward flows [..., 2, H, W] (content at p goes to p + F(p)) into backward flows
    B with frame(x) = x0(x - B(x)): the fixed point B(x) = F(x - B(x)). It starts from the
    forward flow splatted to where it lands (so pixels that moving content covers start with
    that content's motion, not their own zero), F itself where nothing lands."""
    shape = forward.shape
    flow = forward.reshape(-1, 2, *shape[-2:]).float()
    base = _base_grid(shape[-2], shape[-1], flow.device, flow.dtype)[None]
    mass, sums = _splat(flow, flow)
    landed = mass[:, None] > 1e-3
    back = torch.where(landed, sums / mass[:, None].clamp_min(1e-3), flow)
    for _ in range(iterations):
        back = sample_at(flow, base - back)
    return back.reshape(shape)


def warp_with_motion(x0: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """x0 [B, C, H, W] and forward flows [B, T, 2, H, W] -> x0 carried along each flow
    [B, T, C, H, W] (bilinear, at the flows' resolution: previews, thumbnails and the
    autoencoder's pixel-space validation)."""
    batch, steps = forward.shape[:2]
    back = backward_flow(forward).flatten(0, 1)
    base = _base_grid(*forward.shape[-2:], back.device, back.dtype)[None]
    images = x0[:, None].expand(-1, steps, -1, -1, -1).flatten(0, 1)
    return sample_at(images.float(), base - back).unflatten(0, (batch, steps))


def uncovered(forward: torch.Tensor) -> torch.Tensor:
    """[..., 2, H, W] forward flows -> [..., H, W] in [0, 1]: how uncovered each pixel of the
    moved frame is (1: no pixel of x0 lands on it). x0's pixels are splatted bilinearly to
    p + F(p) and the received mass is compared with UNCOVERED_BELOW."""
    shape = forward.shape
    flow = forward.reshape(-1, 2, *shape[-2:]).float()
    mass, _ = _splat(flow, flow[:, :1])
    hole = (1.0 - mass / UNCOVERED_BELOW).clamp(0.0, 1.0)
    return hole.reshape(*shape[:-3], *shape[-2:])


def edge_taper(size: int, cells: int = TAPER_CELLS) -> np.ndarray:
    """[size, size] window: 1 inside, falling smoothly (smoothstep) to 0 at the border."""
    inward = np.arange(size) + 0.5                    # distance of each pixel centre from
    ramp = smoothstep(np.minimum(inward, inward[::-1]), 0.0, cells)   # the nearer border
    return np.outer(ramp, ramp).astype(np.float32)


def motion_gate(forward: np.ndarray, low: float = MOTION_LOW, high: float = MOTION_HIGH
                ) -> np.ndarray:
    """[..., 2, H, W] -> [..., H, W] weight: 0 where |F| < low, 1 above high, smooth between."""
    return smoothstep(np.linalg.norm(forward, axis=-3), low, high)


def clean_motion(motion64: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """A sample's forward flows [T, 2, 64, 64] less the decoder's flows for "nothing moves"
    (`reference`, same shape), small residues dropped, tapered at the square's edge."""
    motion = np.asarray(motion64, np.float32)
    if reference is not None:
        motion = motion - np.asarray(reference, np.float32)
    motion = motion * motion_gate(motion)[:, None]
    return motion * edge_taper(motion.shape[-1])[None, None]


def fast_moving(backward: np.ndarray) -> np.ndarray:
    """[2, H, W] -> [H, W] bool: pixels moving faster than half the frame's fastest."""
    speed = np.linalg.norm(backward, axis=0)
    return speed > 0.5 * speed.max()


def background_side(hole: np.ndarray, fast: np.ndarray, reach: int = INPAINT_RADIUS + 1
                    ) -> np.ndarray:
    """[H, W] bool: pixels within `reach` of a hole that move fast, i.e. the moving part's side
    of the hole, which must not feed its fill (the inpainting looks `INPAINT_RADIUS` far)."""
    if not hole.any():
        return np.zeros_like(hole)
    near = cv2.dilate(hole.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
    return near & ~hole & fast


def fill_uncovered(region: np.ndarray, hole: np.ndarray, exclude: np.ndarray | None = None,
                   radius: int = INPAINT_RADIUS) -> np.ndarray:
    """Inpaint the pixels of `region` (native H x W x C array) where `hole` [H, W] is true from
    their neighbours, channel by channel in float32 (any sample type, alpha included). Pixels in
    `exclude` are not used as neighbours (and are returned unchanged)."""
    if not hole.any():
        return region
    unknown = hole if exclude is None else hole | exclude
    mask = unknown.astype(np.uint8)
    if region.dtype == np.uint8 and region.shape[2] == 3:
        filled = cv2.inpaint(np.ascontiguousarray(region), mask, radius, cv2.INPAINT_TELEA)
    else:
        filled = np.empty_like(region)
        for channel in range(region.shape[2]):
            values = np.ascontiguousarray(region[..., channel], np.float32)
            plane = cv2.inpaint(values, mask, radius, cv2.INPAINT_TELEA)
            filled[..., channel] = plane.astype(region.dtype) if region.dtype == np.float32 \
                else np.clip(np.rint(plane), 0, np.iinfo(region.dtype).max).astype(region.dtype)
    return np.where(hole[..., None], filled, region)


def motion_frames(still: np.ndarray, motion64: np.ndarray, box: tuple[int, int, int],
                  frames: int | None = None, loop: bool = False, pin: np.ndarray | None = None,
                  reference: np.ndarray | None = None, fill: bool = True
                  ) -> Iterator[np.ndarray]:
    """Frames of a motion-space sample at the still's resolution and sample type, one at a time.

    motion64: forward flows x0 -> x_t [T, 2, 64, 64] in 64-px units (the frames after x0);
    reference: the decoder's flows for a still clip (subtracted). `frames` resamples in time
    (linear between generated flows, frame 1 = the still); `loop` goes out and back. `pin`
    [H, W] in [0, 1] holds pixels still (static masks). fill: inpaint uncovered pixels."""
    from engine.poke.sample import blend_at, frame_positions

    motion = clean_motion(motion64, reference)
    steps = np.concatenate([np.zeros_like(motion[:1]), motion])  # x0: no motion
    count = frames or len(steps)
    bx, by, side = box
    region = still[by:by + side, bx:bx + side]
    gate = None if pin is None else np.ascontiguousarray(1.0 - pin[by:by + side, bx:bx + side],
                                                         np.float32)
    renderer = FrameRenderer(np.ascontiguousarray(region), gate=gate)
    for position in frame_positions(count, len(steps), loop):
        forward = blend_at(steps, position)
        if not forward.any():
            yield still
            continue
        forward_t = torch.from_numpy(np.ascontiguousarray(forward))
        backward = backward_flow(forward_t)
        moved = renderer.render(backward)
        if fill:
            hole = uncovered(forward_t).numpy()
            if hole.max() > 0.5:
                fast = fast_moving(backward.numpy()).astype(np.float32)
                big = cv2.resize(hole, (side, side), interpolation=cv2.INTER_LINEAR) > 0.5
                big_fast = cv2.resize(fast, (side, side), interpolation=cv2.INTER_LINEAR) > 0.5
                if gate is not None:
                    big &= gate > 0.5
                moved = fill_uncovered(moved, big, background_side(big, big_fast))
        if np.array_equal(moved, region):
            yield still
            continue
        frame = still.copy()
        frame[by:by + side, bx:bx + side] = moved
        yield frame


def _bell(distance_sq: torch.Tensor, radius: float) -> torch.Tensor:
    return torch.exp(-0.5 * distance_sq / (radius * radius))


def guide_motion(motion64: np.ndarray, pokes64: Sequence[Sequence[float]],
                 pins64: Sequence[Sequence[float]] = (), reference: np.ndarray | None = None,
                 radius: float = GUIDE_RADIUS_CELLS) -> np.ndarray:
    """Make a sample honour its pokes and pins exactly at their sites, keeping the model's
    motion everywhere else: the sampled forward flows [T, 2, S, S] (S-px units) plus a smooth
    correction that is an interpolation of Gaussian bells (`radius` cells) centred on the sites,
    solved so that at every site and frame

        poke (u, v, du, dv):  F_t - ref_t  =  model's own (F_t - ref_t)
                                              + (t / T) * ((du, dv) - model's (F_T - ref_T))
        pin (u, v):           F_t - ref_t  =  0

    i.e. a poke's end point lands where the artist dragged it, with the model's timing for the
    rest of the way; a pin does not move in any frame. Sites are in map pixels with pixel
    centres at +0.5 (poke_map's convention); `reference` is the decoder's still clip."""
    motion = np.asarray(motion64, np.float32)
    sites = [(float(u), float(v)) for u, v, *_ in pokes64] + \
            [(float(u), float(v)) for u, v, *_ in pins64]
    if not sites:
        return motion
    steps, _, height, width = motion.shape
    own = torch.from_numpy(motion - (0.0 if reference is None
                                     else np.asarray(reference, np.float32)))
    points = torch.tensor(sites, dtype=torch.float32) - 0.5      # grid coordinates
    positions = points.T[None, :, None, :].expand(steps, -1, -1, -1)   # [T, 2, 1, n]
    at_sites = sample_at(own, positions)[:, :, 0, :]              # [T, 2, n]
    fraction = torch.arange(1, steps + 1, dtype=torch.float32)[:, None] / steps  # [T, 1]
    wanted = torch.zeros_like(at_sites)
    for index, poke in enumerate(pokes64):
        drag = torch.tensor([float(poke[2]), float(poke[3])])
        wanted[:, :, index] = at_sites[:, :, index] + fraction * (drag - at_sites[-1, :, index])
    error = wanted - at_sites                                     # pins: -own
    gaps = (points[:, None, :] - points[None, :, :]).square().sum(-1)
    kernel = _bell(gaps, radius) + 1e-6 * torch.eye(len(sites))
    weights = torch.linalg.solve(kernel, error.permute(0, 2, 1))  # [T, n, 2]
    grid = _base_grid(height, width, None, torch.float32).reshape(2, -1).T   # [H*W, 2]
    reach = _bell((grid[:, None, :] - points[None]).square().sum(-1), radius)  # [H*W, n]
    correction = torch.einsum("pn,tnc->tcp", reach, weights).reshape(steps, 2, height, width)
    return (motion + correction.numpy()).astype(np.float32)


def display_frames_64(x0: np.ndarray, motion64: np.ndarray) -> np.ndarray:
    """x0 [64, 64, 3] float [0, 1] carried along forward flows [T, 2, 64, 64] -> float32
    [T + 1, 64, 64, 3], x0 first (the model's own 64-px clip, for --size 64 and metrics)."""
    x0_t = torch.from_numpy(np.ascontiguousarray(x0.transpose(2, 0, 1)))[None]
    moved = warp_with_motion(x0_t, torch.from_numpy(np.asarray(motion64, np.float32))[None])[0]
    clip = np.concatenate([x0[None], moved.permute(0, 2, 3, 1).numpy()])
    return np.ascontiguousarray(np.clip(clip, 0.0, 1.0), np.float32)

