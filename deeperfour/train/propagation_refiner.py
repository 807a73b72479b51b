"""Self-supervised training of the propagation refiner (issue 15; ``models/propagation_refiner.py``).

No film is ever colored by hand here: the color clips and stills the project already has are their own
ground truth. Their luma plays the B&W film, one of their frames plays the artist's keyframe, and the
classical path (``infer.propagate.propagate_shot``, the very code ``convert`` runs) carries its chroma
through the following frames. Every propagated frame is a training sample:

* **clip windows**: in each shot of a color clip (shots detected as on a film), windows of up to
  ``max_gap`` frames, keyed on their first frame; every frame of the window is one sample, so the
  keyframe distance runs 1 .. ``max_gap`` (the issue: pairs 1 to 60 frames apart);
* **still sequences**: a still under ``still_frames`` steps of growing random motion (an affine map plus
  a smooth random displacement, in the spirit of a thin-plate warp) and photometric change (gain,
  gamma), keyed on the unmoved still.

Samples are made once (``build_samples``, at the propagation's work size) and kept in memory as float16:
the input x = [Y, U, V, c, |Y - Y_key|], the true chroma, and, for the temporal term, the flow to the next
frame of the same window with Ruder et al.'s occlusion mask.

Loss per step, on ``batch`` random crops of consecutive sample pairs (t, t+1), O = refiner(x):

    L = |O_t - UV_t|_1 + w_s * sum_d |d O_t| exp(-k |d Y_t|) + w_t * |M (warp(O_{t+1}, f_t->t+1) - O_t)|_1

(L1 on chroma; the edge-aware smoothness of unsupervised depth and flow work, d = x and y differences,
k = ``edge_k``; the flow-warped temporal term of Lai et al. / Ruder et al. on the outputs).

Seeded, resumable (``train/common.Checkpointer``: network, Adam, step, RNG every ``checkpoint_every``
steps), loss curves in dvclive; the result is ONE file, ``refiner.pt``, with its config inside.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from deeperfour.core.precision import autocast
from deeperfour.film.color import luminance
from deeperfour.film.flow import estimate_flow, occlusion_mask, warp_torch
from deeperfour.film.resize import fit_longer_side, resize
from deeperfour.film.shots import detect_shots, shot_ranges
from deeperfour.film.video import read_frames
from deeperfour.infer.propagate import PropagateSettings, chroma, key_yuv, propagate_shot
from deeperfour.models.propagation_refiner import PropagationRefiner, RefinerConfig, refiner_inputs
from deeperfour.train.common import Checkpointer, LossLog, truncate_curves


@dataclass(frozen=True)
class RefinerTrainConfig:
    seed: int = 0
    width: int = 24  # refiner width (RefinerConfig)
    work_side: int = 320  # px: the propagation's work size (PropagateSettings.work_side)
    max_gap: int = 60  # frames from a window's keyframe to its last frame
    clip_stride: int = 1  # keep one window in k of each shot (1 = every frame of every clip is a sample)
    still_frames: int = 12  # frames of a still's synthetic motion sequence
    max_shift: float = 0.06  # largest translation at the sequence's end, fraction of the width
    steps: int = 600  # optimizer steps
    batch: int = 8  # sample pairs per step
    crop: int = 96  # training crop, px
    lr: float = 0.001  # Adam learning rate
    w_smooth: float = 0.05  # weight of the edge-aware smoothness term
    w_temporal: float = 0.5  # weight of the flow-warped temporal term
    edge_k: float = 10.0  # edge-awareness of the smoothness term (per unit of luma gradient)
    precision: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 100

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> RefinerTrainConfig:
        """The config from the ``colorize_reference`` params (or a notebook's globals): the stage's
        ``seed``, ``precision`` and ``work_side``, and every ``refiner_<field>``."""
        names = set(cls.__dataclass_fields__)
        shared = {k: p[k] for k in ("seed", "precision", "work_side") if k in p}
        prefixed = {k[len("refiner_"):]: v for k, v in p.items() if k.startswith("refiner_")}
        return cls(**shared, **{k: v for k, v in prefixed.items() if k in names})


@dataclass
class Samples:
    """Training samples at work size: ``x`` (N, 5, h, w), ``uv`` (N, 2, h, w), ``flow`` (N, 2, h, w) to the
    next sample, ``mask`` (N, 1, h, w) (0 where there is no next sample in the window), ``dist`` (N,) frames
    from the keyframe, all float16 but dist; samples of different sources may differ in size (a list of
    same-size groups)."""

    groups: list[dict[str, np.ndarray]]

    def __len__(self) -> int:
        return sum(len(g["dist"]) for g in self.groups)


def _window_samples(rgb: Sequence[np.ndarray], settings: PropagateSettings) -> dict[str, np.ndarray]:
    """Propagate the first frame's chroma through ``rgb`` (work size) with the classical path and
    return its samples (every frame after the keyframe)."""
    gray = np.stack([luminance(f) for f in rgb])  # (L, h, w) uint8
    h, w = gray.shape[1:]
    keys = {0: (key_yuv(gray[0], chroma(rgb[0])), np.ones((h, w), np.float32))}
    yuv, conf = propagate_shot(gray, keys, settings)
    xs, uvs, flows, masks = [], [], [], []
    for t in range(1, len(rgb)):
        xs.append(refiner_inputs(gray[t], yuv[t], conf[t]))
        uvs.append(chroma(rgb[t]).transpose(2, 0, 1))
        if t + 1 < len(rgb):
            f_fw = estimate_flow(gray[t], gray[t + 1])  # (h, w, 2), t -> t+1
            f_bw = estimate_flow(gray[t + 1], gray[t])
            flows.append(f_fw.transpose(2, 0, 1))
            masks.append(occlusion_mask(f_fw, f_bw)[None])
        else:
            flows.append(np.zeros((2, h, w), np.float32))
            masks.append(np.zeros((1, h, w), np.float32))
    f16 = lambda a: np.stack(a).astype(np.float16)  # noqa: E731
    return {"x": f16(xs), "uv": f16(uvs), "flow": f16(flows), "mask": f16(masks),
            "dist": np.arange(1, len(rgb), dtype=np.int32)}


def _merge(groups: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Concatenate the groups of equal frame size."""
    by_size: dict[tuple, list] = {}
    for g in groups:
        by_size.setdefault(g["x"].shape[2:], []).append(g)
    return [{k: np.concatenate([g[k] for g in gs]) for k in gs[0]} for gs in by_size.values()]


def still_sequence(rgb: np.ndarray, n: int, max_shift: float, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` frames of ``rgb`` under growing random motion and photometric change; frame 0 is ``rgb``.

    Motion at step i of n: an affine map (rotation up to 4 degrees, scale up to 6 %, translation up to
    ``max_shift`` of the width) times i / (n - 1), plus a smooth random displacement (a 4 x 4 grid of
    offsets up to 2 % of the width, upsampled bicubically: a thin-plate-like bend) times the same
    fraction; gain 1 +- 10 % and gamma 1 +- 10 % at the end, linearly in between."""
    h, w = rgb.shape[:2]
    angle, scale = rng.uniform(-4, 4), 1 + rng.uniform(-0.06, 0.06)
    shift = rng.uniform(-max_shift, max_shift, 2) * w
    bend = cv2.resize(rng.uniform(-0.02, 0.02, (4, 4, 2)).astype(np.float32) * w, (w, h),
                      interpolation=cv2.INTER_CUBIC)
    gain, gamma = 1 + rng.uniform(-0.1, 0.1), 1 + rng.uniform(-0.1, 0.1)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = [rgb]
    for i in range(1, n):
        a = i / (n - 1)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), a * angle, 1 + a * (scale - 1))
        m[:, 2] += a * shift
        inv = cv2.invertAffineTransform(m)
        mx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2] + a * bend[..., 0]
        my = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2] + a * bend[..., 1]
        f = cv2.remap(rgb, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255
        f = np.clip((1 + a * (gain - 1)) * f ** (1 + a * (gamma - 1)), 0, 1)
        out.append((f * 255 + 0.5).astype(np.uint8))
    return out


def build_samples(clips: Sequence[str | Path], stills: Sequence[str | Path], cfg: RefinerTrainConfig,
                  progress: bool = True) -> Samples:
    """The training samples of ``clips`` (color videos) and ``stills`` (color images); see the module doc.

    The demo film and the validation clip must not be among them (the stage passes the training ones)."""
    if not clips and not stills:
        raise ValueError("the refiner needs training clips or stills; none were given")
    settings = PropagateSettings(work_side=cfg.work_side)
    rng = np.random.default_rng(cfg.seed)
    groups = []
    for path in clips:
        frames = [f for f in read_frames(path)]
        hw = fit_longer_side(*frames[0].shape[:2], cfg.work_side)
        frames = [resize(f, hw) for f in frames]
        starts = detect_shots(frames)
        windows = [(s, min(s + cfg.max_gap + 1, b)) for a, b in shot_ranges(starts, len(frames))
                   for s in range(a, b - 1, cfg.max_gap * cfg.clip_stride)]
        for s, e in tqdm(windows, desc=f"refiner samples {Path(path).name}", disable=not progress,
                         leave=False):
            if e - s >= 2:
                groups.append(_window_samples(frames[s:e], settings))
    for path in tqdm(stills, desc="refiner samples, stills", disable=not progress, leave=False):
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        rgb = resize(rgb, fit_longer_side(*rgb.shape[:2], cfg.work_side))
        groups.append(_window_samples(still_sequence(rgb, cfg.still_frames, cfg.max_shift, rng), settings))
    return Samples(_merge(groups))


def _batch(samples: Samples, cfg: RefinerTrainConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``batch`` random (t, t+1) pairs, one random crop each (the same for both), random h-flip."""
    sizes = np.array([len(g["dist"]) for g in samples.groups])
    out: dict[str, list] = {k: [] for k in ("x", "uv", "flow", "mask", "x1")}
    for _ in range(cfg.batch):
        gi = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
        g = samples.groups[gi]
        i = int(rng.integers(len(g["dist"])))
        j = i + 1 if g["mask"][i].any() else i  # no next sample: the temporal term is masked out anyway
        h, w = g["x"].shape[2:]
        c = min(cfg.crop, h, w)
        y0, x0 = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        sl = (slice(None), slice(y0, y0 + c), slice(x0, x0 + c))
        flip = bool(rng.integers(2))
        for k, arr in (("x", g["x"][i]), ("uv", g["uv"][i]), ("flow", g["flow"][i]), ("mask", g["mask"][i]),
                       ("x1", g["x"][j])):
            a = arr[sl].astype(np.float32)
            if flip:
                a = a[..., ::-1].copy()
                if k == "flow":
                    a[0] = -a[0]
            out[k].append(a)
    return {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}


def refiner_loss(model: PropagationRefiner, b: Mapping[str, torch.Tensor], cfg: RefinerTrainConfig
                 ) -> dict[str, torch.Tensor]:
    """The three terms of the module doc and their weighted sum ``total``."""
    o_t, o_next = model(b["x"]), model(b["x1"])  # (B, 2, c, c)
    l1 = (o_t - b["uv"]).abs().mean()
    y = b["x"][:, :1]
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    smooth = sum((d(o_t).abs() * torch.exp(-cfg.edge_k * d(y).abs())).mean() for d in (dx, dy))
    temporal = (b["mask"] * (warp_torch(o_next, b["flow"]) - o_t).abs()).mean()
    total = l1 + cfg.w_smooth * smooth + cfg.w_temporal * temporal
    return {"total": total, "l1": l1, "smooth": smooth, "temporal": temporal}


def train_refiner(samples: Samples, cfg: RefinerTrainConfig, out_dir: str | Path, device: str = "cpu",
                  progress: bool = True) -> PropagationRefiner:
    """Train (or resume) the refiner on ``samples``; writes ``out_dir/refiner.pt`` (config inside),
    ``out_dir/refiner_state.pt`` (resume) and the loss log ``out_dir/refiner_dvclive``."""
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    model = PropagationRefiner(RefinerConfig(width=cfg.width)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    ckpt = Checkpointer(out_dir / "refiner_state.pt")
    step = 0
    if ckpt.exists():
        state = ckpt.load()
        if state.get("config") != asdict(cfg):
            raise ValueError(f"{ckpt.path}: saved with another config; delete it to train from scratch")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["sampler"]
        step = state["step"]
        truncate_curves(out_dir / "refiner_dvclive", step)
    log = LossLog(out_dir / "refiner_dvclive", resume=step > 0)
    model.train()
    t0 = time.perf_counter()
    with tqdm(total=cfg.steps, initial=step, desc="refiner", disable=not progress) as bar:
        while step < cfg.steps:
            b = {k: v.to(device) for k, v in _batch(samples, cfg, rng).items()}
            with autocast(device, cfg.precision):
                losses = refiner_loss(model, b, cfg)
            opt.zero_grad(set_to_none=True)
            losses["total"].float().backward()
            opt.step()
            step += 1
            bar.update()
            if step % cfg.log_every == 0:
                log.log(step, **{k: v.item() for k, v in losses.items()})
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                ckpt.save(model=model.state_dict(), optimizer=opt.state_dict(), step=step,
                          sampler=rng.bit_generator.state, config=asdict(cfg))
    log.close()
    model.eval()
    model.save(out_dir / "refiner.pt", {"train_config": asdict(cfg), "samples": len(samples),
                                        "seconds": time.perf_counter() - t0})
    return model
