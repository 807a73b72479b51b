"""The colorizer's ResNet encoder option: shapes, local torchvision weights, checkpoints, freezing, NoGAN."""

import pytest
import torch
import torchvision

from deeperfour.models.colorizer import (
    ColorizerConfig,
    build_colorizer,
    load_colorizer,
    save_colorizer,
)
from deeperfour.models.colorizer_resnet import STAGE_START, ResNetColorizer
from deeperfour.models.colorizer_unet import UV_RANGE

from helpers import nogan_smoke

CFG18 = ColorizerConfig(width=16, encoder="resnet18")


def cfg(encoder="resnet18", weights=""):
    return ColorizerConfig(width=16, encoder=encoder, encoder_weights=str(weights))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_colorizer(CFG18, pretrained=False).eval()


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    torch.manual_seed(1)
    sd = torchvision.models.resnet18(weights=None).state_dict()  # torchvision layout, nothing downloaded
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("hw", [(40, 56), (33, 47)])
def test_chroma_shape_and_range(tiny, hw):
    assert isinstance(tiny, ResNetColorizer)
    with torch.no_grad():
        uv = tiny(torch.rand(2, 1, *hw))
    assert uv.shape == (2, 2, *hw)
    assert torch.isfinite(uv).all() and uv.abs().max() <= UV_RANGE


def test_torchvision_weights_load(r18_file):
    path, sd = r18_file
    model = build_colorizer(cfg(weights=path))
    torch.testing.assert_close(model.encoder[0].weight, sd["conv1.weight"])
    torch.testing.assert_close(model.encoder[7][1].bn2.running_var, sd["layer4.1.bn2.running_var"])
    # older torchvision files have no BN num_batches_tracked: still accepted
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path.with_name("old.pth"))
    build_colorizer(cfg(weights=path.with_name("old.pth")))


def test_bad_weight_files(r18_file, tmp_path):
    path, sd = r18_file
    with pytest.raises(ValueError, match=r"r18\.pth.*missing keys \(layer1\.2\..*resnet34\(weights="):
        build_colorizer(cfg("resnet34", path))
    torch.save({**sd, "layer5.0.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*unexpected keys \(layer5"):
        build_colorizer(cfg(weights=tmp_path / "extra.pth"))
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.pth"):
        build_colorizer(cfg(weights=tmp_path / "cut.pth"))
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        build_colorizer(cfg(weights=tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="colorize.encoder_weights"):
        build_colorizer(CFG18, pretrained=True)
    with pytest.raises(ValueError, match="resnet101"):
        ColorizerConfig(encoder="resnet152")


def test_checkpoint_roundtrip_without_torchvision_file(r18_file, tmp_path):
    src = tmp_path / "r18.pth"
    src.write_bytes(r18_file[0].read_bytes())
    model = build_colorizer(cfg(weights=src)).eval()
    ck = save_colorizer(tmp_path / "c.pt", model, chroma_scale=0.5)
    src.unlink()
    loaded, extra = load_colorizer(ck)
    assert isinstance(loaded, ResNetColorizer) and loaded.config == model.config
    assert extra == {"chroma_scale": 0.5}
    x = torch.rand(1, 1, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_set_encoder_trainable(tiny):
    def trains(stage):
        start = STAGE_START[stage]
        end = min([i for i in STAGE_START.values() if i > start], default=len(tiny.encoder))
        return {p.requires_grad for m in tiny.encoder[start:end] for p in m.parameters()}

    tiny.set_encoder_trainable(True, "layer3")
    assert [trains(s) for s in STAGE_START] == [{False}, {False}, {False}, {True}, {True}]
    assert all(p.requires_grad for p in tiny.decoder_parameters())
    tiny.set_encoder_trainable(False, "stem")
    assert not any(p.requires_grad for p in tiny.encoder_parameters())
    with pytest.raises(ValueError, match="stem, layer1, layer2, layer3, layer4"):
        tiny.set_encoder_trainable(True, "conv3_1")


def test_nogan_smoke_with_resnet18(tmp_path):
    model, uv = nogan_smoke(tmp_path, CFG18, 32, "layer3", steps_critic=0)
    assert isinstance(model, ResNetColorizer)
    assert uv.shape == (1, 2, 32, 32) and torch.isfinite(uv).all()
