"""The face in a poke job (engine/poke/parts.py): pokes snap to the facial part they start
near and the job reports which part each drives; everything but the person is held still;
without MediaPipe or a face the job still bakes, with a warning. The detector and the person
mask are replaced by fixed answers here (test_face_parts.py runs the real ones), except in the
last test, which pokes the astronaut's real mouth."""

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, json_lines, texture, tiny_poke_model, write_job

from engine import cli, frames
from engine.errors import JobError
from engine.face import landmarks, segmentation
from engine.poke.model import save_model
from test_face_parts import synthetic_face


@pytest.fixture(scope="module")
def motion_model_path(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("motion") / "tiny.safetensors",
                      tiny_poke_model("motion"))


def _job(tmp_path, model_path, still, pokes, **settings):
    return write_job(tmp_path, still, engine="poke", frames=4, pokes=[
        {"start": list(start), "end": list(end), "radius": 0.0} for start, end in pokes],
        poke={"model": str(model_path), "samples": 1, **settings})


def _run(path, capsys):
    assert cli.main(["run", str(path)]) == 0
    return json_lines(capsys.readouterr().out)


def test_pokes_snap_to_their_part_and_the_job_says_which(tmp_path, motion_model_path, capsys,
                                                           monkeypatch, keep_sigterm):
    monkeypatch.setattr(landmarks, "detect_face", lambda image, **_: synthetic_face())
    monkeypatch.setattr(segmentation, "person_mask", lambda image: np.ones(image.shape[:2],
                                                                            np.float32))
    mouth_poke = ((112.0, 150.0), (112.0, 158.0))     # 2 px below the lower lip
    forehead_pin = ((100.0, 30.0), (100.0, 30.0))
    path = _job(tmp_path, motion_model_path, texture(200, 200), [mouth_poke, forehead_pin])
    parts = [r for r in _run(path, capsys) if r["stage"] == "parts"]
    assert len(parts) == 1 and parts[0]["face"]
    first, second = parts[0]["pokes"]
    assert (first["index"], first["part"], first["pin"]) == (1, "mouth", False)
    mouth = synthetic_face().points["mouth"]
    assert np.min(np.hypot(*(mouth - first["start"]).T)) < 0.01   # moved onto the lip
    assert (second["part"], second["pin"], second["start"]) == (None, True, [100.0, 30.0])


def test_everything_but_the_person_stays_still(tmp_path, motion_model_path, capsys,
                                               monkeypatch, keep_sigterm):
    person = np.zeros((96, 128), np.float32)
    person[:, :64] = 1.0                                # the person: the left half
    monkeypatch.setattr(segmentation, "person_mask", lambda image: person.copy())
    monkeypatch.setattr(landmarks, "detect_face", lambda image, **_: None)
    still = texture(96, 128)
    path = _job(tmp_path, motion_model_path, still, [((50.0, 48.0), (60.0, 48.0))])
    _run(path, capsys)
    baked = [frames.read_image(f) for f in sorted((tmp_path / "out" / "take_001").iterdir())]
    assert any(not np.array_equal(f[:, :64], still[:, :64]) for f in baked)  # the poke moved
    assert all(np.array_equal(f[:, 64:], still[:, 64:]) for f in baked)


def test_without_mediapipe_the_job_bakes_and_says_why(tmp_path, motion_model_path, capsys,
                                                      monkeypatch, keep_sigterm):
    def missing(*_, **__):
        raise JobError("facial parts need MediaPipe; run Install Engine")

    monkeypatch.setattr(landmarks, "detect_face", missing)
    monkeypatch.setattr(segmentation, "person_mask", missing)
    path = _job(tmp_path, motion_model_path, texture(96, 128), [((50.0, 48.0), (60.0, 48.0))])
    records = _run(path, capsys)
    warnings = " ".join(r.get("message", "") for r in records if r["stage"] == "warning")
    assert "facial parts are off" in warnings and "not held automatically" in warnings
    assert len(list((tmp_path / "out" / "take_001").iterdir())) == 4


def test_a_poke_on_the_astronauts_mouth_drives_the_mouth(tmp_path, motion_model_path, capsys,
                                                         keep_sigterm):
    pytest.importorskip("mediapipe")
    image = cv2.imread(str(REPO / "media" / "astronaut.png"))
    if image is None:
        pytest.skip("media/astronaut.png is missing: run `make media`")
    still = cv2.cvtColor(image[20:260, 110:340], cv2.COLOR_BGR2RGB)
    face = landmarks.detect_face(still)
    x, y = (float(v) for v in face.points["mouth"].mean(0))
    path = _job(tmp_path, motion_model_path, still, [((x, y), (x, y + 6.0))], background=False)
    parts = [r for r in _run(path, capsys) if r["stage"] == "parts"][0]
    assert parts["face"] and parts["pokes"][0]["part"] == "mouth"


# --- the part layout as a condition, pokes per part ------------------------------------------

def _face_in(image, **_):
    """The synthetic face (a 200-px cartoon) scaled onto whatever image is searched."""
    return synthetic_face().scaled(*image.shape[:2])


def test_peak_flow_takes_each_pixels_furthest_frame():
    from engine.poke.data import peak_flow

    motion = np.zeros((10, 4, 4, 2), np.float32)
    motion[3, 1, 1] = (0.0, 2.0)      # a blink: down at frame 4, back by the end
    motion[9, 2, 2] = (1.0, 0.0)      # a steady drift
    peak = peak_flow(motion)
    assert peak[1, 1].tolist() == [0.0, 2.0] and peak[2, 2].tolist() == [1.0, 0.0]
    assert not peak[0, 0].any()


def test_items_carry_the_part_layout_and_part_pokes(tmp_path, monkeypatch):
    from engine.face.parts import PART_NAMES
    from engine.poke.data import DataConfig, PokeClipDataset, pick_part_region
    from test_poke_train import _video

    monkeypatch.setattr(landmarks, "detect_face", _face_in)
    video = _video(tmp_path / "clip.avi")
    config = DataConfig(augment=False, motion=True, parts=True, part_pokes=1.0,
                        cache_dir=str(tmp_path))
    dataset = PokeClipDataset([video], "train", config)
    item = dataset[0]
    assert item["parts"].shape == (7, 64, 64)
    mouth = item["parts"][PART_NAMES.index("mouth")]
    rows = torch.nonzero(mouth > 0.5)[:, 0].float().mean()
    eyes = torch.nonzero(item["parts"][PART_NAMES.index("left_eye")] > 0.5)[:, 0].float().mean()
    assert rows > eyes                                   # the mouth is below the eyes
    # every part poke lies inside one (grown) small part
    rng = np.random.default_rng(0)
    layout = item["parts"].numpy()
    for _ in range(20):
        region = pick_part_region(layout, config, rng)
        assert region is not None and region.sum() < 64 * 64 / 4
    cached = PokeClipDataset([video], "train", config)   # from the cache, same layouts
    assert np.array_equal(cached.videos[0].layouts, dataset.videos[0].layouts)


def test_a_parts_model_trains_and_samples_with_the_layout(tmp_path, monkeypatch):
    from engine.poke import sample as S
    from engine.poke.data import DataConfig
    from engine.poke.model import load_model
    from engine.poke.train import Trainer, TrainConfig
    from engine.progress import Progress
    from test_poke_train import _video

    monkeypatch.setattr(landmarks, "detect_face", _face_in)
    torch.manual_seed(0)
    config = TrainConfig(preset="tiny", space="motion", parts=True, batch=2,
                         steps={"video": 1, "codes": 2, "cinn": 2}, epoch_batches=2,
                         val_batches=1, perceptual_weight=0.0,
                         data=DataConfig(augment=False, cache_dir=str(tmp_path)))
    out = Trainer([_video(tmp_path / "clip.avi")], tmp_path / "m.safetensors", config,
                  Progress()).train()
    model = load_model(out)
    assert model.image_encoder.stem.in_channels == 3 + 7
    still = texture(96, 96)
    seen = []
    real = S.box_part_layout
    monkeypatch.setattr(S, "box_part_layout",
                        lambda *args: seen.append(1) or real(*args))
    with_face = S.sample_clips(model, still, [(48.0, 48.0, 5.0, 0.0)], samples=1, seed=0)
    assert seen and np.isfinite(with_face.motions).all()
    # no face: sampled without the layout, with a warning
    monkeypatch.setattr(landmarks, "detect_face", lambda image, **_: None)
    warnings = []
    S.sample_clips(model, still, [(48.0, 48.0, 5.0, 0.0)], samples=1, seed=0,
                   warn=warnings.append)
    assert any("without the part layout" in w for w in warnings)


def test_the_person_masks_unsure_fringe_is_held(monkeypatch):
    from engine.poke.parts import PERSON_SURE, background_hold

    ramp = np.tile(np.linspace(0.0, 1.0, 101, dtype=np.float32), (4, 1))
    monkeypatch.setattr(segmentation, "person_mask", lambda image: ramp.copy())
    pin = background_hold(np.zeros((4, 101, 3), np.uint8), [], [], lambda message: None)
    low, high = PERSON_SURE
    assert (pin[:, : int(low * 100) + 1] == 1.0).all()     # unsure: held
    assert (pin[:, int(high * 100):] == 0.0).all()         # sure: free
    assert np.all(np.diff(pin[0]) <= 0)                    # one smooth fall-off between
