"""Data-parallel training under ``torchrun``: one global batch, split evenly across processes.

Why the loops can stay almost unchanged: every rank draws the SAME global batch from the same seeded
sampler (the sampler state is global, never per rank) and keeps only its own contiguous slice; each
rank's losses are means over its slice, and DistributedDataParallel averages the gradients over the
ranks, so every optimizer step equals the single-process step on the whole global batch. Layers that
couple the samples of a batch are made to see the global batch too (``DistContext.prepare``):
batch norm uses statistics all-reduced over the ranks, and dropout draws the global batch's mask
and keeps the rank's rows of it, which is the mask one process draws from the same RNG state (CPU).
Checkpoints hold the global state and are written by rank 0 only, so a run resumes on any number of
processes (whose count divides the global batch).

Launch (gloo on CPU, nccl on CUDA; without torchrun everything is a single-process no-op)::

    torchrun --standalone --nproc-per-node 2 -m deeperfour.train.run colorize

In a training loop::

    ctx = distributed.current()                   # rank, world_size, is_main (no-op when alone)
    ctx.local_batch(cfg.batch)                    # fail early: the global batch must split evenly
    ctx.prepare(model)                            # batch norm / dropout see the global batch
    ddp = ctx.wrap(model)                         # DDP (the module itself in one process)
    x = ctx.shard(sampler.sample(...))            # (B/W, ...) this rank's rows of the global batch
    loss = criterion(ddp(x)); loss.backward()     # DDP averages the gradients over the ranks
    log.log(step, **ctx.mean({"loss": loss.item()}))   # LossLog and Checkpointer write on rank 0 only
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (``world_size == 1``: a plain single process)."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "gloo" | "nccl"; None without a process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, figures and progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_batch(self, global_batch: int) -> int:
        """Per-rank batch size; raises unless ``global_batch`` splits evenly (equal slices keep the mean
        of the per-rank mean losses equal to the global mean, and DDP's gradient average exact)."""
        if global_batch % self.world_size:
            raise ValueError(f"global batch {global_batch} does not split evenly across {self.world_size} "
                             f"processes: use a multiple of {self.world_size} (or another --nproc-per-node)")
        return global_batch // self.world_size

    def rows(self, global_batch: int) -> slice:
        """This rank's contiguous rows of a global batch of ``global_batch`` samples."""
        n = self.local_batch(global_batch)
        return slice(self.rank * n, (self.rank + 1) * n)

    def shard(self, *batches: T) -> T | tuple[T, ...]:
        """This rank's rows (first axis) of each global batch: a tensor, an array or a list of samples
        (or of indices). One argument gives one result; several give a tuple. Identity in one process."""
        if not self.enabled:
            return batches[0] if len(batches) == 1 else batches
        out = tuple(b[self.rows(len(b))] for b in batches)
        return out[0] if len(out) == 1 else out

    def prepare(self, module: nn.Module) -> nn.Module:
        """Make batch norm and dropout layers see the global batch (in place; no-op in one process).

        Call it right after building the module (parameters and buffers are kept, so state-dict keys,
        optimizers and checkpoints are unaffected). In training mode a global batch norm is a collective:
        every rank must run it, so a rank-0-only forward (a snapshot) needs eval mode or a net without BN.
        """
        return globalize(module) if self.enabled else module

    def wrap(self, module: nn.Module, **ddp_kwargs: Any) -> nn.Module:
        """``DistributedDataParallel(module)`` (the module itself in one process).

        DDP registers the parameters that require grad NOW: re-wrap after freezing or unfreezing parts
        (NoGAN's encoder), and call the unwrapped module (``unwrap``) for forwards whose backward must
        not be averaged or through frozen copies (a GAN's G step through D). ``find_unused_parameters``
        is only needed for a forward that leaves trainable parameters out of the loss.
        """
        if not self.enabled:
            return module
        dev = next(module.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None  # parameters on CUDA always carry an index
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, **ddp_kwargs)

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """The mean over ranks of each logged value (per-rank means over equal slices -> global means)."""
        if not self.enabled:
            return dict(values)
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return {k: v / self.world_size for k, v in zip(values, t.tolist(), strict=True)}

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")  # nccl reduces CUDA tensors


_CONTEXT: DistContext | None = None  # set by init_from_env


def init_from_env(device: str | torch.device = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    gloo on CPU, nccl on CUDA (one GPU per local rank: ``cuda:LOCAL_RANK``). Without those variables,
    or with WORLD_SIZE 1, no process group is made and the run is an ordinary single process.
    """
    from deeperfour.core.config import pick_device

    global _CONTEXT
    dev = pick_device(str(device))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CONTEXT = DistContext(device=dev)
        return _CONTEXT
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    _CONTEXT = DistContext(rank, world, local, dev, backend)
    return _CONTEXT


def current() -> DistContext:
    """The context of this process: the one ``init_from_env`` made, one built from an existing process
    group (e.g. ``torch.multiprocessing`` workers), or a single process."""
    if _CONTEXT is not None:
        return _CONTEXT
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        backend = dist.get_backend()
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                           dev, backend)
    return DistContext()


def is_main() -> bool:
    """True in rank 0 and in any single process (what ``Checkpointer`` and ``LossLog`` ask)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def cleanup(wait: bool = True) -> None:
    """Wait for every rank (rank 0 may still be writing files), then leave the process group.

    ``wait=False`` after an error: the other ranks may never reach the barrier.
    """
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
    _CONTEXT = None


class ShardedBatches:
    """This rank's slice of every global batch of indices that ``batch_sampler`` yields.

    For DataLoader loops: ``DataLoader(ds, batch_sampler=ShardedBatches(BatchSampler(RandomSampler(ds,
    generator=g), global_batch, drop_last=True), ctx))``: every rank draws the same seeded global batches
    and loads only its own rows (``torch.utils.data.DistributedSampler`` would instead give each rank
    its own permutation slice, so a batch would not be the one a single process draws).
    """

    def __init__(self, batch_sampler: Iterable[list[int]], ctx: DistContext | None = None):
        self.batch_sampler, self.ctx = batch_sampler, ctx or current()

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batch_sampler:
            yield list(self.ctx.shard(list(batch)))

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# layers that see the global batch


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum over ranks is the sum of the ranks' gradients
    (each rank's loss depends on every rank's inputs through the shared statistics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch (all ranks' slices).

    ``nn.SyncBatchNorm`` does this on GPUs only; this one works with any backend (gloo on CPU) and
    any input rank (B, C, ...). With the per-rank losses averaged by DDP, gradients equal those of
    one process with plain batch norm on the global batch. Eval mode, or one process: plain BN.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (B, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B_local, C, ...) -> same
        if not self.training or _world() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xf = x.float()
        packed = _AllReduceSum.apply(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() / x.shape[1]])]))
        count = packed[-1].detach()  # samples x positions over all ranks
        mean = packed[:-1] / count  # (C,)
        centered = xf - mean.reshape(shape)
        var = _AllReduceSum.apply(centered.square().sum(dims)) / count  # (C,) biased, used to normalize
        out = centered * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        return out.to(x.dtype)


class GlobalDropout(nn.Module):
    """Dropout whose mask is this rank's rows of the mask of the global batch.

    All ranks draw the global mask (B_local x world_size rows) from the same RNG state, exactly as
    ``F.dropout`` / ``F.dropout2d`` draw it in one process on the CPU, and keep their own rows: the
    masks equal those of the single-process run and the ranks' RNG states stay identical. The input
    must be this rank's equal slice of a global batch (``DistContext.shard``).
    """

    def __init__(self, p: float = 0.5, feature: bool = False):
        super().__init__()
        self.p, self.feature = p, feature  # feature: drop whole channels (Dropout1d/2d/3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B_local, C, ...) -> same
        if not self.training or self.p == 0:
            return x
        world = _world()
        if world == 1:  # used in one process after all: the layer it replaced
            return torch.feature_dropout(x, self.p, True) if self.feature else torch.dropout(x, self.p, True)
        if self.p == 1:
            return x * torch.zeros_like(x)
        b = x.shape[0]
        shape = (b * world, x.shape[1], *([1] * (x.dim() - 2))) if self.feature else (b * world, *x.shape[1:])
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p).div_(1 - self.p)
        rank = dist.get_rank()
        return x * noise[rank * b:(rank + 1) * b]

    def extra_repr(self) -> str:
        return f"p={self.p}, feature={self.feature}"


def globalize(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm for ``GlobalBatchNorm`` and every Dropout for ``GlobalDropout`` (in place,
    same parameter and buffer objects, hence the same state-dict keys); returns the module."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        return new.train(module.training)
    if isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
        return GlobalDropout(module.p, feature=not isinstance(module, nn.Dropout)).train(module.training)
    if isinstance(module, nn.AlphaDropout | nn.FeatureAlphaDropout):
        raise NotImplementedError(f"{type(module).__name__}: no global-batch version")
    for name, child in module.named_children():
        new = globalize(child)
        if new is not child:
            setattr(module, name, new)
    return module
