"""Paths from the package root, params loading, seeding and device choice."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]  # repository root (holds params.yaml, data/, build/)
DATA = ROOT / "data"
BUILD = ROOT / "build"  # DVC-cached stage outputs (frames, films, checkpoints)
REPORTS = ROOT / "reports"  # committed metrics JSON, figures, report
MODELS = ROOT / "models"  # user-supplied released weights (DeOldify, CartoonGAN)


def load_params(section: str | None = None, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (or ``path``); return one stage's section when ``section`` is given."""
    path = Path(path) if path else ROOT / "params.yaml"
    with open(path) as f:
        params = yaml.safe_load(f)
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no section '{section}' (sections: {', '.join(params)})")
    return params[section]


def profile_overrides(profile: dict, params: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a params profile into (``section.key``, value) pairs, refusing keys params.yaml lacks."""
    out = []
    for k, v in profile.items():
        key = f"{prefix}{k}"
        if k not in params:
            raise KeyError(f"profile key '{key}' is not in params.yaml (fix the profile)")
        if isinstance(v, dict):
            out += profile_overrides(v, params[k], key + ".")
        else:
            out.append((key, v))
    return out


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries that still use the legacy global RNG)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU when present, else the CPU; ``cpu``/``cuda[:N]`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:  # torch: "Invalid device string"
        raise ValueError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: no CUDA GPU is visible here (use --device auto or cpu)")
    return dev


def resolve(path: str | os.PathLike) -> Path:
    """A path relative to the repository root (absolute paths pass through)."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p
