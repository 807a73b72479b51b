"""DeOldify generator: released key manifests, tiny models through the loader, the colorize contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deeperfour.film.color import recombine_luma
from deeperfour.infer.colorize import DeOldifyChroma, colorize_frames
from deeperfour.models.deoldify import (
    DeOldifyConfig,
    DeOldifyWeightsError,
    build_deoldify,
    infer_config,
    load_deoldify,
    save_deoldify,
    spectral_norm_modules,
)

MANIFESTS = Path(__file__).parents[1] / "fixtures" / "manifests"  # deoldify_<name>_keys.tsv
N_PARAMS = {"artistic": 63_646_881, "stable": 218_222_197}  # README table, BN statistics excluded
TINY = {
    "deep": DeOldifyConfig(arch="deep", resnet=18, body_width=8, nf_factor=1.5),
    "wide": DeOldifyConfig(arch="wide", resnet=18, body_width=8, nf=32),
}
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, OpenCV's Y and PIL's 'L'


def manifest(name: str) -> list[tuple[str, str, str, str]]:
    """(key, shape, dtype, kind) rows in state_dict order."""
    path = MANIFESTS / f"deoldify_{name}_keys.tsv"
    rows = path.read_text().strip().splitlines()[1:]  # skip the header
    return [tuple(r.split("\t")) for r in rows]


def layout(model: torch.nn.Module) -> list[tuple[str, str, str, str]]:
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    assert len(params) + len(buffers) == len(model.state_dict())
    return [(k, ",".join(map(str, v.shape)), str(v.dtype).removeprefix("torch."),
             "param" if k in params else "buffer") for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", ["artistic", "stable"])
def test_full_size_layout_matches_manifest_exactly(name):
    model = build_deoldify(name, device="meta")
    assert layout(model) == manifest(name)
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS[name]
    assert infer_config(model.state_dict()) == DeOldifyConfig.preset(name)


@pytest.fixture(scope="module", params=["deep", "wide"])
def tiny(request):
    torch.manual_seed(0)
    return build_deoldify(TINY[request.param]).eval()


@pytest.mark.parametrize("hw", [(64, 64), (64, 96), (80, 112)])  # 80x112: upsample/skip size mismatch path
def test_output_shape_equals_input_shape(tiny, hw):
    with torch.no_grad():
        y = tiny(torch.randn(1, 3, *hw))
    assert y.shape == (1, 3, *hw)
    assert torch.isfinite(y).all() and y.abs().max() <= 3


def test_eval_spectral_norm_uses_stored_vectors(tiny):
    conv = tiny.layers[11][0]  # final SN 1x1 conv
    u, v = conv.weight_u.clone(), conv.weight_v.clone()
    with torch.no_grad():
        tiny(torch.randn(1, 3, 32, 32))
    w = conv.weight_orig.flatten(1)
    sigma = torch.dot(u, w @ v)
    assert torch.equal(conv.weight_u, u) and torch.equal(conv.weight_v, v)  # no power iteration in eval
    torch.testing.assert_close(conv.weight, conv.weight_orig / sigma)


def test_raw_and_wrapped_files_reload_identically(tiny, tmp_path):
    sd = tiny.state_dict()
    torch.save(sd, tmp_path / "raw.pth")
    torch.save({"model": sd, "opt": {}}, tmp_path / "wrapped.pth")
    save_deoldify(tmp_path / "ours.pth", tiny)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = tiny(x)
        for name in ("raw.pth", "wrapped.pth", "ours.pth"):
            model, config = load_deoldify(tmp_path / name)
            assert config == tiny.config and not model.training
            assert torch.equal(model(x), ref), name
    model, _ = load_deoldify(tmp_path / "raw.pth", config=tiny.config)  # explicit override
    assert len(spectral_norm_modules(model)) == len(spectral_norm_modules(tiny))


@pytest.mark.parametrize("render_factor", [4, 7])
def test_colorize_keeps_input_luminance(tiny, render_factor):
    rng = np.random.default_rng(render_factor)
    gray = rng.integers(0, 256, (45, 67), dtype=np.uint8)  # odd frame size
    rgb = rng.integers(0, 256, (45, 67, 3), dtype=np.uint8)
    for image, luma in ((gray, gray.astype(float)), (rgb, rgb @ LUMA)):
        (out,) = colorize_frames(DeOldifyChroma(tiny), [image], render_factor, precision="fp32")
        assert out.shape == (45, 67, 3) and out.dtype == np.uint8
        assert np.abs(out @ LUMA - luma).max() <= 1
    assert tiny.training is False


def test_recombine_luma_desaturates_only_out_of_gamut_pixels():
    gray = np.full((2, 2), 128, np.uint8)
    mild = np.array([[[140, 120, 110], [100, 130, 150]], [[128, 128, 128], [120, 135, 125]]], np.uint8)
    np.testing.assert_allclose(recombine_luma(gray, mild).astype(int), recombine_luma(gray, mild, "clip"),
                               atol=1)  # in gamut: same as DeOldify's uint8 path
    bright = np.full((1, 1), 240, np.uint8)
    blue = np.array([[[0, 0, 255]]], np.uint8)
    out = recombine_luma(bright, blue)
    assert abs(out[0, 0] @ LUMA - 240) <= 1 and out[0, 0, 2] > out[0, 0, 0]  # still bluish, luma kept
    clipped = recombine_luma(bright, blue, "clip")
    assert abs(clipped[0, 0] @ LUMA - 240) > 1  # DeOldify's clip changes luminance here


def test_truncated_file_error_names_the_file(tiny, tmp_path):
    good = tmp_path / "ColorizeVideo_gen.pth"
    torch.save(tiny.state_dict(), good)
    bad = tmp_path / "ColorizeStable_gen.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DeOldifyWeightsError, match="ColorizeStable_gen.pth") as err:
        load_deoldify(bad)
    assert "\n" not in str(err.value)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(DeOldifyWeightsError, match="notes.pth.*torch checkpoint"):
        load_deoldify(text)


def test_cartoongan_file_is_recognised(tmp_path):
    path = tmp_path / "Hayao_net_G_float.pth"
    torch.save({"conv01_1.weight": torch.zeros(64, 3, 7, 7), "conv01_1.bias": torch.zeros(64),
                "in01_1.scale": torch.ones(64), "in01_1.shift": torch.zeros(64)}, path)
    with pytest.raises(DeOldifyWeightsError, match="Hayao_net_G_float.pth.*looks like a CartoonGAN"):
        load_deoldify(path)


def test_wrong_keys_and_shapes_are_listed(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    del sd["layers.3.0.2.running_mean"]
    sd["layers.extra.weight"] = torch.zeros(1)
    sd["layers.11.0.bias"] = torch.zeros(4)
    path = tmp_path / "edited.pth"
    torch.save(sd, path)
    with pytest.raises(DeOldifyWeightsError) as err:
        load_deoldify(path)
    msg = str(err.value)
    assert "edited.pth" in msg and "\n" not in msg
    assert "1 missing (layers.3.0.2.running_mean)" in msg
    assert "1 unexpected (layers.extra.weight)" in msg
    assert "layers.11.0.bias [4] (expected [3])" in msg
    with pytest.raises(DeOldifyWeightsError, match="stable"):  # a tiny file forced into the stable layout
        load_deoldify(path, config="stable")


def test_missing_file_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_deoldify(tmp_path / "nothere.pth")
    path = tmp_path / "other.pth"
    torch.save({"layers.0.weight": torch.zeros(3)}, path)
    with pytest.raises(DeOldifyWeightsError, match="other.pth: not a DeOldify generator: expected"):
        load_deoldify(path)
