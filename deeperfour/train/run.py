"""Run a stage's training on its own, in one process or data-parallel under ``torchrun``.

::

    python -m deeperfour.train.run colorize                                          # one process
    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run colorize        # 2 processes (gloo)
    torchrun --standalone --nproc-per-node 4 -m deeperfour.train.run train_cartoongan --set batch=8
    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run temporal_loss   # Ruder fine-tuning
    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run convlstm        # Lai et al.'s net

Stages and what they read: ``colorize`` (sample data), ``train_cartoongan`` (``prepare_datasets``),
``temporal_loss`` (the style's ``generator.pt`` of ``train_cartoongan`` and the training clips in
``out_dir/clips``; clips missing there are built first, as notebook 04 builds them, from the colorizer
of ``colorize``), ``convlstm`` (the clips of ``temporal_loss``). Each stage's global ``batch`` must be a
multiple of the number of processes.

The parameters are the stage notebook's: its ``params.yaml`` section, plus the notebook's path
defaults (``out_dir``, ``data_dir`` / ``datasets_dir``), each overridable with ``--set key=value``
(value parsed as JSON, else taken as a string). The inputs are built and the training function
called exactly as in the notebook, so the checkpoint is the one the notebook would write: run the
notebook afterwards on the same ``out_dir`` and it finds the finished checkpoint and goes straight on
to inference and metrics. (``dvc repro`` empties a stage's outputs first; from a notebook, ``launch``
runs this module under torchrun within the stage.)

Add a stage: a function ``(params, ctx, progress) -> None`` in ``STAGES``, its path defaults in ``PATHS``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deeperfour.core import config
from deeperfour.core.precision import budget_steps, resolve_precision
from deeperfour.train import distributed

PATHS = {  # the notebooks' path parameters (relative to the repository root)
    "colorize": {"data_dir": "data", "out_dir": "build/colorize"},
    "train_cartoongan": {"datasets_dir": "build/prepare_datasets", "out_dir": "build/train_cartoongan"},
    "temporal_loss": {"data_dir": "data", "colorize_dir": "build/colorize",
                      "cartoon_dir": "build/train_cartoongan", "out_dir": "build/temporal_loss"},
    "convlstm": {"clips_dir": "build/temporal_loss/clips", "out_dir": "build/convlstm"},
}


STEP_KEYS = {  # each stage's training-step counts: shortened by its fp32_steps share where fp32 runs
    "colorize": ("steps_frozen", "steps_unfrozen", "steps_critic", "steps_gan"),
    "train_cartoongan": ("init_steps", "paper_init_steps", "gan_steps"),
    "temporal_loss": ("steps",),
    "convlstm": ("steps",),
}


def scheduled(stage: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """``p`` (precision resolved) with the stage's step counts for that precision, as its notebook
    takes them (``budget_steps``): the full schedule in bf16, the ``fp32_steps`` share in fp32."""
    keys = [k for k in STEP_KEYS.get(stage, ()) if k in p]
    steps = budget_steps(p["precision"], float(p.get("fp32_steps", 1.0)), *(p[k] for k in keys))
    return {**p, **dict(zip(keys, steps, strict=True))}


def stage_params(stage: str, params_path: str | Path | None = None,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Path defaults + the stage's ``params.yaml`` section + ``overrides`` (known keys only)."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    p = {**PATHS.get(stage, {}), **config.load_params(stage, params_path)}
    unknown = sorted(set(overrides or {}) - set(p))
    if unknown:
        raise KeyError(f"{stage}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(p)})")
    return {**p, **(overrides or {})}


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["steps_gan=40", "precision=fp32"]`` -> {"steps_gan": 40, "precision": "fp32"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# stages (each mirrors its notebook's training cell)


def run_colorize(p: Mapping[str, Any], ctx: distributed.DistContext, progress: bool = True) -> None:
    """NoGAN training of the colorizer (``ensemble`` seeds) into ``out_dir`` (as notebook 01)."""
    from deeperfour.data.colorizer_crops import load_training_images
    from deeperfour.models.colorizer import ColorizerConfig
    from deeperfour.train.colorizer import NoGANConfig, train_ensemble

    if p["weights"]:
        raise ValueError(f"colorize.weights = {p['weights']!r}: released weights are used, nothing to train")
    images, groups = load_training_images(config.resolve(p["data_dir"]), clip_stride=p["clip_stride"],
                                          video_stride=p["video_stride"])
    model_cfg = ColorizerConfig(width=p["width"], encoder=p["encoder"], encoder_weights=p["encoder_weights"])
    train_ensemble(images, config.resolve(p["out_dir"]), model_cfg, NoGANConfig.from_params(p),
                   range(p["seed"], p["seed"] + p["ensemble"]), device=ctx.device, groups=groups,
                   progress=progress)


def run_train_cartoongan(p: Mapping[str, Any], ctx: distributed.DistContext, progress: bool = True) -> None:
    """CartoonGAN training of every style into ``out_dir/<style>/`` (as notebook 03)."""
    from deeperfour.data import style_datasets as cartoon_data
    from deeperfour.models.features import load_hed_vgg16
    from deeperfour.train.cartoongan import TrainConfig, train

    datasets_dir, out_dir = config.resolve(p["datasets_dir"]), config.resolve(p["out_dir"])
    vgg = load_hed_vgg16().to(ctx.device)
    photos = cartoon_data.load_photos(datasets_dir, "train")
    test_photos = cartoon_data.load_photos(datasets_dir, "test")
    grid = test_photos[np.linspace(0, len(test_photos) - 1, p["n_preview"]).astype(int)]
    for style in [s.strip() for s in str(p["styles"]).split(",") if s.strip()]:
        cartoons, smoothed = cartoon_data.load_style(datasets_dir, style)
        r = train(TrainConfig.from_params(p, style), photos, cartoons, smoothed, grid, vgg, out_dir / style,
                  device=ctx.device, progress=progress)
        if ctx.is_main:
            print(f"{style}: {r.steps} steps, resumed from {r.resumed_from}, {r.seconds:.0f} s")


def temporal_clips(p: Mapping[str, Any], ctx: distributed.DistContext, base, progress: bool = True) -> list:
    """The training clips of ``clip_videos``, in that order (as notebook 04 holds them), from
    ``out_dir/clips``. Clips missing there are built as notebook 04 builds them (rank 0 builds, the other
    ranks wait); existing ones are used as they are (the notebook rebuilds every clip; if one differs,
    e.g. after a change of ``clip_max_side``, its resume check trains again from scratch)."""
    from deeperfour.train.clips import Clip, build_clip

    clips_dir = config.resolve(p["out_dir"]) / "clips"
    videos = [v.strip() for v in str(p["clip_videos"]).split(",") if v.strip()]
    paths = [clips_dir / f"{Path(v).stem}.npz" for v in videos]
    missing = [v for v, path in zip(videos, paths, strict=True) if not path.is_file()]
    if missing and ctx.is_main:
        from deeperfour.models.colorizer import load_colorizer

        colorizer, info = load_colorizer(config.resolve(p["colorize_dir"]) / "colorizer.pt", ctx.device)
        for v in missing:
            clip = build_clip(config.resolve(p["data_dir"]) / "samples" / "video" / v, colorizer, base,
                              info["render_factor"], info["chroma_scale"], max_side=p["clip_max_side"],
                              max_frames=p["clip_max_frames"], device=ctx.device, precision=p["precision"],
                              progress=progress)
            print(f"{clip.name}: {len(clip)} frames -> {clip.save(clips_dir / f'{clip.name}.npz')}")
    ctx.barrier()  # the other ranks load the clips rank 0 has written
    return [Clip.load(path) for path in paths]


def run_temporal_loss(p: Mapping[str, Any], ctx: distributed.DistContext, progress: bool = True) -> None:
    """Ruder et al.'s temporal-loss fine-tuning of the ``style`` generator into ``out_dir`` (notebook 04)."""
    from deeperfour.models.cartoongan import CartoonGenerator
    from deeperfour.models.features import load_hed_vgg16
    from deeperfour.train.temporal_loss import TemporalLossConfig, finetune_temporal

    base_file = config.resolve(p["cartoon_dir"]) / p["style"] / "generator.pt"
    base = CartoonGenerator.from_checkpoint(base_file, ctx.device).eval()
    clips = temporal_clips(p, ctx, base, progress)
    features = load_hed_vgg16().freeze().to(ctx.device)
    cfg, out_dir = TemporalLossConfig.from_params(p), config.resolve(p["out_dir"])
    r = finetune_temporal(base, clips, features, cfg, out_dir, ctx.device, progress=progress)
    if ctx.is_main:
        print(f"temporal_loss: {r.steps} steps, resumed from {r.resumed_from}, {r.seconds:.0f} s")


def run_convlstm(p: Mapping[str, Any], ctx: distributed.DistContext, progress: bool = True) -> None:
    """Lai et al.'s stabilizer trained on the ``temporal_loss`` clips into ``out_dir`` (as notebook 05)."""
    from deeperfour.models.features import load_hed_vgg16
    from deeperfour.train.clips import load_clips
    from deeperfour.train.convlstm import ConvLSTMTrainConfig, train_convlstm

    clips = load_clips(config.resolve(p["clips_dir"]))
    features = load_hed_vgg16().freeze().to(ctx.device)
    cfg, out_dir = ConvLSTMTrainConfig.from_params(p), config.resolve(p["out_dir"])
    r = train_convlstm(clips, features, cfg, out_dir, ctx.device, progress=progress)
    if ctx.is_main:
        print(f"convlstm: {r.steps} steps, resumed from {r.resumed_from}, {r.seconds:.0f} s")


STAGES: dict[str, Callable[..., None]] = {"colorize": run_colorize, "train_cartoongan": run_train_cartoongan,
                                          "temporal_loss": run_temporal_loss, "convlstm": run_convlstm}


# ----------------------------------------------------------------------------------------------
# entry points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deeperfour.train.run", description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=sorted(STAGES))
    ap.add_argument("--params", help="params file (default: the repository's params.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a stage parameter (repeatable), e.g. --set steps_gan=40")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        p = stage_params(args.stage, args.params, parse_set(args.set))
    except (KeyError, ValueError) as e:
        ap.error(str(e).strip("'\""))
    ctx = distributed.init_from_env(p.get("device", "auto"))
    # auto -> bf16 | fp32 on this device, decided once: the checkpoints record the resolved value
    p = scheduled(args.stage, {**p, "precision": resolve_precision(p.get("precision", "auto"), ctx.device)})
    try:
        config.seed_everything(p["seed"])
        if ctx.is_main:
            print(f"{args.stage}: {ctx.world_size} process(es), {ctx.backend or 'no process group'}, "
                  f"device {ctx.device}, {p['precision']}")
        STAGES[args.stage](p, ctx, progress=not args.quiet)
    except BaseException:
        distributed.cleanup(wait=False)  # the other ranks may be stuck in a collective: torchrun ends them
        raise
    distributed.cleanup()
    return 0


def launch_command(stage: str, nproc: int = 1, params_path: str | Path | None = None, quiet: bool = False,
                   **overrides: Any) -> list[str]:
    """The command line that trains ``stage`` in ``nproc`` processes (``torchrun --standalone``; a plain
    ``python -m`` for 1), overrides passed as ``--set key=<JSON>``."""
    cmd = [sys.executable, "-m", "deeperfour.train.run"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "deeperfour.train.run"]
    cmd += [stage, *(["--params", str(params_path)] if params_path else []), *(["--quiet"] if quiet else [])]
    return cmd + [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def launch(stage: str, nproc: int = 1, params_path: str | Path | None = None, quiet: bool = False,
           **overrides: Any) -> None:
    """Train ``stage`` in ``nproc`` processes and return when done (raises on failure). From a notebook,
    before its in-process training call, which then finds the finished checkpoint: e.g.
    ``launch("colorize", nproc, out_dir=str(out_dir), data_dir=str(data_dir))`` (the other parameters
    come from params.yaml; if they differ from the notebook's, the notebook trains again from scratch)."""
    subprocess.run(launch_command(stage, nproc, params_path, quiet, **overrides), check=True, cwd=config.ROOT)


if __name__ == "__main__":
    sys.exit(main())
