"""The colorizer: shapes, bounded chroma, checkpoints, luma invariance at every render factor."""

import numpy as np
import pytest
import torch

from deeperfour.film.color import luminance
from deeperfour.infer.colorize import DeOldifyChroma, colorize_frames, model_input_side, predict_chroma
from deeperfour.losses.colorize import hinge_critic_loss, hinge_generator_loss
from deeperfour.models.colorizer import (
    ColorizerConfig,
    ColorizerEnsemble,
    Critic,
    build_colorizer,
    load_colorizer,
    save_colorizer,
)
from deeperfour.models.colorizer_unet import UV_RANGE


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_colorizer(ColorizerConfig(width=16), pretrained=False).eval()


@pytest.mark.parametrize("hw", [(32, 32), (45, 67)])
def test_chroma_shape_and_range(tiny, hw):
    with torch.no_grad():
        uv = tiny(torch.rand(2, 1, *hw))
    assert uv.shape == (2, 2, *hw)
    assert uv.abs().max() <= UV_RANGE


def test_checkpoint_roundtrip(tiny, tmp_path):
    path = save_colorizer(tmp_path / "c.pt", tiny, chroma_scale=0.4)
    model, extra = load_colorizer(path)
    assert extra["chroma_scale"] == 0.4 and model.config == tiny.config
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny(x))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.pt"):
        load_colorizer(tmp_path / "bad.pt")


def test_ensemble_members_share_one_config():
    torch.manual_seed(1)
    a, b = (build_colorizer(ColorizerConfig(width=w), pretrained=False) for w in (16, 8))
    with pytest.raises(ValueError, match="one ColorizerConfig"):
        ColorizerEnsemble([a, b])
    with pytest.raises(ValueError, match="at least one"):
        ColorizerEnsemble([])


def test_ensemble_keeps_input_luma(tiny):
    torch.manual_seed(2)
    ens = ColorizerEnsemble([tiny, build_colorizer(ColorizerConfig(width=16), pretrained=False)]).eval()
    gray = np.random.default_rng(0).integers(0, 256, (45, 67), dtype=np.uint8)
    rgb = next(iter(colorize_frames(ens, [gray], 5, chroma_scale=3.0)))
    assert rgb.shape == (45, 67, 3) and np.abs(luminance(rgb).astype(int) - gray.astype(int)).max() <= 1


@pytest.mark.parametrize("render_factor", [2, 5, 21])
@pytest.mark.parametrize("size", [(45, 67), (64, 48)])
def test_output_luma_equals_input_luma(tiny, render_factor, size):
    rng = np.random.default_rng(render_factor)
    gray = rng.integers(0, 256, size, dtype=np.uint8)
    rgb = next(iter(colorize_frames(tiny, [gray], render_factor, chroma_scale=3.0)))  # strong chroma
    assert rgb.shape == (*size, 3)
    assert np.abs(luminance(rgb).astype(int) - gray.astype(int)).max() <= 1
    assert not np.all(rgb[..., 0] == rgb[..., 1])  # it did colorize


def test_render_factor_is_deoldify_square(tiny):
    assert model_input_side(21) == 336
    uv = predict_chroma(tiny, [np.zeros((30, 90), np.uint8)], 3)
    assert uv.shape == (1, 48, 48, 2)
    with pytest.raises(ValueError, match="render_factor"):
        model_input_side(0)


def test_streaming_keeps_count_and_kept_chroma(tiny):
    frames = [np.full((20, 30), v, np.uint8) for v in (10, 100, 200, 250, 30)]
    kept = {}
    out = list(colorize_frames(tiny, iter(frames), 2, batch=2, keep_chroma=lambda i: i % 2 == 0, kept=kept))
    assert len(out) == 5 and sorted(kept) == [0, 2, 4] and kept[0].shape == (32, 32, 2)


def test_deoldify_wrapper_gives_chroma():
    from deeperfour.models.deoldify import DeOldifyConfig, build_deoldify

    gen = build_deoldify(DeOldifyConfig(arch="wide", resnet=18, body_width=8, nf=32)).eval()
    uv = predict_chroma(DeOldifyChroma(gen), [np.zeros((20, 20), np.uint8)], 2, precision="fp32")
    assert uv.shape == (1, 32, 32, 2) and np.isfinite(uv).all()


def test_critic_and_hinge_losses():
    critic = Critic(width=8)
    assert critic(torch.rand(2, 3, 64, 64)).shape == (2, 1, 4, 4)
    real, fake = torch.full((4,), 2.0), torch.full((4,), -3.0)
    assert hinge_critic_loss(real, fake) == 0  # Eq. (1): both beyond the margin
    assert hinge_critic_loss(fake, real) == pytest.approx(4.0 + 3.0)
    assert hinge_generator_loss(fake) == 3.0  # Eq. (2)
