"""VGG feature networks: the HED VGG16 from its .h5, named layers, a numpy golden check, wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import vgg as tv_vgg

from deeperfour.models.features import (
    HED_MEAN_BGR,
    PYRAMID_LAYERS,
    VGG16_BLOCKS,
    VGG_WIDTHS,
    _hed_arrays,
    build_features,
    hed_weights_path,
    layer_names,
    load_hed_vgg16,
    load_torchvision_vgg,
)


@pytest.fixture(scope="module")
def hed_path():
    try:
        return hed_weights_path()
    except FileNotFoundError as e:
        pytest.skip(f"HED weights absent: {e}")


@pytest.fixture(scope="module")
def hed(hed_path):
    return load_hed_vgg16(hed_path)


def test_h5_gives_13_convs_with_vgg16_shapes(hed, hed_path):
    expected = [(w, cin) for b, (n, w) in enumerate(zip(VGG16_BLOCKS, VGG_WIDTHS, strict=True))
                for cin in [VGG_WIDTHS[b - 1] if b else 3] + [w] * (n - 1)]
    convs = hed.convs()
    assert [tuple(c.weight.shape) for c in convs] == [(o, i, 3, 3) for o, i in expected]
    assert [tuple(c.bias.shape) for c in convs] == [(o,) for o, _ in expected]
    assert len(_hed_arrays(hed_path)) == 13
    assert sum(p.numel() for p in hed.parameters()) == 14_714_688  # VGG16 conv part
    assert not any(p.requires_grad for p in hed.parameters())
    assert not hed.train().training  # frozen: a parent's .train() leaves it in eval


def test_named_feature_shapes(hed):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = hed(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "relu1_2": (1, 64, 64, 64), "relu2_2": (1, 128, 32, 32),
        "relu3_3": (1, 256, 16, 16), "relu4_3": (1, 512, 8, 8)}
    with torch.no_grad():
        pyr = hed.pyramid(x)
    assert [tuple(p.shape[1:]) for p in pyr] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8),
                                                  (512, 4, 4)]
    assert [hed.channels(n) for n in PYRAMID_LAYERS] == [64, 128, 256, 512, 512]


def test_pre_relu_conv_is_kept_and_odd_sizes_round_up(hed):
    with torch.no_grad():
        out = hed(torch.rand(1, 3, 45, 67), ("conv4_3", "relu4_3", "relu5_3"))
    assert torch.equal(out["relu4_3"], out["conv4_3"].clamp(min=0))
    assert (out["conv4_3"] < 0).any()  # the conv output was not overwritten by an in-place ReLU
    assert tuple(out["relu5_3"].shape) == (1, 512, 3, 5)  # Keras 'same' pools: 45->23->12->6->3, 67->...->5


def test_runs_only_up_to_the_deepest_layer(hed):
    calls = []
    handle = hed.features[5].register_forward_hook(lambda *a: calls.append(1))  # conv2_1
    try:
        with torch.no_grad():
            hed(torch.rand(1, 3, 16, 16), ("relu1_2",))
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(KeyError, match="relu9_9"):
        hed(torch.rand(1, 3, 16, 16), ("relu9_9",))


def test_conv1_1_golden_against_numpy_from_h5(hed, hed_path):
    """conv1_1 computed straight from the HWIO kernel in numpy (no transpose) on a seeded input."""
    kernel, bias = _hed_arrays(hed_path)[0]  # (3, 3, 3, 64) HWIO, (64,)
    rgb = np.random.default_rng(0).random((3, 9, 11)).astype(np.float32)  # (C, H, W) in [0, 1]
    bgr = rgb[::-1] * 255 - np.array(HED_MEAN_BGR, np.float32)[:, None, None]
    pad = np.pad(bgr, ((0, 0), (1, 1), (1, 1)))
    patches = np.stack([pad[:, i:i + 9, j:j + 11] for i in range(3) for j in range(3)])  # (9, C, H, W)
    ref = np.einsum("kchw,kco->ohw", patches.astype(np.float64), kernel.reshape(9, 3, 64))  # (64, H, W)
    ref += bias[:, None, None]
    with torch.no_grad():
        out = hed(torch.from_numpy(rgb)[None], ("conv1_1", "relu1_1"))
    np.testing.assert_allclose(out["conv1_1"][0].numpy(), ref, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(out["relu1_1"][0].numpy(), np.maximum(ref, 0), rtol=1e-4, atol=1e-2)


def test_features_respond_to_edges(hed):
    """A vertical step edge: relu2_2 changes across columns at the edge and not in flat areas."""
    x = torch.full((1, 3, 64, 64), 0.3)
    x[..., 32:] = 0.7
    with torch.no_grad():
        f = hed(x, ("relu2_2",))["relu2_2"][0]  # (128, 32, 32), edge at column 16
    energy = (f[:, 8:24, 1:] - f[:, 8:24, :-1]).abs().mean(dim=(0, 1))  # (31,) between columns c and c+1
    assert energy.argmax().item() in (14, 15, 16)
    assert energy[14:17].min() > 5
    assert energy[4:11].max() < 1e-3 and energy[20:27].max() < 1e-3  # flat areas, away from the borders


def test_torchvision_wrapper_loads_a_local_state_dict(hed, tmp_path):
    """HED's VGG16 has torchvision's features indices, so its weights make a valid local vgg16 file."""
    path = tmp_path / "vgg16.pth"
    torch.save(hed.state_dict(), path)
    net = build_features({"backbone": "torchvision_vgg16", "weights": str(path)})
    assert torch.equal(net.features[28].weight, hed.features[28].weight)  # conv5_3
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        out = net(torch.rand(1, 3, 32, 32), ("relu1_2", "relu4_3"))
    assert tuple(out["relu4_3"].shape) == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="vgg19"):
        load_torchvision_vgg(path, "vgg19")  # vgg16 weights do not fit vgg19


def test_build_features_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        build_features({"backbone": "resnet50"})
    with pytest.raises(ValueError, match="needs 'weights'"):
        build_features({"backbone": "torchvision_vgg19"})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_torchvision_vgg(bad)


def test_layer_names_of_vgg19_and_batchnorm_variants():
    with torch.device("meta"):
        names19 = layer_names(tv_vgg.make_layers(tv_vgg.cfgs["E"]))
        names16bn = layer_names(tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=True))
    assert "conv4_4" in names19 and "relu5_4" in names19 and names19[-1] == "pool5"
    assert names16bn[:4] == ["conv1_1_prebn", "conv1_1", "relu1_1", "conv1_2_prebn"]
