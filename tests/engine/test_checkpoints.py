import pytest
import torch

from engine.checkpoints import load_matching, load_weights, read_metadata, save_weights
from engine.errors import JobError


def _net(width=4):
    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.Conv2d(width, 2, 1))


def test_round_trip_keeps_values_and_metadata(tmp_path):
    torch.manual_seed(0)
    net = _net()
    path = save_weights(tmp_path / "m.safetensors", net, architecture="tiny", config={"width": 4})
    other = _net()
    meta = load_weights(path, other, architecture="tiny")
    assert meta["stillmotion.config"] == {"width": 4}
    assert read_metadata(path)["stillmotion.architecture"] == "tiny"
    for a, b in zip(net.parameters(), other.parameters()):
        assert torch.equal(a, b)


def test_wrong_shape_is_refused_naming_the_tensor(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", _net(width=4), architecture="tiny")
    net = _net(width=8)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(JobError, match=r"tensor '0.weight' has shape \[4, 1, 3, 3\], expected \[8"):
        load_weights(path, net, architecture="tiny")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters())), "partially loaded"


def test_missing_and_foreign_tensors_and_architecture(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"0.weight": torch.zeros(4, 1, 3, 3)},
                        architecture="tiny")
    with pytest.raises(JobError, match="tensor '0.bias' is missing"):
        load_weights(path, _net(), architecture="tiny")
    with pytest.raises(JobError, match="holds weights for 'tiny', not 'msoe'"):
        load_weights(path, _net(), architecture="msoe")


def test_corrupt_header_and_pickles_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff\xff\xff\xff\x00\x00\x00\x00{not json")
    with pytest.raises(JobError, match="not a valid safetensors file"):
        load_weights(bad, _net())
    pickled = tmp_path / "model.pth"
    torch.save(_net().state_dict(), pickled)
    with pytest.raises(JobError, match="only .safetensors"):
        load_weights(pickled, _net())
    with pytest.raises(JobError, match="not found"):
        load_weights(tmp_path / "nope.safetensors", _net())


def test_warm_start_loads_what_fits_and_names_the_rest(tmp_path):
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 1))
    path = save_weights(tmp_path / "m.safetensors", small, architecture="tiny")
    grown = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 3, 1),
                                torch.nn.Conv2d(3, 1, 1))
    kept = grown[1].weight.clone()
    fresh = load_matching(path, grown, architecture="tiny")
    assert fresh == ["1.bias", "1.weight", "2.bias", "2.weight"]
    assert torch.equal(grown[0].weight, small[0].weight)
    assert torch.equal(grown[1].weight, kept)  # another shape: left as it was
    with pytest.raises(JobError, match="holds weights for 'tiny', not 'msoe'"):
        load_matching(path, grown, architecture="msoe")
    with pytest.raises(JobError, match="shares no tensor"):
        load_matching(path, torch.nn.Sequential(torch.nn.Linear(2, 2)), architecture="tiny")
