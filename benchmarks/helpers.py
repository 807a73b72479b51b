"""Measurement helpers for ``benchmarks/run.py``: FLOPs, timing, the machine's peak, memory, isolation.

Why a module of its own: the benchmark script compares stages that differ in size, precision and
architecture, so every number must be measured the same way. Here are the few rules, once:

* **FLOPs** come from ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs; convs,
  transposed convs and matrix products; norms and activations are not counted), so a stage's
  GFLOP/frame is what its layers really execute at that input size, not a formula typed by hand.
* **Speed** is the median of several timed calls after warm-up calls (the first call of a shape builds
  oneDNN primitives and allocates); the number of timed calls adapts to the cost of one call so a slow
  stage does not dominate the run (:func:`repeats_for`).
* **Peak** is the best GFLOP/s of a large matrix product and a large convolution in the same precision
  (:func:`measure_peak`), the ceiling a stage's achieved GFLOP/s is divided by.
* **Memory** is the max resident set size of a FRESH process that ran only that stage
  (:func:`run_isolated`), so stages never inherit each other's allocations.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------------
# FLOPs


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """(FLOPs executed by one call of ``fn(*args, **kwargs)``, its return value).

    Counted by ``FlopCounterMode`` while the call really runs (so it also serves as a warm-up call).
    """
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return int(counter.get_total_flops()), out


def conv2d_flops(batch: int, c_in: int, c_out: int, kernel: int | tuple[int, int], h_out: int, w_out: int,
                 groups: int = 1) -> int:
    """Textbook FLOPs of a 2-D convolution without its bias: 2 x output elements x (C_in/groups) x kh x kw."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return 2 * batch * c_out * h_out * w_out * (c_in // groups) * kh * kw


def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m, k) @ (k, n) product: 2 m k n."""
    return 2 * m * k * n


# ---------------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer around it measures the work and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1,
               device: torch.device | str = "cpu") -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def repeats_for(seconds_per_call: float, budget_s: float, lo: int = 3, hi: int = 10) -> int:
    """Timed calls that fit ``budget_s`` for a call of ``seconds_per_call``, clamped to ``[lo, hi]``.

    At least ``lo`` so that a median means something, at most ``hi`` so cheap stages stay cheap.
    """
    if hi < lo:
        raise ValueError(f"repeats_for: hi={hi} < lo={lo}")
    n = int(budget_s / max(seconds_per_call, 1e-9))
    return max(lo, min(hi, n))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------------------------------------------
# the machine's peak


def _peak_operands(kind: str, size: int, dtype: torch.dtype, device: torch.device, channels_last: bool):
    """(callable, FLOPs per call) of one large matmul (size^3) or 3x3 conv (256 -> 256 ch, size^2 px)."""
    g = torch.Generator().manual_seed(0)
    if kind == "matmul":
        a = torch.randn(size, size, generator=g).to(device, dtype)
        b = torch.randn(size, size, generator=g).to(device, dtype)
        return (lambda: a @ b), matmul_flops(size, size, size)
    if kind == "conv":
        ch = 256
        x = torch.randn(1, ch, size, size, generator=g).to(device, dtype)
        w = torch.randn(ch, ch, 3, 3, generator=g).mul_(0.02).to(device, dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            w = w.contiguous(memory_format=torch.channels_last)
        return (lambda: F.conv2d(x, w, padding=1)), conv2d_flops(1, ch, ch, 3, size, size)
    raise ValueError(f"unknown peak kind {kind!r} (matmul | conv)")


@torch.inference_mode()
def measure_peak(kind: str, precision: str = "fp32", device: torch.device | str = "cpu", size: int = 2048,
                 min_seconds: float = 2.0, channels_last: bool = False) -> dict[str, Any]:
    """GFLOP/s of a large matrix product (``size`` x ``size``) or conv (256 ch, ``size``² px).

    Calls run until ``min_seconds`` have passed (at least 3) after 2 warm-ups; ``gflops`` is the BEST
    call (a peak is what the machine can do, and contention only ever slows a call down), and
    ``gflops_median`` is reported beside it. ``precision`` "bf16" runs in bf16 tensors directly: the
    same kernels that bf16 autocast dispatches to.
    """
    device = torch.device(device)
    fn, flops = _peak_operands(kind, size, DTYPES[precision], device, channels_last)
    times = time_calls(fn, repeats=0, warmup=2, device=device)
    t_end = time.perf_counter() + min_seconds
    while len(times) < 3 or time.perf_counter() < t_end:
        times += time_calls(fn, repeats=1, warmup=0, device=device)
    return {"kind": kind, "precision": precision, "size": size, "channels_last": channels_last,
            "gflop_per_call": flops / 1e9, "calls": len(times),
            "gflops": flops / 1e9 / min(times), "gflops_median": flops / 1e9 / median(times)}


def fraction_of_peak(gflop_per_frame: float | None, fps: float | None, peak_gflops: float | None
                     ) -> float | None:
    """Achieved GFLOP/s (GFLOP per frame x frames per second) over the peak; None when not defined."""
    if not gflop_per_frame or not fps or not peak_gflops:
        return None
    return gflop_per_frame * fps / peak_gflops


def pipeline_fps(stage_fps: Sequence[float]) -> float:
    """Frames per second of stages run one after the other on each frame: 1 / sum(1 / fps_i)."""
    if not stage_fps or any(f <= 0 for f in stage_fps):
        raise ValueError(f"pipeline_fps needs positive stage fps, got {list(stage_fps)}")
    return 1.0 / sum(1.0 / f for f in stage_fps)


def target(value: float | None, goal: float, higher_is_better: bool = True) -> dict[str, Any]:
    """``{"value", "target", "met", "margin"}``; margin = value - goal (or goal - value), > 0 when met."""
    if value is None:
        return {"value": None, "target": goal, "met": None, "margin": None}
    margin = value - goal if higher_is_better else goal - value
    return {"value": value, "target": goal, "met": bool(margin >= 0), "margin": margin}


def top_ops(fn: Callable[[], Any], n: int = 6, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """The ``n`` torch ops with the most self time in one call of ``fn``, with their share of the total.

    Explains a low fraction of peak: when copies (autocast casts, layout reorders), padding or norms
    outweigh the convolutions, the FLOPs are not where the time goes.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:n]]


# ---------------------------------------------------------------------------------------------------
# memory and the machine


class RSSSampler:
    """Samples this process's RSS every ``interval`` seconds in a daemon thread while the block runs.

    A streaming stage should plateau: :meth:`growth` (max RSS of the second half of the run minus that of
    the first half) stays near zero, whatever the film's length.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.perf_counter()
        while True:
            self.samples.append((time.perf_counter() - t0, current_rss_mb()))
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self, points: int = 20) -> list[list[float]]:
        """[[fraction of the run, max RSS MB in that slice], ...] with at most ``points`` slices."""
        if not self.samples:
            return []
        end = self.samples[-1][0] or 1.0
        bins: dict[int, float] = {}
        for t, rss in self.samples:
            k = min(points - 1, int(points * t / end))
            bins[k] = max(bins.get(k, 0.0), rss)
        return [[round((k + 1) / points, 3), round(v, 1)] for k, v in sorted(bins.items())]

    def growth(self) -> float | None:
        """Max RSS in the second half of the run minus max RSS in the first half, MB."""
        if len(self.samples) < 2:
            return None
        half = self.samples[-1][0] / 2
        first = [r for t, r in self.samples if t <= half]
        second = [r for t, r in self.samples if t > half]
        return max(second) - max(first) if first and second else None



def max_rss_mb() -> float:
    """This process's peak resident set size so far, MB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def current_rss_mb() -> float:
    """This process's resident set size now, MB."""
    return psutil.Process().memory_info().rss / 2**20


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
              ) -> list[str]:
    """Which of the SIMD extensions that decide fp32/bf16 speed the CPU reports (Linux only)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    return []


def machine_info() -> dict[str, Any]:
    """Everything a reader needs to compare two benchmark files: CPU, cores, threads, versions, load."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda": None,
    }
    with contextlib.suppress(ImportError):
        import cv2

        info["opencv"] = cv2.__version__
        info["opencv_threads"] = cv2.getNumThreads()
    if torch.cuda.is_available():
        info["cuda"] = {"device": torch.cuda.get_device_name(0), "version": torch.version.cuda,
                        "memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
    return info


# ---------------------------------------------------------------------------------------------------
# isolation


def run_isolated(fn: Callable[..., Any], *args: Any, isolate: bool = True, timeout: float | None = None,
                 **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh spawned Python process (or here, if ``isolate`` is False).

    Spawn, not fork: the child starts empty, so its ``max_rss_mb()`` is the stage's own peak memory and
    no thread pool or allocator state leaks from the parent. ``fn`` must be importable by name (a
    module-level function); exceptions are re-raised here.
    """
    if not isolate:
        return fn(*args, **kwargs)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args, **kwargs).result(timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# figure


def benchmark_figure(result: dict[str, Any]):
    """Three panels per stage: frames per second (log), fraction of the machine's peak, peak memory.

    DeeperFour's own nets in blue, the reference architectures in orange; the dashed line in the middle
    panel is the target share of peak; the memory bars are split into the process's baseline (interpreter,
    torch, OpenCV: light) and what the stage added on top (dark).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    stages = {k: v for k, v in result["stages"].items() if v.get("fps")}
    names = list(stages)[::-1]
    colors = {"default": "tab:blue", "reference": "tab:orange"}
    col = [colors.get(stages[n].get("family"), "tab:gray") for n in names]
    labels = [f"{n} [{stages[n].get('precision')}]" for n in names]
    y = list(range(len(names)))
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.22 * len(names) + 1.5), sharey=True)
    axes[0].barh(y, [stages[n]["fps"] for n in names], color=col)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("frames / s")
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[1].barh(y, [100 * (stages[n].get("fraction_of_peak") or 0) for n in names], color=col)
    goal = result.get("targets", {}).get("fraction_of_peak_goal")
    if goal:
        axes[1].axvline(100 * goal, color="k", ls="--", lw=0.8)
    axes[1].set_xlabel("% of measured peak (own precision)")
    base = [stages[n].get("baseline_memory_mb") or 0 for n in names]
    peak = [stages[n].get("peak_memory_mb") or 0 for n in names]
    axes[2].barh(y, base, color=col, alpha=0.35)
    axes[2].barh(y, [max(0.0, p - b) for p, b in zip(peak, base, strict=True)], left=base, color=col)
    axes[2].set_xlabel("peak RSS, MB (light: baseline after imports)")
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", lw=0.3)
    handles = [Patch(color=c, label=family) for family, c in colors.items()]
    axes[0].legend(handles=handles, fontsize=7, loc="lower right")
    m, size = result["machine"], result.get("settings", {}).get("size")
    title = f"{m['cpu_model']}, {m['torch_threads']} threads"
    speed = result.get("speedup_vs_reference")
    if speed:
        title += f"; default pipeline {speed:.1f}x the reference"
        title += f" at {size[0]}x{size[1]}" if size else ""
    fig.suptitle(title + (" (QUICK: tiny sizes, numbers mean nothing)" if result.get("quick") else ""),
                 fontsize=8)
    fig.tight_layout()
    return fig
