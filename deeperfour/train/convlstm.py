"""Training of Lai et al.'s temporal consistency network (paper Sec. 5.2.2, Eqs. 11-14; reference Sec. 3).

The network (``deeperfour.models.convlstm``) learns to turn a flickering per-frame result P (colorized or
cartoon frames) and the B&W input I into a steady output O. One optimizer step = one batch of windows:

1. sample ``batch`` windows of ``clip_len`` frames, each inside one shot of one clip, with a random crop
   (the same for every frame of a window), a random horizontal flip and a random target kind;
2. compute DIS optical flow on the INPUT crops (gray), backward t -> t-1 and t -> 0 (first frame of the
   window), and from it the visibility masks M = exp(-alpha |I_t - warp(I_s)|^2);
3. unroll the recurrence as Lai et al. do: O_0 = P_0 (no state); for t >= 1
   O_t, hidden = net(P_t, O_{t-1}, I_t, I_{t-1}, hidden), with the loss of Eq. (11) at every step
   (long-term term, Eq. 14, only for t >= 2, where frame 0 is not also the previous frame);
4. average the step losses over the T - 1 steps: one backward pass and one Adam step per batch.

Backpropagation follows Lai et al.'s released training code by default: the previous output O_{t-1} is
fed back DETACHED (and clamped to [0, 1], as at inference), both as network input and as the target of
Eq. (13), and the ConvLSTM state is detached after every step too (one-step truncated backpropagation;
the losses of all steps still sum into one backward pass). ``full_bptt=True`` keeps the state's graph
instead, so gradients also flow through the memory across the whole window (same memory here: every
step's graph is kept until the single backward anyway).
The untrained network is the identity (the last conv starts at zero, so O_t = P_t exactly): training
starts from the per-frame result and only learns the correction.

Under ``torchrun`` (``deeperfour.train.distributed``) every rank draws the same global batch of windows
from the seeded sampler and keeps its own rows (flows and masks are computed for those rows only); the
network is DistributedDataParallel (the T - 1 forward passes of the unrolled window feed one backward,
whose gradients DDP averages over the ranks), logged values are averaged over the ranks, and rank 0 alone
writes the checkpoint, the network and the logs. Every loss is a mean over equal per-rank slices, so the
step equals the single-process step on the global batch, and the checkpoint (global sampler state)
resumes on any number of processes whose count divides ``batch``::

    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run convlstm

Outputs under ``out_dir``::

    train_state.pt   Checkpointer: network, Adam, step, sampler and RNG states, both configs
    convlstm.pt      the final network (deeperfour.models.convlstm.from_checkpoint), config inside
    dvclive/         loss curves: total, perceptual, short_term, long_term, short_term_per_frame
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deeperfour.core.precision import PRECISIONS, autocast
from deeperfour.film.flow import estimate_flow, visibility_mask, warp_torch
from deeperfour.losses.temporal import lai_losses, masked_l1
from deeperfour.models.convlstm import ConvLSTMConfig, TemporalConsistencyNet
from deeperfour.train import distributed
from deeperfour.train.clips import TARGETS, Clip
from deeperfour.train.common import Checkpointer, LossLog, set_rng_state, truncate_curves

FeaturesFn = Callable[..., Mapping[str, torch.Tensor]]
STATE_FILE = "train_state.pt"
NETWORK_FILE = "convlstm.pt"
GATE_INIT = 0.0  # initial gate logit of the flow-guided variant: sigmoid(0) = half of the aligned past
LIVE_DIR = "dvclive"
FLOW_METHODS = ("dis", "farneback")
# fields that may change between a killed run and its resume (``steps`` may grow: training continues)
_RESUMABLE = ("log_every", "checkpoint_every", "steps")


@dataclass
class ConvLSTMTrainConfig:
    """One training run of the stabilizer (the ``convlstm`` params section; saved in every checkpoint)."""

    nf: int = 16  # network base width (paper 32; 16 on CPU)
    n_res_blocks: int = 5  # residual blocks before the ConvLSTM (paper 5)
    targets: str = "colorized,cartoon"  # comma list of per-frame results P trained on, mixed per batch item
    clip_len: int = 7  # frames per training window, >= 2 (paper 11)
    crop: int = 96  # square crop, px, <= every clip's sides (paper 192)
    batch: int = 2  # windows per step (paper 4)
    steps: int = 1000  # optimizer steps
    lr: float = 1e-4  # Adam learning rate (paper 1e-4; 5e-4 halves the flicker in 200 CPU steps)
    lambda_p: float = 10.0  # weight of the perceptual loss, Eq. (11)-(12)
    lambda_st: float = 100.0  # weight of the short-term loss, Eq. (11), (13)
    lambda_lt: float = 100.0  # weight of the long-term loss, Eq. (11), (14)
    alpha: float = 50.0  # visibility mask M = exp(-alpha |I_t - warp(I_s)|^2) (Lai et al.: 50)
    perceptual_layer: str = "relu4_3"  # VGG layer of Eq. (12)
    precision: str = "bf16"  # "bf16" autocast (CPU/CUDA) or "fp32"
    seed: int = 0  # seed of the network init and the window sampler
    log_every: int = 10  # steps between rows of the loss log (means over those steps)
    checkpoint_every: int = 100  # steps between train_state.pt saves
    flow: str = "dis"  # optical flow for the training masks: "dis" (OpenCV DIS) or "farneback"
    flow_preset: str = "medium"  # DIS preset: ultrafast | fast | medium
    full_bptt: bool = False  # False: ConvLSTM state detached after every step (Lai et al.'s code); True:
    #                          gradients flow through the state across the whole window
    warp_prev: bool = False  # True: feed O_{t-1} and I_{t-1} warped to frame t (flow t -> t-1 of the input)

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> ConvLSTMTrainConfig:
        """The run from the ``convlstm`` parameters (``past_input: warped`` -> warp_prev)."""
        keys = ("nf", "n_res_blocks", "targets", "clip_len", "crop", "batch", "steps", "lr", "lambda_p",
                "lambda_st", "lambda_lt", "alpha", "perceptual_layer", "precision", "seed", "log_every",
                "checkpoint_every", "flow")
        return cls(**{k: p[k] for k in keys}, warp_prev=p.get("past_input", "blind") == "warped")

    def __post_init__(self):
        if self.clip_len < 2:
            raise ValueError(f"clip_len={self.clip_len}: a training window needs at least 2 frames "
                             "(O_0 = P_0, the network runs from the second frame on)")
        if self.crop < 8 or self.batch < 1 or self.steps < 0:
            raise ValueError(f"crop={self.crop}, batch={self.batch}, steps={self.steps}: "
                             "expected crop >= 8, batch >= 1, steps >= 0")
        unknown = [t for t in self.target_kinds if t not in TARGETS]
        if unknown or not self.target_kinds:
            raise ValueError(f"targets={self.targets!r}: unknown kind(s) {unknown}; "
                             f"choose a comma list of {', '.join(TARGETS)}")
        if self.flow not in FLOW_METHODS:
            raise ValueError(f"flow={self.flow!r}: choose from {', '.join(FLOW_METHODS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: expected one of {PRECISIONS}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}: "
                             "expected >= 1")

    @property
    def target_kinds(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.targets.split(",") if t.strip())

    @property
    def lambdas(self) -> tuple[float, float, float]:
        return self.lambda_p, self.lambda_st, self.lambda_lt

    def model_config(self) -> ConvLSTMConfig:
        return ConvLSTMConfig(nf=self.nf, n_res_blocks=self.n_res_blocks, warp_prev=self.warp_prev)


@dataclass
class ConvLSTMTrainResult:
    net: TemporalConsistencyNet  # eval mode, on the training device
    out_dir: Path
    steps: int  # steps done in total
    resumed_from: int  # step the run resumed from (0: fresh)
    seconds: float  # wall time of this call's training loop
    seconds_per_step: float  # seconds / steps done in this call (NaN if none)


def new_network(cfg: ConvLSTMTrainConfig) -> TemporalConsistencyNet:
    """Seeded network whose last conv is zero: the residual is 0, so the untrained net returns O_t = P_t.

    Starting at the identity means training starts from the per-frame frames, never from noise added to
    them. The ``out`` conv gets a gradient at the first step, the layers before it from the second on.
    Flow-guided variant: the gate starts half open (GATE_INIT); training opens it where the past is reliable.
    """
    torch.manual_seed(cfg.seed)
    net = TemporalConsistencyNet(cfg.model_config())
    nn.init.zeros_(net.out.weight)
    nn.init.zeros_(net.out.bias)
    if cfg.warp_prev:
        with torch.no_grad():
            net.out.bias[-1] = GATE_INIT
    return net


# ---------------------------------------------------------------------------------------------------------
# Data: windows, flows, masks
# ---------------------------------------------------------------------------------------------------------


def check_clips(clips: Sequence[Clip], cfg: ConvLSTMTrainConfig) -> None:
    """Raise a clear ValueError when the clips cannot feed this configuration."""
    if not clips:
        raise ValueError("no training clips")
    small = [f"{c.name} {h}x{w}" for c in clips for h, w in [c.gray.shape[1:]] if min(h, w) < cfg.crop]
    if small:
        raise ValueError(f"crop={cfg.crop} px is larger than clip(s) {', '.join(small)} (H x W); "
                         "lower crop or rebuild the clips larger")
    if not any(c.windows(cfg.clip_len) for c in clips):
        raise ValueError(f"no shot of any clip holds clip_len={cfg.clip_len} frames "
                         f"(longest shot: {max(_longest_shot(c) for c in clips)}); lower clip_len")


def _longest_shot(clip: Clip) -> int:
    bounds = [*clip.shot_starts, len(clip)]
    return max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))


class WindowSampler:
    """Random training windows from one seeded ``torch.Generator`` (its state is checkpointed).

    Per window: a clip (uniform over the clips that hold a window), a window start inside one shot
    (``Clip.windows``), a crop position, a horizontal flip, and a target kind. A killed and resumed run
    draws the same windows as an uninterrupted one.
    """

    def __init__(self, clips: Sequence[Clip], cfg: ConvLSTMTrainConfig):
        self.clips = [c for c in clips if c.windows(cfg.clip_len)]
        self.starts = [c.windows(cfg.clip_len) for c in self.clips]
        self.length, self.crop, self.kinds = cfg.clip_len, cfg.crop, cfg.target_kinds
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (1,), generator=self.gen))

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """One window: gray (T, c, c) uint8 and target frames P (T, c, c, 3) uint8."""
        k = self._randint(len(self.clips))
        clip, c = self.clips[k], self.crop
        s = self.starts[k][self._randint(len(self.starts[k]))]
        y = self._randint(clip.gray.shape[1] - c + 1)
        x = self._randint(clip.gray.shape[2] - c + 1)
        flip = self._randint(2) == 1
        kind = self.kinds[self._randint(len(self.kinds))]
        frames = slice(s, s + self.length)
        gray = clip.gray[frames, y : y + c, x : x + c]  # (T, c, c)
        target = getattr(clip, kind)[frames, y : y + c, x : x + c]  # (T, c, c, 3)
        if flip:
            gray, target = gray[:, :, ::-1], target[:, :, ::-1]
        return np.ascontiguousarray(gray), np.ascontiguousarray(target)


def window_flows(gray: np.ndarray, method: str = "dis",
                 preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """Backward flows of a gray window (T, c, c): to the previous frame and to the first frame.

    Returns (to_prev, to_first), each (T, c, c, 2) float32; entry t maps pixels of frame t into frame t-1
    (resp. frame 0), so ``warp(frame_{t-1}, to_prev[t])`` is frame t-1 seen on the grid of frame t.
    Entry 0 is zero (unused); to_first[1] = to_prev[1] (one flow, not two estimates).
    """
    kw = {"preset": preset} if method == "dis" else {}
    to_prev = np.zeros((*gray.shape, 2), np.float32)  # (T, c, c, 2)
    to_first = np.zeros_like(to_prev)
    for t in range(1, len(gray)):
        to_prev[t] = estimate_flow(gray[t], gray[t - 1], method, **kw)
        to_first[t] = to_prev[t] if t == 1 else estimate_flow(gray[t], gray[0], method, **kw)
    return to_prev, to_first


@dataclass
class WindowBatch:
    """A batch of windows, time first, floats in [0, 1] (flows in px)."""

    I: torch.Tensor  # (T, B, 3, c, c) input frames, gray replicated to the network's 3 channels
    P: torch.Tensor  # (T, B, 3, c, c) per-frame results
    M_st: torch.Tensor  # (T, B, 1, c, c) visibility of frame t-1 in frame t (entry 0 unused)
    M_lt: torch.Tensor  # (T, B, 1, c, c) visibility of frame 0 in frame t (entries 0, 1 unused)
    flow_prev: torch.Tensor  # (T, B, 2, c, c) backward flow t -> t-1
    flow_first: torch.Tensor  # (T, B, 2, c, c) backward flow t -> 0


def _stack(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """B arrays (T, c, c[, C]) -> (T, B, C, c, c) float tensor."""
    x = torch.from_numpy(np.stack(arrays, axis=1))  # (T, B, c, c[, C])
    return x[:, :, None] if x.ndim == 4 else x.permute(0, 1, 4, 2, 3)


def visibility(gray: torch.Tensor, flow: torch.Tensor, alpha: float, src: int | None = None) -> torch.Tensor:
    """Lai et al.'s M_{t=>s} = exp(-alpha |I_t - warp(I_s)|^2) for every t of a window.

    ``gray`` (T, B, 1, c, c) in [0, 1], ``flow`` (T, B, 2, c, c) backward flows t -> s; ``src`` = None
    means s = t-1, else the fixed frame s. Computed on the gray INPUT (one channel), so ``alpha`` weighs
    the squared luma difference once, not summed over three replicated channels. -> (T, B, 1, c, c).
    """
    T = gray.shape[0]
    masks = torch.zeros_like(gray)  # (T, B, 1, c, c)
    for t in range(1, T):
        s = t - 1 if src is None else src
        masks[t] = visibility_mask(gray[t], warp_torch(gray[s], flow[t]), alpha)  # (B, 1, c, c)
    return masks


def make_batch(windows: Sequence[tuple[np.ndarray, np.ndarray]], cfg: ConvLSTMTrainConfig,
               device: torch.device | str = "cpu") -> WindowBatch:
    """Flows (numpy, per window), masks and tensors for a list of (gray, target) windows."""
    flows = [window_flows(g, cfg.flow, cfg.flow_preset) for g, _ in windows]
    gray = _stack([g for g, _ in windows]).float() / 255.0  # (T, B, 1, c, c)
    P = _stack([p for _, p in windows]).float() / 255.0  # (T, B, 3, c, c)
    flow_prev = _stack([f for f, _ in flows])  # (T, B, 2, c, c)
    flow_first = _stack([f for _, f in flows])
    M_st = visibility(gray, flow_prev, cfg.alpha)  # M_{t=>t-1}, Eq. (13)
    M_lt = visibility(gray, flow_first, cfg.alpha, src=0)  # M_{t=>1} of the paper (frame 0 here), Eq. (14)
    I = gray.expand(-1, -1, 3, -1, -1)  # (T, B, 3, c, c)
    return WindowBatch(*(x.to(device) for x in (I, P, M_st, M_lt, flow_prev, flow_first)))


# ---------------------------------------------------------------------------------------------------------
# The unrolled window and its loss
# ---------------------------------------------------------------------------------------------------------


def unroll(net: nn.Module, batch: WindowBatch, features: FeaturesFn, cfg: ConvLSTMTrainConfig,
           device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict[str, float], list[torch.Tensor]]:
    """Run the recurrence over a window and return (loss, logged parts, outputs O_0..O_{T-1}).

    The loss is Eq. (11) averaged over the steps t = 1..T-1. No gradient flows through the fed-back
    previous outputs; through the ConvLSTM state only with ``cfg.full_bptt`` (module docstring).
    ``net``: a ``TemporalConsistencyNet`` or its DistributedDataParallel wrapper (one backward of the
    returned loss after the T - 1 forward passes).
    """
    T = batch.P.shape[0]
    O_prev, hidden = batch.P[0], None  # O_0 = P_0, no state: a shot start
    outputs = [O_prev]
    total = batch.P.new_zeros(())
    parts = {"perceptual": 0.0, "short_term": 0.0, "long_term": 0.0, "short_term_per_frame": 0.0}
    for t in range(1, T):
        P_t, I_t, I_prev = batch.P[t], batch.I[t], batch.I[t - 1]  # (B, 3, c, c)
        with torch.no_grad():  # targets of Eqs. (13)-(14): no gradient into past outputs
            O_prev_warped = warp_torch(O_prev, batch.flow_prev[t])  # (B, 3, c, c)
            O_first_warped = warp_torch(outputs[0], batch.flow_first[t]) if t >= 2 else None
            M_lt = batch.M_lt[t] if t >= 2 else None  # long-term term only when frame 0 != frame t-1
            # the same Eq. (13) error of the per-frame input, the baseline the net must beat
            flicker = masked_l1(P_t, warp_torch(batch.P[t - 1], batch.flow_prev[t]), batch.M_st[t])
        if cfg.warp_prev:  # flow-guided variant: the past arrives aligned with frame t
            with torch.no_grad():
                O_prev, I_prev = O_prev_warped, warp_torch(I_prev, batch.flow_prev[t])
        with autocast(device, cfg.precision):
            O_t, hidden = net(P_t, O_prev, I_t, I_prev, hidden)  # (B, 3, c, c), (h, c) carried on
            if not cfg.full_bptt:  # one-step truncation: the next step reads the state as a constant
                hidden = (hidden[0].detach(), hidden[1].detach())
            loss_t, parts_t = lai_losses(O_t.float(), P_t, O_prev_warped, O_first_warped, batch.M_st[t], M_lt,
                                         features, cfg.lambdas, cfg.perceptual_layer)  # Eqs. (11)-(14)
        total = total + loss_t.float() / (T - 1)  # mean over the time steps
        for k, v in parts_t.items():
            parts[k] += float(v.detach()) / (T - 1)
        parts["short_term_per_frame"] += float(flicker) / (T - 1)
        O_prev = O_t.detach().float().clamp(0.0, 1.0)  # fed back as at inference (stabilize.py)
        outputs.append(O_prev)
    parts["total"] = float(total.detach())
    return total, parts, outputs


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def _restore(ckpt: Checkpointer, cfg: ConvLSTMTrainConfig, net: nn.Module, opt: torch.optim.Optimizer,
             sampler: WindowSampler) -> int:
    """Load a compatible training state into net/opt/sampler/global RNGs; return its step (0 if none)."""
    if not ckpt.exists():
        return 0
    state = ckpt.load(restore_rng=False)
    saved = {k: v for k, v in state.get("train_config", {}).items() if k not in _RESUMABLE}
    wanted = {k: v for k, v in asdict(cfg).items() if k not in _RESUMABLE}
    if saved != wanted or int(state["step"]) > cfg.steps:
        if distributed.is_main():
            print(f"{ckpt.path}: saved with another configuration; training from scratch")
        return 0
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sampler.gen.set_state(state["sampler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def train_convlstm(clips: Sequence[Clip], features: FeaturesFn, cfg: ConvLSTMTrainConfig,
                   out_dir: str | os.PathLike, device: torch.device | str = "cpu", progress: bool = True,
                   resume: bool = True, stop_after: int | None = None) -> ConvLSTMTrainResult:
    """Train (or resume) the stabilizer on ``clips``; see the module docstring.

    ``features``: the frozen perceptual net, ``features(rgb01, layers=(...)) -> {name: tensor}``
    (``deeperfour.models.features.load_hed_vgg16()``); a module is frozen here if it is not already.
    ``resume``: continue from ``out_dir/train_state.pt`` when it was saved with the same configuration
    (``steps`` may have grown). ``stop_after``: stop with a checkpoint once this many steps are done, as a
    kill would; ``convlstm.pt`` is written only when all ``cfg.steps`` are done.
    Under torchrun: data-parallel over the processes (module docstring); ``cfg.batch`` must be a multiple
    of their number.
    """
    out_dir, device = Path(out_dir), torch.device(device)
    check_clips(clips, cfg)
    ctx = distributed.current()  # one process unless under torchrun
    ctx.local_batch(cfg.batch)  # fail early when the global batch does not split evenly
    if isinstance(features, nn.Module):
        features.requires_grad_(False).eval()

    # 1. network, optimizer, sampler: fresh (seeded) or from the checkpoint
    net = ctx.prepare(new_network(cfg).to(device))  # no batch-coupled layers today: a no-op kept for safety
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sampler = WindowSampler(clips, cfg)
    ckpt = Checkpointer(out_dir / STATE_FILE)
    step = _restore(ckpt, cfg, net, opt, sampler) if resume else 0
    resumed_from = step
    if step > 0 and ctx.is_main:
        truncate_curves(out_dir / LIVE_DIR, step)  # rows logged after the last checkpoint of a killed run
    log = LossLog(out_dir / LIVE_DIR, resume=step > 0)

    def save_state(done: int) -> None:
        ckpt.save(model=net.state_dict(), config=asdict(cfg.model_config()), train_config=asdict(cfg),
                  optimizer=opt.state_dict(), step=done, sampler=sampler.gen.get_state())

    net.train()
    net_ddp = ctx.wrap(net)  # DDP (the network itself in one process); after the resume: same weights
    sums: dict[str, float] = {}
    n_sums, done, t0 = 0, step, time.time()
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc="train convlstm",
               disable=not progress or not ctx.is_main)
    for s in bar:
        # 2. a batch of windows with their flows and masks (on the input crops): the global batch, the
        # same on every rank, then this rank's rows (all of them in one process)
        batch = make_batch(ctx.shard([sampler.draw() for _ in range(cfg.batch)]), cfg, device)
        # 3. unroll the window, Eq. (11) averaged over time, one optimizer step
        loss, parts, _ = unroll(net_ddp, batch, features, cfg, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the ranks
        opt.step()
        # 4. bookkeeping: loss log (means since the last row), checkpoint
        for k, v in ctx.mean(parts).items():  # means over the global batch
            sums[k] = sums.get(k, 0.0) + v
        n_sums, done = n_sums + 1, s + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            log.log(s, **{k: v / n_sums for k, v in sums.items()})
            bar.set_postfix(total=f"{sums['total'] / n_sums:.4f}",
                            st=f"{sums['short_term'] / n_sums:.4f}")
            sums, n_sums = {}, 0
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after:
            save_state(done)
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    log.close()
    seconds = time.time() - t0
    if cfg.steps == 0 and not ckpt.exists():
        save_state(0)
    net.eval()
    if done >= cfg.steps and ctx.is_main:
        net.save(out_dir / NETWORK_FILE, extra={"train_config": asdict(cfg), "step": done})
    n = done - resumed_from
    return ConvLSTMTrainResult(net, out_dir, done, resumed_from, seconds, seconds / n if n else float("nan"))

