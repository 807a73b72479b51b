"""torch.compile for inference (issue 19): Inductor's fused kernels, where they pay.

``compile_module(module)`` compiles a network's forward IN PLACE (``nn.Module.compile``): every caller,
including the network's own methods that call ``self(...)`` (a ConvLSTM's ``step``), then runs the
compiled code, and the module keeps its attributes (config, state dict).

Shapes: ``dynamic=False``. A film has one frame size, so each network is specialized to it; a new size
(another film in the same process) recompiles once for that size: bucketing by the exact size, which is
cheaper than dynamic-shape kernels at run time. Inductor's on-disk cache (FX graph and AOT autograd
caches, on by default) is shared by every process of the machine: segments run in the same process
reuse the compiled code in memory, a second process or Ray worker on the same machine loads it from the
cache instead of compiling again. ``TORCHINDUCTOR_CACHE_DIR`` moves that cache.

Measured on the 2-core CPU of this project (AMD EPYC, AVX512-BF16, bf16 autocast, 640x360, default
mode): the colorizer 1.06x, the light cartoon generator 1.05x, the ConvLSTM 1.05x, for 9-34 s of
compilation each on a cold cache. On that CPU compilation pays only for long films, so ``convert``
leaves it off unless asked (``--compile``); the benchmark measures both.
"""

from __future__ import annotations

from torch import nn

MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def compile_module(module: nn.Module, enabled: bool = True, mode: str = "default") -> nn.Module:
    """``module`` with its forward compiled in place (``enabled``), or untouched; returns it."""
    if not enabled:
        return module
    if mode not in MODES:
        raise ValueError(f"compile mode {mode!r}: choose {', '.join(MODES)}")
    module.compile(mode=None if mode == "default" else mode, dynamic=False)
    return module
