"""Fine-tune the cartoon generator for temporal consistency: Ruder et al.'s fast method (paper §5.2.1).

The network is a :class:`~deeperfour.models.temporal_cartoongan.TemporalCartoonGenerator` built from the
trained per-frame generator G0 (its new input branch starts at zero, so step 0 IS G0). Each step draws
``batch`` windows of ``window`` consecutive colorized frames x^(0..T-1) inside one shot of the training
clips (the same random ``crop`` and horizontal flip for every frame of a window) and runs the network
over the window in order, as it runs on a film:

    y^(0) = G(x^(0))                                         (first frame of a shot: no past)
    y^(t) = G(x^(t), w_{t-1}^t(y^(t-1)), c^(t-1,t))          (its own previous output, detached, warped)

Flows t -> t-j and t-j -> t are DIS flows on the GRAY input crops (the colorized frames flicker, the B&W
input does not); c^(t-j,t) = ``flow.occlusion_mask`` (Ruder's rule). Every frame t >= 1 adds

    L_t = alpha_content ||VGG_l(y^(t)) - VGG_l(G0(x^(t)))||_1 + pixel ||y^(t) - G0(x^(t))||_1
          + gamma sum_{j in J, t-j >= 0} L_temporal(y^(t), w_{t-j}^t(y^(t-j)), c_long^(t-j,t))

the content and pixel terms pulling toward the FROZEN G0's cartoon of the same frame. That per-frame
cartoon carries the style, so these two terms play the role of Eq. (9)'s content + style terms
(alpha L_content + beta L_style) without a style loss of our own; the last term is Eq. (9)'s temporal
part: Eq. (8) per j, weighted by the long-term weights of Eq. (10) (``flow.long_term_weights``). Images
enter the temporal term in [0, 1], as Ruder's gamma = 1e3 is quoted for. The loss of a window is the
mean over its T - 1 frames t >= 1; frame 0 has no loss (it only provides the first past).

Adam (``lr``, betas 0.9 / 0.999). Windows, crops and flips come from one seeded ``torch.Generator``
whose state is checkpointed, so a run killed and resumed equals an uninterrupted one.

Under ``torchrun`` (``deeperfour.train.distributed``) every rank draws the same global batch of windows
and keeps its own rows (flows are estimated for those rows only); the model is DistributedDataParallel,
and the per-frame backward passes of a window accumulate locally (``no_sync``) so that the gradients are
averaged over the ranks once per step, at the window's last frame. Logged values are averaged over the
ranks and rank 0 alone writes the checkpoint, the model and the logs. Every loss is a mean over equal
per-rank slices, so a step equals the single-process step on the global batch, and the checkpoint (global
sampler state) resumes on any number of processes whose count divides ``batch``::

    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run temporal_loss

Outputs under ``out_dir``::

    train_state.pt   Checkpointer: model, optimizer, step, sampler and RNG states, configs, base fingerprint
    generator.pt     the fine-tuned model (TemporalCartoonGenerator.from_checkpoint)
    dvclive/         loss curves: total, content, pixel, temporal (deeperfour.train.common.LossLog)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deeperfour.core.precision import PRECISIONS, autocast
from deeperfour.film.flow import estimate_flow, long_term_weights, occlusion_mask, warp_torch
from deeperfour.infer.cartoonize import has_prior, prior_frames
from deeperfour.losses.cartoon import content_loss
from deeperfour.losses.temporal import long_term_temporal_loss
from deeperfour.models.cartoongan import CartoonGenerator, ReleasedCartoonGAN
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator
from deeperfour.train import distributed
from deeperfour.train.clips import Clip
from deeperfour.train.common import Checkpointer, LossLog, set_rng_state, truncate_curves

FeaturesFn = Callable[..., Mapping[str, torch.Tensor]]
STATE_FILE = "train_state.pt"
GENERATOR_FILE = "generator.pt"
_BOOKKEEPING = ("log_every", "checkpoint_every")  # fields that may change between a kill and its resume


@dataclass
class TemporalLossConfig:
    """Fine-tuning run of Ruder et al.'s fast method (the ``temporal_loss`` params; saved in checkpoints)."""

    window: int = 5  # frames per training window (>= 2); 5 = frames i-4..i, so every j in J={1,2,4} exists
    J: str = "1,2,4"  # Eqs. (9)-(10): previous frames i-j compared with frame i (each j <= window - 1)
    crop: int = 96  # px, square random crop shared by all frames of a window (<= every clip's H and W)
    batch: int = 2  # windows per step
    steps: int = 300  # optimizer steps
    lr: float = 1e-4  # Adam learning rate
    alpha_content: float = 1.0  # VGG feature L1 to the frozen base's cartoon of the frame (Eq. 9 alpha, beta)
    pixel: float = 1.0  # L1 to the frozen base's cartoon, RGB in [-1, 1]
    gamma: float = 1e3  # Eq. (9) temporal weight; squared errors of RGB in [0, 1] (Ruder: 1e3)
    content_layer: str = "conv4_3"  # VGG layer of the content term (as train_cartoongan's Eq. 7)
    train_base: bool = True  # False: only the new input branch learns (the style cannot drift at all)
    precision: str = "bf16"  # "bf16" autocast (CPU/CUDA) or "fp32"
    seed: int = 0  # seed of the window / crop / flip sampler
    log_every: int = 5  # steps between loss log rows
    checkpoint_every: int = 50  # steps between train_state.pt saves
    flow: str = "dis"  # flow on the gray crops: "dis" | "farneback" (deeperfour.film.flow.estimate_flow)
    flow_preset: str = "medium"  # DIS preset: ultrafast | fast | medium

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TemporalLossConfig:
        """The run from the ``temporal_loss`` parameters (``long_term`` -> J, ``pixel_weight`` -> pixel)."""
        keys = ("window", "crop", "batch", "steps", "lr", "gamma", "alpha_content", "content_layer",
                "precision", "seed", "log_every", "checkpoint_every", "flow")
        return cls(J=p["long_term"], pixel=p["pixel_weight"], **{k: p[k] for k in keys})

    def __post_init__(self):
        js = self.js  # parses J
        if self.window < 2:
            raise ValueError(f"window={self.window}: a training window needs >= 2 frames (one past, one now)")
        if max(js) > self.window - 1:
            raise ValueError(f"J={self.J!r}: j={max(js)} needs frame t-j inside a {self.window}-frame window "
                             f"(largest possible j is window - 1 = {self.window - 1})")
        if self.crop < 16 or self.batch < 1 or self.steps < 0:
            raise ValueError(f"crop={self.crop}, batch={self.batch}, steps={self.steps}: expected "
                             "crop >= 16, batch >= 1, steps >= 0")
        if min(self.alpha_content, self.pixel, self.gamma) < 0 or self.lr <= 0:
            raise ValueError(f"weights must be >= 0 and lr > 0: alpha_content={self.alpha_content}, "
                             f"pixel={self.pixel}, gamma={self.gamma}, lr={self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: expected one of {PRECISIONS}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}: "
                             "expected >= 1")

    @property
    def js(self) -> tuple[int, ...]:
        """J as sorted unique positive ints, e.g. (1, 2, 4)."""
        bad = ValueError(f"J={self.J!r}: expected comma-separated positive integers, e.g. '1,2,4'")
        try:
            js = sorted({int(s) for s in str(self.J).replace(" ", "").split(",") if s})
        except ValueError:
            raise bad from None
        if not js or js[0] < 1:
            raise bad
        return tuple(js)


@dataclass
class TemporalLossResult:
    generator: TemporalCartoonGenerator  # eval mode, on the training device
    out_dir: Path
    steps: int  # steps done in total
    resumed_from: int  # step the run resumed from (0: fresh)
    seconds: float  # wall time of this call's training loop
    seconds_per_step: float  # seconds / steps trained in this call (NaN if none)


# ----------------------------------------------------------------------------------------------
# data: windows of consecutive frames, and their flows


class WindowSampler:
    """Random windows of ``window`` consecutive frames inside one shot, with one crop + flip per window.

    All draws come from one seeded ``torch.Generator`` (its state is checkpointed). ``sample()`` returns
    the colorized crops (B, T, 3, c, c) uint8 tensor and the gray crops (B, T, c, c) uint8 numpy array.
    """

    def __init__(self, clips: Sequence[Clip], window: int, crop: int, batch: int, seed: int):
        self.clips, self.window, self.crop, self.batch = list(clips), window, crop, batch
        self.starts = [(ci, s) for ci, clip in enumerate(self.clips) for s in clip.windows(window)]
        if not self.starts:
            raise ValueError(f"no window of {window} consecutive frames inside one shot in clips "
                             f"{[c.name for c in self.clips]}")
        small = [f"{c.name} {c.gray.shape[1]}x{c.gray.shape[2]}" for c in self.clips
                 if min(c.gray.shape[1:]) < crop]
        if small:
            raise ValueError(f"crop={crop} is larger than clip(s) {', '.join(small)} (H x W); lower crop")
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self) -> tuple[torch.Tensor, np.ndarray]:
        c, T = self.crop, self.window
        idx = torch.randint(len(self.starts), (self.batch,), generator=self.gen).tolist()
        colors, grays = [], []
        for i in idx:
            ci, s = self.starts[i]
            clip = self.clips[ci]
            h, w = clip.gray.shape[1:]
            y = int(torch.randint(h - c + 1, (1,), generator=self.gen))
            x = int(torch.randint(w - c + 1, (1,), generator=self.gen))
            flip = bool(torch.rand(1, generator=self.gen) < 0.5)
            col = clip.colorized[s : s + T, y : y + c, x : x + c]  # (T, c, c, 3)
            gray = clip.gray[s : s + T, y : y + c, x : x + c]  # (T, c, c)
            if flip:
                col, gray = col[:, :, ::-1], gray[:, :, ::-1]
            colors.append(np.ascontiguousarray(col))
            grays.append(np.ascontiguousarray(gray))
        colorized = torch.from_numpy(np.stack(colors)).permute(0, 1, 4, 2, 3).contiguous()  # (B, T, 3, c, c)
        return colorized, np.stack(grays)  # (B, T, 3, c, c) uint8, (B, T, c, c) uint8


def window_flows(gray: np.ndarray, js: Sequence[int], method: str = "dis", preset: str = "medium"
                 ) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]:
    """Backward flows and certainties of a batch of gray windows, for every (t, j) with t >= 1, t-j >= 0.

    ``gray`` (B, T, h, w) uint8 -> {(t, j): (flow_{t->t-j} (B, 2, h, w), c^(t-j,t) (B, 1, h, w))}, float32.
    The flow t -> t-j warps frame t-j onto frame t; c is Ruder's occlusion rule checked with the flow
    t-j -> t (``flow.occlusion_mask``), 1 = trust the warp.
    """
    b, T = gray.shape[:2]
    out = {}
    for t in range(1, T):
        for j in js:
            if t - j < 0:
                continue
            flows, masks = [], []
            for k in range(b):
                back = estimate_flow(gray[k, t], gray[k, t - j], method, preset=preset)  # (h, w, 2)
                fwd = estimate_flow(gray[k, t - j], gray[k, t], method, preset=preset)  # (h, w, 2)
                flows.append(back)
                masks.append(occlusion_mask(back, fwd))  # (h, w)
            out[(t, j)] = (torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous(),  # (B, 2, h, w)
                           torch.from_numpy(np.stack(masks))[:, None])  # (B, 1, h, w)
    return out


def fingerprint(model: nn.Module) -> str:
    """sha1 of a module's state_dict (names and values): tells whether a resume uses the same base."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# one window


def window_loss(model: nn.Module, base: nn.Module, features: FeaturesFn,
                colorized: torch.Tensor, flows: Mapping[tuple[int, int], tuple[torch.Tensor, torch.Tensor]],
                cfg: TemporalLossConfig, device: torch.device) -> dict[str, float]:
    """Run ``model`` over the windows in order, backpropagating each frame's loss; returns mean losses.

    ``colorized`` (B, T, 3, c, c) uint8; ``flows`` from :func:`window_flows`. Gradients accumulate in
    ``model``'s parameters (the caller zeroes them and steps the optimizer). Returns the means over
    frames t >= 1 of total, content, pixel, temporal (the last unweighted: Eq. 9's sum over J).
    ``model``: a ``TemporalCartoonGenerator`` or its DistributedDataParallel wrapper, whose gradients are
    then averaged over the ranks once, in the last frame's backward (the earlier ones run in ``no_sync``).
    """
    T = colorized.shape[1]
    x_all = colorized.to(device).float() / 127.5 - 1.0  # (B, T, 3, c, c) in [-1, 1]
    outs: list[torch.Tensor] = []  # detached outputs y^(t), float32 in [-1, 1], (B, 3, c, c)
    sums = {k: 0.0 for k in ("total", "content", "pixel", "temporal")}
    for t in range(T):
        x = x_all[:, t]  # (B, 3, c, c)
        if t == 0:
            with torch.no_grad(), autocast(device, cfg.precision):
                outs.append(model(x).float())  # no past, no loss: it only becomes frame 1's past
            continue
        if (t, 1) not in flows:
            raise KeyError(f"flows lack (t={t}, j=1): the network input always needs the flow t -> t-1")
        flow1, c1 = (v.to(device) for v in flows[(t, 1)])  # (B, 2, c, c), (B, 1, c, c)
        prev = warp_torch(outs[t - 1], flow1)  # (B, 3, c, c): w_{t-1}^t(y^(t-1)), float32
        with torch.no_grad(), autocast(device, cfg.precision):
            target = base(x).float()  # (B, 3, c, c): the frozen per-frame cartoon G0(x^(t))
        # DDP: the frames' gradients accumulate locally; the last frame's backward all-reduces their sum
        sync = model.no_sync() if t < T - 1 and hasattr(model, "no_sync") else contextlib.nullcontext()
        with sync:
            with autocast(device, cfg.precision):
                y = model(x, prev, c1)  # (B, 3, c, c)
                content = content_loss(features, y, target, cfg.content_layer).float()
            y = y.float()
            pixel = (y - target).abs().mean()
            # Eq. (9) temporal part: Eq. (8) against every past frame t-j (j in J) with Eq. (10) weights
            js = [j for j in cfg.js if t - j >= 0]
            certainty = {j: flows[(t, j)][1].to(device) for j in js}  # c^(t-j,t), (B, 1, c, c)
            c_long = long_term_weights(certainty)  # Eq. (10)
            warped = {j: (warp_torch(outs[t - j], flows[(t, j)][0].to(device)) + 1.0) / 2.0  # [0, 1]
                      for j in js}
            temporal = long_term_temporal_loss((y + 1.0) / 2.0, warped, c_long)  # Eqs. (8)-(10)
            total = cfg.alpha_content * content + cfg.pixel * pixel + cfg.gamma * temporal  # Eq. (9)
            (total / (T - 1)).backward()  # the past is detached: each frame's graph is its own
        outs.append(y.detach())
        for k, v in (("total", total), ("content", content), ("pixel", pixel), ("temporal", temporal)):
            sums[k] += float(v.detach()) / (T - 1)
    return sums


# ----------------------------------------------------------------------------------------------
# the loop


def finetune_temporal(base: CartoonGenerator | ReleasedCartoonGAN, clips: Sequence[Clip],
                      features: FeaturesFn, cfg: TemporalLossConfig, out_dir: str | os.PathLike,
                      device: torch.device | str = "cpu", progress: bool = True, resume: bool = True,
                      stop_after: int | None = None) -> TemporalLossResult:
    """Fine-tune ``base`` with Ruder et al.'s temporal loss on windows of ``clips``; see the module docstring.

    ``base``: the trained per-frame generator G0 (left unchanged; a frozen copy gives the targets).
    ``features``: the frozen perceptual net, ``features(rgb01, layers=(...)) -> {name: tensor}``.
    ``resume``: continue from ``out_dir/train_state.pt`` when it was saved with the same configuration,
    base weights and clips. ``stop_after``: stop (with a checkpoint) once this many steps are done, as a
    kill would. The final model is written to ``<out_dir>/generator.pt`` when all steps are done.
    Under torchrun: data-parallel over the processes (module docstring); ``cfg.batch`` must be a multiple
    of their number.
    """
    out_dir = Path(out_dir)
    device = torch.device(device)
    ctx = distributed.current()  # one process unless under torchrun
    ctx.local_batch(cfg.batch)  # fail early when the global batch does not split evenly
    js = cfg.js
    if 1 not in js:
        js = (1, *js)  # the network input is the warped PREVIOUS output: flow t -> t-1 is always needed
    if has_prior(base):  # G's inputs: the colorized frames' abstraction, streamed through each shot
        clips = [replace(c, colorized=prior_frames(base, c.colorized, c.shot_starts, c.gray)) for c in clips]
    sampler = WindowSampler(clips, cfg.window, cfg.crop, cfg.batch, cfg.seed)
    ckpt = Checkpointer(out_dir / STATE_FILE)

    # 1. models: the frozen per-frame generator (targets) and the temporal one (trained), optimizer
    frozen = copy.deepcopy(base).to(device).eval().requires_grad_(False)
    model = ctx.prepare(TemporalCartoonGenerator(base).to(device).train())  # instance norm only: no-op today
    model.base.requires_grad_(cfg.train_base)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    base_id = fingerprint(frozen)
    data_id = [(c.name, list(c.gray.shape), list(c.shot_starts)) for c in clips]
    step = 0
    if resume and ckpt.exists():
        state = ckpt.load(restore_rng=False)
        same_cfg = {k: v for k, v in state.get("train_config", {}).items() if k not in _BOOKKEEPING} == \
                   {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING}
        if same_cfg and state.get("base_fingerprint") == base_id and state.get("clips") == data_id:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sampler.gen.set_state(state["sampler"])
            set_rng_state(state["rng"])
            step = int(state["step"])
        elif ctx.is_main:
            print(f"{ckpt.path}: saved with another configuration, base generator or clips; "
                  "training from scratch")
    resumed_from = step
    live_dir = out_dir / "dvclive"
    if step > 0 and ctx.is_main:
        truncate_curves(live_dir, step)
    log = LossLog(live_dir, resume=step > 0)

    def save_state(done: int) -> None:
        ckpt.save(model=model.state_dict(), config=asdict(model.cfg), train_config=asdict(cfg),
                  optimizer=opt.state_dict(), step=done, sampler=sampler.gen.get_state(),
                  base_fingerprint=base_id, clips=data_id)

    # 2. the loop: sample windows, flows on the gray crops, sequential run with per-frame losses
    sums: dict[str, float] = {}
    n_sum = 0
    done = step
    t0 = time.time()
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc="temporal loss",
               disable=not progress or not ctx.is_main)
    model_ddp = ctx.wrap(model)  # DDP (the model itself in one process); after the resume: same weights
    for s in bar:
        # the global batch, the same on every rank, then this rank's rows (all of them in one process)
        colorized, gray = ctx.shard(*sampler.sample())  # (B/W, T, 3, c, c) uint8, (B/W, T, c, c) uint8
        flows = window_flows(gray, js, cfg.flow, cfg.flow_preset)
        opt.zero_grad(set_to_none=True)
        losses = window_loss(model_ddp, frozen, features, colorized, flows, cfg, device)
        opt.step()
        for k, v in ctx.mean(losses).items():  # means over the global batch
            sums[k] = sums.get(k, 0.0) + v
        n_sum += 1
        done = s + 1
        # 3. bookkeeping: log means, checkpoint
        if done % cfg.log_every == 0 or done == cfg.steps:
            log.log(s, **{k: v / n_sum for k, v in sums.items()})
            bar.set_postfix({k: f"{v / n_sum:.4f}" for k, v in sums.items()})
            sums, n_sum = {}, 0
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after:
            save_state(done)
        if stop_after is not None and done >= stop_after:
            break
    if cfg.steps == 0 and step == 0:
        save_state(0)
    bar.close()
    log.close()
    seconds = time.time() - t0
    trained = done - resumed_from
    model.eval()
    if done >= cfg.steps and ctx.is_main:
        model.save(out_dir / GENERATOR_FILE, extra={"train_config": asdict(cfg), "step": done})
    return TemporalLossResult(model, out_dir, done, resumed_from, seconds,
                              seconds / trained if trained else float("nan"))
