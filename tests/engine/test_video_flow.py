import cv2
import numpy as np
import pytest

from engine.errors import JobError
from engine.flow import dis_flow, resize_flow
from engine.video import read_video, video_info


def _textured(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def test_dis_recovers_a_known_shift():
    a = _textured()
    b = np.roll(a, shift=(2, 3), axis=(0, 1))  # content moves 3 px right, 2 px down
    flow = dis_flow(a, b)[16:-16, 16:-16]
    assert np.median(flow[..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(flow[..., 1]) == pytest.approx(2.0, abs=0.25)


def test_resize_flow_scales_vectors():
    flow = np.zeros((40, 80, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    small = resize_flow(flow, 20, 20)
    assert small.shape == (20, 20, 2)
    assert np.allclose(small[..., 0], 1.0) and np.allclose(small[..., 1], -1.0)


def test_video_round_trip_and_errors(tmp_path):
    path = tmp_path / "clip é.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    assert video_info(path)["width"] == 32
    clip = read_video(path, stride=2)
    assert clip.shape == (3, 24, 32, 3) and clip.dtype == np.uint8
    assert abs(int(clip[1].mean()) - 80) <= 4  # frames 0, 2, 4
    with pytest.raises(JobError, match="at least 10"):
        read_video(path, min_frames=10)
    with pytest.raises(JobError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(JobError):
        read_video(tmp_path / "junk.mp4")
