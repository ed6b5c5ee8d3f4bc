"""The face in a poke job (engine/poke/parts.py): pokes snap to the facial part they start
near and the job reports which part each drives; everything but the person is held still;
without MediaPipe or a face the job still bakes, with a warning. The detector and the person
mask are replaced by fixed answers here (test_face_parts.py runs the real ones), except in the
last test, which pokes the astronaut's real mouth."""

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, json_lines, texture, write_job

from engine import cli, frames
from engine.errors import JobError
from engine.face import landmarks, segmentation
from engine.poke.model import PokeModel, PokeModelConfig, save_model
from test_face_parts import synthetic_face


@pytest.fixture(scope="module")
def motion_model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = PokeModel(PokeModelConfig.preset_named("tiny", space="motion"))
    cinn = model.cinn.config
    model.cinn.train()
    with torch.no_grad():
        model.cinn(torch.randn(4, cinn.z_channels, cinn.z_size, cinn.z_size),
                   torch.randn(4, cinn.cond_channels, cinn.z_size, cinn.z_size))
    return save_model(tmp_path_factory.mktemp("motion") / "tiny.safetensors", model)


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
