"""Style metrics: Fréchet distances, content distance, cartoon statistics, the evaluate_style bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeperfour.metrics.style import (
    STYLE_LAYERS,
    cartoon_stats,
    content_distance,
    evaluate_style,
    frechet_distance,
    style_distance,
    style_statistics,
)

from helpers import texture

WIDTHS = (3, 4, 5, 7)  # channels of the stand-in's four "style layers"


def tiny_features(x01: torch.Tensor, layers=STYLE_LAYERS) -> dict[str, torch.Tensor]:
    """A fixed, cheap stand-in for the VGG: four seeded conv+ReLU layers named like its style layers."""
    g = torch.Generator().manual_seed(0)
    feats, h, cin = {}, x01, 3
    for k, (name, c) in enumerate(zip(STYLE_LAYERS, WIDTHS, strict=True)):
        w = torch.randn(c, cin, 3, 3, generator=g).to(x01)
        h = F.relu(F.conv2d(F.avg_pool2d(h, 2) if k else h, w, padding=1))  # (B, c, H / 2^k, W / 2^k)
        feats[name], cin = h, c
    return {n: feats[n] for n in layers}


def test_frechet_diag_closed_form_and_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (200, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    b = (a - a.mean(0)) * 2.0 + a.mean(0) + np.array([1.0, 0.0, -1.0])  # means shift by (1, 0, -1), stds x2
    want = 2.0 + float(((a.std(0, ddof=1) * 2 - a.std(0, ddof=1)) ** 2).sum())
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-9)


def test_frechet_full_matches_diag_for_independent_features():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (4000, 2)), rng.normal(0.5, 2, (4000, 2))
    full, diag = frechet_distance(a, b, "full"), frechet_distance(a, b, "diag")
    assert full == pytest.approx(diag, rel=0.05) and full == pytest.approx(0.5 + 2 * 1.0, rel=0.05)
    with pytest.raises(ValueError, match="diag"):
        frechet_distance(a, b, "kl")
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)


def test_cartoon_stats_of_flat_and_textured_images():
    flat = np.zeros((2, 32, 32, 3), np.uint8)
    flat[:, :, 16:] = (200, 40, 40)  # two colors, one vertical edge
    s = cartoon_stats(flat)
    assert s["n_colors"] == 2 and s["flat_fraction"] > 0.8 and 0 < s["edge_density"] < 0.15
    noisy = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    t = cartoon_stats(noisy)
    assert t["n_colors"] > 500 and t["flat_fraction"] < 0.05 and t["edge_density"] > s["edge_density"]
    with pytest.raises(ValueError, match="uint8"):
        cartoon_stats(noisy[0])


def test_content_distance_zero_for_identity_and_grows_with_change():
    imgs = np.stack([texture(32, 32, seed=k) for k in range(3)])
    assert content_distance(tiny_features, imgs, imgs)["l1"] == 0.0
    shifted = np.roll(imgs, 3, axis=2)
    d = content_distance(tiny_features, shifted, imgs)
    assert d["l1"] > 0 and 0 < d["relative"] < 2


def test_evaluate_style_output_closer_to_style():
    photos = np.stack([texture(32, 32, seed=k, sigma=1.0) for k in range(6)])  # busy photos
    style = np.stack([texture(32, 32, seed=100 + k, sigma=6.0) for k in range(8)])  # smooth "cartoons"
    near = np.stack([texture(32, 32, seed=200 + k, sigma=6.0) for k in range(6)])  # outputs in the style
    sf = style_statistics(tiny_features, style)
    assert [a.shape for a in sf.values()] == [(8, 2 * c) for c in WIDTHS]
    m = evaluate_style(tiny_features, photos, near, sf, cartoon_stats(style))
    assert m["style_distance_output"] < m["style_distance_input"] and m["style_ratio"] < 1
    assert m["stats"]["style_set"]["flat_fraction"] > m["stats"]["input"]["flat_fraction"]
    assert m["content_distance"] > 0 and m["n_photos"] == 6 and m["n_style"] == 8
    assert set(m["style_distance_layers"]["output"]) == set(STYLE_LAYERS)
    assert m["deep_mean_distance"]["output"] < m["deep_mean_distance"]["input"]
    same = evaluate_style(tiny_features, photos, photos, sf)
    assert same["content_distance"] == 0.0 and same["style_ratio"] == pytest.approx(1.0)


def test_style_distance_is_scale_free_per_layer():
    """Each layer's distance is divided by the style set's squared statistic norm: rescaling one layer's
    activations (as a different backbone would) leaves its share unchanged."""
    rng = np.random.default_rng(2)
    a = {n: rng.normal(1, 1, (10, 4)) for n in STYLE_LAYERS}
    b = {n: rng.normal(2, 1, (12, 4)) for n in STYLE_LAYERS}
    d = style_distance(a, b)
    scaled = style_distance({**a, "relu1_2": 100 * a["relu1_2"]}, {**b, "relu1_2": 100 * b["relu1_2"]})
    assert scaled["relu1_2"] == pytest.approx(d["relu1_2"]) and d["total"] == pytest.approx(
        sum(d[n] for n in STYLE_LAYERS))
    assert style_distance(b, b)["total"] == 0.0
