"""How cartoon-like, and how faithful, is a cartoonized image? (stage ``train_cartoongan``)

* ``content_distance``: Eq. (7) on held-out photos, the mean |VGG_l(G(p)) - VGG_l(p)| over the relu4_3
  maps of the perceptual net, and ``content_distance_relative`` = the same / mean |VGG_l(p)|.
* ``style_distance``: a Fréchet distance between Gaussians fitted to the STYLE STATISTICS of two image
  sets. An image's style statistics at a layer are each channel's mean and standard deviation over
  space (the "style" of Gatys et al. 2016 / Huang & Belongie 2017, without Gram matrices), at the style
  layers of Johnson et al.: relu1_2, relu2_2, relu3_3, relu4_3. Per layer l, with the diagonal
  Fréchet distance (a few dozen images cannot support a full 2C x 2C covariance)::

      d_l^2 = |mu_a - mu_b|^2 + sum_k (sigma_a,k - sigma_b,k)^2

  divided by the style set's mean squared norm of its statistics at l (so that every layer counts
  alike whatever its activation scale); ``style_distance`` = sum over the four layers. Lower = closer
  to the style. Channel statistics describe palette, strokes and textures but not WHAT is in the
  picture, which the generator must keep (Eq. 7).
* ``deep_mean_distance``: for reference, the FID-like alternative: the diagonal Fréchet distance of the
  spatially averaged relu3_3 + relu4_3 features (768 per image). Deep spatial means encode content
  (a cat is not a meadow), so a generator that keeps the content cannot close that distance fully.
* ``cartoon_stats``: model-free statistics of RGB uint8 images: Canny edge density, fraction of flat
  pixels (low local variance) and the number of distinct colors after quantizing to ``bits`` bits per
  channel. Cartoons have crisp edges, large flat regions and few colors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch

FeaturesFn = Callable[..., Mapping[str, torch.Tensor]]
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # Johnson et al.'s style layers
DEEP_LAYERS = ("relu3_3", "relu4_3")  # spatial means for the FID-like deep_mean_distance
CONTENT_LAYER = "relu4_3"  # Eq. (7) layer of the content distance


def _to_tensor01(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0


def _autocast(device: torch.device | str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@torch.inference_mode()
def _features(features_fn: FeaturesFn, images: np.ndarray, layers: Sequence[str], batch: int,
              device: torch.device | str, precision: str) -> Iterator[dict[str, torch.Tensor]]:
    """Float32 feature maps of ``images`` (N, H, W, 3) uint8, ``batch`` images at a time."""
    for i in range(0, len(images), batch):
        x = _to_tensor01(images[i : i + batch], device)  # (b, 3, H, W)
        with _autocast(device, precision):
            feats = features_fn(x, layers=tuple(layers))
        yield {n: feats[n].float() for n in layers}


def _channel_stats(f: torch.Tensor) -> torch.Tensor:
    """(b, C, h, w) -> (b, 2C): per-channel spatial mean and standard deviation."""
    return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3), correction=0)], 1)


def style_statistics(features_fn: FeaturesFn, images: np.ndarray, batch: int = 8,
                     device: torch.device | str = "cpu", precision: str = "fp32") -> dict[str, np.ndarray]:
    """{layer: (N, 2 C_l) channel means and stds} of (N, H, W, 3) uint8 images, for STYLE_LAYERS."""
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in STYLE_LAYERS}
    for f in _features(features_fn, images, STYLE_LAYERS, batch, device, precision):
        for n in STYLE_LAYERS:
            rows[n].append(_channel_stats(f[n]).cpu())
    return {n: torch.cat(r).double().numpy() for n, r in rows.items()}


def frechet_distance(a: np.ndarray, b: np.ndarray, covariance: str = "diag") -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` (N, D) and ``b`` (M, D).

    ``covariance="diag"``: per-feature variances only (robust with N, M < D); ``"full"``: full
    covariances (FID). Returns d^2 (as FID does), >= 0.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: expected (N, D) and (M, D) arrays, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: need at least 2 samples per set, got {len(a)} and {len(b)}")
    mu = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    if covariance == "diag":
        return mu + float(((a.std(0, ddof=1) - b.std(0, ddof=1)) ** 2).sum())
    if covariance != "full":
        raise ValueError(f"covariance={covariance!r}: expected 'diag' or 'full'")
    from scipy import linalg

    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # (D, D)
    root = linalg.sqrtm(ca @ cb)
    root = (root[0] if isinstance(root, tuple) else root).real  # (D, D)
    return max(0.0, mu + float(np.trace(ca) + np.trace(cb) - 2.0 * np.trace(root)))


def style_distance(stats: Mapping[str, np.ndarray], style: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{layer: d_l^2 / mean ||style stats_l||^2, ..., "total": their sum} (see the module docstring)."""
    out = {n: frechet_distance(stats[n], style[n]) / float((style[n] ** 2).sum(1).mean())
           for n in STYLE_LAYERS}
    out["total"] = sum(out.values())
    return out


def _deep_means(stats: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N, 768): the spatial means of DEEP_LAYERS (the first half of their channel statistics)."""
    return np.concatenate([stats[n][:, : stats[n].shape[1] // 2] for n in DEEP_LAYERS], 1)


@torch.inference_mode()
def content_distance(features_fn: FeaturesFn, outputs: np.ndarray, inputs: np.ndarray,
                     layer: str = CONTENT_LAYER, batch: int = 8, device: torch.device | str = "cpu",
                     precision: str = "fp32") -> dict[str, float]:
    """Eq. (7) on image sets: mean L1 between ``layer`` features of outputs and inputs (N, H, W, 3).

    Returns ``{"l1": mean |f(out) - f(in)|, "relative": l1 / mean |f(in)|}``.
    """
    if outputs.shape != inputs.shape:
        raise ValueError(f"content_distance: outputs {outputs.shape} and inputs {inputs.shape} differ")
    diff = ref = 0.0
    n = 0
    pairs = zip(_features(features_fn, outputs, (layer,), batch, device, precision),
                _features(features_fn, inputs, (layer,), batch, device, precision), strict=True)
    for fo, fi in pairs:
        diff += float((fo[layer] - fi[layer]).abs().sum())
        ref += float(fi[layer].abs().sum())
        n += fi[layer].numel()
    return {"l1": diff / n, "relative": diff / max(ref, 1e-12)}


def cartoon_stats(images: np.ndarray, canny: tuple[int, int] = (100, 200), flat_window: int = 5,
                  flat_std: float = 2.0, bits: int = 4) -> dict[str, float]:
    """Mean over images (N, H, W, 3) uint8 of three cartoon statistics.

    * ``edge_density``: fraction of Canny(``canny``) edge pixels of the gray image;
    * ``flat_fraction``: fraction of pixels whose gray level varies by less than ``flat_std`` (std,
      8-bit levels) over a ``flat_window`` x ``flat_window`` window;
    * ``n_colors``: distinct RGB colors after keeping ``bits`` bits per channel (4 -> 4096 bins).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"cartoon_stats: expected (N, H, W, 3) uint8 images, got {images.dtype} "
                         f"{images.shape}")
    edges, flats, colors = [], [], []
    for img in images:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)  # (H, W) uint8
        edges.append(float((cv2.Canny(gray, *canny) > 0).mean()))
        g = gray.astype(np.float32)
        k = (flat_window, flat_window)
        mean = cv2.blur(g, k, borderType=cv2.BORDER_REFLECT_101)
        var = cv2.blur(g * g, k, borderType=cv2.BORDER_REFLECT_101) - mean * mean  # (H, W) local variance
        flats.append(float((var < flat_std**2).mean()))
        q = (img >> (8 - bits)).astype(np.int32)  # (H, W, 3) in [0, 2^bits)
        codes = (q[..., 0] << (2 * bits)) | (q[..., 1] << bits) | q[..., 2]
        colors.append(float(np.unique(codes).size))
    return {"edge_density": float(np.mean(edges)), "flat_fraction": float(np.mean(flats)),
            "n_colors": float(np.mean(colors))}


def evaluate_style(features_fn: FeaturesFn, inputs: np.ndarray, outputs: np.ndarray,
                   style_stats: Mapping[str, np.ndarray], style_cartoon_stats: dict | None = None,
                   batch: int = 8, device: torch.device | str = "cpu", precision: str = "fp32") -> dict:
    """All metrics of one trained style: ``inputs`` -> ``outputs`` held-out photos (N, H, W, 3) uint8.

    ``style_stats``: :func:`style_statistics` of the style set, computed once per style;
    ``style_cartoon_stats``: its :func:`cartoon_stats`. One feature pass per image set serves the
    style statistics and the content distance (relu4_3 is a style layer).
    ``style_ratio = style_distance_output / style_distance_input`` (< 1: outputs closer to the style).
    """
    if outputs.shape != inputs.shape:
        raise ValueError(f"evaluate_style: outputs {outputs.shape} and inputs {inputs.shape} differ")
    rows: dict[str, dict[str, list[torch.Tensor]]] = {k: {n: [] for n in STYLE_LAYERS} for k in ("in", "out")}
    diff = ref = 0.0
    n_feat = 0
    pairs = zip(_features(features_fn, inputs, STYLE_LAYERS, batch, device, precision),
                _features(features_fn, outputs, STYLE_LAYERS, batch, device, precision), strict=True)
    for fi, fo in pairs:
        for key, f in (("in", fi), ("out", fo)):
            for n in STYLE_LAYERS:
                rows[key][n].append(_channel_stats(f[n]).cpu())
        diff += float((fo[CONTENT_LAYER] - fi[CONTENT_LAYER]).abs().sum())  # Eq. (7), summed
        ref += float(fi[CONTENT_LAYER].abs().sum())
        n_feat += fi[CONTENT_LAYER].numel()
    s_in, s_out = ({n: torch.cat(r[n]).double().numpy() for n in STYLE_LAYERS}  # {layer: (N, 2C)}
                   for r in (rows["in"], rows["out"]))
    d_in, d_out = style_distance(s_in, style_stats), style_distance(s_out, style_stats)
    deep = {k: frechet_distance(_deep_means(s), _deep_means(style_stats)) for k, s in (("input", s_in),
                                                                                         ("output", s_out))}
    return {
        "content_distance": diff / n_feat,
        "content_distance_relative": diff / max(ref, 1e-12),
        "style_distance_input": d_in["total"],
        "style_distance_output": d_out["total"],
        "style_ratio": d_out["total"] / max(d_in["total"], 1e-12),
        "style_distance_layers": {"input": {n: d_in[n] for n in STYLE_LAYERS},
                                  "output": {n: d_out[n] for n in STYLE_LAYERS}},
        "deep_mean_distance": deep,
        "stats": {"input": cartoon_stats(inputs), "output": cartoon_stats(outputs),
                  "style_set": dict(style_cartoon_stats or {})},
        "n_photos": int(len(inputs)), "n_style": int(len(next(iter(style_stats.values())))),
        "style_layers": list(STYLE_LAYERS), "content_layer": CONTENT_LAYER, "covariance": "diag",
        "precision": precision,
    }
