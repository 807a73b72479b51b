"""CartoonGAN losses: Eqs. (3)-(7) with logits and a stand-in perceptual network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deeperfour.losses.cartoon import (
    content_loss,
    content_losses,
    discriminator_loss,
    generator_adv_loss,
    total_generator_loss,
)


def make_features_fn(seed: int = 0):
    """A tiny stand-in for the VGG feature network: one random conv + ReLU under every layer name."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)

    def features_fn(x_rgb01, layers=("relu4_3",)):
        assert x_rgb01.min() >= 0 and x_rgb01.max() <= 1, "features_fn takes RGB in [0, 1]"
        return {name: F.relu(conv(x_rgb01)) for name in layers}

    return features_fn


def logits(value: float) -> torch.Tensor:
    return torch.full((2, 1, 4, 4), value)  # (B, 1, h, w) patch logits


def test_discriminator_loss_prefers_correct_labels():
    good = discriminator_loss(logits(5.0), logits(-5.0), logits(-5.0))
    bad = discriminator_loss(logits(-5.0), logits(5.0), logits(5.0))
    assert good < 0.1 < bad
    # edge-smoothed cartoons are FAKE (Eq. 5): calling them real costs D
    smoothed_called_real = discriminator_loss(logits(5.0), logits(5.0), logits(-5.0))
    assert smoothed_called_real > good + 4.0


def test_discriminator_loss_value_at_chance():
    # D undecided (logit 0, D = 0.5): each of Eqs. (4)-(6) contributes log 2
    loss = discriminator_loss(logits(0.0), logits(0.0), logits(0.0))
    assert loss.item() == pytest.approx(3 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)


def test_generator_adv_loss_lower_when_d_is_fooled():
    assert generator_adv_loss(logits(5.0)) < generator_adv_loss(logits(-5.0))


def test_content_loss_zero_for_identical_images_and_has_gradient():
    features_fn = make_features_fn()
    photo = torch.rand(2, 3, 16, 16) * 2 - 1  # RGB [-1, 1]
    assert content_loss(features_fn, photo.clone(), photo).item() == 0.0
    generated = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss = content_loss(features_fn, generated, photo)
    assert loss > 0
    loss.backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0


def test_content_losses_share_the_generated_features_and_give_the_separate_losses_and_gradients():
    calls = []
    inner = make_features_fn()

    def features_fn(x, layers=("relu4_3",)):
        calls.append(x.requires_grad)
        return inner(x, layers)

    photo, target = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    g0 = torch.rand(2, 3, 16, 16) * 2 - 1
    separate = []
    for t in (photo, target):
        g = g0.clone().requires_grad_(True)
        loss = content_loss(features_fn, g, t)
        loss.backward()
        separate.append((loss.item(), g.grad.clone()))
    calls.clear()
    g = g0.clone().requires_grad_(True)
    con, struct = content_losses(features_fn, g, [photo, target])
    assert calls == [True, False, False]  # G(p) through the network once, the targets without a graph
    assert con.item() == pytest.approx(separate[0][0]) and struct.item() == pytest.approx(separate[1][0])
    (con + 2 * struct).backward()
    assert torch.allclose(g.grad, separate[0][1] + 2 * separate[1][1], atol=1e-6)


def test_content_loss_missing_layer_is_a_clear_error():
    def features_fn(x, layers=()):
        return {"relu1_2": x}

    with pytest.raises(KeyError, match="relu4_3"):
        content_loss(features_fn, torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_total_generator_loss_is_eq3():
    adv, con = torch.tensor(0.7), torch.tensor(0.2)
    assert total_generator_loss(adv, con).item() == pytest.approx(0.7 + 10.0 * 0.2)
    assert total_generator_loss(adv, con, omega=1.0).item() == pytest.approx(0.9)
