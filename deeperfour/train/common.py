"""What every training loop shares: resumable checkpoints, loss logs (precision: ``core/precision.py``).

* ``Checkpointer``: ``{"model": ..., "config": ..., "version": ..., "phase"/"step": ...,
  "optimizers": ..., "rng": ...}`` written atomically; ``load()`` resumes the loop exactly
  where it stopped (model, optimizers, step and every RNG state).
* ``LossLog``: dvclive logging (one TSV per loss under ``<dir>/plots/metrics/``), no DVC
  experiment side effects, a reader for the training-curve figures, and ``truncate_curves`` to
  drop the rows a killed run logged after its last checkpoint.

Under ``torchrun`` (``distributed.py``) only rank 0 writes checkpoints and logs; the other ranks'
``save`` and ``log`` calls do nothing, so loops call them unconditionally.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeperfour.train.distributed import is_main

CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),  # noqa: NPY002
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 (legacy global RNG some libraries use)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Atomic save / load of a training state at ``path`` (a ``.pt`` file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, **state: Any) -> Path:
        """Save ``state`` (tensors, state_dicts, plain Python) plus RNG states and the version.

        Rank 0 only under torchrun: the state is the global one (identical on every rank).
        """
        if not is_main():
            return self.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.partial")
        torch.save({"version": CHECKPOINT_VERSION, "rng": rng_state(), **state}, tmp)
        os.replace(tmp, self.path)
        return self.path

    def load(self, restore_rng: bool = True) -> dict[str, Any]:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as e:  # truncated or foreign file: say which and what to do
            raise ValueError(f"{self.path}: not a readable DeeperFour checkpoint ({e}); "
                             "delete it to train from scratch") from e
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.path}: checkpoint version {state.get('version')} "
                             f"(expected {CHECKPOINT_VERSION}); delete it to train from scratch")
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])
        return state


class LossLog:
    """Loss curves logged with dvclive under ``dir`` (TSV per metric), resumable; rank 0 only."""

    def __init__(self, dir: str | os.PathLike, resume: bool = False):
        from dvclive import Live

        self.dir = Path(dir)
        self._live = None
        if not is_main():  # other ranks log nothing (pass them values already averaged over ranks)
            return
        self._live = Live(str(self.dir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)

    def log(self, step: int, **values: float) -> None:
        if self._live is None:
            return
        self._live.step = step
        for k, v in values.items():
            self._live.log_metric(k, float(v))

    def close(self) -> None:
        if self._live is not None:
            self._live.end()


def truncate_curves(live_dir: str | os.PathLike, step: int) -> None:
    """Drop loss-log rows at or after ``step`` from a dvclive folder: the rows a killed run wrote after its
    last checkpoint, which its resume from that checkpoint logs again (call it on rank 0 only)."""
    for tsv in (Path(live_dir) / "plots" / "metrics").rglob("*.tsv"):
        with open(tsv) as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[col]) < step]
        with open(tsv, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)


def read_curves(dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric: (steps, values)} from a dvclive folder (for the training-curve figures)."""
    out = {}
    plots = Path(dir) / "plots" / "metrics"
    for tsv in sorted(plots.rglob("*.tsv")):
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        name = tsv.relative_to(plots).with_suffix("").as_posix()
        key = next(k for k in rows[0] if k not in ("step", "timestamp"))
        out[name] = (np.array([int(r["step"]) for r in rows]), np.array([float(r[key]) for r in rows]))
    return out
