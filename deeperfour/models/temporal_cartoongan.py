"""Ruder et al.'s fast feed-forward video stylization applied to the cartoon generator (paper §5.2.1).

Ruder et al. make a feed-forward style net temporally consistent by giving it, besides the current frame,
its own previous output warped to the current frame and the certainty mask c of that warp (reference §3),
and by fine-tuning it with the temporal loss of Eqs. (8)-(10) (``deeperfour.train.temporal_loss``).

* :class:`TemporalCartoonGenerator`: a :class:`CartoonGenerator` plus one extra input branch, a 7x7
  reflect-padded conv 4 -> c1 on (c * warped previous output, c), whose output is ADDED to the first conv
  ``conv01_1`` before its instance norm ``in01_1``. The branch is zero-initialized, so before fine-tuning
  the network is exactly the per-frame generator, and fine-tuning starts from the trained style.
Streaming it through a shot (flow, occlusion mask, warped past) is ``deeperfour.infer.cartoonize``'s
``TemporalCartoonizer``.

Checkpoint (``model.save`` / ``TemporalCartoonGenerator.from_checkpoint``)::

    {"model": state_dict, "config": asdict(base CartoonGANConfig), "version": 1,
     "arch": "TemporalCartoonGenerator", "bgr": bool, "load_size": int | None, **extra}

State-dict keys (a public interface): ``base.<CartoonGenerator key>`` for the generator and
``conv01_prev.weight`` / ``conv01_prev.bias`` for the new branch.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeperfour.models.cartoongan import (
    CHECKPOINT_VERSION,
    MIN_SIDE,
    CartoonGANWeightsError,
    CartoonGenerator,
    ReleasedCartoonGAN,
    _conv_reflect,
    _pad_to_multiple,
    _save_checkpoint,
    _torch_load,
    config_from_dict,
)

ARCH = "TemporalCartoonGenerator"
PREV_CHANNELS = 4  # c * warped previous output (RGB, [-1, 1]) and c
_OWN_KEYS = ("bgr", "load_size")  # checkpoint keys written by TemporalCartoonGenerator.save itself


class TemporalCartoonGenerator(nn.Module):
    """The cartoon generator with a second input: its previous output warped to this frame, and c.

    ``forward(x, prev_warped, mask)``: x the colorized frame, RGB in [-1, 1], (B, 3, H, W);
    ``prev_warped`` the previous OUTPUT warped to frame t (B, 3, H, W) in [-1, 1]; ``mask`` its certainty
    c in [0, 1], (B, 1, H, W) (occlusion rule of Ruder et al.). The branch sees (c * prev_warped, c):
    forward does the multiplication itself, so where c = 0 the past carries no information at all.
    ``None`` for both = the first frame of a shot, which is the same as feeding zeros.

    ``base`` is deep-copied (fine-tuning never changes the caller's per-frame generator). A
    :class:`ReleasedCartoonGAN` is unwrapped and its BGR channel order handled here (``bgr=True``), so the
    interface stays RGB in and out.
    """

    def __init__(self, base: CartoonGenerator | ReleasedCartoonGAN, bgr: bool = False):
        super().__init__()
        if isinstance(base, ReleasedCartoonGAN):
            base, bgr = base.net, True
        if not isinstance(base, CartoonGenerator):
            raise TypeError(f"TemporalCartoonGenerator wraps a CartoonGenerator, got {type(base).__name__}")
        self.load_size: int | None = getattr(base, "load_size", None)  # run size of released styles
        self.base = copy.deepcopy(base)
        self.cfg = self.base.cfg
        self.bgr = bool(bgr)
        c1 = self.cfg.channels[0]
        # the new branch: same shape of layer as conv01_1 (7x7, reflection pad 3), but 4 -> c1 and zero,
        # so that conv01_1(x) + conv01_prev(.) = conv01_1(x) until fine-tuning moves it
        self.conv01_prev = _conv_reflect(PREV_CHANNELS, c1, 7)
        nn.init.zeros_(self.conv01_prev.weight)
        nn.init.zeros_(self.conv01_prev.bias)

    def forward(self, x: torch.Tensor, prev_warped: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) RGB [-1, 1] (+ warped previous output and its mask) -> (B, 3, H, W) RGB [-1, 1]."""
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"TemporalCartoonGenerator: input {h}x{w} is too small (need >= {MIN_SIDE})")
        if (prev_warped is None) != (mask is None):
            raise ValueError("TemporalCartoonGenerator: pass both prev_warped and mask, or neither")
        if self.bgr:
            x = x.flip(1)  # RGB -> BGR: the released nets' channel order
        g = self.base
        # 1. flat conv of the frame plus the branch on the warped past, both before the first norm
        y = g.conv01_1(_pad_to_multiple(x, 4))  # (B, C1, H4, W4)
        if prev_warped is None:
            # the branch on zeros (reflect-padded zeros are zeros) is exactly its bias
            y = y + self.conv01_prev.bias.to(y.dtype).view(1, -1, 1, 1)  # (B, C1, H4, W4)
        else:
            b = x.shape[0]
            if prev_warped.shape != (b, 3, h, w) or mask.shape != (b, 1, h, w):
                raise ValueError(f"TemporalCartoonGenerator: prev_warped {tuple(prev_warped.shape)} and mask "
                                 f"{tuple(mask.shape)} must be ({b}, 3, {h}, {w}) and ({b}, 1, {h}, {w})")
            if self.bgr:
                prev_warped = prev_warped.flip(1)
            mask = mask.to(prev_warped.dtype)
            z = torch.cat((mask * prev_warped, mask), dim=1)  # (B, 4, H, W)
            y = y + self.conv01_prev(_pad_to_multiple(z, 4))  # (B, C1, H4, W4)
        # 2. the rest of CartoonGenerator.forward, the same code (the zero-init test guards the equivalence)
        y = g.trunk(y)[..., :h, :w]  # (B, 3, H, W)
        if self.bgr:  # RGB out
            y, x = y.flip(1), x.flip(1)
        return g.finish(y, x)

    # ------------------------------------------------------------------------------------------
    # checkpoints

    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
        """Atomically write the model with its config (see the module docstring); returns the path."""
        extra = dict(extra or {})
        clash = set(_OWN_KEYS) & set(extra)
        if clash:
            raise ValueError(f"TemporalCartoonGenerator.save: extra may not override {sorted(clash)}")
        return _save_checkpoint(path, self, self.cfg, extra={"bgr": self.bgr, "load_size": self.load_size,
                                                            **extra})

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> TemporalCartoonGenerator:
        """Rebuild the model from its own checkpoint; one-line errors naming the file otherwise.

        Raises ``FileNotFoundError`` for a missing file and :class:`CartoonGANWeightsError` for a
        truncated / non-torch file, a file that is not a DeeperFour checkpoint, a checkpoint of another
        architecture (e.g. the per-frame CartoonGenerator) or keys that do not match.
        """
        path = Path(path)
        ckpt = _torch_load(path, map_location)
        if not isinstance(ckpt, dict) or not {"model", "config", "version"} <= set(ckpt):
            raise CartoonGANWeightsError(path, f"not a DeeperFour checkpoint (no model/config/version); "
                                               f"expected a {ARCH}")
        if ckpt["version"] != CHECKPOINT_VERSION:
            raise CartoonGANWeightsError(path, f"checkpoint version {ckpt['version']}, this code reads "
                                               f"version {CHECKPOINT_VERSION}")
        arch = ckpt.get("arch", "CartoonGenerator")
        if arch != ARCH:
            hint = " (wrap it: TemporalCartoonGenerator(CartoonGenerator.from_checkpoint(path)))" \
                if arch == "CartoonGenerator" else ""
            raise CartoonGANWeightsError(path, f"holds a {arch}, not a {ARCH}{hint}")
        model = cls(CartoonGenerator(config_from_dict(ckpt["config"])), bgr=bool(ckpt.get("bgr", False)))
        model.load_size = ckpt.get("load_size")
        _check_keys(path, ckpt["model"], model)
        model.load_state_dict(ckpt["model"])
        return model


def _check_keys(path: Path, sd: Any, model: nn.Module) -> None:
    """One-line error unless ``sd`` has exactly ``model``'s keys and shapes."""
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CartoonGANWeightsError(path, "'model' is not a state_dict (expected a dict of tensors)")
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    wrong = [k for k, v in want.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {name} (first: {v[0]})" for name, v in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if v]
        raise CartoonGANWeightsError(path, f"keys do not match the {len(want)}-key {ARCH}: "
                                           f"{'; '.join(parts)}")
