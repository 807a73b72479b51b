"""CartoonGAN training on a tiny seeded model: init phase learns, GAN phase logs, resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeperfour.data.edges import edge_smooth
from deeperfour.models.cartoongan import CartoonGenerator
from deeperfour.train.cartoongan import (
    STATE_FILE,
    BatchSampler,
    TrainConfig,
    read_snapshots,
    to_tensor,
    train,
)
from deeperfour.train.common import Checkpointer, read_curves

from helpers import blobs, tiny_features

PHOTOS, CARTOONS = blobs(6, 0), blobs(6, 1)
SMOOTH = np.stack([edge_smooth(c) for c in CARTOONS])
GRID = PHOTOS[:2]
CFG = TrainConfig(style="toy", base_channels=4, n_res_blocks=1, d_base_channels=4, crop=24, batch=2,
                  init_steps=6, gan_steps=4, lr=2e-3, init_pixel=1.0, precision="fp32", n_snapshots=2,
                  log_every=1, checkpoint_every=4)


def run(out, cfg=CFG, **kw):
    return train(cfg, PHOTOS, CARTOONS, SMOOTH, GRID, tiny_features, out, progress=False, **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return run(out)


def test_phases_logs_snapshots_and_generator(straight):
    curves = read_curves(straight.out_dir / "dvclive")
    assert {"init/content", "gan/content", "gan/g_adv", "gan/d_loss", "discriminator/real",
            "discriminator/smoothed", "discriminator/generated"} <= set(curves)
    steps, content = curves["init/content"]
    assert list(steps) == list(range(6)) and content[-1] < content[0]  # the init phase learns
    assert list(curves["gan/d_loss"][0]) == [6, 7, 8, 9]
    inputs, snaps = read_snapshots(straight.out_dir)
    assert sorted(snaps) == CFG.snapshot_steps() == [0, 6, 8, 10]
    np.testing.assert_array_equal(inputs, GRID)
    g = CartoonGenerator.from_checkpoint(straight.out_dir / "generator.pt")  # config travels with the weights
    for a, b in zip(g.state_dict().values(), straight.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert straight.steps == 10 and straight.resumed_from == 0


def test_golden_values(straight):
    """A tiny seeded run gives the same numbers on every machine with the pinned torch (fp32, CPU)."""
    content = read_curves(straight.out_dir / "dvclive")["init/content"][1]
    np.testing.assert_allclose(content[[0, 5]], GOLDEN_INIT_CONTENT, rtol=1e-4)


def test_killed_run_resumes_exactly(straight, tmp_path):
    run(tmp_path, stop_after=5)  # "killed" after 5 steps (checkpoint at 5)
    state = Checkpointer(tmp_path / STATE_FILE).load(restore_rng=False)
    assert state["step"] == 5 and state["train_config"]["init_steps"] == 6
    assert not (tmp_path / "generator.pt").exists()  # only a finished run writes the generator
    resumed = run(tmp_path)
    assert resumed.resumed_from == 5 and resumed.steps == 10
    for (k, a), b in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, msg=k, rtol=0, atol=0)
    steps = read_curves(tmp_path / "dvclive")["init/content"][0]
    assert list(steps) == list(range(6))  # no duplicated rows after the resume


def test_other_config_starts_fresh(tmp_path):
    run(tmp_path, stop_after=3)
    other = run(tmp_path, cfg=TrainConfig(**{**CFG.__dict__, "gan_steps": 2}))
    assert other.resumed_from == 0 and other.steps == 8


def test_sampler_is_seeded_and_keeps_pairs_aligned():
    a, b = BatchSampler(3, 16, 4), BatchSampler(3, 16, 4)
    c, s = to_tensor(CARTOONS), to_tensor(CARTOONS)
    x, y = a.sample(c, s)
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, y)  # same windows for the pair
    torch.testing.assert_close(x, b.sample(c)[0])


GOLDEN_INIT_CONTENT = [0.41448805, 0.39492491]  # init/content at steps 0 and 5


# ------------------------------------------------------------------------------------- recipe: whitebox

WHITE = TrainConfig(**{**CFG.__dict__, "recipe": "whitebox", "omega": 0.5, "omega_structure": 0.5,
                       "w_color": 5.0, "guided_radius": 2, "structure_segment_px": 40.0})


@pytest.fixture(scope="module")
def white(tmp_path_factory):
    return run(tmp_path_factory.mktemp("white"), cfg=WHITE)


def test_whitebox_logs_every_term_and_inits_toward_the_structure_target(white):
    curves = read_curves(white.out_dir / "dvclive")
    terms = {"gan/surface", "gan/texture", "gan/structure", "gan/color", "discriminator/smoothed"}
    assert terms <= set(curves)
    steps, content = curves["init/content"]
    assert list(steps) == list(range(6)) and content[-1] < content[0]
    state = Checkpointer(white.out_dir / STATE_FILE).load(restore_rng=False)
    assert {"discriminator_texture", "gray_rng"} <= set(state) and "d_texture" in state["optimizers"]


def test_whitebox_killed_run_resumes_exactly(white, tmp_path):
    run(tmp_path, cfg=WHITE, stop_after=8)  # killed inside the GAN phase
    resumed = run(tmp_path, cfg=WHITE)
    assert resumed.resumed_from == 8 and resumed.steps == 10
    for (k, a), b in zip(white.generator.state_dict().items(), resumed.generator.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, msg=k, rtol=0, atol=0)


def test_whitebox_ablation_drops_a_term_and_its_discriminator(tmp_path):
    cfg = TrainConfig(**{**WHITE.__dict__, "w_surface": 0.0, "w_color": 0.0, "init_steps": 1, "gan_steps": 2})
    result = run(tmp_path, cfg=cfg)
    curves = read_curves(tmp_path / "dvclive")
    assert result.steps == 3 and set(curves["gan/surface"][1]) == {0.0}
    assert set(curves["gan/texture"][1]) != {0.0} and set(curves["gan/color"][1]) != {0.0}  # logged anyway


def test_bad_recipe_is_refused():
    with pytest.raises(ValueError, match="recipe='cartoon': choose paper or whitebox"):
        TrainConfig(recipe="cartoon")


def test_boolean_parameters_arrive_as_strings_from_papermill():
    assert TrainConfig(structure_init="false").structure_init is False
    assert TrainConfig(structure_init="true").structure_init is True
    with pytest.raises(ValueError, match="structure_init='maybe': expected true or false"):
        TrainConfig(structure_init="maybe")


def test_abstraction_pseudo_targets_train_with_their_pixel_term(tmp_path):
    """structure="abstraction": the targets are the abstraction baseline's output (AnimeGANv3's classical
    pseudo-targets) and the GAN phase logs the L1 pixel term to them; an unknown kind is refused."""
    from deeperfour.infer.abstraction import abstract
    from deeperfour.train.structure_target import abstraction_targets

    photos = PHOTOS[:2]
    targets = abstraction_targets(photos, progress=False)
    assert all(np.array_equal(t, abstract(p)) for t, p in zip(targets, photos, strict=True))
    cfg = TrainConfig(**{**WHITE.__dict__, "structure": "abstraction", "structure_pixel": 2.0,
                         "init_steps": 1, "gan_steps": 2})
    assert run(tmp_path, cfg=cfg).steps == 3
    values = read_curves(tmp_path / "dvclive")["gan/structure_pixel"][1]
    assert len(values) and all(v > 0 for v in values)
    with pytest.raises(ValueError, match="structure='superpixels': choose slic or abstraction"):
        TrainConfig(structure="superpixels")


# ------------------------------------------------------------------------------- prior: abstraction

def test_abstraction_prior_starts_at_the_abstraction_and_trains_a_correction(tmp_path):
    """prior="abstraction": G sees the photo's abstraction and adds a correction to it. Before any step G
    returns the abstraction itself; after training the correction is not zero; the checkpoint carries the
    prior, so every caller (``cartoonize_images``) feeds the abstraction again."""
    from deeperfour.infer.abstraction import abstract
    from deeperfour.infer.cartoonize import cartoonize_images

    cfg = TrainConfig(**{**WHITE.__dict__, "prior": "abstraction", "structure": "abstraction",
                         "init_steps": 0, "gan_steps": 0})
    untrained = run(tmp_path / "zero", cfg=cfg).generator
    abstractions = np.stack([abstract(p) for p in PHOTOS[:2]])
    np.testing.assert_array_equal(cartoonize_images(untrained, PHOTOS[:2], "cpu", "fp32"), abstractions)
    trained = run(tmp_path / "trained", cfg=TrainConfig(**{**cfg.__dict__, "gan_steps": 3}))
    g = CartoonGenerator.from_checkpoint(trained.out_dir / "generator.pt")
    assert g.cfg.prior == "abstraction"
    out = cartoonize_images(g, PHOTOS[:2], "cpu", "fp32")
    assert np.abs(out.astype(int) - abstractions).mean() > 0.5  # a correction was learned
    np.testing.assert_array_equal(out, cartoonize_images(trained.generator, PHOTOS[:2], "cpu", "fp32"))
