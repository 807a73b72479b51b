"""Benchmark every DeeperFour stage beside the reference architectures, in one run on one machine.

    python benchmarks/run.py                       # full run -> reports/benchmarks.json + figure (make bench)
    python benchmarks/run.py --quick --out /tmp/bench.json   # tiny sizes, 1 timed call: checks the plumbing

What is measured (the JSON schema is in ``benchmarks/README.md``):

1. the machine's peak: a large matrix product and a large 3x3 convolution in fp32 and bf16 (GFLOP/s);
2. every stage, each in a FRESH spawned process (peak memory = that process's max RSS): our colorizer at
   render factors 14/21/35 (+ the params' one), the light CartoonGAN at 256² and 640x360, the ConvLSTM
   (params width) and the flow blend at 640x360, in the pipeline's precision and batch; and the reference
   architectures doing the same work: DeOldify's video generator (ResNet101 "wide", 218 M parameters, random
   weights), the paper CartoonGAN (11.1 M) and Lai et al.'s network (nf = 32), as their codes run them (fp32,
   one frame at a time) and again in bf16, to split the speed-up into architecture and precision;
3. ``deeperfour.convert.pipeline`` on 10 s and 60 s films of 640x360 (when the module exists): fps,
   and whether its peak memory grows with the film's length.

A stage's time covers what the pipeline does per frame (resize, model, recombination) on uint8 frames; its
FLOPs are counted by ``FlopCounterMode`` on the same call; fraction of peak = achieved GFLOP/s over the peak
of its precision. Speed is only measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from benchmarks import helpers as bench
from deeperfour.convert.profile import Sections
from deeperfour.core.config import BUILD, DATA, REPORTS, load_params
from deeperfour.core.precision import resolve_precision

FULL_SIZE = (640, 360)  # (W, H) of the film stages
FULL_SQUARE = 256  # CartoonGAN's training / paper size
FULL_RENDER_FACTORS = (14, 21, 35)
DEOLDIFY_VIDEO_RF = 21  # DeOldify's video default render factor (336 px)
COLORIZER_ENCODERS = ("hed_vgg16", "efficientnet_lite0")  # colorizer encoders timed side by side (issue 17)
SPEEDUP_GOAL = 5.0  # default pipeline fps / reference pipeline fps at 640x360
PEAK_FRACTION_GOAL = 0.30  # every default stage reaches this share of the machine's peak (CPU)
ABSTRACTION_FPS_GOAL = 10.0  # the classical cartoon at 640x360 on the CPU (issue 16)
PROPAGATION_FPS_GOAL = 5.0  # reference propagation, classical path, at 640x360 on the CPU (issue 15)
CONVERT_SPEEDUP_GOAL = 1.5  # issue 19: end-to-end convert fps at 640x360, new defaults / previous ones
MEMORY_GROWTH_MB = 50.0  # convert: 60 s may use at most max(this, 5 % of the 10 s peak) more than 10 s


# ---------------------------------------------------------------------------------------------------------
# settings and stage specifications (plain data: they travel to the spawned processes by pickling)


@dataclass
class Settings:
    """How big and how long: full sizes by default, tiny ones with ``--quick``."""

    quick: bool = False
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads in every stage process; 0 = torch's default
    size: tuple[int, int] = FULL_SIZE  # (W, H)
    square: int = FULL_SQUARE
    render_factors: tuple[int, ...] = FULL_RENDER_FACTORS
    rf_reference: int = DEOLDIFY_VIDEO_RF
    warmup: int = 1  # untimed calls after the FLOP-counting call (which is itself a warm-up)
    budget_s: float = 6.0  # timed seconds aimed at per stage (3 to 10 calls)
    min_repeats: int = 3
    max_repeats: int = 10
    peak_seconds: float = 2.0  # per peak measurement
    peak_matmul: int = 4096
    peak_conv: int = 128
    lengths_s: tuple[int, int] = (10, 60)  # convert: film lengths compared for memory growth
    length_fps: int = 5  # frame rate of those synthesized films (frames = seconds x fps; 50 and 300)
    profile: bool = False  # also record each stage's most expensive ops (one extra profiled call)
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, read once in the parent

    @classmethod
    def make(cls, quick: bool, **kw: Any) -> Settings:
        s = cls(quick=quick, params=load_params(), **kw)
        if quick:  # tiny everything: exercises every code path in seconds, numbers mean nothing
            s = replace(s, size=(64, 36), square=32, render_factors=(2, 3, 4), rf_reference=3, warmup=0,
                        budget_s=0.0, min_repeats=1, max_repeats=1, peak_seconds=0.05, peak_matmul=256,
                        peak_conv=32, lengths_s=(1, 3), length_fps=5)
        return s

    @property
    def size_name(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    @property
    def rf_default(self) -> int:
        """The pipeline's render factor (params.yaml colorize.render_factor); the smallest in quick mode."""
        return self.render_factors[0] if self.quick else int(self.params["colorize"]["render_factor"])


@dataclass
class Stage:
    """One benchmark entry: ``builder(settings, **kwargs)`` returns the :class:`Work` to time."""

    name: str
    group: str  # colorize | cartoonize | stabilize | convert
    family: str  # default (DeeperFour's own nets) | reference (DeOldify, paper CartoonGAN, Lai et al.)
    #              | classical (no network: the abstraction style, reference propagation)
    builder: str  # name of a build_* function of this module
    precision: str  # fp32 | bf16 (autocast) | none (no torch model: OpenCV flow)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Work:
    """What a stage process times: ``step()`` turns ``frames`` uint8 frames into outputs like the pipeline."""

    step: Callable[[], Any]
    frames: int
    model: str
    params: int | None = None
    weights: str = "random"  # trained (the DVC stage's checkpoint) | random (same cost) | none
    batch: int = 1
    compile_s: float | None = None  # torch.compile: seconds of the first (compiling) call; None = eager


def _compiled(net: torch.nn.Module, compiled: bool) -> torch.nn.Module:
    """``net`` compiled in place (``core/compile.py``) when asked."""
    from deeperfour.core.compile import compile_module

    return compile_module(net, compiled)


def _first_call(step: Callable[[], Any], compiled: bool) -> float | None:
    """Run ``step`` once when the network is compiled: the compilation's seconds (else None, no call)."""
    if not compiled:
        return None
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def stage_list(s: Settings) -> list[Stage]:
    """Every entry of the run, default nets first, each beside the reference doing the same work."""
    p = s.params
    wh, sq = s.size_name, f"{s.square}x{s.square}"
    col_prec = resolve_precision(p["colorize"]["precision"], s.device)  # auto -> bf16 | fp32 on this machine
    cg_prec = resolve_precision(p["train_cartoongan"]["precision"], s.device)
    col_batch, cg_batch = int(p["colorize"]["batch"]), int(p["train_cartoongan"]["film_batch"])
    lstm = p.get("convlstm", {})
    lstm_nf, lstm_prec = int(lstm.get("nf", 16)), resolve_precision(lstm.get("precision", col_prec), s.device)
    rfs = sorted({*s.render_factors, s.rf_default})
    st: list[Stage] = []
    for rf in rfs:
        st.append(Stage(f"colorize_rf{rf}", "colorize", "default", "build_colorize", col_prec,
                        {"render_factor": rf, "net": "ours", "batch": col_batch}))
    for enc in COLORIZER_ENCODERS:  # each encoder at the recorded render factor, same decoder width
        st.append(Stage(f"colorize_rf{s.rf_reference}_{enc}", "colorize", "encoder", "build_colorize",
                        col_prec, {"render_factor": s.rf_reference, "net": "ours", "batch": col_batch,
                                   "encoder": enc}))
    for rf in sorted({*rfs, s.rf_reference}):
        st.append(Stage(f"colorize_deoldify_rf{rf}", "colorize", "reference", "build_colorize", "fp32",
                        {"render_factor": rf, "net": "deoldify", "batch": 1}))
    st.append(Stage(f"colorize_deoldify_rf{s.rf_reference}_bf16", "colorize", "reference", "build_colorize",
                    "bf16", {"render_factor": s.rf_reference, "net": "deoldify", "batch": 1}))
    for size, tag in (((s.square, s.square), sq), (s.size, wh)):
        st.append(Stage(f"cartoonize_light_{tag}", "cartoonize", "default", "build_cartoonize", cg_prec,
                        {"variant": "light", "size": size, "batch": cg_batch}))
        st.append(Stage(f"cartoonize_paper_{tag}", "cartoonize", "reference", "build_cartoonize", "fp32",
                        {"variant": "paper", "size": size, "batch": 1}))
    st.append(Stage(f"cartoonize_paper_{wh}_bf16", "cartoonize", "reference", "build_cartoonize", "bf16",
                    {"variant": "paper", "size": s.size, "batch": 1}))
    st.append(Stage(f"stabilize_convlstm_nf{lstm_nf}_{wh}", "stabilize", "default", "build_convlstm",
                    lstm_prec, {"nf": lstm_nf, "n_res_blocks": int(lstm.get("n_res_blocks", 5)),
                                "trained": True}))
    st.append(Stage(f"stabilize_flow_blend_{wh}", "stabilize", "default", "build_flow_blend", "none", {}))
    st.append(Stage(f"stabilize_lai_nf32_{wh}", "stabilize", "reference", "build_convlstm", "fp32",
                    {"nf": 32}))
    st.append(Stage(f"stabilize_lai_nf32_{wh}_bf16", "stabilize", "reference", "build_convlstm", "bf16",
                    {"nf": 32}))
    st.append(Stage(f"cartoonize_abstraction_{wh}", "cartoonize", "classical", "build_abstraction", "none",
                    {}))
    st.append(Stage(f"propagate_classical_{wh}", "colorize", "classical", "build_propagation", "none", {}))
    ref_prec = resolve_precision(s.params.get("colorize_reference", {}).get("precision", "auto"), s.device)
    st.append(Stage(f"propagate_refined_{wh}", "colorize", "classical", "build_propagation", ref_prec,
                    {"refined": True}))
    if s.quick:  # compiling takes tens of seconds per network: not for the plumbing check
        return st
    # torch.compile (core/compile.py) of each default network, beside its eager self above
    st.append(Stage(f"colorize_rf{s.rf_default}_compiled", "colorize", "compiled", "build_colorize", col_prec,
                    {"render_factor": s.rf_default, "net": "ours", "batch": col_batch, "compiled": True}))
    st.append(Stage(f"cartoonize_light_{wh}_compiled", "cartoonize", "compiled", "build_cartoonize", cg_prec,
                    {"variant": "light", "size": s.size, "batch": cg_batch, "compiled": True}))
    st.append(Stage(f"stabilize_convlstm_nf{lstm_nf}_{wh}_compiled", "stabilize", "compiled",
                    "build_convlstm",
                    lstm_prec, {"nf": lstm_nf, "n_res_blocks": int(lstm.get("n_res_blocks", 5)),
                                "trained": True, "compiled": True}))
    return st


def pipelines(s: Settings) -> dict[str, list[str]]:
    """The stage entries each whole pipeline chains per frame (colorize -> cartoonize -> stabilize)."""
    wh = s.size_name
    nf = int(s.params.get("convlstm", {}).get("nf", 16))
    ref = [f"colorize_deoldify_rf{s.rf_reference}", f"cartoonize_paper_{wh}", f"stabilize_lai_nf32_{wh}"]
    return {
        "default": [f"colorize_rf{s.rf_default}", f"cartoonize_light_{wh}",
                    f"stabilize_convlstm_nf{nf}_{wh}"],
        "default_flow_blend": [f"colorize_rf{s.rf_default}", f"cartoonize_light_{wh}",
                               f"stabilize_flow_blend_{wh}"],
        "reference": ref,
        "reference_bf16": [f"{name}_bf16" for name in ref],
        "reference_same_render_factor": [f"colorize_deoldify_rf{s.rf_default}", *ref[1:]],
    }


# ---------------------------------------------------------------------------------------------------------
# inputs


def film_frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` RGB uint8 frames (H, W, 3) of the demo clip resized to ``size`` = (W, H); real content so that
    the flow and the data-dependent paths behave as on a film. Falls back to smooth noise without data/."""
    from deeperfour.film.video import read_frames

    src = DATA / "samples" / "video" / "bikes.mp4"
    frames: list[np.ndarray] = []
    if src.exists():
        for f in read_frames(src, stop=n):
            frames.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    rng = np.random.default_rng(0)
    while len(frames) < n:
        noise = rng.random((size[1] // 8 + 1, size[0] // 8 + 1, 3)).astype(np.float32)
        smooth = cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC).clip(0, 1)
        frames.append((smooth * 255).astype(np.uint8))
    return frames


# ---------------------------------------------------------------------------------------------------------
# builders: one per kind of stage; each returns the Work its process times


def build_colorize(s: Settings, render_factor: int, net: str, batch: int, precision: str,
                   compiled: bool = False, encoder: str | None = None) -> Work:
    """Our colorizer (the trained checkpoint when present) or DeOldify's video generator, through the same
    ``colorize_frames`` path: stretch to 16 rf px, predict chroma, recombine with the full-size luma.
    ``encoder``: one colorizer with that encoder and the configured width, random weights (the same
    compute as a trained one): the encoders side by side (issue 17)."""
    from deeperfour.infer.colorize import DeOldifyChroma, colorize_frames
    from deeperfour.models.colorizer import (
        ColorizerConfig,
        ColorizerEnsemble,
        build_colorizer,
        load_colorizer,
    )
    from deeperfour.models.deoldify import DeOldifyConfig, build_deoldify

    weights, scale, which = "random", 1.0, net
    if which == "ours" and encoder is not None:
        net = build_colorizer(ColorizerConfig(width=int(s.params["colorize"]["width"]), encoder=encoder),
                              pretrained=False)
        name = f"DeeperFour colorizer ({encoder} U-Net, width {net.config.width}, one model)"
    elif which == "ours":
        ckpt = BUILD / "colorize" / "colorizer.pt"
        if ckpt.exists():
            net, extra = load_colorizer(ckpt)
            weights, scale = "trained", float(extra.get("chroma_scale", 1.0))
        else:
            net = build_colorizer(ColorizerConfig(width=int(s.params["colorize"]["width"])), pretrained=False)
        name = f"DeeperFour colorizer ({net_encoder(net)} U-Net, width {net_config(net).width}" + (
            f", mean of {len(net.members)} seeds)" if isinstance(net, ColorizerEnsemble) else ")")
    elif which == "deoldify":
        # real construction on the CPU (no meta device): the 218 M parameters are allocated and initialized
        cfg = DeOldifyConfig(arch="wide", resnet=18, body_width=8, nf=64) if s.quick else "video"
        gen = build_deoldify(cfg)
        net = DeOldifyChroma(gen)
        name = "DeOldify video generator (ResNet101 wide)" + (" [tiny: quick mode]" if s.quick else "")
    else:
        raise ValueError(f"unknown colorizer {which!r}")
    net = _compiled(net.to(s.device).eval(), compiled)
    frames = film_frames(batch, s.size)

    def step():
        return list(colorize_frames(net, frames, render_factor, chroma_scale=scale, device=s.device,
                                    batch=batch, precision=precision))

    return Work(step, batch, name, bench_params(net), weights, batch, _first_call(step, compiled))


def net_config(net: torch.nn.Module):
    """The ColorizerConfig of a colorizer or of an ensemble's first member."""
    return net.members[0].config if hasattr(net, "members") else net.config


def net_encoder(net: torch.nn.Module) -> str:
    return net_config(net).encoder


def build_cartoonize(s: Settings, variant: str, size: tuple[int, int], batch: int, precision: str,
                     compiled: bool = False) -> Work:
    """A CartoonGAN generator on a batch of RGB frames through ``cartoonize_batch``, the films' one path
    (uint8 -> [-1, 1] channels-last -> generator under autocast -> uint8); the trained light generator
    when its checkpoint is present."""
    from deeperfour.infer.cartoonize import cartoonize_batch
    from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator

    weights = "random"
    styles = str(s.params["train_cartoongan"]["styles"]).split(",")
    ckpt = BUILD / "train_cartoongan" / styles[0].strip() / "generator.pt"
    net = None
    if ckpt.exists():
        trained = CartoonGenerator.from_checkpoint(ckpt)
        if trained.cfg.variant == variant:
            net, weights = trained, "trained"
    if net is None:
        net = CartoonGenerator(CartoonGANConfig(variant=variant))
    net = _compiled(net.to(s.device).eval(), compiled)
    x_u8 = np.stack(film_frames(batch, size))  # (B, H, W, 3)

    def step():
        return cartoonize_batch(net, x_u8, s.device, precision)  # (B, H, W, 3) uint8, the films' hot path

    label = {"light": "light (resize-conv, 4 res blocks)", "paper": "paper (deconv, 8 res blocks)"}[variant]
    return Work(step, batch, f"CartoonGAN {label}", bench_params(net), weights, batch,
                _first_call(step, compiled))


def _cycling(frames: list[np.ndarray], sources: list[np.ndarray],
             fn: Callable[[np.ndarray, np.ndarray], Any]) -> Callable[[], Any]:
    """A step() that feeds the next (frame, source) pair on each call, so a stabilizer sees a moving film."""
    state = {"i": 0}

    def step():
        i = state["i"] % len(frames)
        state["i"] += 1
        return fn(frames[i], sources[i])

    return step


def build_convlstm(s: Settings, nf: int, precision: str, n_res_blocks: int = 5,
                   trained: bool = False, compiled: bool = False) -> Work:
    """Lai et al.'s recurrent network one frame at a time (``ConvLSTMStabilizer``), state carried along;
    ``trained``: the stage ``convlstm`` checkpoint when present and of this width (else random weights)."""
    from deeperfour.film.color import luminance
    from deeperfour.infer.stabilize import ConvLSTMStabilizer
    from deeperfour.models.convlstm import ConvLSTMConfig, TemporalConsistencyNet

    net, weights = TemporalConsistencyNet(ConvLSTMConfig(nf=nf, n_res_blocks=n_res_blocks)), "random"
    ckpt = BUILD / "convlstm" / "convlstm.pt"
    if trained and ckpt.exists():
        loaded = TemporalConsistencyNet.from_checkpoint(ckpt)
        if (loaded.config.nf, loaded.config.n_res_blocks) == (nf, n_res_blocks):
            net, weights = loaded, "trained"
    stab = ConvLSTMStabilizer(_compiled(net, compiled), s.device, precision)
    frames = film_frames(8, s.size)
    sources = [luminance(f) for f in frames]
    step = _cycling(frames, sources, stab.step)
    step()  # the first frame of a shot is returned as is: start the state so every timed call runs the net
    name = f"Lai et al. ConvLSTM net (nf {nf}, {n_res_blocks} res blocks)"
    return Work(step, 1, name, bench_params(net), weights, compile_s=_first_call(step, compiled))


def build_flow_blend(s: Settings, precision: str) -> Work:
    """The classical stabilizer: two DIS flows on the B&W frames, occlusion mask, blend of the warped past."""
    from deeperfour.film.color import luminance
    from deeperfour.infer.stabilize import FlowBlend

    blend = FlowBlend()
    frames = film_frames(8, s.size)
    sources = [luminance(f) for f in frames]
    step = _cycling(frames, sources, blend.step)
    step()
    return Work(step, 1, "flow blend (OpenCV DIS medium, x2 per frame)", None, "none")


def build_abstraction(s: Settings, precision: str) -> Work:
    """The classical cartoon (Winnemoeller et al. 2006), streaming: bilateral, quantization, flow-guided
    DoG edges."""
    from deeperfour.film.color import luminance
    from deeperfour.infer.abstraction import AbstractionCartoonizer

    cartoonizer = AbstractionCartoonizer()
    frames = film_frames(8, s.size)
    sources = [luminance(f) for f in frames]
    step = _cycling(frames, sources, cartoonizer.step)
    step()  # the shot's first frame fixes its quantization levels; timed calls carry the flow-guided edges
    return Work(step, 1, "abstraction (Winnemoeller et al. 2006; OpenCV)", None, "none")


def build_propagation(s: Settings, precision: str, n: int = 24, refined: bool = False) -> Work:
    """Reference colorization: one shot of ``n`` frames colored from its first frame (flow both ways,
    confidence, Levin fill; ``refined``: plus the learned refiner, the trained one of stage
    colorize_reference when present, else an untrained one of the same size: same cost), all passes
    included; ``frames`` per call = ``n``."""
    from deeperfour.core.config import BUILD
    from deeperfour.core.precision import resolve_precision
    from deeperfour.infer.propagate import Refiner, propagate
    from deeperfour.models.propagation_refiner import PropagationRefiner, RefinerConfig

    frames = film_frames(n, s.size)
    refiner, what = None, "classical (DIS medium, Levin fill at 160 px)"
    if refined:
        trained = BUILD / "colorize_reference" / "refiner.pt"
        width = int(s.params.get("colorize_reference", {}).get("refiner_width", 24))
        model = (PropagationRefiner.from_checkpoint(trained) if trained.is_file()
                 else PropagationRefiner(RefinerConfig(width=width)))
        prec = resolve_precision(precision, torch.device(s.device))
        refiner, what = Refiner(model, s.device, prec), f"classical + refiner ({prec})"

    def step():
        for _ in propagate(frames, [0], {0: frames[0]}, refiner=refiner):
            pass

    return Work(step, n, f"reference propagation, {what}", None, "none")


def bench_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------------------
# what runs inside each fresh process


def _start_process(s: Settings) -> None:
    """Same runtime in every stage process: threads, seed, no autograd."""
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    if s.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _memory(s: Settings) -> dict[str, Any]:
    out = {"peak_memory_mb": bench.max_rss_mb()}
    if s.device.startswith("cuda"):
        out["cuda_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure_stage(stage: Stage, s: Settings) -> dict[str, Any]:
    """Build the stage, count its FLOPs on one call, warm up, time it; report fps, FLOPs and memory."""
    _start_process(s)
    baseline = bench.current_rss_mb()  # the interpreter, torch and OpenCV, before any model exists
    t0 = time.perf_counter()
    work: Work = globals()[stage.builder](s, precision=stage.precision, **stage.kwargs)
    build_s = time.perf_counter() - t0
    flops, _ = (None, None) if work.compile_s is not None else bench.count_flops(work.step)  # untimed
    times = bench.time_calls(work.step, repeats=1, warmup=s.warmup, device=s.device)
    n = bench.repeats_for(times[0], s.budget_s, s.min_repeats, s.max_repeats)
    times += bench.time_calls(work.step, repeats=n - 1, warmup=0, device=s.device)
    seconds = bench.median(times)
    # the default nets are always profiled (one extra call): their fraction of peak is judged, and a stage
    # below the goal must show where its time goes
    profiled = s.profile or (stage.family == "default" and stage.builder != "build_flow_blend")
    top_ops = bench.top_ops(work.step, device=s.device) if profiled else None
    return {
        "group": stage.group, "family": stage.family, "model": work.model, "weights": work.weights,
        "params_m": None if work.params is None else work.params / 1e6, "precision": stage.precision,
        "device": s.device, "threads": torch.get_num_threads(), "batch": work.batch,
        "size": list(stage.kwargs.get("size", s.size)), "config": stage.kwargs,
        "fps": work.frames / seconds, "seconds_per_frame": seconds / work.frames,
        "times_s": [round(t, 5) for t in times], "repeats": len(times), "build_s": build_s,
        "gflop_per_frame": flops / 1e9 / work.frames if flops else None,
        **({"compile_s": work.compile_s} if work.compile_s is not None else {}),
        "baseline_memory_mb": baseline, **_memory(s), **({"top_ops": top_ops} if top_ops else {}),
    }


def measure_peaks(s: Settings) -> dict[str, Any]:
    """The machine's ceilings per precision: best of matmul, conv (NCHW) and conv (channels-last)."""
    _start_process(s)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "device": s.device}
    for prec in ("fp32", "bf16"):
        runs = {
            "matmul": bench.measure_peak("matmul", prec, s.device, s.peak_matmul, s.peak_seconds),
            "conv": bench.measure_peak("conv", prec, s.device, s.peak_conv, s.peak_seconds),
            "conv_channels_last": bench.measure_peak("conv", prec, s.device, s.peak_conv, s.peak_seconds,
                                                     channels_last=True),
        }
        out[prec] = {**runs, "peak_gflops": max(r["gflops"] for r in runs.values())}
    return out


CONVERT_BEFORE = {"colorize": "per-frame"}  # the previous default path: the colorizer on every frame, both
#   films stabilized (today's default: keyframes, propagated), and the learned cartoon style
#   (convert_before adds it; today's default cartoon is the one stage train_cartoongan measured best,
#   which may be the abstraction)


def trained_style(s: Settings) -> str:
    """The stage train_cartoongan's default trained style (the first of ``styles``)."""
    return str(s.params["train_cartoongan"]["styles"]).split(",")[0].strip()


def convert_before(s: Settings) -> dict[str, Any]:
    """The options of the previous default convert path: per-frame colorizer, the learned cartoon style."""
    return {**CONVERT_BEFORE, "style": trained_style(s)}


def run_convert(src: Path, outdir: Path, device: str, log: Callable[[str], None], sections=None,
                **options: Any) -> Any:
    """``deeperfour convert`` on ``src`` at its defaults (precision auto) but ``options``, silent; returns
    its summary."""
    from deeperfour.convert.pipeline import convert

    return convert(src, outdir, device=device, progress=False, log=log, sections=sections, **options)


def measure_convert(src: str, seconds_of_film: float, s: Settings, options: dict | None = None
                    ) -> dict[str, Any]:
    """The whole ``convert`` on one film, in this fresh process: wall time, fps, peak memory.

    The wall time includes loading the models, the shot scan and writing the output films: what a user
    waits for. Both films are long enough (hundreds of frames) for one run to be an average.
    """
    from deeperfour.film.video import probe

    _start_process(s)
    baseline = bench.current_rss_mb()
    info = probe(src)
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp, bench.RSSSampler() as rss:
        t0 = time.perf_counter()
        lines: list[str] = []
        sections = Sections()
        summary = run_convert(Path(src), Path(tmp) / "out", s.device, lambda line: lines.append(str(line)),
                              sections, **(options or {}))
        wall = time.perf_counter() - t0
    n = int(summary["frames"])
    return {"group": "convert", "family": "default", "model": "deeperfour.convert.pipeline (whole pipeline)",
            "options": options or {},
            "device": s.device, "threads": torch.get_num_threads(), "size": [info.width, info.height],
            "film_seconds": seconds_of_film, "film_fps": float(info.fps), "frames": n,
            "fps": n / wall, "seconds_per_frame": wall / n, "wall_s": wall, "repeats": 1,
            "profile_s_per_frame": sections.per_frame(n),  # exclusive seconds per frame of each part
            "gflop_per_frame": None, "precision": resolve_precision("auto", s.device),
            "baseline_memory_mb": baseline, **_memory(s),
            "rss_timeline_mb": rss.timeline(), "rss_growth_second_half_mb": rss.growth(),
            "convert_log": [line for line in lines if not line.lstrip().startswith("/")]}


def synthesize_film(path: Path, seconds: float, fps: int, size: tuple[int, int], n_source: int = 250) -> Path:
    """A B&W film of ``seconds`` at ``fps`` and ``size`` = (W, H): the first ``n_source`` frames of the demo
    clip resized and looped back and forth (H.264), so its content and shot cuts are real."""
    from deeperfour.film.color import gray_to_rgb, luminance
    from deeperfour.film.video import VideoWriter

    frames = [gray_to_rgb(luminance(f)) for f in film_frames(n_source, size)]
    n = int(round(seconds * fps))
    with VideoWriter(path, Fraction(fps), size[0], size[1], lossless=False) as w:
        for i in range(n):
            k = i % (2 * len(frames) - 2)  # ping-pong loop: no jump cut every pass
            w.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    return path


# ---------------------------------------------------------------------------------------------------------
# the run


def summarize(result: dict[str, Any], s: Settings) -> None:
    """Fractions of peak, pipelines, speed-ups and targets, from the measured entries (in place)."""
    peaks = result["peak"]
    stages = result["stages"]
    for name, e in stages.items():  # a compiled entry does the FLOPs of its eager self (not countable inside
        eager = stages.get(name.removesuffix("_compiled"), {})  # the compiled kernels)
        if name.endswith("_compiled") and "fps" in e and eager.get("gflop_per_frame"):
            e["gflop_per_frame"] = eager["gflop_per_frame"]
            e["speedup_vs_eager"] = e["fps"] / eager["fps"]
    for e in stages.values():
        if "fps" not in e:
            continue
        e["memory_above_baseline_mb"] = e["peak_memory_mb"] - e["baseline_memory_mb"]
        peak = peaks.get(e.get("precision"), {}).get("peak_gflops")
        e["achieved_gflops"] = e["gflop_per_frame"] * e["fps"] if e.get("gflop_per_frame") else None
        e["peak_gflops"] = peak if e.get("gflop_per_frame") else None
        e["fraction_of_peak"] = bench.fraction_of_peak(e.get("gflop_per_frame"), e["fps"], peak)
    pipes: dict[str, Any] = {}
    for name, members in pipelines(s).items():
        ok = [m for m in members if stages.get(m, {}).get("fps")]
        entry: dict[str, Any] = {"stages": members}
        if len(ok) == len(members):
            fps = [stages[m]["fps"] for m in members]
            entry.update(fps=bench.pipeline_fps(fps), seconds_per_frame=sum(1 / f for f in fps),
                         gflop_per_frame=sum(stages[m].get("gflop_per_frame") or 0 for m in members))
        else:
            entry["missing"] = sorted(set(members) - set(ok))
        pipes[name] = entry
    result["pipelines"] = pipes

    def ratio(a: str, b: str) -> float | None:
        fa, fb = pipes[a].get("fps"), pipes[b].get("fps")
        return fa / fb if fa and fb else None

    result["speedup_vs_reference"] = ratio("default", "reference")
    per_stage = {}
    for ours, ref in zip(pipes["default"]["stages"], pipes["reference"]["stages"], strict=True):
        if stages.get(ours, {}).get("fps") and stages.get(ref, {}).get("fps"):
            per_stage[ours.split("_")[0]] = stages[ours]["fps"] / stages[ref]["fps"]
    result["speedup_breakdown"] = {
        "per_stage": per_stage,
        "precision_only": ratio("reference_bf16", "reference"),  # same reference nets, bf16 autocast
        "architecture_at_same_precision": ratio("default", "reference_bf16"),
        "same_render_factor": ratio("default", "reference_same_render_factor"),
        "with_flow_blend": ratio("default_flow_blend", "reference"),
    }
    fractions = {n: below_goal_why(e, bench.target(e.get("fraction_of_peak"), PEAK_FRACTION_GOAL))
                 for n, e in stages.items() if e.get("family") == "default" and e.get("group") != "convert"}
    encoders = {e["config"]["encoder"]: {k: e.get(k) for k in ("fps", "gflop_per_frame", "fraction_of_peak")}
                for e in stages.values() if e.get("family") == "encoder" and e.get("fps")}
    if encoders:  # issue 17: the colorizer's encoders side by side, one model each, same decoder width
        result["colorizer_encoders"] = {"render_factor": s.rf_reference, **encoders}
        if {"efficientnet_lite0", "hed_vgg16"} <= set(encoders):
            result["colorizer_encoders"]["efficientnet_over_vgg16_fps"] = (
                encoders["efficientnet_lite0"]["fps"] / encoders["hed_vgg16"]["fps"])
    judged = [t["met"] for t in fractions.values() if t["met"] is not None]
    targets: dict[str, Any] = {
        "speedup_vs_reference": bench.target(result["speedup_vs_reference"], SPEEDUP_GOAL),
        "fraction_of_peak_goal": PEAK_FRACTION_GOAL,
        "fraction_of_peak": {"all_met": all(judged) if judged else None, "stages": fractions,
                             "note": "stages without FLOPs (OpenCV flow) are not judged; CPU target"},
    }
    for name, goal in ((f"cartoonize_abstraction_{s.size_name}", ABSTRACTION_FPS_GOAL),
                       (f"propagate_classical_{s.size_name}", PROPAGATION_FPS_GOAL)):
        if name in stages:  # the classical stages: frames per second at 640x360 (issues 15 and 16)
            targets[f"{name}_fps"] = bench.target(stages[name].get("fps"), goal)
    short, long_ = (f"convert_{s.size_name}_{t}s" for t in s.lengths_s)
    if stages.get(long_, {}).get("profile_s_per_frame"):  # where the longer film's time went
        result["convert_profile"] = stages[long_]["profile_s_per_frame"]
    before = stages.get(f"{long_}_before", {})
    if before.get("fps") and stages.get(long_, {}).get("fps"):  # both measured in this run, same film
        result["convert_speedup"] = stages[long_]["fps"] / before["fps"]
        result["convert_profile_before"] = before.get("profile_s_per_frame")
        targets["convert_speedup"] = {**bench.target(result["convert_speedup"], CONVERT_SPEEDUP_GOAL),
                                      "before": convert_before(s),
                                      "note": "today's defaults against the previous default path "
                                              "(--colorize per-frame, the learned cartoon style), the same "
                                              "640x360 film, one run"}
        same = stages.get(f"{long_}_learned_style", {})
        if same.get("fps"):  # the part of the gain that is not the choice of cartoon
            result["convert_speedup_same_style"] = same["fps"] / before["fps"]
            result["convert_default_style"] = next(
                (line.split(":", 1)[1].split("(")[0].strip() for line in stages[long_].get("convert_log", [])
                 if line.strip().startswith("cartoon style:")), None)
    if stages.get(short, {}).get("peak_memory_mb") and stages.get(long_, {}).get("peak_memory_mb"):
        m_short, m_long = stages[short]["peak_memory_mb"], stages[long_]["peak_memory_mb"]
        allowed = max(MEMORY_GROWTH_MB, 0.05 * m_short)
        t = bench.target(m_long - m_short, allowed, higher_is_better=False)
        targets["convert_memory_flat"] = {**t, "short_mb": m_short, "long_mb": m_long,
                                          "unit": "MB of peak RSS growth from the short to the long film"}
    else:
        targets["convert_memory_flat"] = {**bench.target(None, MEMORY_GROWTH_MB, False),
                                          "note": "convert entries missing"}
    result["targets"] = targets


def below_goal_why(e: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """A fraction-of-peak target, with, when it is missed, where the stage's time goes: the profile of
    one call (its ops with the most self time) and the FLOPs it does per second."""
    if target.get("met") is not False or not e.get("top_ops"):
        return target
    return {**target, "why": {
        "achieved_gflops": e.get("achieved_gflops"), "top_ops": e["top_ops"],
        "note": "the time goes to the ops listed (self-time shares of one profiled call), not to dense "
                "matrix FLOPs: depthwise convolutions, normalizations, activations and copies move memory "
                "and count few FLOPs"}}


def _print_row(name: str, e: dict[str, Any]) -> None:
    if "error" in e:
        print(f"  {name:40s} ERROR {e['error']}", flush=True)
        return
    g = e.get("gflop_per_frame")
    print(f"  {name:40s} {e['fps']:9.2f} fps  {g if g is not None else float('nan'):8.2f} GFLOP/f  "
          f"{e['peak_memory_mb']:7.0f} MB  {e.get('precision', ''):5s} ({e['repeats']} timed)", flush=True)


def run(s: Settings, isolate: bool = True, only: list[str] | None = None, convert: bool = True
        ) -> dict[str, Any]:
    """Measure everything (each stage in its own process) and return the result dictionary."""
    if s.threads:
        torch.set_num_threads(s.threads)
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "schema_version": 1, "quick": s.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": bench.machine_info(),
        "settings": {k: v for k, v in asdict(s).items() if k != "params"},
        "isolated": isolate,
    }
    m = result["machine"]
    print(f"machine: {m['cpu_model']}, {m['torch_threads']} torch threads, load {m['load_average']}",
          flush=True)
    if m["omp_num_threads_env"] and not s.threads:
        print(f"  note: OMP_NUM_THREADS={m['omp_num_threads_env']} limits every stage to that many threads "
              f"(`make bench` unsets it; or pass --threads N)", flush=True)
    result["peak"] = bench.run_isolated(measure_peaks, s, isolate=isolate)
    for prec in ("fp32", "bf16"):
        pk = result["peak"][prec]
        print(f"  peak {prec}: matmul {pk['matmul']['gflops']:.0f}, conv {pk['conv']['gflops']:.0f}, "
              f"conv channels-last {pk['conv_channels_last']['gflops']:.0f} GFLOP/s", flush=True)
    stages: dict[str, Any] = {}
    result["stages"] = stages
    for stage in stage_list(s):
        if only and not any(o in stage.name for o in only):
            continue
        try:
            stages[stage.name] = bench.run_isolated(measure_stage, stage, s, isolate=isolate)
        except Exception as e:  # one broken stage must not lose the others' numbers
            stages[stage.name] = {"group": stage.group, "family": stage.family,
                                  "error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
        _print_row(stage.name, stages[stage.name])
    if convert and (not only or any(o in "convert" for o in only)):
        measure_convert_lengths(s, stages, isolate)
    summarize(result, s)
    result["run_seconds"] = time.perf_counter() - t_start
    return result


def measure_convert_lengths(s: Settings, stages: dict[str, Any], isolate: bool) -> None:
    """``convert`` on a short and a long synthesized film (same size): fps, and peak memory vs length."""
    runs = [(f"convert_{s.size_name}_{t}s", t, None) for t in s.lengths_s]
    runs.append((f"convert_{s.size_name}_{s.lengths_s[-1]}s_before", s.lengths_s[-1], convert_before(s)))
    runs.append((f"convert_{s.size_name}_{s.lengths_s[-1]}s_learned_style", s.lengths_s[-1],
                 {"style": trained_style(s)}))  # today's path with the previous (learned) cartoon
    with tempfile.TemporaryDirectory(prefix="bench-films-") as tmp:
        for name, seconds, options in runs:
            film = Path(tmp) / f"film_{seconds}s.mp4"
            if not film.exists():
                synthesize_film(film, seconds, s.length_fps, s.size, n_source=20 if s.quick else 250)
            try:
                stages[name] = bench.run_isolated(measure_convert, str(film), seconds, s, options,
                                                  isolate=isolate)
            except Exception as e:
                stages[name] = {"group": "convert", "family": "default", "error": f"{type(e).__name__}: {e}"}
                traceback.print_exc()
            _print_row(name, stages[name])


def write_json(result: dict[str, Any], path: Path) -> Path:
    """Atomic write (temp file then rename); NaN/inf become null so the file is strict JSON."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(clean(result), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 timed call (plumbing check only)")
    ap.add_argument("--out", type=Path, default=REPORTS / "benchmarks.json", help="result JSON")
    ap.add_argument("--figure", type=Path, default=None,
                    help="PNG (default: reports/figures/benchmarks/benchmarks.png for the default --out, "
                         "else next to --out)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per stage; 0 = torch's default")
    ap.add_argument("--budget", type=float, default=None, help="timed seconds per stage (3-10 calls)")
    ap.add_argument("--length-fps", type=int, default=None,
                    help="frame rate of the 10 s / 60 s convert films")
    ap.add_argument("--only", nargs="*", help="run only stages whose name contains one of these strings")
    ap.add_argument("--no-convert", action="store_true", help="skip the convert entries")
    ap.add_argument("--profile", action="store_true",
                    help="record each stage's 6 most expensive torch ops (one extra profiled call)")
    ap.add_argument("--no-isolate", action="store_true",
                    help="run stages in this process (faster; peak memory then accumulates across stages)")
    args = ap.parse_args(argv)

    from deeperfour.core.config import pick_device

    kw: dict[str, Any] = {"device": str(pick_device(args.device)), "threads": args.threads,
                          "profile": args.profile}
    s = Settings.make(args.quick, **kw)
    if args.budget is not None:
        s = replace(s, budget_s=args.budget)
    if args.length_fps is not None:
        s = replace(s, length_fps=args.length_fps)
    result = run(s, isolate=not args.no_isolate, only=args.only, convert=not args.no_convert)
    out = write_json(result, args.out)
    figure = args.figure
    if figure is None:
        default_out = (REPORTS / "benchmarks.json").resolve()
        figure = (REPORTS / "figures" / "benchmarks" / "benchmarks.png" if args.out.resolve() == default_out
                  else args.out.with_suffix(".png"))
    from deeperfour.report.figures import save

    save(bench.benchmark_figure(result), figure)
    speed = result["speedup_vs_reference"]
    print(f"speed-up vs reference at {s.size_name}: " + (f"{speed:.2f}x" if speed else "n/a")
          + f" (target {SPEEDUP_GOAL:g}x); wrote {out} and {figure} in {result['run_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
