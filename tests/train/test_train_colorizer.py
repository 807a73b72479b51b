"""NoGAN training on a tiny seeded model: phases run, losses fall, a resumed run equals a straight one."""

import numpy as np
import pytest
import torch

from deeperfour.data.colorizer_crops import CropSampler, mean_chroma, random_crop
from deeperfour.models.colorizer import ColorizerConfig, ColorizerEnsemble, load_colorizer
from deeperfour.train import colorizer as colorizer_training
from deeperfour.train.colorizer import NoGANConfig, ensemble_curves, finish, train_colorizer, train_ensemble
from deeperfour.train.common import read_curves


def images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # smooth colorful blobs: chroma that depends on content
        img = np.zeros((48, 48, 3), np.uint8)
        img[:24] = rng.integers(0, 256, 3)
        img[24:] = rng.integers(0, 256, 3)
        out.append(img)
    return out


CFG = NoGANConfig(sizes=(16, 32), batch=(4, 2), steps_frozen=6, steps_unfrozen=2, steps_critic=2, steps_gan=2,
                  precision="fp32", checkpoint_every=3, layer_weights={"relu2_2": 0.1})
MODEL = ColorizerConfig(width=16)


def test_phases_log_and_resume_exactly(tmp_path):
    straight = train_colorizer(images(), tmp_path / "a", MODEL, CFG, seed=1, progress=False, pretrained=False)
    curves = read_curves(tmp_path / "a" / "dvclive")
    assert {"gen_frozen/feature", "gen_unfrozen/feature", "critic/critic", "gan/adversarial"} <= set(curves)
    assert len(curves["gen_frozen/feature"][0]) == 6
    # interrupted after 5 steps, then resumed by a new run: identical weights
    train_colorizer(images(), tmp_path / "b", MODEL, CFG, seed=1, progress=False, pretrained=False,
                    stop_after=5)
    resumed = train_colorizer(images(), tmp_path / "b", MODEL, CFG, seed=1, progress=False, pretrained=False)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert len(read_curves(tmp_path / "b" / "dvclive")["gen_frozen/feature"][0]) == 6


def test_ensemble_trains_one_member_per_seed_and_averages(tmp_path, monkeypatch):
    kw = dict(progress=False, pretrained=False)
    ens = train_ensemble(images(), tmp_path, MODEL, CFG, [1, 2], **kw)
    assert isinstance(ens, ColorizerEnsemble) and len(ens.members) == 2
    # member k is exactly the single run of seed k, in its own folder
    alone = train_colorizer(images(), tmp_path / "alone", MODEL, CFG, seed=2, **kw)
    for (k, a), b in zip(alone.state_dict().items(), ens.members[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert all((tmp_path / f"member{k}" / "train_state.pt").is_file() for k in (0, 1))
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        out = ens.eval()(x)  # (2, 2, 32, 48)
        members = [m(x) for m in ens.members]
        assert not torch.allclose(members[0], members[1])  # different seeds, different hues
        torch.testing.assert_close(out, (members[0] + members[1]) / 2)
    # one checkpoint holds every member; it reloads as the same ensemble
    loaded, extra = load_colorizer(finish(ens, tmp_path, chroma_scale=0.3))
    assert isinstance(loaded, ColorizerEnsemble) and extra == {"chroma_scale": 0.3}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out)
    curves = ensemble_curves(tmp_path, 2)
    assert {"gen_frozen/feature m0", "gen_frozen/feature m1", "gan/generator m1", "critic/critic m0"} <= set(
        curves)
    assert not any("pixel" in k for k in curves)
    # a second call resumes every finished member: not one training step runs, same weights
    def no_training(*args, **kwargs):
        raise AssertionError("a finished member trained again")

    monkeypatch.setattr(colorizer_training, "_step", no_training)
    again = train_ensemble(images(), tmp_path, MODEL, CFG, [1, 2], **kw)
    for (k, a), b in zip(ens.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_ensemble_of_one_is_the_single_model_layout(tmp_path):
    model = train_ensemble(images(), tmp_path, MODEL, CFG, [1], progress=False, pretrained=False)
    assert not isinstance(model, ColorizerEnsemble)
    assert (tmp_path / "train_state.pt").is_file()  # where a single run has always trained
    assert set(ensemble_curves(tmp_path, 1)) == set(read_curves(tmp_path / "dvclive"))


@pytest.mark.parametrize("seeds", [[], [3, 3]])
def test_ensemble_seeds_must_be_distinct(tmp_path, seeds):
    with pytest.raises(ValueError, match="distinct seeds"):
        train_ensemble(images(), tmp_path, MODEL, CFG, seeds, progress=False, pretrained=False)


def test_feature_loss_falls():
    cfg = NoGANConfig(sizes=(16, 16), batch=(4, 4), steps_frozen=40, steps_unfrozen=0, steps_critic=0,
                      steps_gan=0, precision="fp32", lr=3e-3, layer_weights={})
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        train_colorizer(images(), d, MODEL, cfg, seed=0, progress=False, pretrained=False)
        _, loss = read_curves(d + "/dvclive")["gen_frozen/pixel"]
    assert loss[-10:].mean() < 0.7 * loss[:5].mean()


def test_crops_and_mean_chroma():
    rng = np.random.default_rng(0)
    img = np.zeros((40, 60, 3), np.uint8)
    img[..., 2] = 200  # blue: positive U
    crop = random_crop(img, 16, rng)
    assert crop.shape == (16, 16, 3)
    u, v = mean_chroma([img])
    assert u > 0.05 and v < 0
    y, uv = CropSampler([img], 0).batch(16, 3)
    assert y.shape == (3, 1, 16, 16) and uv.shape == (3, 2, 16, 16)


def test_wide_crops_are_squeezed_like_render_factor():
    """max_aspect: a crop up to that many times wider than high, squeezed square; 1 = square crops."""
    img = np.zeros((100, 400, 3), np.uint8)
    img[:, :, 0] = (np.arange(400) // 2).astype(np.uint8)[None, :]  # red ramp: 1 level per 2 px of x
    rng = np.random.default_rng(0)
    widths = []  # source width of each crop, read off the ramp
    for _ in range(200):
        crop = random_crop(img, 16, rng, min_scale=1.0, max_aspect=2.4)  # full height: 100 px high
        assert crop.shape == (16, 16, 3)
        widths.append(abs(int(crop[0, -1, 0]) - int(crop[0, 0, 0])) * 2 * 16 / 15)
    assert 80 < min(widths) and max(widths) < 265 and np.median(widths) > 130
    square = random_crop(img, 16, np.random.default_rng(1), min_scale=1.0)
    assert abs(int(square[0, -1, 0]) - int(square[0, 0, 0])) * 2 * 16 / 15 < 110
