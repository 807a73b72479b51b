"""Test helpers shared by several test files and by the torchrun worker scripts among them.

Importable as ``helpers`` (pytest puts ``tests/`` on the path, see pyproject.toml; the torchrun
launches pass it in PYTHONPATH). Fixtures stay in conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


def blobs(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Seeded images of a few flat colored rectangles: (n, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.uint8)
    for img in out:
        img[:] = rng.integers(0, 256, 3)
        for _ in range(3):
            y, x = rng.integers(0, size - 8, 2)
            img[y : y + 8, x : x + 12] = rng.integers(0, 256, 3)
    return out


def start_torchrun_worker(script: str | Path, root: Path) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 SCRIPT worker ROOT`` in the background, one thread
    per process and these helpers importable; stdout and stderr merged into ``proc.stdout``."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), "worker", str(root)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def nogan_smoke(tmp_path: Path, config, size: int, unfreeze_from: str, steps_critic: int = 1
                ) -> tuple[torch.nn.Module, torch.Tensor]:
    """Train a colorizer of ``config`` (random weights) through every NoGAN phase, one step each, on three
    random images; returns (the trained model, its chroma of a random gray: (1, 2, size, size))."""
    from deeperfour.train.colorizer import NoGANConfig, train_colorizer

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size + 8, size + 8, 3), dtype=np.uint8) for _ in range(3)]
    cfg = NoGANConfig(sizes=(size, size), batch=(2, 2), steps_frozen=1, steps_unfrozen=1,
                      steps_critic=steps_critic, steps_gan=1, unfreeze_from=unfreeze_from, precision="fp32",
                      layer_weights={"relu2_2": 0.1})
    model = train_colorizer(images, tmp_path, config, cfg, seed=0, progress=False, pretrained=False)
    with torch.no_grad():
        return model, model(torch.rand(1, 1, size, size))
