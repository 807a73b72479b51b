"""Video stabilizers behind one streaming interface, reset at every shot cut (paper Sec. 5.2).

A stabilizer turns a per-frame result into a steadier one, one frame at a time::

    stab.reset()                          # a shot starts: forget the past
    out = stab.step(frame, source)        # (H, W, 3) uint8 -> (H, W, 3) uint8

``frame`` is the per-frame result P_t (colorized or cartoon); ``source`` is the film's input frame I_t
(the B&W frame, gray (H, W) or RGB), on which any flow is computed: the processed frames flicker, the
input does not. :func:`stabilize` drives a stabilizer over a whole film, resetting it at each shot start,
so the first frame of every shot is the per-frame result itself.

* :class:`PerFrame`: the identity (the per-frame pipeline, the baseline every method is scored against);
* :class:`FlowBlend`: the classical baseline: blend the previous output, warped by DIS flow on the
  input frames, into the current frame wherever the occlusion rule (reference Sec. 3) trusts the flow;
* :class:`ConvLSTMStabilizer`: Lai et al.'s blind network (``models/convlstm.py``), no flow at test time.

Ruder et al.'s temporal-loss generator is not a post-process but a cartoonizer that sees its own warped
previous output; it implements the same interface with ``frame`` = the colorized frame
(``deeperfour.infer.cartoonize.TemporalCartoonizer``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from deeperfour.core.precision import autocast
from deeperfour.film.flow import estimate_flow, occlusion_mask, warp, warp_torch
from deeperfour.film.video import VideoWriter, probe, read_frames
from deeperfour.models.convlstm import StreamState, TemporalConsistencyNet


class Stabilizer(Protocol):
    name: str

    def reset(self) -> None: ...

    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray: ...


class FlowMemo:
    """Optical flow between two input frames, remembered by the frames' identity.

    ``convert`` stabilizes the colorized and the cartoon film of the same B&W frames: both stabilizers ask
    for the same flow of the same two source arrays, one after the other. Sharing one memo computes it
    once. Entries hold their frames, so an identity can never be reused while remembered; the last
    ``size`` flows are kept."""

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: list[tuple[np.ndarray, np.ndarray, str, str, np.ndarray]] = []
        self.hits = self.misses = 0

    def __call__(self, src: np.ndarray, dst: np.ndarray, method: str = "dis", preset: str = "medium"
                 ) -> np.ndarray:
        """The flow src -> dst (H, W, 2), as ``film.flow.estimate_flow``."""
        for a, b, m, p, flow in self._entries:
            if a is src and b is dst and m == method and p == preset:
                self.hits += 1
                return flow
        self.misses += 1
        flow = estimate_flow(src, dst, method, preset=preset)
        self._entries = [*self._entries[-(self.size - 1):], (src, dst, method, preset, flow)]
        return flow


def _fresh_flow(src: np.ndarray, dst: np.ndarray, method: str = "dis", preset: str = "medium") -> np.ndarray:
    return estimate_flow(src, dst, method, preset=preset)


class PerFrame:
    """No stabilization: out = P_t."""

    name = "per_frame"

    def reset(self) -> None:
        pass

    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray:
        return frame


class FlowBlend:
    """O_t = P_t + alpha * c * (warp(O_{t-1}) - P_t), with the flow t -> t-1 and certainty c from the input.

    ``alpha`` in [0, 1] is how much of the warped past is kept where the flow is reliable (c = 1 by the
    forward-backward, motion-boundary and in-frame rules); occluded pixels take the new frame. A running
    exponential average along motion trajectories: steadier for larger alpha, but ghosting grows too.
    """

    name = "flow_blend"

    def __init__(self, alpha: float = 0.7, flow_method: str = "dis", preset: str = "medium",
                 flows: FlowMemo | None = None):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"flow blend alpha must be in [0, 1], got {alpha}")
        self.alpha, self.flow_method, self.preset = alpha, flow_method, preset
        self.flow = flows or _fresh_flow  # a FlowMemo shared with another stabilizer of the same film
        self.reset()

    def reset(self) -> None:
        self.prev_out: np.ndarray | None = None  # (H, W, 3) float32 in 0..255
        self.prev_src: np.ndarray | None = None

    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray:
        p = np.asarray(frame, dtype=np.float32)  # (H, W, 3)
        if self.prev_out is None:
            out = p
        else:
            back = self.flow(source, self.prev_src, self.flow_method, self.preset)  # t -> t-1
            fwd = self.flow(self.prev_src, source, self.flow_method, self.preset)  # t-1 -> t
            c = occlusion_mask(back, fwd)[..., None]  # (H, W, 1), 1 = trust the warped past
            out = p + self.alpha * c * (warp(self.prev_out, back) - p)
        self.prev_out, self.prev_src = out, source
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class ConvLSTMStabilizer:
    """Lai et al.'s network, one frame at a time; ``reset`` makes the next output equal P_t exactly.

    A network trained with ``warp_prev`` (``ConvLSTMConfig``) gets O_{t-1} and I_{t-1} warped to frame t
    by the flow t -> t-1 of the input frames, as in its training; Lai et al.'s blind original uses no flow.
    """

    name = "convlstm"

    def __init__(self, net: TemporalConsistencyNet, device: torch.device | str = "cpu",
                 precision: str = "fp32", flow_method: str = "dis", preset: str = "medium",
                 flows: FlowMemo | None = None):
        # channels-last weights: every conv then runs channels-last, the layout oneDNN's bf16 convs are
        # fastest in on CPUs (see models/ops.py)
        self.net = net.to(device, memory_format=torch.channels_last).eval()
        self.device, self.precision = torch.device(device), precision
        self.channels = net.config.channels
        self.warp_prev = getattr(net.config, "warp_prev", False)
        self.flow_method, self.preset = flow_method, preset
        self.flow = flows or _fresh_flow  # a FlowMemo shared with another stabilizer of the same film
        self.reset()

    def reset(self) -> None:
        self.state: StreamState | None = None
        self.o_prev: torch.Tensor | None = None
        self.i_prev: torch.Tensor | None = None
        self.src_prev: np.ndarray | None = None

    def _tensor(self, img: np.ndarray) -> torch.Tensor:
        """uint8 (H, W[, C]) -> (1, channels, H, W) float in [0, 1]; gray is replicated."""
        x = np.asarray(img)
        x = x[..., None] if x.ndim == 2 else x
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return t.expand(1, self.channels, *t.shape[-2:]) if t.shape[1] == 1 else t

    def _aligned_past(self, source: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(O_{t-1}, I_{t-1}), warped to frame t when the network was trained that way."""
        if not self.warp_prev:
            return self.o_prev, self.i_prev
        back = self.flow(source, self.src_prev, self.flow_method, self.preset)  # (H, W, 2) t->t-1
        flow = torch.from_numpy(back).to(self.device).permute(2, 0, 1)[None]  # (1, 2, H, W)
        return warp_torch(self.o_prev, flow), warp_torch(self.i_prev, flow)

    @torch.inference_mode()
    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray:
        P_t, I_t = self._tensor(frame), self._tensor(source)  # (1, C, H, W)
        if self.state is None:  # shot start: O_t = P_t, returned bit-exact
            self.state, self.o_prev, self.i_prev, self.src_prev = StreamState(), P_t, I_t, source
            return np.asarray(frame)
        o_prev, i_prev = self._aligned_past(source)
        with autocast(self.device, self.precision):
            O_t, self.state = self.net.step(P_t, o_prev, I_t, i_prev, self.state)
        self.o_prev, self.i_prev, self.src_prev = O_t.float().clamp(0.0, 1.0), I_t, source
        return (self.o_prev[0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)  # (H, W, C)


def stabilize(stabilizer: Stabilizer, frames: Iterable[np.ndarray], sources: Iterable[np.ndarray],
              shot_starts: Iterable[int] = (0,)) -> Iterator[np.ndarray]:
    """Stream stabilized frames; the stabilizer is reset at frame 0 and at every shot start."""
    starts = set(shot_starts) | {0}
    for t, (frame, src) in enumerate(zip(frames, sources, strict=True)):
        if t in starts:
            stabilizer.reset()
        yield stabilizer.step(frame, src)


def stabilize_film(stabilizer: Stabilizer, film: str | os.PathLike, source: str | os.PathLike,
                   dst: str | os.PathLike, shot_starts: Iterable[int] = (0,), progress: bool = True) -> dict:
    """Stabilize the per-frame ``film`` (e.g. colorized.mkv) into ``dst`` with the B&W ``source`` as input.

    Streams frame by frame (constant memory); ``dst`` keeps the film's frame rate, count and audio and
    appears only when complete. Returns ``{"frames", "seconds", "fps"}``.
    """
    from tqdm.auto import tqdm

    info = probe(film)
    t0 = time.perf_counter()
    frames = stabilize(stabilizer, read_frames(film), read_frames(source, gray=True), shot_starts)
    with VideoWriter(dst, info.fps, info.width, info.height, audio_from=film) as w:
        for out in tqdm(frames, total=info.n_frames, desc=f"{stabilizer.name} {Path(film).name}",
                        unit="frame", disable=not progress):
            w.write(out)
    seconds = time.perf_counter() - t0
    return {"frames": w.n_written, "seconds": seconds, "fps": w.n_written / max(seconds, 1e-9)}
