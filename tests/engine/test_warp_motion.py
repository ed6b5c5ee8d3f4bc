"""The warp engine moves what the pokes say, nothing else, and never what a static mask pins."""

import numpy as np
import pytest
import torch
from conftest import texture, write_job

from engine import render
from engine.job import load_job
from engine.progress import Silent
from engine.warp import prepare
from engine.warp.field import Drag, DragField


def clip_frames(job_path):
    clip = prepare(load_job(job_path), torch.device("cpu"), Silent())
    return clip, list(clip)


def blob_still(size, centre, background=30, peak=220, sigma=2.0):
    """Flat grey with one bright Gaussian dot at `centre` (pixel coordinates, y down)."""
    y, x = np.mgrid[0:size[0], 0:size[1]] + 0.5
    dot = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2))
    grey = background + (peak - background) * dot
    return np.repeat(np.rint(grey).astype(np.uint8)[:, :, None], 3, axis=2)


def centroid(image, background=30):
    """Centre of the dot, in pixel coordinates (pixel centres at +0.5)."""
    weight = np.clip(image[:, :, 0].astype(np.float64) - background, 0, None)
    weight[weight < 5] = 0
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    return np.array([(weight * x).sum(), (weight * y).sum()]) / weight.sum()


@pytest.mark.parametrize("start, end, radius", [
    ((100.3, 120.7), (131.9, 98.2), 60.0),   # a short diagonal drag
    ((60.5, 150.5), (200.25, 140.75), 50.0),  # a drag almost three radii long
    ((128.0, 128.0), (128.0, 119.6), 30.0),   # straight up, a small radius
])
def test_content_at_start_lands_on_end(tmp_path, start, end, radius):
    still = blob_still((256, 256), start)
    job = write_job(tmp_path, still, frames=5, pokes=[{"start": start, "end": end,
                                                        "radius": radius}])
    _, images = clip_frames(job)
    assert np.array_equal(images[0], still)
    assert np.linalg.norm(centroid(images[-1]) - end) < 0.5
    # Half-way frames follow the path (ease-in-out: frame 3 of 5 is exactly half-way).
    halfway = np.add(start, end) / 2
    assert np.linalg.norm(centroid(images[2]) - halfway) < 0.5


def test_start_lands_on_end_at_reduced_size(tmp_path):
    start, end = (300.0, 200.0), (340.0, 230.0)
    still = blob_still((400, 600), start, sigma=4.0)
    job = write_job(tmp_path, still, frames=3, max_size=300,
                    pokes=[{"start": start, "end": end, "radius": 120.0}])
    _, images = clip_frames(job)
    assert images[-1].shape == (200, 300, 3)
    assert np.linalg.norm(centroid(images[-1]) * 2 - end) < 1.0  # 0.5 px at the reduced size


def test_nothing_moves_beyond_the_radius(tmp_path):
    still = texture(160, 200, seed=3)
    start, end, radius = np.array([80.0, 70.0]), np.array([110.0, 85.0]), 40.0
    job = write_job(tmp_path, still, frames=4, pokes=[{"start": start.tolist(),
                                                        "end": end.tolist(), "radius": radius}])
    _, images = clip_frames(job)
    y, x = np.mgrid[0:160, 0:200] + 0.5
    points = np.stack([x, y], axis=-1)
    along = np.clip(((points - start) @ (end - start)) / np.dot(end - start, end - start), 0, 1)
    distance = np.linalg.norm(points - (start + along[..., None] * (end - start)), axis=-1)
    far = distance > radius + 4
    near = distance < radius / 2
    for image in images[1:]:
        assert np.array_equal(image[far], still[far])
        assert not np.array_equal(image[near], still[near])


def test_static_mask_pins_pixels_exactly(tmp_path):
    still = texture(128, 128, seed=5)
    mask = np.zeros((128, 128), np.uint8)
    mask[70:128, 40:100] = 255  # overlaps the poke's reach
    job = write_job(tmp_path, still, mask_images=[mask], frames=6,
                    warp={"falloff": 0, "feather": 6},
                    pokes=[{"start": [64.0, 50.0], "end": [72.0, 62.0], "radius": 45.0}])
    _, images = clip_frames(job)
    inside = mask == 255
    moved = np.zeros(inside.shape, bool)
    for image in images:
        assert np.array_equal(image[inside], still[inside])
        moved |= (image != still).any(axis=2)
    # The poke itself still works, up to the mask and softly into the feather.
    assert moved[40:60, 50:80].all()
    assert moved[64:70, 40:100].any()


def test_overlapping_pokes_do_not_add_up():
    vector = (12.0, -5.0)
    drags = [Drag((50.0, 50.0), vector, 30.0), Drag((62.0, 50.0), vector, 30.0)]
    field = DragField(drags, 128, 128)
    flow = render.upsample_flow(field.flow(1.0), 128, 128)
    assert float(flow.norm(dim=0).max()) <= np.hypot(*vector) * (1 + 1e-4)


def test_long_drag_never_folds():
    """The source map of a drag three radii long stays one-to-one (positive Jacobian)."""
    field = DragField([Drag((40.0, 64.0), (90.0, 10.0), 30.0)], 192, 128)
    flow = render.upsample_flow(field.flow(1.0), 128, 192).double()
    x, y = render.pixel_centres(128, 192)
    sx, sy = x.double() - flow[0], y.double() - flow[1]
    dxdx, dxdy = sx[1:-1, 2:] - sx[1:-1, :-2], sx[2:, 1:-1] - sx[:-2, 1:-1]
    dydx, dydy = sy[1:-1, 2:] - sy[1:-1, :-2], sy[2:, 1:-1] - sy[:-2, 1:-1]
    assert float((dxdx * dydy - dxdy * dydx).min()) > 0


def test_far_pokes_keep_their_own_ends():
    drags = [Drag((30.0, 30.0), (10.0, 4.0), 20.0), Drag((120.0, 90.0), (-6.0, 9.0), 25.0)]
    field = DragField(drags, 160, 128)
    for drag in drags:
        end = torch.tensor([[drag.start[0] + drag.vector[0], drag.start[1] + drag.vector[1]]],
                           dtype=torch.float64)
        assert torch.allclose(field.sources(end, 1.0), torch.tensor([drag.start],
                              dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("vector", [(1e5, -8.0), (1e308, 24.0)])
def test_far_off_drag_integrates_in_a_bounded_number_of_steps(vector):
    """Validation refuses such drags (test_job_errors.py); the field itself must still never
    hang or overflow on one: RK4 steps grew with drag / radius without limit."""
    from engine.warp.field import MAX_STEPS

    field = DragField([Drag((32.0, 32.0), vector, 9.6)], 64, 64)
    velocity, calls = field.velocity, []
    field.velocity = lambda points, tau: calls.append(tau) or velocity(points, tau)
    points = torch.tensor([[32.0, 32.0], [20.0, 40.0]], dtype=torch.float64)
    sources = field.sources(points, 1.0)
    assert sources.shape == points.shape
    assert len(calls) == 4 * MAX_STEPS
    if vector[0] < 1e6:
        assert torch.isfinite(sources).all()
