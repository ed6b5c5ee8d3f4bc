"""Poke sampling: seeds, poke maps, full-resolution composition, the `poke` job engine and the
sample-poke command, on a tiny random-weight model (engine/poke/sample.py)."""

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import json_lines, run_engine, save, texture, tiny_poke_model, write_job
from rounding import assert_rounding_close, float64_twin

from engine import cli, frames, job as job_module
from engine.errors import JobError
from engine.poke import sample as S
from engine.poke.model import PokeModel, PokeModelConfig, load_model, save_model

POKE = (60.0, 45.0, 6.0, -3.0)  # centre of a 120 x 90 still


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("poke_model") / "tiny.safetensors",
                      tiny_poke_model())


@pytest.fixture(scope="module")
def model(model_path):
    torch.set_num_threads(1)
    return load_model(model_path)


@pytest.fixture(scope="module")
def still():
    return texture(90, 120)


# --- seeds ----------------------------------------------------------------------------------

def test_same_seed_same_clips_other_seed_other_clips(model, still):
    a = S.sample_clips(model, still, [POKE], samples=3, seed=7)
    b = S.sample_clips(model, still, [POKE], samples=3, seed=7)
    c = S.sample_clips(model, still, [POKE], samples=3, seed=8)
    assert a.clips.shape == (3, 11, 64, 64, 3) and a.clips.dtype == np.float32
    assert np.array_equal(a.clips, b.clips)
    assert np.abs(a.clips[:, 1:] - c.clips[:, 1:]).max() > 1e-3
    # the samples of one seed differ from each other too (each has its own noise)
    assert np.abs(a.clips[0, 1:] - a.clips[1, 1:]).max() > 1e-3
    # x0 is the still's square as the decoder saw it, the same in every sample
    assert np.array_equal(a.clips[0, 0], a.clips[2, 0])


def test_one_sample_alone_equals_it_in_the_batch(model, still):
    batch = S.sample_clips(model, still, [POKE], samples=4, seed=3)
    alone = S.sample_clips(model, still, [POKE], samples=4, seed=3, indices=[2])
    assert alone.clips.shape[0] == 1
    # a batch of 1 and a batch of 4 may take the networks' sums in different orders; the
    # float64 twin's clips are its float64 values rounded once to float32 (within ULPS)
    exact = S.sample_clips(float64_twin(model), still, [POKE], samples=4, seed=3, indices=[2])
    assert_rounding_close(alone.clips[0], batch.clips[2], exact.clips[0], what="sample alone")


def test_sample_index_outside_the_samples_is_refused(model, still):
    with pytest.raises(JobError, match="outside 0..3"):
        S.sample_clips(model, still, [POKE], samples=4, seed=0, indices=[4])


# --- poke map -------------------------------------------------------------------------------

def test_poke_map_position_and_scale():
    box = (10, 20, 128)  # 128 still pixels -> 64 map pixels: half
    poke, used = S.poke_map([(10 + 40.6, 20 + 30.2, 8.0, -4.0)], box)
    assert used == [0]
    assert poke.shape == (2, 64, 64)
    rows, cols = np.nonzero(poke[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (13, 17, 18, 22)
    assert np.all(poke[0, 13:18, 18:23] == 4.0) and np.all(poke[1, 13:18, 18:23] == -2.0)
    assert np.count_nonzero(poke[0]) == 25


def test_poke_map_several_pokes_edges_and_outside():
    box = (0, 0, 64)
    pokes = [(10.5, 10.5, 1.0, 0.0), (0.2, 63.9, 0.0, 2.0), (70.0, 5.0, 1.0, 1.0),
             (40.0, 40.0, -3.0, 1.0)]
    poke, used = S.poke_map(pokes, box)
    assert used == [0, 1, 3]
    assert np.all(poke[0, 8:13, 8:13] == 1.0)
    # at the corner the patch moves inwards and stays whole (5 x 5), as in training
    assert np.all(poke[1, 59:64, 0:5] == 2.0)
    assert np.all(poke[:, 38:43, 38:43] == np.array([-3.0, 1.0])[:, None, None])
    assert np.count_nonzero(np.abs(poke).sum(0)) == 75


def test_pokes_outside_the_square_warn_and_none_inside_is_refused(model, still):
    warnings = []
    result = S.sample_clips(model, still, [POKE, (2.0, 45.0, 3.0, 0.0)], samples=1, seed=0,
                            warn=warnings.append)
    assert result.box == (15, 0, 90)  # the largest centred square of 120 x 90
    assert len(warnings) == 1 and "poke 2" in warnings[0] and "ignored" in warnings[0]
    with pytest.raises(JobError, match="start the arrows on the face"):
        S.sample_clips(model, still, [(2.0, 45.0, 3.0, 0.0)], samples=1, seed=0,
                       warn=warnings.append)


def test_face_models_use_the_face_box(monkeypatch):
    rgb = np.zeros((200, 300, 3), np.uint8)
    notes = []
    monkeypatch.setattr(S.faces, "default_detector", lambda: None)
    assert S.input_box(rgb, True, 2.0, notes.append) == (50, 0, 200)
    assert "no face detector" in notes[-1]
    # two faces: the larger one, side = width x scale, the box kept on the picture
    monkeypatch.setattr(S.faces, "default_detector",
                        lambda: lambda frame: np.array([[10, 10, 20, 20], [220, 60, 40, 40]]))
    assert S.input_box(rgb, True, 2.0, notes.append) == (200, 40, 80)
    assert S.input_box(rgb, False, 2.0, notes.append) == (50, 0, 200)


# --- full resolution ------------------------------------------------------------------------

def _clip_with_square_change(x0: np.ndarray, rows, cols, amount: float, noise: float):
    """11 frames: x0 plus `noise` everywhere (below the threshold) and `amount` growing over
    time in the square rows x cols."""
    clip = np.repeat(x0[None], 11, axis=0).astype(np.float32)
    clip[1:] += noise
    for t in range(1, 11):
        clip[t, rows[0]:rows[1], cols[0]:cols[1]] += amount * t / 10
    return clip


def test_full_resolution_keeps_the_still_where_nothing_changes():
    still = texture(100, 160) // 2  # room for the change below 255
    box = (30, 0, 100)
    x0 = np.full((64, 64, 3), 0.3, np.float32)
    clip = _clip_with_square_change(x0, (20, 30), (40, 50), 0.4, noise=1.0 / 255)
    out = list(S.full_resolution_frames(still, clip, box))
    assert len(out) == 11
    assert np.array_equal(out[0], still)
    last = out[-1].astype(np.int32)
    changed = np.any(last != still, axis=2)
    rows, cols = np.nonzero(changed)
    scale = 100 / 64
    # the change lands where the square is, scaled into the box (cubic reach: 2 map pixels)
    assert rows.min() >= (20 - 2) * scale - 1 and rows.max() <= (30 + 2) * scale + 1
    assert cols.min() >= 30 + (40 - 2) * scale - 1 and cols.max() <= 30 + (50 + 2) * scale + 1
    core = (slice(int(22 * scale) + 1, int(28 * scale)),
            slice(30 + int(42 * scale) + 1, 30 + int(48 * scale)))
    assert np.allclose(last[core] - still[core].astype(np.int32), 0.4 * 255, atol=2)
    # everything outside the square's reach, and outside the box, is the still bit for bit
    assert not changed[:, :30].any() and not changed[:, 130:].any()
    assert changed.sum() < 0.05 * changed.size


def test_change_is_measured_against_the_decoders_static_clip(model, still):
    result = S.sample_clips(model, still, [POKE], samples=1, seed=0)
    assert result.reference.shape == (11, 64, 64, 3)
    assert np.array_equal(result.reference[0], result.clips[0, 0])
    # a decoder that renders x0 blurred everywhere: against x0 all of it would be "change";
    # against the static clip only what differs from it (a square) is
    x0 = np.full((64, 64, 3), 0.4, np.float32)
    reference = np.repeat(x0[None], 11, axis=0)
    reference[1:] += 0.1
    clip = reference.copy()
    clip[1:, 20:30, 20:30] += 0.3
    square = texture(64, 64) // 2
    last = list(S.full_resolution_frames(square, clip, (0, 0, 64), reference=reference))[-1]
    changed = np.any(last != square, axis=2)
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 18 and rows.max() <= 31 and cols.min() >= 18 and cols.max() <= 31
    against_x0 = list(S.full_resolution_frames(square, clip, (0, 0, 64)))[-1]
    assert np.any(against_x0 != square, axis=2).all()


def test_full_resolution_resamples_in_time_and_pins_masks():
    still = texture(64, 64) // 2
    box = (0, 0, 64)
    clip = _clip_with_square_change(np.full((64, 64, 3), 0.5, np.float32), (10, 50), (10, 50),
                                    0.3, noise=0.0)
    out = list(S.full_resolution_frames(still, clip, box, frames=21))
    assert len(out) == 21
    middle = out[10].astype(np.float32) - still
    last = out[20].astype(np.float32) - still
    assert np.allclose(middle[30, 30], 0.5 * last[30, 30], atol=1.5)
    pin = np.zeros((64, 64), np.float32)
    pin[:, :32] = 1.0
    pinned = list(S.full_resolution_frames(still, clip, box, frames=3, pin=pin))[-1]
    assert np.array_equal(pinned[:, :32], still[:, :32])
    assert not np.array_equal(pinned[:, 32:], still[:, 32:])


def test_full_resolution_keeps_sample_type_and_alpha():
    still = texture(40, 40, channels=4, dtype=np.uint16)
    still[..., 3] = 30000
    clip = _clip_with_square_change(np.full((64, 64, 3), 0.5, np.float32), (0, 64), (0, 64),
                                    0.2, noise=0.0)
    last = list(S.full_resolution_frames(still, clip, (0, 0, 40)))[-1]
    assert last.dtype == np.uint16 and last.shape == still.shape
    assert np.array_equal(last[..., 3], still[..., 3])
    assert (last[..., :3].astype(np.int64) > still[..., :3]).mean() > 0.9


# --- the job engine -------------------------------------------------------------------------

def _poke_job(tmp_path, model_path, still=None, **poke):
    pokes = [{"start": [60.0, 45.0], "end": [66.0, 42.0], "radius": 0.0}]
    settings = {"model": str(model_path), "samples": 3, "sample": 1, **poke}
    return write_job(tmp_path, texture(90, 120) if still is None else still, engine="poke",
                     frames=6, pokes=pokes, poke=settings)


def test_compose_frames_gives_the_upsampled_64px_frames_as_published(model, still):
    result = S.sample_clips(model, still, [POKE], samples=1, seed=0)
    bx, by, side = result.box
    frames = list(S.clip_frames(still, result, 0, frames=4, compose="frames"))
    assert frames[0] is still and len(frames) == 4
    last = frames[-1]
    outside = np.ones(still.shape[:2], bool)
    outside[by:by + side, bx:bx + side] = False
    assert np.array_equal(last[outside], still[outside])
    expected = cv2.resize(result.clips[0][-1], (side, side), interpolation=cv2.INTER_CUBIC)
    got = last[by:by + side, bx:bx + side].astype(np.float32) / 255.0
    assert np.abs(got - np.clip(expected, 0, 1)).max() <= 1.0 / 255.0 + 1e-6


@pytest.mark.parametrize("settings, words", [
    ({"compose": "blend"}, ["poke.compose", "change, frames"]),
    ({"sample": 3}, ["poke.sample is 3", "3 samples"]),
    ({"samples": 0}, ["poke.samples"]),
    ({"temperature": 0}, ["poke.temperature"]),
    ({"thumbnails": "yes"}, ["poke.thumbnails", "true or false"]),
    ({"model": "nowhere.safetensors"}, ["poke model not found", "train-poke"]),
])
def test_poke_job_settings_are_checked(tmp_path, model_path, settings, words):
    path = _poke_job(tmp_path, model_path, **settings)
    with pytest.raises(JobError) as caught:
        job_module.load_job(path)
    for word in words:
        assert word in str(caught.value)


def test_missing_default_model_says_to_train_one(tmp_path, model_path, monkeypatch):
    monkeypatch.setattr(job_module, "DEFAULT_POKE_MODEL", tmp_path / "absent.safetensors")
    path = _poke_job(tmp_path, model_path, model=None)
    with pytest.raises(JobError, match="train-poke"):
        job_module.load_job(path)
    monkeypatch.setattr(job_module, "DEFAULT_POKE_MODEL", model_path)
    assert job_module.load_job(path).poke.model_path() == model_path


def test_poke_job_bakes_the_picked_sample_at_full_resolution(tmp_path, model_path, model,
                                                             capsys, keep_sigterm):
    still = texture(90, 120)
    path = _poke_job(tmp_path, model_path, still=still, temperature=0.8)
    assert cli.main(["run", str(path)]) == 0
    out = tmp_path / "out" / "take_001"
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"frame_{i:04d}.png" for i in range(1, 7)]
    baked = [frames.read_image(f) for f in files]
    assert all(f.shape == still.shape for f in baked)
    assert np.array_equal(baked[0], still)
    # the same as sample 1 of 3 for this seed, made by the library
    result = S.sample_clips(model, still, [(60.0, 45.0, 6.0, -3.0)], 3, 0, 0.8)
    expected = list(S.full_resolution_frames(still, result.clips[1], (15, 0, 90), frames=6,
                                             reference=result.reference))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(baked, expected)) <= 1


def test_poke_job_thumbnails_for_the_picker(tmp_path, model_path, capsys, keep_sigterm):
    path = _poke_job(tmp_path, model_path, thumbnails=True)
    assert cli.main(["run", str(path)]) == 0
    out = tmp_path / "out" / "take_001"
    assert sorted(f.name for f in out.iterdir()) == [f"sample_0{i}.png" for i in range(3)]
    assert frames.read_image(out / "sample_00.png").shape == (S.THUMB_SIDE, S.THUMB_SIDE, 3)
    done = json_lines(capsys.readouterr().out)[-1]
    assert done["stage"] == "done" and done["images"] == [f"sample_0{i}.png" for i in range(3)]


def test_poke_job_from_the_command_line(tmp_path, model_path):
    path = _poke_job(tmp_path, model_path)
    result = run_engine("run", str(path))
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert lines[-1]["stage"] == "done" and lines[-1]["frames"] == 6
    assert any(line["stage"] == "sample" for line in lines)


# --- sample-poke ----------------------------------------------------------------------------

def test_sample_poke_command_writes_clips_thumbnails_and_sheet(tmp_path, model_path, capsys):
    image = save(tmp_path / "still.png", texture(90, 120))
    out = tmp_path / "samples"
    status = cli.main(["sample-poke", "--model", str(model_path), "--image", str(image),
                       "--poke", "60,45,6,-3", "--poke", "50,30,0,4", "--samples", "2",
                       "--seed", "5", "--frames", "8", "--out", str(out)])
    assert status == 0, capsys.readouterr()
    for index in range(2):
        clip = sorted((out / f"sample_0{index}").iterdir())
        assert [f.name for f in clip] == [f"frame_{i:04d}.png" for i in range(1, 9)]
        assert frames.read_image(clip[-1]).shape == (90, 120, 3)
        assert (out / f"sample_0{index}.png").is_file()
    sheet = frames.read_image(out / "contact_sheet.png")
    assert sheet.shape[0] < sheet.shape[1]  # two rows of eight frames
    raw = tmp_path / "raw"
    assert cli.main(["sample-poke", "--model", str(model_path), "--image", str(image),
                     "--poke", "60,45,6,-3", "--samples", "1", "--size", "64",
                     "--out", str(raw)]) == 0
    assert frames.read_image(raw / "sample_00" / "frame_0011.png").shape == (64, 64, 3)
    json.dumps(json_lines(capsys.readouterr().out))  # progress lines are JSON


class _Diverging:
    """Stands in for a poke model whose cINN inverse overflows for noise rows above 2 in their
    first value: reverse() returns the noise, with 1e30 where it diverged."""

    class cinn:  # noqa: N801 - the attribute name the real model has
        calls = 0

        @classmethod
        def reverse(cls, noise, cond):
            cls.calls += 1
            out = noise.clone()
            out[noise.flatten(1)[:, 0] > 2.0] = 1e30
            return out


def test_samples_whose_inverse_diverges_are_drawn_again_deterministically():
    noise = torch.zeros(3, 2, 2, 2)
    noise[1, 0, 0, 0] = 5.0                       # row 1 diverges
    redraws = []

    def redraw(row, attempt):
        redraws.append((row, attempt))
        fresh = torch.zeros(2, 2, 2)
        fresh[0, 0, 0] = 5.0 if attempt < 3 else 1.0   # diverges twice more, then lands
        return fresh

    warnings = []
    z = S.reverse_finite(_Diverging, noise, torch.zeros(3, 1), redraw, warn=warnings.append)
    assert redraws == [(1, 1), (1, 2), (1, 3)]
    assert float(z.abs().max()) == 1.0 and torch.equal(z[0], noise[0])
    assert warnings and "drawn again" in warnings[0]
    with pytest.raises(JobError, match="diverged 9 times.*lower the temperature"):
        S.reverse_finite(_Diverging, noise, torch.zeros(3, 1),
                         lambda row, attempt: torch.full((2, 2, 2), 5.0))
