"""TemporalCartoonGenerator (Ruder's fast method): zero-init equivalence, checkpoints, streaming."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deeperfour.infer.cartoonize import TemporalCartoonizer
from deeperfour.infer.stabilize import stabilize
from deeperfour.models.cartoongan import (
    CartoonGANConfig,
    CartoonGANWeightsError,
    CartoonGenerator,
    ReleasedCartoonGAN,
)
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator
from deeperfour.train.clips import cartoonize_frames

TINY = {"light": CartoonGANConfig(variant="light", base_channels=8, n_res_blocks=2),
        "paper": CartoonGANConfig(variant="paper", base_channels=4, n_res_blocks=1)}


def tiny_base(variant: str = "light", seed: int = 0) -> CartoonGenerator:
    torch.manual_seed(seed)
    return CartoonGenerator(TINY[variant]).eval()


def rand(*shape: int, seed: int = 1, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def randomize_branch(model: TemporalCartoonGenerator, seed: int = 3) -> TemporalCartoonGenerator:
    """Give the (zero-initialized) branch seeded non-zero weights, as fine-tuning would."""
    with torch.no_grad():
        model.conv01_prev.weight.copy_(rand(*model.conv01_prev.weight.shape, seed=seed) * 0.1)
        model.conv01_prev.bias.copy_(rand(*model.conv01_prev.bias.shape, seed=seed + 1) * 0.1)
    return model


def frames(n: int = 4, h: int = 30, w: int = 38, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth texture panned 1 px a frame: colorized (n, h, w, 3) and gray (n, h, w) uint8."""
    r = np.random.default_rng(seed).random((h, w + n, 3)).astype(np.float32)
    r = cv2.GaussianBlur(r, (0, 0), 2.0)
    tex = ((r - r.min()) / (r.max() - r.min()) * 255 + 0.5).astype(np.uint8)
    col = np.stack([tex[:, t : t + w] for t in range(n)])
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in col])
    return col, gray


# ---------------------------------------------------------------- the network


@pytest.mark.parametrize("variant", ["light", "paper"])
@pytest.mark.parametrize("size", [(32, 32), (30, 46), (7, 9)])
def test_zero_init_equals_the_base_generator(variant, size):
    base = tiny_base(variant)
    model = TemporalCartoonGenerator(base).eval()
    x = rand(2, 3, *size)
    prev, mask = rand(2, 3, *size, seed=2), (rand(2, 1, *size, seed=4, lo=0, hi=1) > 0.3).float()
    with torch.inference_mode():
        want = base(x)
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)
        torch.testing.assert_close(model(x, prev, mask), want, rtol=0, atol=1e-6)
    assert model(x).shape == x.shape


def test_released_base_keeps_the_rgb_interface():
    released = ReleasedCartoonGAN(tiny_base("paper"))
    model = TemporalCartoonGenerator(released).eval()
    assert model.bgr
    x = rand(1, 3, 20, 28)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), released(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(ReleasedCartoonGAN(model.base)(x), released(x), rtol=0, atol=0)


def test_base_is_copied_not_shared():
    base = tiny_base()
    model = TemporalCartoonGenerator(base)
    with torch.no_grad():
        model.base.conv01_1.weight.add_(1.0)
    assert not torch.equal(model.base.conv01_1.weight, base.conv01_1.weight)
    keys = list(model.state_dict())
    assert keys[0] == "base.conv01_1.weight" and keys[-2:] == ["conv01_prev.weight", "conv01_prev.bias"]
    assert model.conv01_prev.weight.shape == (8, 4, 7, 7)


def test_branch_sees_the_masked_past():
    model = randomize_branch(TemporalCartoonGenerator(tiny_base())).eval()
    x, prev = rand(1, 3, 30, 46), rand(1, 3, 30, 46, seed=2)
    ones, zeros = torch.ones(1, 1, 30, 46), torch.zeros(1, 1, 30, 46)
    with torch.inference_mode():
        first = model(x)
        assert (model(x, prev, ones) - first).abs().max() > 1e-3  # the past now matters
        torch.testing.assert_close(model(x, prev, zeros), first, rtol=0, atol=1e-6)  # c = 0: no past


def test_forward_argument_errors():
    model = TemporalCartoonGenerator(tiny_base())
    x = rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="both prev_warped and mask"):
        model(x, prev_warped=x)
    with pytest.raises(ValueError, match=r"must be \(1, 3, 16, 16\)"):
        model(x, rand(1, 3, 16, 12), torch.ones(1, 1, 16, 12))
    with pytest.raises(ValueError, match="too small"):
        model(rand(1, 3, 4, 16))
    with pytest.raises(TypeError, match="wraps a CartoonGenerator"):
        TemporalCartoonGenerator(torch.nn.Conv2d(3, 3, 1))


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    model = randomize_branch(TemporalCartoonGenerator(ReleasedCartoonGAN(tiny_base("paper")))).eval()
    model.load_size = 64
    path = model.save(tmp_path / "sub" / "temporal.pt", extra={"step": 7})
    assert path.is_file() and not list(path.parent.glob(".*tmp"))  # atomic: no temporary left behind
    loaded = TemporalCartoonGenerator.from_checkpoint(path).eval()
    assert loaded.bgr and loaded.load_size == 64 and loaded.cfg == model.cfg
    x, prev, mask = rand(1, 3, 20, 20), rand(1, 3, 20, 20, seed=2), torch.ones(1, 1, 20, 20)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x, prev, mask), model(x, prev, mask), rtol=0, atol=0)
    assert torch.load(path, weights_only=True)["step"] == 7
    with pytest.raises(ValueError, match="may not override"):
        model.save(tmp_path / "x.pt", extra={"bgr": False})


def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path):
    model = TemporalCartoonGenerator(tiny_base())
    good = model.save(tmp_path / "good.pt")

    def error(path, exc=CartoonGANWeightsError) -> str:
        with pytest.raises(exc) as info:
            TemporalCartoonGenerator.from_checkpoint(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg
        return msg

    assert "no such file" in error(tmp_path / "missing.pt", FileNotFoundError)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated" in error(truncated)
    per_frame = tiny_base().save(tmp_path / "per_frame.pt")
    assert "holds a CartoonGenerator, not a TemporalCartoonGenerator" in error(per_frame)
    bare = tmp_path / "released.pth"
    torch.save(tiny_base().state_dict(), bare)
    assert "not a DeeperFour checkpoint" in error(bare)
    ckpt = torch.load(good, weights_only=True)
    del ckpt["model"]["conv01_prev.bias"]
    torch.save(ckpt, tmp_path / "keys.pt")
    assert "1 missing (first: conv01_prev.bias)" in error(tmp_path / "keys.pt")


# ---------------------------------------------------------------- streaming


def test_cartoonizer_first_frame_is_the_per_frame_generator():
    col, gray = frames()
    model = randomize_branch(TemporalCartoonGenerator(tiny_base()))
    stab = TemporalCartoonizer(model, precision="fp32")
    x = torch.from_numpy(col[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        want = ((model(x)[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    first = stab.step(col[0], gray[0])
    np.testing.assert_array_equal(first, want)
    second = stab.step(col[1], gray[1])
    assert second.shape == col[1].shape and second.dtype == np.uint8
    stab.reset()
    np.testing.assert_array_equal(stab.step(col[0], gray[0]), want)  # reset forgets the past


def test_untuned_cartoonizer_streams_the_per_frame_cartoon():
    """Zero branch: every streamed frame (warped past or not) is the per-frame cartoon, bit-exact."""
    col, gray = frames(5)
    base = tiny_base()
    got = np.stack(list(stabilize(TemporalCartoonizer(TemporalCartoonGenerator(base), precision="fp32"),
                                  col, gray, shot_starts=[3])))
    np.testing.assert_array_equal(got, cartoonize_frames(base, list(col), precision="fp32"))


def test_cartoonizer_resets_at_shot_starts_and_max_side():
    col, gray = frames(4, h=40, w=56)
    model = randomize_branch(TemporalCartoonGenerator(tiny_base()))
    stab = TemporalCartoonizer(model, precision="fp32", max_side=28)
    out = list(stabilize(stab, col, gray, shot_starts=[2]))
    assert all(o.shape == (40, 56, 3) for o in out)
    assert stab.prev_out.shape == (1, 3, 20, 28)  # generator and flow at the run size
    fresh = TemporalCartoonizer(model, precision="fp32", max_side=28)
    np.testing.assert_array_equal(out[2], fresh.step(col[2], gray[2]))  # shot start: no past
    with pytest.raises(ValueError, match="differ in size"):
        fresh.step(col[3], gray[3][:, :50])


def test_zero_init_equals_an_anchored_base_generator():
    """A base generator with ``chroma``: the temporal generator anchors its output the same way."""
    import dataclasses

    torch.manual_seed(0)
    base = CartoonGenerator(dataclasses.replace(TINY["light"], chroma="input")).eval()
    model = TemporalCartoonGenerator(base).eval()
    x = rand(2, 3, 30, 46)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), base(x), rtol=0, atol=1e-6)
        unanchored = CartoonGenerator(TINY["light"]).eval()
        unanchored.load_state_dict(base.state_dict())
        assert not torch.allclose(unanchored(x), base(x))


def test_abstraction_prior_streams_the_per_frame_cartoon_of_the_abstraction():
    """A generator trained on the abstraction prior gets the same shot-coherent abstraction stream in the
    temporal cartoonizer as in the per-frame path (``cartoonize_frames`` with the shot starts), and its
    output is the abstraction plus its correction (here random, so not zero)."""
    from dataclasses import replace

    from deeperfour.infer.abstraction import abstract

    col, gray = frames(4, 40, 48)
    torch.manual_seed(0)
    base = CartoonGenerator(replace(TINY["light"], prior="abstraction")).eval()
    with torch.no_grad():  # the zero-initialized correction, as after training
        base.deconv03_1.weight.copy_(rand(*base.deconv03_1.weight.shape, seed=5) * 0.01)
    got = np.stack(list(stabilize(TemporalCartoonizer(TemporalCartoonGenerator(base), precision="fp32"),
                                  col, gray, shot_starts=[2])))
    per_frame = cartoonize_frames(base, list(col), precision="fp32", shot_starts=[0, 2], sources=list(gray))
    np.testing.assert_array_equal(got, per_frame)
    firsts = np.stack([abstract(col[i]) for i in (0, 2)])  # a shot's first input is the still's abstraction
    assert 0.5 < np.abs(per_frame[[0, 2]].astype(int) - firsts).mean() < 40
    with pytest.raises(ValueError, match="prior='cel': expected one of"):
        CartoonGANConfig(prior="cel")
