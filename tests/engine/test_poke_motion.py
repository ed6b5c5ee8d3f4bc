"""Motion-space poke models (issue 5): flow inversion, uncovered pixels and their fill,
full-resolution frames that warp the still, the motion autoencoder, its data and its training,
and sampling through the same entry points as the pixel model."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import texture, tiny_poke_model, write_job

from engine import job as job_module
from engine.errors import JobError

from engine.poke import motion as M
from engine.poke import sample as S
from engine.poke.sample import prepare as sample_prepare
from engine.poke.data import DataConfig, PokeClipDataset
from engine.poke.model import PokeModel, PokeModelConfig, load_model, save_model
from engine.poke.train import Trainer, TrainConfig, VideoStage
from engine.poke.video_ae import VideoAeConfig, VideoAutoencoder
from engine.progress import Progress
from test_poke_train import _video


def _square_motion(shift: float = 6.0, size: int = 64) -> np.ndarray:
    """Forward flows [10, 2, size, size]: the square [20:40, 20:40] moves right, reaching
    `shift` at the last frame; nothing else moves."""
    motion = np.zeros((10, 2, size, size), np.float32)
    for t in range(10):
        motion[t, 0, 20:40, 20:40] = shift * (t + 1) / 10
    return motion


def _square_still(size: int = 64) -> np.ndarray:
    still = np.full((size, size, 3), 50, np.uint8)
    still[20:40, 20:40] = 220
    return still


# --- flows --------------------------------------------------------------------------------------

def test_backward_flow_inverts_a_smooth_forward_flow():
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    forward = torch.from_numpy(np.stack([3 * np.sin(ys / 10), 2 * np.cos(xs / 12)]))
    back = M.backward_flow(forward)
    grid = torch.from_numpy(np.stack([xs, ys]))
    source = grid - back
    landed = source + M.sample_at(forward[None], source[None])[0]
    error = (landed - grid).abs()[:, 6:-6, 6:-6]
    assert float(error.max()) < 1e-3
    # one step of the fixed point (B = F) is measurably worse: the iteration is doing the work
    naive = grid - forward + M.sample_at(forward[None], (grid - forward)[None])[0]
    assert float((naive - grid).abs()[:, 6:-6, 6:-6].max()) > 0.05


def test_uncovered_marks_the_strip_a_moving_square_leaves_behind():
    hole = M.uncovered(torch.from_numpy(_square_motion()[-1])).numpy()
    assert hole[22:38, 21:25].min() == 1.0          # left behind by the square
    assert hole[:, :18].max() == 0.0 and hole[:, 48:].max() == 0.0
    assert hole[22:38, 28:38].max() == 0.0          # covered by the square itself
    still = M.uncovered(torch.zeros(2, 64, 64)).numpy()
    assert still.max() == 0.0


def test_uncovered_pixels_are_filled_from_the_background_side():
    still, motion = _square_still(), _square_motion()
    # a textured background, so "from its neighbours" can be told apart from a flat colour
    still[:, :, 1] = np.where(still[:, :, 0] == 50, 50 + (np.arange(64) % 7) * 4, 220)
    filled = list(M.motion_frames(still, motion, (0, 0, 64)))[-1]
    strip = (slice(22, 38), slice(21, 25))
    # what the square uncovers takes the background's colours, not the square's
    assert abs(filled[strip][..., 0].mean() - 50) < 15
    assert filled[strip][..., 1].max() < 120
    # a plain inpaint that may also draw on the square's side would pull it up
    hole = M.uncovered(torch.from_numpy(M.clean_motion(motion)[-1])).numpy() > 0.5
    unrestricted = M.fill_uncovered(list(M.motion_frames(still, motion, (0, 0, 64),
                                                         fill=False))[-1], hole)
    assert unrestricted[strip][..., 0].mean() > filled[strip][..., 0].mean() + 15
    # the square itself arrived 6 px to the right; far pixels are the still's
    assert filled[25:35, 29:43, 0].mean() > 200
    assert np.array_equal(filled[:, 50:], still[:, 50:])


def test_motion_frames_keep_the_still_outside_the_square_and_where_nothing_moves():
    still = texture(90, 120)
    motion = np.zeros((10, 2, 64, 64), np.float32)
    motion[:, 0, 24:40, 24:40] = 3.0
    box = (30, 10, 64)
    out = list(M.motion_frames(still, motion, box, frames=5))
    assert len(out) == 5
    assert np.array_equal(out[0], still)             # frame 1 is the still
    last = out[-1]
    inside = np.zeros(still.shape[:2], bool)
    inside[10:74, 30:94] = True
    assert np.array_equal(last[~inside], still[~inside])
    assert not np.array_equal(last[inside], still[inside])
    # residual flows under the threshold leave the still bit-identical
    tiny = np.full((10, 2, 64, 64), M.MOTION_LOW * 0.5, np.float32)
    assert all(np.array_equal(frame, still) for frame in M.motion_frames(still, tiny, box))


def test_motion_frames_pin_masks_and_reference():
    still = texture(64, 64)
    motion = np.zeros((10, 2, 64, 64), np.float32)
    motion[:, 1, 16:48, 16:48] = 4.0
    pin = np.zeros((64, 64), np.float32)
    pin[:, :32] = 1.0
    last = list(M.motion_frames(still, motion, (0, 0, 64), pin=pin))[-1]
    assert np.array_equal(last[:, :32], still[:, :32])
    assert not np.array_equal(last[:, 32:], still[:, 32:])
    # the decoder's own "still" flows are subtracted: the same flows as reference move nothing
    same = list(M.motion_frames(still, motion, (0, 0, 64), reference=motion))
    assert all(np.array_equal(frame, still) for frame in same)


def test_fill_keeps_sample_type_and_alpha():
    still = (texture(64, 64, channels=4).astype(np.uint16) * 257)
    out = list(M.motion_frames(still, _square_motion(), (0, 0, 64)))[-1]
    assert out.dtype == np.uint16 and out.shape == still.shape


# --- the autoencoder and its data ----------------------------------------------------------

def test_motion_autoencoder_encodes_and_decodes_flows():
    ae = VideoAutoencoder(replace(VideoAeConfig.tiny(), space="motion"))
    clip = torch.rand(2, 11, 3, 64, 64) * 2 - 1
    flows = torch.randn(2, 10, 2, 64, 64)
    out = ae(clip, motion=flows)
    assert out.recon.shape == (2, 10, 2, 64, 64) and out.mu.shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="flows"):
        ae(clip)
    with pytest.raises(ValueError, match="2 x 64 x 64"):
        ae.encode(clip)


def test_motion_space_is_saved_with_the_model(tmp_path):
    model = PokeModel(PokeModelConfig.preset_named("tiny", space="motion"))
    path = save_model(tmp_path / "motion.safetensors", model)
    assert load_model(path).config.video.space == "motion"
    with pytest.raises(Exception, match="space"):
        PokeModelConfig.preset_named("tiny", space="colour")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("motion") / "clip.avi")


def test_motion_items_hold_every_frames_flow(video, tmp_path):
    config = DataConfig(augment=False, motion=True, cache_dir=str(tmp_path))
    item = PokeClipDataset([video], "val", config)[0]
    assert item["motion"].shape == (10, 2, 64, 64)
    # the last frame's flow is the clip's flow, and the square moves right a bit more each frame
    assert torch.equal(item["motion"][-1], item["flow"])
    moving = item["motion"][:, 0].abs().flatten(1).max(1).values
    assert moving[-1] > moving[0] > 0.3
    train = PokeClipDataset([video], "train", config)
    assert train.static_count > 0
    static = train[len(train.clips)]
    assert static["static"] and not static["motion"].any()


def test_motion_stage_lowers_its_loss_and_validates_in_pixels(video, tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(preset="tiny", space="motion", batch=2, steps={"video": 1},
                         epoch_batches=1, val_batches=1, perceptual_weight=0.0,
                         data=DataConfig(augment=False, cache_dir=str(tmp_path)))
    trainer = Trainer([video], tmp_path / "m.safetensors", config, Progress())
    stage = VideoStage(trainer)
    assert set(stage.modules) == {"video_ae"}        # no discriminators for flows
    batch = next(iter(trainer.loader(trainer.train_set, True)))
    first = stage.step(batch, 0, 10)["loss"]
    for step in range(1, 6):
        last = stage.step(batch, step, 10)["loss"]
    assert last < first
    metrics = stage.validate(trainer.val_batches())
    assert {"psnr", "ssim", "motion_epe"} <= set(metrics)
    assert np.isfinite(list(metrics.values())).all()


def test_all_three_stages_train_a_motion_model_that_samples(video, tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(preset="tiny", space="motion", batch=2,
                         steps={"video": 2, "codes": 2, "cinn": 2}, epoch_batches=2,
                         val_batches=1, perceptual_weight=0.0,
                         data=DataConfig(augment=False, cache_dir=str(tmp_path)))
    out = Trainer([video], tmp_path / "m.safetensors", config, Progress()).train()
    model = load_model(out)
    assert model.config.video.space == "motion"
    result = S.sample_clips(model, texture(64, 80), [(40.0, 32.0, 4.0, 0.0)], samples=2, seed=0)
    assert result.motions.shape == (2, 10, 2, 64, 64) and np.isfinite(result.motions).all()


# --- sampling ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def motion_model():
    return tiny_poke_model("motion")


def test_motion_samples_are_seeded_and_render_at_full_resolution(motion_model):
    still = texture(90, 120)
    poke = [(60.0, 45.0, 6.0, -3.0)]
    a = S.sample_clips(motion_model, still, poke, samples=2, seed=3)
    b = S.sample_clips(motion_model, still, poke, samples=2, seed=3)
    assert a.motions.shape == (2, 10, 2, 64, 64) and a.clips.shape == (2, 11, 64, 64, 3)
    assert np.array_equal(a.motions, b.motions)
    assert a.reference.shape == (10, 2, 64, 64)
    frames = list(S.clip_frames(still, a, 1, frames=4))
    assert len(frames) == 4 and frames[0] is still
    assert all(f.shape == still.shape and f.dtype == still.dtype for f in frames)
    thumb = S.thumbnail(still, a, 0)
    assert thumb.shape == (S.THUMB_SIDE, S.THUMB_SIDE, 3)


# --- several pokes, pins, guidance ---------------------------------------------------------

def _synthetic_face(size: int = 128) -> np.ndarray:
    """A textured oval "face" with two eyes and a mouth on a textured wall (uint8 RGB)."""
    import cv2

    rng = np.random.default_rng(5)
    wall = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
    still = np.stack([wall * 120 + 40] * 3, axis=2)
    skin = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.2)
    face = np.zeros((size, size), np.uint8)
    cv2.ellipse(face, (size // 2, size // 2), (size // 3, size * 2 // 5), 0, 0, 360, 1, -1)
    still[face > 0] = (np.stack([skin * 80 + 150, skin * 60 + 110, skin * 50 + 90], 2)
                       [face > 0])
    for cx in (size // 2 - size // 8, size // 2 + size // 8):
        cv2.circle(still, (cx, size * 2 // 5), size // 20, (30, 30, 40), -1)
    cv2.ellipse(still, (size // 2, size * 2 // 3), (size // 8, size // 24), 0, 0, 360,
                (120, 40, 50), -1)
    return np.clip(still, 0, 255).astype(np.uint8)


def test_two_opposite_pokes_move_their_sites_in_opposite_directions(motion_model):
    from engine.flow import dis_flow

    still = _synthetic_face()
    left, right = (40.0, 51.0, -6.0, 0.0), (88.0, 51.0, 6.0, 0.0)
    result = S.sample_clips(motion_model, still, [left, right], samples=2, seed=1)
    for index in range(2):
        last = list(S.clip_frames(still, result, index))[-1]
        flow = dis_flow(cv2_grey(still), cv2_grey(last))
        at_left = flow[47:56, 36:45].reshape(-1, 2).mean(0)
        at_right = flow[47:56, 84:93].reshape(-1, 2).mean(0)
        assert at_left[0] < -3.0 and at_right[0] > 3.0, (at_left, at_right)
    # without the guide the untrained model's own motion does not follow the pokes
    raw = S.sample_clips(motion_model, still, [left, right], samples=1, seed=1, guide=False)
    guided = result.motions[0] - result.reference
    assert not np.allclose(raw.motions[0] - raw.reference, guided, atol=0.5)


def cv2_grey(rgb):
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_a_pin_holds_its_point_in_every_frame(motion_model):
    still = _synthetic_face()
    poke, pin = (40.0, 51.0, 8.0, 4.0), (64.0, 85.0)
    result = S.sample_clips(motion_model, still, [poke], samples=1, seed=2,
                            pins_px=[(*pin, 0.0)])
    motion = M.clean_motion(result.motions[0], result.reference)
    site = torch.tensor([[pin[0] * 64 / 128 - 0.5], [pin[1] * 64 / 128 - 0.5]])
    held = M.sample_at(torch.from_numpy(motion),
                       site[None, :, None, :].expand(10, -1, -1, -1).contiguous())
    assert float(held.abs().max()) < 0.02
    pin_map = S.pin_discs([(*pin, 4.0)], 128, 128)
    for frame in S.clip_frames(still, result, 0, pin=pin_map):
        assert np.array_equal(frame[82:89, 61:68], still[82:89, 61:68])


def test_pin_discs_and_only_pins_refused(tmp_path):
    discs = S.pin_discs([(10.0, 10.0, 3.0), (40.5, 20.5, 0.0)], 64, 32)
    assert discs[10, 10] == 1.0 and discs[10, 12] == 1.0 and discs[10, 17] == 0.0
    # radius 0: PIN_RADIUS_SHARE of the shorter side (0.64 px, at least half a pixel)
    assert discs[20, 40] == 1.0 and discs[20, 43] == 0.0
    assert S.pin_discs([], 64, 32) is None
    # a job whose pokes are all clicks without a drag asks nothing to move
    model_path = save_model(tmp_path / "motion.safetensors",
                            PokeModel(PokeModelConfig.preset_named("tiny", space="motion")))
    path = write_job(tmp_path / "job", texture(90, 120), engine="poke", frames=4,
                     pokes=[{"start": [60.0, 45.0], "end": [60.0, 45.0], "radius": 0.0}],
                     poke={"model": str(model_path), "samples": 1, "guide": True})
    job = job_module.load_job(path)
    assert job.poke.guide and job.pokes[0].is_pin(120, 90)
    with pytest.raises(JobError, match="only pins"):
        sample_prepare(job, torch.device("cpu"), Progress())
