"""``make gpu-check``: one prepared script for a machine with a CUDA GPU (issue 19), under 8 minutes.

Steps, each timed, each recorded in ``reports/benchmarks-gpu.json`` with its status, and each allowed to
fail without stopping the others (the JSON then says which and why):

1. ``parity``: the colorizer, the light cartoon generator and the ConvLSTM (trained ones from ``build/``
   when present, else random of the pipeline's size) on the same input on the CPU (fp32) and on CUDA (fp32,
   bf16, and fp32 compiled): the largest difference in 8-bit levels;
2. ``fast_tests``: the fast test tier (``pytest -m "not integration"``) on this machine's install;
3. ``stage``: the ``convlstm`` stage's training loop, shortened to ``--stage-steps`` steps at the sizes of
   ``profiles/gpu.yaml``, on CUDA, on the stage's training clips when ``dvc repro`` made them, else on
   clips cut from the sample video;
4. ``convert``: ``deeperfour convert`` on the demo film with ``--device cuda`` (needs the trained models
   in ``build/``);
5. ``bench``: ``benchmarks.run --device cuda`` (without its convert films).

Without CUDA it says so in one line and exits 2: nothing here emulates a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _step(name: str, fn: Callable[[], Any], out: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    try:
        out[name] = {"status": "ok", **(fn() or {})}
    except Exception as e:  # one failed step must not hide the others' results
        out[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                     "trace": traceback.format_exc(limit=4)}
    out[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"gpu-check {name}: {out[name]['status']} ({out[name]['seconds']} s)", flush=True)


def _levels(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max()) * scale


def parity() -> dict[str, Any]:
    """CPU fp32 against CUDA fp32 / bf16 / compiled fp32, in 8-bit levels."""
    from deeperfour.core.compile import compile_module
    from deeperfour.core.config import BUILD
    from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator
    from deeperfour.models.colorizer import ColorizerConfig, build_colorizer, load_colorizer
    from deeperfour.models.convlstm import ConvLSTMConfig, StreamState, TemporalConsistencyNet

    torch.manual_seed(0)
    col, lstm = BUILD / "colorize" / "colorizer.pt", BUILD / "convlstm" / "convlstm.pt"
    cg = BUILD / "train_cartoongan" / "bunny" / "generator.pt"

    def rand(*shape: int, seed: int) -> torch.Tensor:
        return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))

    gray, frame = rand(1, 1, 192, 192, seed=1), rand(1, 3, 360, 640, seed=3)
    rgb = rand(1, 3, 360, 640, seed=2) * 2 - 1
    nets = {  # name: (network, call(network, device), levels per output unit)
        "colorizer": (load_colorizer(col)[0] if col.exists()
                      else build_colorizer(ColorizerConfig(width=64), pretrained=False),
                      lambda m, d: m(gray.to(d)), 127.5),
        "cartoon_light": (CartoonGenerator.from_checkpoint(cg) if cg.exists()
                          else CartoonGenerator(CartoonGANConfig(variant="light")),
                          lambda m, d: m(rgb.to(d)), 127.5),
        "convlstm": (TemporalConsistencyNet.from_checkpoint(lstm) if lstm.exists()
                     else TemporalConsistencyNet(ConvLSTMConfig(nf=16)),
                     lambda m, d: m.step(*(frame.to(d),) * 4, StreamState())[0], 255.0),
    }
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    with torch.inference_mode():
        for name, (net, call, scale) in nets.items():
            net = net.eval()
            ref = call(net.cpu(), "cpu")
            gpu = net.cuda()
            fp32 = call(gpu, "cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = call(gpu, "cuda")
            compiled = call(compile_module(gpu), "cuda")
            out[name] = {"fp32_levels": _levels(ref, fp32, scale), "bf16_levels": _levels(ref, bf16, scale),
                         "compiled_fp32_levels": _levels(fp32, compiled, scale)}
    return out


def run(cmd: list[str], timeout: float) -> dict[str, Any]:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {p.returncode}: {(p.stdout + p.stderr)[-800:]}")
    return {"command": " ".join(cmd), "tail": (p.stdout + p.stderr)[-400:]}


def stage(steps: int) -> dict[str, Any]:
    """The convlstm stage's training loop, ``steps`` steps at the GPU profile's sizes, on CUDA."""
    import tempfile

    import yaml

    from deeperfour.core.config import BUILD, DATA, load_params
    from deeperfour.models.features import load_hed_vgg16
    from deeperfour.train.clips import Clip, load_clips
    from deeperfour.train.convlstm import ConvLSTMTrainConfig, train_convlstm

    params = {**load_params("convlstm"), **yaml.safe_load((ROOT / "profiles" / "gpu.yaml").read_text())
              .get("convlstm", {}), "steps": steps, "device": "cuda"}
    cfg = ConvLSTMTrainConfig.from_params(params)
    clips_dir = BUILD / "temporal_loss" / "clips"
    if clips_dir.is_dir():
        clips = load_clips(clips_dir)
    else:  # no `dvc repro` here: the sample video itself as both per-frame results (real frames, real flow)
        from deeperfour.film.color import luminance
        from deeperfour.film.video import read_frames

        video = read_frames(DATA / "samples" / "video" / "bikes.mp4")
        frames = np.stack([f for _, f in zip(range(40), video, strict=False)])
        clips = [Clip("bikes", np.stack([luminance(f) for f in frames]), frames, frames, [0])]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_convlstm(clips, load_hed_vgg16().freeze().cuda(), cfg, tmp, torch.device("cuda"))
        return {"steps": result.steps, "s_per_step": (time.perf_counter() - t0) / max(result.steps, 1),
                "config": {k: params[k] for k in ("nf", "crop", "batch", "clip_len")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks-gpu.json"))
    ap.add_argument("--stage-steps", type=int, default=30)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); run it on one",
              file=sys.stderr)
        return 2
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name(0)}
    py = sys.executable
    _step("parity", parity, out)
    _step("fast_tests", lambda: run([py, "-m", "pytest", "-q", "-x", "-m", "not integration"], 240), out)
    _step("stage", lambda: stage(args.stage_steps), out)
    film = ROOT / "data" / "samples" / "video" / "bikes.mp4"
    build = ROOT / "build" / "colorize" / "colorizer.pt"
    if build.exists():
        cmd = [py, "-m", "deeperfour", "convert", str(film), "-o", str(ROOT / "build" / "gpu-check"),
               "--device", "cuda", "--quiet"]
        _step("convert", lambda: run(cmd, 180), out)
    else:
        out["convert"] = {"status": "skipped", "why": f"no trained models ({build}): run `make repro` first"}
    stages_json = Path(args.out).with_name("benchmarks-gpu-stages.json")
    _step("bench", lambda: run([py, "-m", "benchmarks.run", "--device", "cuda", "--no-convert", "--out",
                                str(stages_json)], 300), out)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    failed = [k for k, v in out.items() if isinstance(v, dict) and v.get("status") == "failed"]
    print(f"gpu-check: wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main())
