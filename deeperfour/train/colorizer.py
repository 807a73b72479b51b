"""NoGAN training of the colorizer, as DeOldify does it (reference §1), resumable at any step.

Phases, run in order (one global step counter, logged with dvclive):

1. ``gen_frozen``   generator pretraining with the feature loss, pretrained encoder frozen,
                    at the first (small) image size;
2. ``gen_unfrozen`` the same with the encoder unfrozen (lower learning rate), at the next size:
                    progressive sizes with the same layers (Karras et al., as DeOldify);
3. ``critic``       critic pretraining as a real/fake classifier on generator outputs;
4. ``gan``          a short GAN phase: hinge losses (paper Eqs. 1-2), Adam betas (0, 0.9), the
                    critic's learning rate a multiple of the generator's (two time-scale update
                    rule, Heusel et al.); the generator keeps its feature loss.

A checkpoint (model, critic, optimizers, sampler and RNG states, config) is written every
``checkpoint_every`` steps and at every phase end; a new run resumes from it exactly.

Under ``torchrun`` (``deeperfour.train.distributed``) each rank takes its slice of the same global
batch, G and the critic are DistributedDataParallel (G re-wrapped at each phase, since freezing
changes its trainable set), batch norm and the critic's dropout see the global batch, logged losses
are averaged over the ranks, and rank 0 writes the checkpoint, which resumes on any number of ranks.

``train_ensemble`` runs this schedule once per seed (each member resumable in its own folder) and
returns the members as one ``ColorizerEnsemble`` (their chroma averaged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from deeperfour.core.precision import autocast
from deeperfour.data.colorizer_crops import CropSampler
from deeperfour.film.color import yuv_to_rgb_t
from deeperfour.losses.colorize import feature_loss, hinge_critic_loss, hinge_generator_loss
from deeperfour.models.colorizer import (
    Colorizer,
    ColorizerConfig,
    ColorizerEnsemble,
    Critic,
    build_colorizer,
    save_colorizer,
)
from deeperfour.models.features import VGG16Features, build_features
from deeperfour.train import distributed
from deeperfour.train.common import Checkpointer, LossLog, read_curves, set_rng_state


@dataclass
class NoGANConfig:
    """The training schedule (a ``colorize`` params sub-dict maps onto it)."""

    sizes: tuple[int, int] = (64, 128)  # progressive image sizes: phase 1, phases 2-4 (px)
    batch: tuple[int, int] = (16, 8)  # batch size at each size
    steps_frozen: int = 300  # phase 1 steps
    steps_unfrozen: int = 100  # phase 2 steps
    steps_critic: int = 60  # phase 3 steps
    steps_gan: int = 40  # phase 4 steps
    lr: float = 1e-3  # decoder learning rate in phases 1-2 (Adam)
    encoder_lr_factor: float = 0.1  # encoder lr = lr x this once unfrozen
    # first encoder layer that trains once unfrozen (VGG: conv3_1 = CPU saver; ResNet: stem, layer1..4;
    # EfficientNet-Lite0: stem, s2..s32 by output stride, VGG's conv3_1 read as s8)
    unfreeze_from: str = "conv1_1"
    gan_lr: float = 5e-5  # generator learning rate in the GAN phase
    ttur: float = 5.0  # critic lr = gan_lr x ttur (two time-scale update rule)
    adv_weight: float = 0.05  # weight of the hinge generator loss next to the feature loss
    pixel_weight: float = 1.0  # weight of the L1 chroma term of the feature loss
    layer_weights: dict[str, float] = field(default_factory=lambda: {"relu2_2": 0.2, "relu3_3": 0.7})
    perceptual: str = "hed_vgg16"  # loss network: hed_vgg16, or torchvision_vgg16/19 with perceptual_weights
    perceptual_weights: str = ""  # local torchvision VGG state_dict for a torchvision perceptual network
    still_fraction: float = 0.5  # share of training crops drawn from the stills (the rest: clip frames)
    crop_aspect: float = 1.0  # crops up to this many times wider than high, squeezed square (render_factor)
    precision: str = "bf16"  # autocast dtype on CPU/CUDA; fp32 to disable
    checkpoint_every: int = 50  # steps

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> NoGANConfig:
        """The NoGAN schedule from the ``colorize`` parameters (params.yaml names; notebook 01 passes
        its parameters cell, the stage launcher the params section)."""
        return cls(sizes=(p["size_small"], p["size_large"]), batch=(p["batch_small"], p["batch_large"]),
                   steps_frozen=p["steps_frozen"], steps_unfrozen=p["steps_unfrozen"],
                   steps_critic=p["steps_critic"], steps_gan=p["steps_gan"], lr=p["lr"],
                   unfreeze_from=p["unfreeze_from"], gan_lr=p["gan_lr"], ttur=p["ttur"],
                   adv_weight=p["adv_weight"], pixel_weight=p["pixel_weight"],
                   layer_weights={"relu2_2": p["w_relu2_2"], "relu3_3": p["w_relu3_3"]},
                   perceptual=p["perceptual"], perceptual_weights=p["perceptual_weights"],
                   still_fraction=p["still_fraction"], crop_aspect=p["crop_aspect"], precision=p["precision"])

    def phases(self) -> list[tuple[str, int, int, int]]:
        """[(name, steps, size, batch)]."""
        (s0, s1), (b0, b1) = self.sizes, self.batch
        return [("gen_frozen", self.steps_frozen, s0, b0), ("gen_unfrozen", self.steps_unfrozen, s1, b1),
                ("critic", self.steps_critic, s1, b1), ("gan", self.steps_gan, s1, b1)]


def _optimizers(model: Colorizer, critic: Critic, cfg: NoGANConfig) -> dict[str, torch.optim.Optimizer]:
    encoder = {"params": list(model.encoder_parameters()), "lr": cfg.lr * cfg.encoder_lr_factor}
    return {
        "gen": torch.optim.Adam([{"params": model.decoder_parameters(), "lr": cfg.lr}, encoder]),
        "gan_gen": torch.optim.Adam(model.parameters(), lr=cfg.gan_lr, betas=(0.0, 0.9)),
        "critic": torch.optim.Adam(critic.parameters(), lr=cfg.gan_lr * cfg.ttur, betas=(0.0, 0.9)),
    }


def train_colorizer(images, out_dir: str | Path, model_cfg: ColorizerConfig, cfg: NoGANConfig,
                    seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
                    stop_after: int | None = None, pretrained: bool = True,
                    groups: list[str] | None = None, label: str = "NoGAN") -> Colorizer:
    """Run (or resume) NoGAN training; returns the generator. ``stop_after`` ends the run after that
    many global steps (simulates an interruption; the checkpoint then resumes it)."""
    out_dir = Path(out_dir)
    device = torch.device(device)
    ctx = distributed.current()  # one process unless under torchrun
    for b in cfg.batch:
        ctx.local_batch(b)  # fail before any work when a global batch does not split evenly
    torch.manual_seed(seed)
    model = ctx.prepare(build_colorizer(model_cfg, pretrained=pretrained).to(device))
    critic = ctx.prepare(Critic().to(device))
    if pretrained:  # the perceptual (loss) network, frozen
        vgg = build_features({"backbone": cfg.perceptual, "weights": cfg.perceptual_weights or None})
    else:
        vgg = VGG16Features()
    vgg = vgg.freeze().to(device)
    opts = _optimizers(model, critic, cfg)
    weights = {"still": cfg.still_fraction, "clip": 1.0 - cfg.still_fraction}
    sampler = CropSampler(images, seed, groups, weights if groups else None, cfg.crop_aspect)
    ckpt = Checkpointer(out_dir / "train_state.pt")
    step, phase_i, phase_step = 0, 0, 0
    st = ckpt.load(restore_rng=False) if ckpt.exists() else None
    if st is not None and (st["config"] != model_cfg.to_dict() or st["nogan"] != cfg.__dict__
                           or st.get("seed") != seed):
        if ctx.is_main:
            print(f"{ckpt.path}: written with other settings; training from scratch")
        st = None
    if st is not None:
        set_rng_state(st["rng"])
        model.load_state_dict(st["model"])
        critic.load_state_dict(st["critic"])
        for k, o in opts.items():
            o.load_state_dict(st["optimizers"][k])
        sampler.set_state(st["sampler"])
        step, phase_i, phase_step = st["step"], st["phase_index"], st["phase_step"]
    log = LossLog(out_dir / "dvclive", resume=step > 0)

    def save(pi: int, ps: int) -> None:
        ckpt.save(model=model.state_dict(), critic=critic.state_dict(), config=model_cfg.to_dict(),
                  nogan=cfg.__dict__, seed=seed, optimizers={k: o.state_dict() for k, o in opts.items()},
                  sampler=sampler.state, step=step, phase_index=pi, phase_step=ps)

    phases = cfg.phases()
    total = sum(p[1] for p in phases)
    bar = tqdm(total=total, initial=step, desc=label, unit="step", disable=not progress or not ctx.is_main)
    critic_ddp = ctx.wrap(critic)  # the module itself in one process
    try:
        for pi in range(phase_i, len(phases)):
            name, steps, size, bs = phases[pi]
            unfrozen = name in ("gen_unfrozen", "gan")
            model.set_encoder_trainable(unfrozen, cfg.unfreeze_from)
            # re-wrapped after (un)freezing: DDP syncs what trains now; an unfrozen encoder's last block
            # (conv5, past the deepest skip) never gets a gradient, which DDP must be told to expect
            model_ddp = ctx.wrap(model, find_unused_parameters=unfrozen)
            for ps in range(phase_step if pi == phase_i else 0, steps):
                if stop_after is not None and step >= stop_after:
                    save(pi, ps)
                    return model
                # the global batch (same on every rank), then this rank's rows: (B/W,1,S,S), (B/W,2,S,S)
                y, uv = (t.to(device) for t in ctx.shard(*sampler.batch(size, bs)))
                losses = ctx.mean(_step(name, model_ddp, critic_ddp, vgg, opts, cfg, y, uv, device))
                step += 1
                log.log(step, **{f"{name}/{k}": v for k, v in losses.items()})
                bar.set_postfix(phase=name, **{k: f"{v:.3f}" for k, v in list(losses.items())[:2]})
                bar.update()
                if step % cfg.checkpoint_every == 0:
                    save(pi, ps + 1)
            save(pi + 1, 0)
    finally:
        bar.close()
        log.close()
    model.eval()
    return model


def _step(name, model, critic, vgg, opts, cfg: NoGANConfig, y, uv, device) -> dict[str, float]:
    """One optimization step of phase ``name``; returns the logged losses (means over this rank's batch).

    ``model`` and ``critic`` may be DDP wrappers: their backward passes average the gradients over the
    ranks. The G step scores the generator with the bare critic, so the critic's own gradients (unused,
    zeroed before its next step) are not averaged.
    """
    model.train()
    if name in ("gen_frozen", "gen_unfrozen"):
        with autocast(device, cfg.precision):
            pred = model(y)
            loss, parts = feature_loss(pred, uv, y, vgg, cfg.layer_weights, cfg.pixel_weight)
        opts["gen"].zero_grad(set_to_none=True)
        loss.backward()
        opts["gen"].step()
        return {"feature": loss.item(), **parts}
    real = yuv_to_rgb_t(y, uv)
    with torch.no_grad(), autocast(device, cfg.precision):
        fake = yuv_to_rgb_t(y, model(y).float())
    critic.train()
    with autocast(device, cfg.precision):
        d_loss = hinge_critic_loss(critic(real).float(), critic(fake).float())  # Eq. (1)
    opts["critic"].zero_grad(set_to_none=True)
    d_loss.backward()
    opts["critic"].step()
    if name == "critic":
        return {"critic": d_loss.item()}
    with autocast(device, cfg.precision):
        pred = model(y)
        feat, _ = feature_loss(pred, uv, y, vgg, cfg.layer_weights, cfg.pixel_weight)
        adv = hinge_generator_loss(distributed.unwrap(critic)(yuv_to_rgb_t(y, pred.float())).float())  # Eq. 2
        g_loss = feat + cfg.adv_weight * adv
    opts["gan_gen"].zero_grad(set_to_none=True)
    g_loss.backward()
    opts["gan_gen"].step()
    return {"critic": d_loss.item(), "generator": g_loss.item(), "adversarial": adv.item(),
            "feature": feat.item()}


def member_dirs(out_dir: str | Path, n: int) -> list[Path]:
    """Where each member of an ``n``-seed ensemble trains: ``out_dir`` itself for one seed (the
    single-model layout), else ``out_dir/member<k>``."""
    out_dir = Path(out_dir)
    return [out_dir] if n == 1 else [out_dir / f"member{k}" for k in range(n)]


def train_ensemble(images, out_dir: str | Path, model_cfg: ColorizerConfig, cfg: NoGANConfig,
                   seeds: Sequence[int], **kwargs: Any) -> Colorizer | ColorizerEnsemble:
    """NoGAN training once per seed, each run resumable in its own ``member_dirs`` folder; one seed
    gives that ``Colorizer`` (exactly ``train_colorizer``), several a ``ColorizerEnsemble`` of them.
    ``kwargs`` go to ``train_colorizer`` (device, progress, groups, pretrained)."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"an ensemble needs distinct seeds, at least one (colorize.ensemble >= 1): {seeds}")
    n = len(seeds)
    labels = [f"NoGAN {k + 1}/{n}" for k in range(n)] if n > 1 else ["NoGAN"]
    members = [train_colorizer(images, d, model_cfg, cfg, seed=s, label=lab, **kwargs)
               for d, s, lab in zip(member_dirs(out_dir, n), seeds, labels, strict=True)]
    return members[0] if len(members) == 1 else ColorizerEnsemble(members)


def ensemble_curves(out_dir: str | Path, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The members' dvclive losses for one figure: all of one colorizer's, or each member's main loss
    per phase (``feature``, ``critic``, ``generator``) named ``<phase>/<loss> m<k>``."""
    dirs = member_dirs(out_dir, n)
    if n == 1:
        return read_curves(dirs[0] / "dvclive")
    return {f"{name} m{k}": curve for k, d in enumerate(dirs)
            for name, curve in read_curves(d / "dvclive").items()
            if name.rsplit("/", 1)[-1] in ("feature", "critic", "generator")}


def finish(model: Colorizer | ColorizerEnsemble, out_dir: str | Path, **extra) -> Path:
    """Write the final generator checkpoint (config + calibration inside)."""
    return save_colorizer(Path(out_dir) / "colorizer.pt", model, **extra)
