"""Cartoon-ness statistics on synthetic images with known answers; the real-vs-drawn probe."""

from __future__ import annotations

import numpy as np
import pytest

from deeperfour.metrics import cartoon_ness as cn
from deeperfour.metrics.style import cartoon_stats
from deeperfour.models.efficientnet import EfficientNetLite0Features


def four_colors(seed: int = 0, size: int = 64) -> np.ndarray:
    """Four flat quadrants of random colors: a drawn-like image."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    for k, (y, x) in enumerate(((0, 0), (0, h), (h, 0), (h, h))):
        img[y : y + h, x : x + h] = rng.integers(0, 256, 3) if seed else (k * 60, 255 - k * 60, 30 + k * 50)
    return img


def texture(seed: int = 0, size: int = 64) -> np.ndarray:
    """A smooth random color texture plus pixel noise: a photo-like image."""
    import cv2

    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.integers(0, 256, (8, 8, 3)).astype(np.uint8), (size, size),
                     interpolation=cv2.INTER_CUBIC)
    return np.clip(low.astype(int) + rng.integers(-25, 26, low.shape), 0, 255).astype(np.uint8)


def test_flat_four_color_image():
    img = four_colors()
    assert cn.colors_90(img) <= 4
    assert cn.flat_fraction(img) > 0.9
    photo = texture()
    assert cn.colors_90(photo) > 50
    assert cn.flat_fraction(photo) < 0.2
    assert cn.colors_90(np.full((8, 8, 3), 7, np.uint8)) == 1


def test_edge_density_is_cartoon_stats():
    for img in (four_colors(), texture()):
        assert cn.edge_density(img) == cartoon_stats(img[None])["edge_density"]
    assert cn.edge_density(np.zeros((16, 16, 3), np.uint8)) == 0.0


def test_identical_output_and_input():
    img = texture(3)
    assert cn.color_shift(img, img) == 0.0
    assert cn.edge_ssim(img, img) == pytest.approx(1.0)
    gray = np.repeat(img.mean(2, keepdims=True), 3, 2).astype(np.uint8)
    assert cn.color_shift(gray, img) > 5.0
    assert cn.edge_ssim(four_colors(), img) < 0.5
    with pytest.raises(ValueError, match="differ"):
        cn.color_shift(img, img[:32])


def test_cartoon_ness_keys_and_content_distance():
    outs = [four_colors(), four_colors()]
    r = cn.cartoon_ness(outs)
    assert tuple(r) == cn.KEYS
    assert r["colors_90"] <= 4 and r["drawn_probability"] is None and r["edge_ssim"] is None

    def identity_features(x, layers):  # a stand-in VGG: relu4_3 = the image itself
        return {n: x for n in layers}

    r = cn.cartoon_ness(outs, inputs=outs, content=identity_features)
    assert r["color_shift"] == 0.0 and r["edge_ssim"] == pytest.approx(1.0) and r["content_distance"] == 0.0
    with pytest.raises(ValueError, match="uint8"):
        cn.cartoon_ness([np.zeros((8, 8, 3), np.float32)])


@pytest.fixture(scope="module")
def encoder():
    return EfficientNetLite0Features()


def test_probe_separates_two_classes_and_round_trips(encoder, tmp_path):
    photos = [texture(s) for s in range(12)]
    drawn = [four_colors(s + 1) for s in range(12)]
    probe = cn.DrawnProbe(encoder, cn.ProbeConfig(size=64))
    rep = probe.fit(photos, drawn, seed=0)
    assert rep["auc_heldout"] == 1.0
    assert rep["n_test"] == {"photo": 3, "drawn": 3}
    p = probe.drawn_probability(photos + drawn)
    assert p.shape == (24,) and (p[:12] < 0.5).all() and (p[12:] > 0.5).all()
    path = probe.save(tmp_path / "probe.npz")
    back = cn.DrawnProbe.load(path, encoder)
    assert back.config == probe.config and back.report == probe.report
    np.testing.assert_allclose(back.drawn_probability(photos + drawn), p)
    r = cn.cartoon_ness(drawn[:2], probe=back)
    assert r["drawn_probability"] > 0.5
    with pytest.raises(RuntimeError, match="fit"):
        cn.DrawnProbe(encoder).drawn_probability(drawn)


def _row(**kw):
    return {**dict.fromkeys(cn.KEYS), **kw}


def test_acceptance_checks_each_bar_and_misses_unmeasured_values():
    table = {"identity": _row(drawn_probability=0.1),
             "paper": _row(drawn_probability=0.3, color_shift=8.0, content_distance=1.0),
             "default": _row(drawn_probability=0.6, edge_density=0.12, color_shift=3.0, content_distance=1.2)}
    res = cn.acceptance(table, {"edge_density": 0.1}, 0.95)
    assert res["all_met"] and res["drawn_probability_gain"]["value"] == pytest.approx(0.5)
    assert res["edge_density_vs_style_set"]["value"] == pytest.approx(0.2)
    table["default"]["content_distance"] = 1.3  # > 1.25 x paper
    table["default"]["drawn_probability"] = 0.45  # gain 0.35 < 0.4
    res = cn.acceptance(table, {"edge_density": 0.1}, 0.85)
    failed = {k for k, v in res.items() if k != "all_met" and not v["met"]}
    assert failed == {"content_vs_paper", "drawn_probability_gain", "probe_auc"} and not res["all_met"]
    table["default"]["drawn_probability"] = None  # no probe: not met, never an error
    res = cn.acceptance(table, {"edge_density": None}, None)
    assert not res["drawn_probability_gain"]["met"] and res["drawn_probability_gain"]["value"] is None
    assert not res["edge_density_vs_style_set"]["met"]


def test_probe_sets_keep_the_photo_and_drawn_crops_and_add_the_cutouts(tmp_path):
    import cv2

    (tmp_path / "scratch" / "cutouts" / "People").mkdir(parents=True)
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:25] = (20, 40, 200, 255)  # an opaque patch on a transparent background
    cv2.imwrite(str(tmp_path / "scratch" / "cutouts" / "People" / "a.png"), rgba)
    photos, drawn = cn.probe_sets(np.stack([texture(1), texture(2)]), np.stack([four_colors(3)]), tmp_path)
    assert len(photos) == 3 and len(drawn) == 1
    assert photos[2].shape == (40, 30, 3) and (photos[2][0, 0] == 255).all()  # transparent -> white
    photos, _ = cn.probe_sets([texture(1)], [four_colors(3)], tmp_path / "absent")
    assert len(photos) == 1


def test_best_system_picks_the_most_drawn_that_keeps_the_photo():
    """convert's default cartoon: the highest drawn-probability among systems within the color-shift and
    content bars of the paper recipe; none within them: the first trained style."""
    table = {"paper": _row(drawn_probability=0.5, color_shift=30.0, content_distance=1.4),
             "abstraction": _row(drawn_probability=0.6, color_shift=4.0, content_distance=1.0),
             "bunny": _row(drawn_probability=0.1, color_shift=4.0, content_distance=0.9),
             "scratch": _row(drawn_probability=0.7, color_shift=20.0, content_distance=1.2)}  # shift > 15
    best = cn.best_system(table, ["abstraction", "bunny", "scratch"])
    assert best["style"] == "abstraction" and best["eligible"] == ["abstraction", "bunny"]
    table["bunny"]["drawn_probability"] = 0.65
    assert cn.best_system(table, ["abstraction", "bunny", "scratch"])["style"] == "bunny"
    table["abstraction"]["content_distance"] = table["bunny"]["content_distance"] = 2.0  # > 1.25 x 1.4
    best = cn.best_system(table, ["abstraction", "bunny", "scratch"])
    assert best["eligible"] == [] and best["style"] == "bunny"


def test_probe_sets_cap_each_class_evenly_and_keep_every_cutout(tmp_path):
    import cv2

    (tmp_path / "scratch" / "cutouts" / "People").mkdir(parents=True)
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:25] = (20, 40, 200, 255)
    cv2.imwrite(str(tmp_path / "scratch" / "cutouts" / "People" / "a.png"), rgba)
    photos_in = [np.full((8, 8, 3), k, np.uint8) for k in range(10)]
    drawn_in = [np.full((8, 8, 3), 100 + k, np.uint8) for k in range(9)]
    photos, drawn = cn.probe_sets(photos_in, drawn_in, tmp_path, max_per_class=4)
    assert len(photos) == 4 and len(drawn) == 4
    assert [int(p[0, 0, 0]) for p in photos[:3]] == [0, 4, 9]  # evenly spaced, first and last kept
    assert photos[3].shape == (40, 30, 3)  # the cutout stays
    assert [int(d[0, 0, 0]) for d in drawn] == [100, 102, 105, 108]
    photos, drawn = cn.probe_sets(photos_in, drawn_in, tmp_path, max_per_class=0)
    assert len(photos) == 11 and len(drawn) == 9  # 0: all of them
