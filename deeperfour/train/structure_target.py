"""Structure pseudo-targets of the small-data CartoonGAN recipe (``recipe: whitebox``, issue 16).

White-box Cartoonization (Wang & Yu, CVPR 2020, §3.2) calls a photo's *structure* its SLIC superpixels
(Achanta et al. 2012, ``skimage.segmentation.slic``) each filled with one color: flat regions that follow
the photo's boundaries, what a cartoonist's cel fill keeps of a scene. AnimeGANv3 trains toward such
pseudo-targets made by a classical smoother instead of toward the photo itself. Here the fill is the
region's mean color, and the ink lines of the abstraction baseline (``infer/abstraction.py``: Winnemöller
et al. 2006, DoG edges of Eq. 6 on the bilateral-smoothed luminance) are drawn over it, so the target
has both halves of a cartoon: flat color and ink. The generator's initialization phase reconstructs these
targets instead of the photos.

``structure="abstraction"`` (:func:`abstraction_targets`) takes AnimeGANv3's route literally: the
pseudo-target is the classical abstraction itself (bilateral-smoothed Lab, soft-quantized luminance, DoG
ink), so the generator learns a smoother version of the baseline that every learned style is scored
against, and the adversarial terms then pull it toward the style set. Trials (issue 16, style scratch,
48 held-out photos): 100 init + 200 GAN steps gave drawn-probability 0.21 (the SLIC target's run 0.06) but
a color shift of 28.9 (chroma free) and blurred frames; lr 1e-3 for 250 init steps lost the colors.
With the abstraction prior (``CartoonGANConfig.prior``) the generator starts AT this target, and the
target's Eq. (7) and L1 terms keep its learned correction small.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import slic
from tqdm.auto import tqdm

from deeperfour.infer.abstraction import AbstractionConfig, abstract, dog_edges, smooth_lab

STRUCTURES = ("slic", "abstraction")  # TrainConfig.structure: the pseudo-target kind

SEGMENT_PX = 330  # mean superpixel area, px: White-box's 200 segments on a 256 x 256 crop


def mean_fill(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each label's pixels set to the label's mean color. (H, W, 3) uint8, (H, W) int -> (H, W, 3) float32."""
    flat = labels.ravel()
    n = int(flat.max()) + 1
    count = np.bincount(flat, minlength=n).astype(np.float64)[:, None]  # (n, 1)
    sums = np.stack([np.bincount(flat, rgb[..., c].ravel(), minlength=n) for c in range(3)], axis=1)
    means = (sums / np.maximum(count, 1)).astype(np.float32)  # (n, 3)
    return means[labels]


def structure_target(rgb: np.ndarray, segment_px: float = SEGMENT_PX, compactness: float = 10.0,
                     ink: AbstractionConfig | None = None) -> np.ndarray:
    """A photo's structure pseudo-target: SLIC superpixels with their mean color, times the DoG ink map
    (black below ``ink.edge_threshold``). RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3). Deterministic."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"structure_target: expected an RGB uint8 (H, W, 3) image, got {rgb.shape} "
                         f"{rgb.dtype}")
    ink = ink or AbstractionConfig()
    h, w = rgb.shape[:2]
    labels = slic(rgb, n_segments=max(1, round(h * w / segment_px)), compactness=compactness,
                  start_label=0, convert2lab=True)  # (H, W) superpixel index
    fill = mean_fill(rgb, labels)  # (H, W, 3) float in 0..255
    edges = dog_edges(smooth_lab(rgb, ink)[1], ink)  # (H, W) in [0, 1], 1 = no line: the abstraction's ink,
    #                                                 drawn on its bilateral-smoothed L (no texture lines)
    d = np.where(edges < ink.edge_threshold, 0.0, edges).astype(np.float32)
    return np.clip(fill * d[..., None] + 0.5, 0, 255).astype(np.uint8)


def structure_targets(images: np.ndarray, segment_px: float = SEGMENT_PX, compactness: float = 10.0,
                      progress: bool = True) -> np.ndarray:
    """:func:`structure_target` of every image. (N, H, W, 3) uint8 -> (N, H, W, 3) uint8."""
    out = np.empty_like(np.asarray(images))
    for i in tqdm(range(len(images)), desc="structure targets", unit="image", leave=False,
                  disable=not progress):
        out[i] = structure_target(images[i], segment_px, compactness)
    return out


def abstraction_targets(images: np.ndarray, progress: bool = True) -> np.ndarray:
    """The abstraction baseline (``infer.abstraction.abstract``, default knobs, levels per image) of every
    image: the AnimeGANv3-style pseudo-targets. (N, H, W, 3) uint8 -> (N, H, W, 3) uint8."""
    out = np.empty_like(np.asarray(images))
    for i in tqdm(range(len(images)), desc="abstraction targets", unit="image", leave=False,
                  disable=not progress):
        out[i] = abstract(images[i])
    return out
