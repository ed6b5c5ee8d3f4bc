"""Poke-engine training data: poke maps as iPOKE specifies them, flow sign and scale, static
items, the split by time, augmentation that turns the flow with the picture, the cache, errors,
and the face box. Videos are small synthetic ones written here with OpenCV."""

import math

import cv2
import numpy as np
import pytest
import torch

from engine import video as video_io
from engine.errors import JobError
from engine.flow import dis_flow
from engine.poke import data as poke_data
from engine.poke import faces
from engine.poke.data import (Augmentation, DataConfig, PokeClipDataset, augment,
                              poke_candidates, sample_background_poke, sample_poke,
                              split_starts)

# The synthetic clip: a static textured background, 128 x 96, and a textured 24 px square that
# moves SPEED px to the right per frame. The centre crop is 96 x 96 from x = 16, so in the
# 64-px clip the square moves SPEED * 10 * 64 / 96 px between x0 and the last frame.
WIDTH, HEIGHT, SQUARE, SPEED = 128, 96, 24, 1
SQUARE_X0, SQUARE_Y = 20, 40
CROP_X = (WIDTH - HEIGHT) // 2
SHIFT_64 = SPEED * 10 * 64 / HEIGHT


def _texture(height, width, seed, blur=1.5):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), blur)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def write_video(path, frames, fps=10):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def moving_square_frames(count, speed=SPEED):
    background = (_texture(HEIGHT, WIDTH, seed=1) // 2 + 64).astype(np.uint8)
    # coarse texture: DIS finds a 10 px move from its coarse pyramid levels
    square = _texture(SQUARE, SQUARE, seed=2, blur=3.0)
    frames = []
    for index in range(count):
        frame = background.copy()
        x = SQUARE_X0 + speed * index
        frame[SQUARE_Y:SQUARE_Y + SQUARE, x:x + SQUARE] = square
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def square_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("poke") / "square.avi", moving_square_frames(60))


def square_region_64(start, margin=2):
    """Rows and columns (64-px clip) inside the square at frame `start`."""
    scale = 64 / HEIGHT
    left = (SQUARE_X0 + SPEED * start - CROP_X) * scale
    top = SQUARE_Y * scale
    side = SQUARE * scale
    return (slice(math.ceil(top) + margin, math.floor(top + side) - margin),
            slice(math.ceil(left) + margin, math.floor(left + side) - margin))


def patch_union(centres, shape=(64, 64), patch=5):
    mask = np.zeros(shape, bool)
    for x, y in centres:
        mask[y - patch // 2:y + patch // 2 + 1, x - patch // 2:x + patch // 2 + 1] = True
    return mask


# --------------------------------------------------------------------------------------------
# Poke maps

def _blobby_flow(seed):
    rng = np.random.default_rng(seed)
    flow = cv2.GaussianBlur(rng.normal(size=(64, 64, 2)).astype(np.float32), (0, 0), 3) * 2
    flow[20:30, 35:45] += (4.0, -3.0)  # a part that moves much more than the rest
    return flow


def test_poke_map_matches_the_specification():
    counts = set()
    for seed in range(60):
        flow = _blobby_flow(seed)
        rng = np.random.default_rng(seed)
        poke, centres = sample_poke(flow, rng, max_patches=5, patch=5)
        assert poke.shape == (2, 64, 64) and poke.dtype == np.float32
        assert 1 <= len(centres) <= 5 and len({tuple(c) for c in centres}) == len(centres)
        counts.add(len(centres))
        # zero outside the patches, and (the patches may overlap) inside them a centre's flow
        outside = ~patch_union(centres)
        assert not poke[:, outside].any()
        magnitude = np.linalg.norm(flow, axis=2)
        inside = magnitude[5:-5, 5:-5]
        threshold = inside.mean() + 2 * inside.std()
        last_x, last_y = centres[-1]  # the last patch drawn is whole
        assert np.array_equal(poke[:, last_y - 2:last_y + 3, last_x - 2:last_x + 3],
                              np.broadcast_to(flow[last_y, last_x][:, None, None], (2, 5, 5)))
        for x, y in centres:
            assert 5 <= x < 59 and 5 <= y < 59  # a whole patch, off the border
            assert magnitude[y, x] > threshold  # on a strongly moving pixel
            values = poke[:, y, x]
            assert any(np.array_equal(values, flow[cy, cx]) for cx, cy in centres)
    assert counts == {1, 2, 3, 4, 5}  # the count is drawn from 1..5


def test_poke_threshold_falls_back_from_two_std_to_one_to_the_mean():
    border = 5
    few = np.zeros((64, 64), np.float32)
    few[30, 30] = 1.0
    candidates, level = poke_candidates(few, border)
    assert level == "mean+2std" and candidates.sum() == 1 and candidates[30, 30]

    # 30 % of the pixels at 1: mean + 2 std = 1.22 (none above), mean + std = 0.76
    tenth = np.zeros((64, 64), np.float32)
    tenth[:, :] = (np.arange(64)[None, :] % 10 < 3)
    candidates, level = poke_candidates(tenth, border)
    assert level == "mean+std" and np.array_equal(candidates[5:-5, 5:-5],
                                                  tenth[5:-5, 5:-5] > 0)

    # half the pixels at 1: mean + std = 1.0 exactly, nothing strictly above it
    half = np.zeros((64, 64), np.float32)
    half[:, ::2] = 1.0
    candidates, level = poke_candidates(half, border)
    assert level == "mean" and np.array_equal(candidates[5:-5, 5:-5], half[5:-5, 5:-5] > 0)

    candidates, level = poke_candidates(np.zeros((64, 64), np.float32), border)
    assert level == "all" and candidates[5:-5, 5:-5].all() and not candidates[:5].any()

    # the sampler follows the fallback: pokes on the moving columns only
    flow = np.stack([half * 3.0, np.zeros_like(half)], axis=2)
    for seed in range(10):
        poke, centres = sample_poke(flow, np.random.default_rng(seed))
        assert all(half[y, x] == 1.0 for x, y in centres)
        assert set(np.unique(poke[0])) <= {0.0, 3.0}


def test_background_poke_sits_still_and_carries_a_moving_vector():
    flow = np.zeros((64, 64, 2), np.float32)
    flow[20:40, 20:40] = (5.0, 1.0)
    for seed in range(10):
        poke, centres = sample_background_poke(flow, np.random.default_rng(seed))
        (x, y), = centres
        assert not flow[y, x].any()
        assert not poke[:, ~patch_union(centres)].any()
        assert np.allclose(poke[:, y, x], (5.0, 1.0))


# --------------------------------------------------------------------------------------------
# Clips from a video

def test_items_have_the_contract_shapes_and_known_motion(square_video):
    config = DataConfig(augment=False, static_fraction=0.0)
    dataset = PokeClipDataset([square_video], "train", config, seed=0)
    item = dataset[5]
    assert set(item) == {"video", "poke", "flow", "static"}
    assert item["video"].shape == (11, 3, 64, 64) and item["video"].dtype == torch.float32
    assert item["poke"].shape == (2, 64, 64) and item["flow"].shape == (2, 64, 64)
    assert -1.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
    assert item["static"] is False
    prepared = dataset.videos[0]
    expected = prepared.frames[5:16].astype(np.float32) / 127.5 - 1.0
    assert np.allclose(item["video"].numpy().transpose(0, 2, 3, 1), expected, atol=1e-5)

    # +x motion of SPEED px/frame at 96 px is +x flow of SHIFT_64 px at 64 px, none in y
    rows, cols = square_region_64(5)
    flow = item["flow"].numpy()
    assert np.median(flow[0, rows, cols]) == pytest.approx(SHIFT_64, rel=0.12)
    assert abs(np.median(flow[1, rows, cols])) < 0.3
    background = np.ones((64, 64), bool)
    background[24:46, :] = False  # the square's whole path
    assert np.abs(flow[:, background]).mean() < 0.3
    # the pokes land on the square and hold its motion
    for index in range(0, 30, 3):
        poke = dataset[index]["poke"].numpy()
        held = poke[:, np.abs(poke).sum(0) > 0]
        assert held.size and np.allclose(np.median(held[0]), SHIFT_64, rtol=0.25)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 11, 3, 64, 64) and batch["static"].dtype == torch.bool


def test_static_items(square_video):
    config = DataConfig(augment=False)
    dataset = PokeClipDataset([square_video], "train", config, seed=0)
    clips = len(dataset.clips)
    assert len(dataset) == clips + round(clips / 11)  # 1 in 12 of all items
    assert not any(dataset[i]["static"] for i in range(0, clips, 7))
    for index in range(clips, len(dataset)):
        item = dataset[index]
        assert item["static"] is True
        video = item["video"]
        assert torch.equal(video, video[:1].expand_as(video))  # x0 repeated
        assert not item["flow"].any()
        poke = item["poke"].numpy()
        support = np.abs(poke).sum(0) > 0
        assert support.sum() == 25  # one 5 x 5 patch
        ys, xs = np.nonzero(support)
        x0 = np.rint((video[0].numpy().transpose(1, 2, 0) + 1.0) * 127.5)
        start = int(np.argmin(np.abs(dataset.videos[0].frames - x0).mean(axis=(1, 2, 3))))
        true_flow = dataset.videos[0].flows[start].astype(np.float32)
        assert np.linalg.norm(true_flow[int(ys.mean()), int(xs.mean())]) < 0.5  # not moving
        assert np.median(poke[0, support]) == pytest.approx(SHIFT_64, rel=0.25)


def test_split_is_by_time_and_validation_is_deterministic(square_video):
    config = DataConfig(augment=True)
    train = PokeClipDataset([square_video], "train", config, seed=0)
    val = PokeClipDataset([square_video], "val", config, seed=0)
    boundary = int(60 * 0.8)
    assert [start for _, start in val.clips] == list(range(boundary, 60 - 10))
    assert max(start for _, start in train.clips) + 10 < boundary  # whole clips before it
    assert list(split_starts(60, config, "train")) == list(range(0, boundary - 10))

    # a validation item is the clip it claims to be (x0 = frame `start`, no augmentation)
    item = val[0]
    x0 = (item["video"][0].numpy().transpose(1, 2, 0) + 1.0) * 127.5
    assert np.abs(x0 - val.videos[0].frames[boundary]).max() < 0.01
    again = PokeClipDataset([square_video], "val", config, seed=0)
    for index in range(len(val)):
        a, b = val[index], again[index]
        assert all(torch.equal(a[key], b[key]) for key in ("video", "poke", "flow"))
    other = PokeClipDataset([square_video], "val", config, seed=1)
    assert any(not torch.equal(val[i]["poke"], other[i]["poke"]) for i in range(len(val)))
    # training items are drawn afresh: augmentation and pokes change between reads
    assert any(not torch.equal(train[3]["video"], train[3]["video"]) for _ in range(3))


# --------------------------------------------------------------------------------------------
# Augmentation

def test_rotation_turns_the_flow_with_the_picture(square_video):
    prepared = poke_data.prepare_video(square_video, DataConfig())
    start = 10
    clip = prepared.frames[start:start + 11]
    flow = prepared.flows[start].astype(np.float32)
    rows, cols = square_region_64(start)

    # OpenCV's +90 degrees is counter-clockwise on screen: rightward motion becomes upward
    turned_clip, turned_flow, _ = augment(clip, flow, Augmentation(angle=90.0))
    mask = np.zeros((64, 64), bool)
    mask[rows, cols] = True
    turned_mask = cv2.warpAffine(mask.astype(np.uint8), Augmentation(angle=90.0).matrix(64),
                                 (64, 64), flags=cv2.INTER_NEAREST) > 0
    dx, dy = np.median(turned_flow[turned_mask], axis=0)
    assert abs(dx) < 0.3 and dy == pytest.approx(-SHIFT_64, rel=0.12)
    # ... and the turned frames show the same turn. DIS on 64-px frames is rougher than at the
    # source size (and not rotation invariant), so: the direction agrees, the length roughly.
    measured = np.median(dis_flow(turned_clip[0], turned_clip[-1])[turned_mask], axis=0)
    cosine = measured @ (dx, dy) / (np.linalg.norm(measured) * math.hypot(dx, dy))
    assert cosine > 0.98
    assert 0.7 < np.linalg.norm(measured) / math.hypot(dx, dy) < 1.3

    # zoom scales the vectors, a shift moves the field and keeps them
    _, zoomed, _ = augment(clip, flow, Augmentation(scale=1.25))
    centre = np.median(zoomed[cv2.warpAffine(mask.astype(np.uint8),
                                             Augmentation(scale=1.25).matrix(64), (64, 64),
                                             flags=cv2.INTER_NEAREST) > 0], axis=0)
    assert centre[0] == pytest.approx(1.25 * SHIFT_64, rel=0.12)
    _, shifted, _ = augment(clip, flow, Augmentation(shift=(3.0, -2.0)))
    assert np.allclose(shifted[8:40, 8:40], flow[10:42, 5:37], atol=1e-4)


def test_colour_jitter_is_the_same_for_every_frame():
    still = _texture(64, 64, seed=3)
    clip = np.stack([still] * 4)
    aug = Augmentation(brightness=1.2, contrast=0.8, saturation=1.3, hue=0.05)
    out, flow, _ = augment(clip, np.zeros((64, 64, 2), np.float32), aug)
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert all(np.array_equal(out[0], frame) for frame in out[1:])
    assert np.abs(out[0] - still / 255.0).mean() > 0.02  # it did change the colours
    grey = np.stack([np.full((64, 64, 3), 100, np.uint8)] * 2)
    turned, _, _ = augment(grey, flow, Augmentation(hue=0.3))
    assert np.allclose(turned, 100 / 255.0, atol=1e-5)  # hue leaves greys grey


# --------------------------------------------------------------------------------------------
# Cache and errors

def test_second_run_reads_the_cache(square_video, tmp_path, monkeypatch):
    decodes = []
    real = video_io.iter_frames

    def counting(*args, **kwargs):
        decodes.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(video_io, "iter_frames", counting)
    config = DataConfig(cache_dir=str(tmp_path / "cache"))
    first = PokeClipDataset([square_video], "train", config)
    assert len(decodes) == 1 and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = PokeClipDataset([square_video], "val", config)
    assert len(decodes) == 1  # same file, same preparation settings: no decoding
    assert np.array_equal(first.videos[0].frames, second.videos[0].frames)
    assert np.array_equal(first.videos[0].flows, second.videos[0].flows)
    PokeClipDataset([square_video], "train", DataConfig(cache_dir=config.cache_dir, stride=2,
                                                        frames=5))
    assert len(decodes) == 1  # 5 frames 2 apart span the same 10 frames: same flows
    PokeClipDataset([square_video], "train", DataConfig(cache_dir=config.cache_dir, stride=2,
                                                        frames=6))
    assert len(decodes) == 2  # another span needs other flows


def test_changed_video_is_prepared_again(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.avi", moving_square_frames(40))
    config = DataConfig(cache_dir=str(tmp_path / "cache"), held_out=0.0)
    before = PokeClipDataset([path], "train", config).videos[0]
    write_video(path, moving_square_frames(40, speed=0))
    after = PokeClipDataset([path], "train", config).videos[0]
    assert np.abs(before.flows.astype(np.float32)).max() > 3.0
    assert np.abs(after.flows.astype(np.float32)).max() < 1.0


def test_errors_say_what_to_do(tmp_path, square_video):
    with pytest.raises(JobError, match="not found"):
        PokeClipDataset([tmp_path / "missing.mp4"], "train")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(JobError, match="convert"):
        PokeClipDataset([tmp_path / "junk.mp4"], "train")
    short = write_video(tmp_path / "short.avi", moving_square_frames(8))
    with pytest.raises(JobError, match=r"8 frames, one clip needs 11.*longer video"):
        PokeClipDataset([short], "train")
    with pytest.raises(JobError, match=r"8 frames, one clip needs 21.*smaller stride"):
        PokeClipDataset([short], "train", DataConfig(stride=2))
    twenty = write_video(tmp_path / "twenty.avi", moving_square_frames(20))
    with pytest.raises(JobError, match=r"no val clips.*twenty.avi: 20.*longer videos"):
        PokeClipDataset([twenty], "val")
    with pytest.raises(JobError, match="no training videos"):
        PokeClipDataset([], "train")


# --------------------------------------------------------------------------------------------
# Face box

class ScriptedDetector:
    """Stands in for the cascade: a face per frame from a script (None = missed)."""

    def __init__(self, faces_per_frame):
        self.faces = faces_per_frame

    def __call__(self, frame):
        self.index = getattr(self, "index", -1) + 1
        face = self.faces[self.index]
        return np.zeros((0, 4), np.int64) if face is None else np.array([face])


def test_face_box_is_steady_fixed_in_size_and_inside_the_frame():
    rng = np.random.default_rng(0)
    script = []
    for index in range(40):
        jitter = rng.integers(-3, 4, size=2)
        script.append([100 + index + jitter[0], 60 + jitter[1], 40 + rng.integers(-2, 3), 40])
    script[10] = None                 # a missed frame
    script[20] = [5, 5, 20, 20]       # a one-frame false hit (the nearest face is followed)
    frames = [np.zeros((160, 240, 3), np.uint8)] * 40
    track = faces.track_face(frames, scale=2.0, window=9, detector=ScriptedDetector(script),
                             detect_every=1)
    assert track.found and track.count == 40 and not track.detected[10]
    xs, ys, sides = track.boxes.T
    assert len(set(sides)) == 1 and sides[0] == 80  # median face width x scale
    assert (xs >= 0).all() and (ys >= 0).all()
    assert (xs + sides <= 240).all() and (ys + sides <= 160).all()
    centre_x = xs + sides / 2
    assert np.abs(np.diff(centre_x)).max() <= 2.0  # steadied: no 3 px jitter, no jump at 20
    assert centre_x[30] == pytest.approx(120 + 30, abs=2.0)  # still follows the drift

    # a face near the edge: the square is pushed inside, not shrunk
    edge = faces.track_face([np.zeros((160, 240, 3), np.uint8)] * 3, scale=3.0, window=1,
                            detector=ScriptedDetector([[0, 0, 40, 40]] * 3), detect_every=1)
    assert edge.boxes[0].tolist() == [0, 0, 120]


def test_face_crop_follows_the_detected_face(square_video, monkeypatch):
    # the moving square stands in for a face: the detector reports it where it is
    script = [[SQUARE_X0 + SPEED * i, SQUARE_Y, SQUARE, SQUARE] for i in range(60)]
    monkeypatch.setattr(faces, "default_detector", lambda: ScriptedDetector(script))
    monkeypatch.setattr(faces, "cascade_path", lambda: "cascade.xml")
    config = DataConfig(face_crop=True, face_scale=2.0, face_smooth=1, face_every=1)
    prepared = poke_data.prepare_video(square_video, config)
    assert prepared.face_found
    source = video_io.read_video(square_video)
    for index in (0, 25, 59):
        x, y, side = prepared.boxes[index]
        assert (x, y, side) == (SQUARE_X0 + SPEED * index - 12, SQUARE_Y - 12, 48)
        crop = cv2.resize(source[index][y:y + side, x:x + side], (64, 64),
                          interpolation=cv2.INTER_AREA)
        assert np.array_equal(prepared.frames[index], crop)
    # the crop moves with the square, so in the clip the square stands still
    assert np.abs(prepared.flows[5][24:40, 24:40].astype(np.float32)).mean() < 0.5


def test_no_face_falls_back_to_the_centre_with_a_warning(square_video, monkeypatch):
    monkeypatch.setattr(faces, "default_detector",
                        lambda: ScriptedDetector([None] * 1000))
    monkeypatch.setattr(faces, "cascade_path", lambda: "cascade.xml")
    with pytest.warns(UserWarning, match="no face found.*centre crop"):
        dataset = PokeClipDataset([square_video], "train", DataConfig(face_crop=True))
    assert not dataset.videos[0].face_found
    assert dataset.videos[0].boxes[0].tolist() == [CROP_X, 0, HEIGHT]
    monkeypatch.setattr(faces, "default_detector", lambda: None)
    with pytest.warns(UserWarning, match="no face detector.*Install Engine"):
        PokeClipDataset([square_video], "train", DataConfig(face_crop=True))


TINY_CASCADE = """<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType><height>8</height><width>8</width>
  <stageNum>1</stageNum>
  <stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.</stageThreshold>
    <weakClassifiers><_><internalNodes>0 -1 0 1.2</internalNodes>
      <leafValues>-1. 1.</leafValues></_></weakClassifiers></_></stages>
  <features><_><rects><_>0 0 8 8 -1.</_><_>0 0 4 8 2.</_></rects><tilted>0</tilted></_>
  </features></cascade>
</opencv_storage>
"""


def test_numpy_haar_cascade_finds_its_pattern(tmp_path):
    """A one-feature cascade ('left half bright, right half dark') run by the NumPy evaluator:
    it fires where that pattern is, at the pattern's size, and nowhere on flat ground."""
    path = tmp_path / "edge.xml"
    path.write_text(TINY_CASCADE)
    cascade = faces.HaarCascade.load(path)
    image = np.full((64, 80), 128, np.uint8)
    image[24:40, 30:38] = 255
    image[24:40, 38:46] = 0
    found = cascade.detect(image, min_neighbours=1)
    assert len(found)
    centres = found[:, :2] + found[:, 2:] / 2
    assert np.all(np.abs(centres[:, 0] - 38) <= 1)  # on the edge between bright and dark
    tops, bottoms = found[:, 1], found[:, 1] + found[:, 3]
    assert np.all((bottoms > 24) & (tops < 40))  # somewhere along it
    assert faces.HaarCascade.load(path).detect(np.full((64, 80), 128, np.uint8)).size == 0
    bad = tmp_path / "lbp.xml"
    bad.write_text(TINY_CASCADE.replace("HAAR", "LBP"))
    with pytest.raises(ValueError, match="not an OpenCV Haar cascade"):
        faces.HaarCascade.load(bad)
