"""Test helpers shared by several test files and by the torchrun worker scripts among them.

Importable as ``helpers`` (pytest puts ``tests/`` on the path, see pyproject.toml; the torchrun
launches pass it in PYTHONPATH). Fixtures stay in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator

TESTS_DIR = Path(__file__).resolve().parent


def texture(h: int, w: int, seed: int = 0, sigma: float = 3.0) -> np.ndarray:
    """Seeded smooth random RGB texture, uint8 (H, W, 3), with structure at every position."""
    r = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    r = cv2.GaussianBlur(r, (0, 0), sigma)
    r = (r - r.min()) / (r.max() - r.min())
    return (r * 255.0 + 0.5).astype(np.uint8)


def tiny_features(x01: torch.Tensor, layers=("conv4_3",)) -> dict[str, torch.Tensor]:
    """A fixed random two-layer conv net standing in for the VGG: every requested layer name gets
    the same (B, 8, H/2, W/2) features."""
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(8, 3, 3, 3, generator=g) * 0.3, torch.randn(8, 8, 3, 3, generator=g) * 0.2
    f = F.conv2d(F.relu(F.conv2d(x01, w1.to(x01), padding=1)), w2.to(x01), stride=2, padding=1)
    return {n: f for n in layers}


def tiny_cartoon_generator(seed: int = 0) -> CartoonGenerator:
    """A seeded light CartoonGAN generator small enough for unit tests (eval mode)."""
    torch.manual_seed(seed)
    return CartoonGenerator(CartoonGANConfig(variant="light", base_channels=4, n_res_blocks=1)).eval()


def torchrun_env() -> dict[str, str]:
    """Environment of a torchrun launch of a test file: one thread per process, helpers importable."""
    import os

    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
