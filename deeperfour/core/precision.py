"""Numeric precision of every model call: ``auto`` picks bf16 only where the device computes it natively.

bf16 autocast halves the cost of convolutions on a CPU with AVX512-BF16 or AMX and on a CUDA GPU with
bf16 units. Everywhere else PyTorch emulates it, and a conv block under bf16 autocast runs about 100x
slower than in fp32 (29 s against 0.2 s on an AVX2-only AMD EPYC). So:

* ``resolve_precision("auto", device)`` -> ``"bf16"`` on such a device, else ``"fp32"``: decided once
  from the device's capability (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``,
  ``torch.cuda.is_bf16_supported``); stages record the resolved value in their metrics and checkpoints;
* ``"bf16"`` and ``"fp32"`` force a precision;
* ``autocast(device, precision)`` is the one context manager every model call runs under.
"""

from __future__ import annotations

import contextlib
from functools import cache

import torch

PRECISIONS = ("auto", "bf16", "fp32")


@cache
def native_bf16(device_type: str) -> bool:
    """True when ``device_type`` ("cpu" | "cuda") has bf16 arithmetic units (no software emulation)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> "bf16" where ``device`` computes bf16 natively, else "fp32"; "bf16"/"fp32" pass through."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(torch.device(device).type) else "fp32"
    return precision


def autocast(device: torch.device | str, precision: str = "auto"):
    """Context manager: bf16 autocast when ``precision`` resolves to bf16 on ``device``, else a no-op."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def budget_steps(precision: str, fp32_share: float, *steps: int) -> tuple[int, ...]:
    """Training steps to run at the resolved ``precision``: ``steps`` as they are in bf16; in fp32,
    ``round(s * fp32_share)`` of each (at least 1 of a phase that has any).

    A CPU without native bf16 runs every training step 1.4-1.9x slower in fp32 (measured side by side on
    one AVX512-BF16 CPU, fp32 forced): ``make repro`` took 58 min there with the full schedule, against a
    45-minute budget. The stages' ``fp32_steps`` share (params.yaml) shortens their training on such a
    CPU; the metrics and checkpoints record the steps run. 1.0 keeps the full schedule everywhere.
    """
    if not 0 < fp32_share <= 1:
        raise ValueError(f"fp32_steps must be in (0, 1], got {fp32_share!r} (1 = the full schedule in fp32)")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"budget_steps takes a resolved precision, bf16 or fp32, got {precision!r}")
    if precision == "bf16":
        return tuple(int(s) for s in steps)
    return tuple(max(1, round(int(s) * fp32_share)) if int(s) > 0 else 0 for s in steps)
