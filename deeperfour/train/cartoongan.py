"""CartoonGAN training for one style (paper §3.2, Eqs. 3-7; Chen et al. 2018 §3.3).

Two phases on ``init_steps + gan_steps`` global steps:

1. initialization (steps < init_steps): G alone reconstructs the photos with the content loss of
   Eq. (7) (plus, optionally, ``init_pixel`` x an L1 pixel term), so the GAN phase starts from a
   generator that already keeps the content;
2. GAN (the rest): per step, one D update with the edge-promoting loss of Eqs. (4)-(6) (real cartoons
   c_i real; edge-smoothed cartoons e_j and G(p_k) fake), then one G update with Eq. (3),
   L_adv + omega * L_con.

Adam, lr 2e-4, betas (0.5, 0.999) for both nets (reference.md §2); ``lr_d`` gives D its own rate (a
two time-scale update rule, Heusel et al. 2017: a faster D gives G a useful signal within a few hundred
steps); optional x``lr_decay`` at 50 % and 75 % of the GAN phase (the reference's epochs 50 and 75). The pixel
term of the init phase is for short CPU runs, which cannot afford the paper's 10 epochs of pure Eq. (7)
reconstruction. Batches are random ``crop``-px windows (and horizontal flips) of the
``prepare_datasets`` crops, drawn from one seeded ``torch.Generator`` whose state is checkpointed, so a
run killed and resumed draws the same batches.

Under ``torchrun`` (``deeperfour.train.distributed``) every rank draws that same global batch and
keeps its own rows; G and D are DistributedDataParallel (the G step goes through the bare, frozen D),
batch-norm D layers use global statistics, logged values are averaged over the ranks, and rank 0
alone writes the checkpoint, the generator, the snapshots and the logs. The checkpoint holds the
global sampler state, so it resumes on any number of processes.

Outputs under ``out_dir`` (one folder per style)::

    train_state.pt        Checkpointer: G, D, both optimizers, step, sampler and RNG states, configs
    generator.pt          the final generator (deeperfour.models.cartoongan.from_checkpoint)
    dvclive/              loss curves (deeperfour.train.common.LossLog)
    snapshots/input.png   the fixed held-out photo grid (one row)
    snapshots/step_NNNNNN.png   G(grid) after NNNNNN steps (0 = untrained, init_steps = end of init)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from deeperfour.core.precision import autocast
from deeperfour.infer.cartoonize import cartoonize_images
from deeperfour.losses.cartoon import (
    color_loss,
    content_loss,
    content_losses,
    discriminator_loss,
    generator_adv_loss,
    real_fake_loss,
    surface_representation,
    texture_representation,
    total_generator_loss,
)
from deeperfour.models.cartoongan import (
    GENERATOR_FILE,
    CartoonDiscriminator,
    CartoonGANConfig,
    CartoonGenerator,
    config_from_dict,
    to_unit,
)
from deeperfour.train import distributed
from deeperfour.train.common import Checkpointer, LossLog, set_rng_state, truncate_curves
from deeperfour.train.structure_target import STRUCTURES, abstraction_targets, structure_targets

FeaturesFn = Callable[..., Mapping[str, torch.Tensor]]
STATE_FILE = "train_state.pt"
RECIPES = ("paper", "whitebox")
# fields that only change bookkeeping; a checkpoint with other differences is not resumed
_BOOKKEEPING = ("log_every", "checkpoint_every")


def as_bool(value: Any, name: str = "value") -> bool:
    """A boolean parameter as papermill passes it from dvc.yaml (``-p key true`` arrives as the string
    "true"): bools as they are, "true"/"false" (any case), 1/0; anything else raises one ValueError."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{name}={value!r}: expected true or false")


@dataclass
class TrainConfig:
    """One style's training run (the ``train_cartoongan`` params section; saved in checkpoints)."""

    style: str = "bunny"  # style dataset name (prepare_datasets)
    variant: str = "light"  # generator preset: "light" (~1.6 M params, CPU) | "paper" (11.1 M)
    base_channels: int | None = None  # override the preset's width (tests use tiny nets)
    n_res_blocks: int | None = None  # override the preset's residual blocks
    d_base_channels: int = 32  # discriminator width (paper Fig. 2: 32)
    crop: int = 128  # training window, px (<= the dataset crop; paper 256)
    batch: int = 4  # photos (and cartoons) per step (paper 8)
    init_steps: int = 100  # initialization phase: content loss only
    gan_steps: int = 300  # GAN phase: Eqs. (3)-(7)
    lr: float = 2e-4  # Adam learning rate of G (and of D unless lr_d is set)
    lr_d: float | None = None  # Adam learning rate of D (None = lr; > lr: two time-scale update rule)
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    omega: float = 10.0  # content weight omega of Eq. (3)
    init_pixel: float = 0.0  # weight of an extra L1 pixel term in the init phase (0 = paper: Eq. 7 only)
    content_layer: str = "conv4_3"  # VGG layer l of Eq. (7) (VGG16 conv4_3 ~ VGG19 conv4_4, pre-ReLU)
    lr_decay: float = 1.0  # lr factor at 50 % and 75 % of the GAN phase (reference 0.1; 1 = none)
    precision: str = "bf16"  # "bf16" autocast (CPU/CUDA) or "fp32"
    # --- recipe: "paper" (Eqs. 3-7 as written) | "whitebox" (the small-data terms below, issue 16) ---
    recipe: str = "paper"
    structure_init: bool = True  # whitebox: the init phase reconstructs the structure targets, not the photos
    structure_segment_px: float = 330.0  # whitebox: mean SLIC superpixel area of the structure targets, px
    structure: str = "slic"  # whitebox: pseudo-target: slic (superpixel means + ink) | abstraction
    omega_structure: float = 0.0  # whitebox: weight of Eq. (7)'s distance to the structure target, GAN phase
    structure_pixel: float = 0.0  # whitebox: weight of an L1 pixel term to the structure target, GAN phase
    w_surface: float = 1.0  # whitebox: adversarial weight of the surface discriminator (guided filter)
    w_texture: float = 1.0  # whitebox: adversarial weight of the texture discriminator (random gray)
    w_color: float = 0.0  # whitebox: weight of the chroma loss to the input photo (YUV)
    guided_radius: int = 5  # whitebox: guided-filter window radius of the surface representation, px
    guided_eps: float = 0.2  # whitebox: guided-filter eps (on [-1, 1] images)
    chroma: str = "free"  # G's output chroma: free | mean | input (models.cartoongan.anchor_chroma)
    prior: str = "none"  # G's input: none = the photo (paper) | abstraction = the photo's classical
    #   abstraction, which G corrects (models.cartoongan.CartoonGANConfig.prior); the losses still compare
    #   G's output with the photo (Eq. 7, color)
    seed: int = 0  # seed of init and batch sampling
    n_snapshots: int = 3  # grid snapshots during the GAN phase (plus before training and after init)
    log_every: int = 5  # steps between loss log rows
    checkpoint_every: int = 50  # steps between train_state.pt saves

    @classmethod
    def from_params(cls, p: Mapping[str, Any], style: str) -> TrainConfig:
        """One style's run from the ``train_cartoongan`` parameters (params.yaml names; notebook 03 passes
        its parameters cell, the stage launcher the params section)."""
        keys = ("variant", "crop", "batch", "init_steps", "gan_steps", "lr", "lr_d", "beta1", "beta2",
                "omega", "init_pixel", "content_layer", "lr_decay", "precision", "seed", "n_snapshots",
                "log_every", "checkpoint_every")
        recipe = ("recipe", "structure_init", "structure_segment_px", "structure", "omega_structure",
                  "structure_pixel",
                  "w_surface", "w_texture", "w_color", "guided_radius", "guided_eps",
                  "chroma", "prior")  # absent: the paper's recipe
        return cls(style=style, **{k: p[k] for k in keys}, **{k: p[k] for k in recipe if k in p})

    def __post_init__(self):
        if self.init_steps < 0 or self.gan_steps < 0:
            raise ValueError(f"init_steps={self.init_steps}, gan_steps={self.gan_steps}: expected >= 0")
        if self.crop < 8 or self.batch < 1:
            raise ValueError(f"crop={self.crop}, batch={self.batch}: expected crop >= 8, batch >= 1")
        self.structure_init = as_bool(self.structure_init, "structure_init")  # "true" from papermill
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure={self.structure!r}: choose {' or '.join(STRUCTURES)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe={self.recipe!r}: choose {' or '.join(RECIPES)}")

    @property
    def total_steps(self) -> int:
        return self.init_steps + self.gan_steps

    def model_config(self) -> CartoonGANConfig:
        return CartoonGANConfig(variant=self.variant, base_channels=self.base_channels,
                                n_res_blocks=self.n_res_blocks, d_base_channels=self.d_base_channels,
                                chroma=self.chroma, prior=self.prior)

    def snapshot_steps(self) -> list[int]:
        """Step counts after which the grid is rendered: 0, end of init, n_snapshots GAN-phase points."""
        gan = [self.init_steps + round(k * self.gan_steps / self.n_snapshots)
               for k in range(1, self.n_snapshots + 1)] if self.n_snapshots > 0 else []
        return sorted({0, self.init_steps, *gan})


@dataclass
class TrainResult:
    generator: CartoonGenerator  # eval mode, on the training device
    out_dir: Path
    steps: int  # steps done in total
    resumed_from: int  # step the run resumed from (0: fresh)
    seconds: float  # wall time of this call's training loop


# ----------------------------------------------------------------------------------------------
# data


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) uint8 tensor (converted to [-1, 1] per batch)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


class BatchSampler:
    """Random ``crop`` windows + horizontal flips of stored crops, from one seeded generator.

    ``sample(*sets)`` draws the SAME indices, windows and flips for every set passed, so a cartoon
    crop c_i and its edge-smoothed copy e_j stay aligned.
    """

    def __init__(self, seed: int, crop: int, batch: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.crop, self.batch = crop, batch

    def sample(self, *sets: torch.Tensor) -> list[torch.Tensor]:
        n, _, h, w = sets[0].shape
        c = min(self.crop, h, w)
        idx = torch.randint(n, (self.batch,), generator=self.gen)
        ys = torch.randint(h - c + 1, (self.batch,), generator=self.gen)
        xs = torch.randint(w - c + 1, (self.batch,), generator=self.gen)
        flips = torch.rand(self.batch, generator=self.gen) < 0.5
        out = []
        for s in sets:
            win = [s[i, :, y : y + c, x : x + c] for i, y, x in zip(idx.tolist(), ys.tolist(), xs.tolist(),
                                                                    strict=True)]
            b = torch.stack([t.flip(-1) if f else t for t, f in zip(win, flips.tolist(), strict=True)])
            out.append(to_unit(b))  # (B, 3, c, c) in [-1, 1]
        return out


# ----------------------------------------------------------------------------------------------
# snapshots of the fixed grid


def _write_row(path: Path, images: np.ndarray) -> None:
    """(n, h, w, 3) uint8 -> one PNG row (atomic)."""
    row = np.concatenate(list(images), axis=1)  # (h, n*w, 3)
    tmp = path.with_name(f".{path.stem}.partial.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(row, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the snapshot PNG")
    os.replace(tmp, path)


def read_snapshots(out_dir: str | os.PathLike) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(inputs (n, h, w, 3), {step: outputs (n, h, w, 3)}) of a training run's snapshot grid."""
    folder = Path(out_dir) / "snapshots"

    def read(p: Path) -> np.ndarray:
        row = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)  # (h, n*w, 3)
        h = row.shape[0]
        return np.stack(np.split(row, row.shape[1] // h, axis=1))  # square crops: (n, h, h, 3)

    if not (folder / "input.png").is_file():
        raise FileNotFoundError(f"{folder}: no snapshots; train the style first")
    steps = {int(p.stem.split("_")[1]): read(p) for p in sorted(folder.glob("step_*.png"))}
    return read(folder / "input.png"), steps


# ----------------------------------------------------------------------------------------------
# the loop


def _lr_at(cfg: TrainConfig, step: int) -> float:
    """lr factor of global step ``step``: x lr_decay after 50 % and again after 75 % of the GAN phase."""
    milestones = [cfg.init_steps + cfg.gan_steps // 2, cfg.init_steps + (3 * cfg.gan_steps) // 4]
    return cfg.lr_decay ** sum(cfg.gan_steps > 0 and step >= m for m in milestones)



def _whitebox_step(cfg: TrainConfig, G, D_s, D_s_ddp, D_t, D_t_ddp, opt_g, opt_d, opt_dt,
                   features: FeaturesFn, x: torch.Tensor, p: torch.Tensor, target: torch.Tensor,
                   cartoons: list[torch.Tensor],
                   gray_rng: torch.Generator, device: torch.device) -> dict[str, float]:
    """One GAN step of the whitebox recipe; returns the logged values.

    D_s (surface) sees guided-filtered images: real cartoons real, G(p) fake. D_t (texture) sees random
    grayscales with the edge-promoting labels of Eqs. (4)-(6): cartoons real, edge-smoothed cartoons and
    G(p) fake. G minimizes
        w_surface L_adv(D_s) + w_texture L_adv(D_t) + omega L_con(G(p), p) [Eq. 7]
        + omega_structure L_con(G(p), structure target) + structure_pixel |G(p) - structure target|
        + w_color |UV(G(p)) - UV(p)|.
    The structure target is ``structure``: SLIC means + ink (``slic``), or the abstraction baseline's own
    output (``abstraction``, AnimeGANv3's classical pseudo-target).
    A term with weight 0 is skipped with its discriminator (the ablations). ``x``: G's input, the photo
    ``p`` itself or its abstraction (``prior``); every term compares G's output with ``p`` or the target.
    """
    c, e = cartoons  # (B, 3, h, w) cartoons and their edge-smoothed copies
    r, eps = cfg.guided_radius, cfg.guided_eps
    with autocast(device, cfg.precision):
        fake = G(x)  # (B, 3, h, w) G(p_k)
        loss_d = torch.zeros((), device=device)
        if cfg.w_surface:
            ds_real = D_s_ddp(surface_representation(c, r, eps)).float()
            ds_fake = D_s_ddp(surface_representation(fake.detach(), r, eps)).float()
            loss_d = loss_d + real_fake_loss(ds_real, ds_fake)
        if cfg.w_texture:
            dt_real = D_t_ddp(texture_representation(c, gray_rng)).float()
            dt_smooth = D_t_ddp(texture_representation(e, gray_rng)).float()
            dt_fake = D_t_ddp(texture_representation(fake.detach(), gray_rng)).float()
            loss_d = loss_d + discriminator_loss(dt_real, dt_smooth, dt_fake)  # Eqs. (4)-(6) on texture
    if cfg.w_surface or cfg.w_texture:
        opt_d.zero_grad(set_to_none=True)
        opt_dt.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        opt_dt.step()
    D_s.requires_grad_(False)
    D_t.requires_grad_(False)
    with autocast(device, cfg.precision):
        adv_s = generator_adv_loss(D_s(surface_representation(fake, r, eps)).float()) if cfg.w_surface \
            else torch.zeros((), device=device)
        adv_t = generator_adv_loss(D_t(texture_representation(fake, gray_rng)).float()) if cfg.w_texture \
            else torch.zeros((), device=device)
        # Eq. (7) to the photo and (omega_structure) to the structure target: G(p)'s features once
        con, *struct = (c.float() for c in content_losses(
            features, fake, [p, target] if cfg.omega_structure else [p], cfg.content_layer))
        struct = struct[0] if struct else torch.zeros((), device=device)
        struct_px = (fake.float() - target).abs().mean() if cfg.structure_pixel \
            else torch.zeros((), device=device)
        col = color_loss(fake.float(), p)
        loss_g = (cfg.w_surface * adv_s + cfg.w_texture * adv_t + cfg.omega * con
                  + cfg.omega_structure * struct + cfg.structure_pixel * struct_px + cfg.w_color * col)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D_s.requires_grad_(True)
    D_t.requires_grad_(True)
    values = {"gan/content": con.item(), "gan/g_adv": (adv_s + adv_t).item(), "gan/d_loss": loss_d.item(),
              "gan/surface": adv_s.item(), "gan/texture": adv_t.item(), "gan/structure": struct.item(),
              "gan/structure_pixel": struct_px.item(),
              "gan/color": col.item()}
    if cfg.w_texture:
        with torch.no_grad():
            values.update({"discriminator/real": torch.sigmoid(dt_real).mean().item(),
                           "discriminator/smoothed": torch.sigmoid(dt_smooth).mean().item(),
                           "discriminator/generated": torch.sigmoid(dt_fake).mean().item()})
    return values

def train(cfg: TrainConfig, photos: np.ndarray, cartoons: np.ndarray, smoothed: np.ndarray,
          grid: np.ndarray, features: FeaturesFn, out_dir: str | os.PathLike,
          device: torch.device | str = "cpu", resume: bool = True, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train (or resume) one style's generator; see the module docstring.

    photos (N, S, S, 3), cartoons and smoothed (M, S, S, 3, aligned), grid (n, s, s, 3): uint8 RGB.
    ``features``: the frozen perceptual net, ``features(rgb01, layers=(...)) -> {name: tensor}``.
    ``resume``: continue from ``out_dir/train_state.pt`` when it holds the same configuration.
    ``stop_after``: stop (with a checkpoint) once this many steps are done, as a kill would.
    """
    out_dir = Path(out_dir)
    device = torch.device(device)
    if len(cartoons) != len(smoothed):
        raise ValueError(f"{len(cartoons)} cartoon crops but {len(smoothed)} edge-smoothed ones")
    ctx = distributed.current()  # one process unless under torchrun
    ctx.local_batch(cfg.batch)  # fail early when the global batch does not split evenly
    ckpt = Checkpointer(out_dir / STATE_FILE)
    snap_dir = out_dir / "snapshots"
    snap_dir.mkdir(parents=True, exist_ok=True)

    # 1. models, optimizers, sampler: fresh (seeded) or from the checkpoint
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config()
    G, D = CartoonGenerator(mcfg).to(device), ctx.prepare(CartoonDiscriminator(mcfg).to(device))
    white = cfg.recipe == "whitebox"  # D is then the surface discriminator, D_t the texture one
    D_t = ctx.prepare(CartoonDiscriminator(mcfg).to(device)) if white else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_dt = torch.optim.Adam(D_t.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2)) \
        if white else None
    sampler = BatchSampler(cfg.seed, cfg.crop, cfg.batch)
    gray_rng = torch.Generator().manual_seed(cfg.seed + 1)  # the texture representation's random weights
    step = 0
    if resume and ckpt.exists():
        state = ckpt.load(restore_rng=False)
        same = {k: v for k, v in state.get("train_config", {}).items() if k not in _BOOKKEEPING} == \
               {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING}
        if same and config_from_dict(state["config"]) == mcfg:
            G.load_state_dict(state["model"])
            D.load_state_dict(state["discriminator"])
            opt_g.load_state_dict(state["optimizers"]["g"])
            opt_d.load_state_dict(state["optimizers"]["d"])
            sampler.gen.set_state(state["sampler"])
            if white:
                D_t.load_state_dict(state["discriminator_texture"])
                opt_dt.load_state_dict(state["optimizers"]["d_texture"])
                gray_rng.set_state(state["gray_rng"])
            set_rng_state(state["rng"])  # global RNG states as they were at the save
            step = int(state["step"])
        elif ctx.is_main:
            print(f"{ckpt.path}: saved with another configuration; training from scratch")
    resumed_from = step
    live_dir = out_dir / "dvclive"
    if step > 0 and ctx.is_main:
        truncate_curves(live_dir, step)
    log = LossLog(live_dir, resume=step > 0)

    photos_t, cart_t, smooth_t = to_tensor(photos), to_tensor(cartoons), to_tensor(smoothed)
    show = progress and ctx.is_main
    # (N, 3, S, S) uint8, aligned with the photos: the abstraction, where G's input or target needs it
    abstr_t = to_tensor(abstraction_targets(photos, progress=show)) \
        if mcfg.prior == "abstraction" or (white and cfg.structure == "abstraction") else None
    if white:  # the structure pseudo-targets
        struct_t = to_tensor(structure_targets(photos, cfg.structure_segment_px, progress=show)) \
            if cfg.structure == "slic" else abstr_t
    inputs_t = abstr_t if mcfg.prior == "abstraction" else None  # G's inputs, when not the photos
    snapshots = set(cfg.snapshot_steps())
    if step == 0 and ctx.is_main:
        for stale in snap_dir.glob("step_*.png"):  # left by an earlier run with another configuration
            stale.unlink()
        _write_row(snap_dir / "input.png", grid)

    def save_state(done: int) -> None:
        texture = {"discriminator_texture": D_t.state_dict(), "gray_rng": gray_rng.get_state()} \
            if white else {}
        optimizers = {"g": opt_g.state_dict(), "d": opt_d.state_dict(),
                      **({"d_texture": opt_dt.state_dict()} if white else {})}
        ckpt.save(model=G.state_dict(), discriminator=D.state_dict(), config=asdict(mcfg),
                  train_config=asdict(cfg), optimizers=optimizers, step=done, sampler=sampler.gen.get_state(),
                  **texture)

    def snapshot(done: int) -> None:
        if done in snapshots and ctx.is_main:  # G has no batch-coupled layers: rank 0 may run it alone
            _write_row(snap_dir / f"step_{done:06d}.png", cartoonize_images(G, grid, device, cfg.precision))

    if step == 0:
        snapshot(0)
    sums: dict[str, float] = {}
    t0 = time.time()
    bar = tqdm(range(step, cfg.total_steps), initial=step, total=cfg.total_steps, desc=f"train {cfg.style}",
               disable=not progress or not ctx.is_main)
    G_ddp, D_ddp = ctx.wrap(G), ctx.wrap(D)  # the modules themselves in one process
    for s in bar:
        for opt, base in ((opt_g, cfg.lr), (opt_d, cfg.lr_d or cfg.lr), (opt_dt, cfg.lr_d or cfg.lr)):
            if opt is None:
                continue
            for group in opt.param_groups:
                group["lr"] = base * _lr_at(cfg, s)
        # the global batch, the same on every rank, then this rank's rows (B/W = B in one process)
        # the photos p_k, their structure targets (whitebox) and G's inputs x_k: the same windows
        sets = [photos_t] + ([struct_t] if white else []) + ([inputs_t] if inputs_t is not None else [])
        p, *rest = (ctx.shard(t).to(device) for t in sampler.sample(*sets))  # each (B/W, 3, c, c)
        target = (rest[0] if cfg.structure_init else p) if white else p
        x = rest[-1] if inputs_t is not None else p  # G's input: the photo, or its abstraction
        if s < cfg.init_steps:
            # 2a. initialization phase: reconstruction with the content loss (Eq. 7) of the photo, or
            # (whitebox) of its structure target: flat superpixel colors with ink lines
            with autocast(device, cfg.precision):
                y = G_ddp(x)  # (B/W, 3, c, c)
                con = content_loss(features, y, target, cfg.content_layer).float()  # Eq. (7)
                loss = con + cfg.init_pixel * (y.float() - target).abs().mean() if cfg.init_pixel else con
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            values = {"init/content": con.item()}
        elif white:
            cartoons = [t.to(device) for t in ctx.shard(*sampler.sample(cart_t, smooth_t))]  # c, e
            values = _whitebox_step(cfg, G_ddp, D, D_ddp, D_t, ctx.wrap(D_t), opt_g, opt_d, opt_dt, features,
                                    x, p, target, cartoons, gray_rng, device)
        else:
            c, e = (t.to(device) for t in ctx.shard(*sampler.sample(cart_t, smooth_t)))  # (B/W, 3, c, c)
            # 2b. D update: edge-promoting adversarial loss, Eqs. (4)-(6)
            with autocast(device, cfg.precision):
                fake = G_ddp(x)  # (B/W, 3, c, c) G(p_k)
                d_real, d_smooth, d_fake = D_ddp(c), D_ddp(e), D_ddp(fake.detach())  # (B/W, 1, c/4, c/4)
                loss_d = discriminator_loss(d_real.float(), d_smooth.float(), d_fake.float())
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # 2c. G update: L_adv + omega * L_con, Eq. (3); D frozen meanwhile (no wasted grads), called
            # bare: its DDP wrapper expects gradients for every D parameter
            D.requires_grad_(False)
            with autocast(device, cfg.precision):
                adv = generator_adv_loss(D(fake).float())  # Eq. (6), non-saturating
                con = content_loss(features, fake, p, cfg.content_layer)  # Eq. (7)
                loss_g = total_generator_loss(adv, con.float(), cfg.omega)  # Eq. (3)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            with torch.no_grad():
                values = {"gan/content": con.item(), "gan/g_adv": adv.item(), "gan/d_loss": loss_d.item(),
                          "discriminator/real": torch.sigmoid(d_real.float()).mean().item(),
                          "discriminator/smoothed": torch.sigmoid(d_smooth.float()).mean().item(),
                          "discriminator/generated": torch.sigmoid(d_fake.float()).mean().item()}
        for k, v in ctx.mean(values).items():  # means over the global batch
            sums[k] = sums.get(k, 0.0) + v
        sums["_n"] = sums.get("_n", 0.0) + 1
        done = s + 1
        # 3. bookkeeping: log means, snapshot the grid, checkpoint
        if done % cfg.log_every == 0 or done == cfg.total_steps or done == cfg.init_steps:
            n = sums.pop("_n")
            log.log(s, **{k: v / n for k, v in sums.items()})
            bar.set_postfix({k: f"{v / n:.3f}" for k, v in sums.items() if k.endswith("content")})
            sums = {}
        snapshot(done)
        if done % cfg.checkpoint_every == 0 or done == cfg.total_steps or done == stop_after:
            save_state(done)
        if stop_after is not None and done >= stop_after:
            break
    else:
        done = max(step, cfg.total_steps)
        if cfg.total_steps == 0:
            save_state(0)
    bar.close()
    log.close()
    seconds = time.time() - t0
    G.eval()
    if done >= cfg.total_steps and ctx.is_main:
        G.save(out_dir / GENERATOR_FILE,
                        extra={"train_config": asdict(cfg), "step": done, "style": cfg.style})
    return TrainResult(G, out_dir, done, resumed_from, seconds)
