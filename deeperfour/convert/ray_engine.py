"""``deeperfour convert --engine ray``: a film's segments computed by Ray actors, on a laptop or a cluster.

The driver (this process) prepares the job exactly as the single-process converter does (same scan,
same segment plan, same work folder and key, :func:`convert.prepare`), so both engines write identical
lossless segments and either one can finish a run the other was interrupted in. Each Ray actor loads the
models once and computes whole segments with :func:`convert.process_segment`; the driver hands the next
pending segment to whichever actor is free, counts frames across all actors in one progress bar,
replaces an actor that died and resubmits its segment (up to ``max_retries`` times), then assembles
the three films with :func:`convert.finish` from the finished segments and the input's audio.

A segment reaches the work folder only when complete: an actor writes it into a private
``.attempt-*`` folder and moves the files into place at the end, so a killed worker leaves no partial
segment behind and two attempts at the same segment (a worker the cluster wrongly declared dead) cannot
write into each other's files. A restarted run skips every finished segment.

On a cluster the film, the weights and OUTDIR must be at the same absolute paths on every node (a
shared filesystem): workers read the film and the weights and write into ``OUTDIR/.deeperfour/<key>/``,
which the driver reads at the end.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import ray
import torch
from ray.exceptions import RayError, RayTaskError
from tqdm.auto import tqdm

from deeperfour.convert import models as cm
from deeperfour.convert.pipeline import Job, Plan, finish, prepare, process_segment
from deeperfour.convert.segments import Film, Segment, segment_files

FAIL_ENV = "DEEPERFOUR_RAY_FAIL"  # test hook "K": a worker dies after 1 frame of its 1st try at segment K
ATTEMPT_PREFIX = ".attempt-"  # private folders of segments being computed, inside the work folder
POLL_SECONDS = 0.5  # how often the driver asks the busy actors how far they are (progress bar)
OBJECT_STORE_MB = 256  # local instance: only small objects (settings, segments, summaries) travel
PATH_OPTIONS = ("weights", "models", "colorizer")


class WorkerLost(ConnectionError):
    """A segment's worker died more often than the retries allow, or the cluster has no room for one."""


# ---------------------------------------------------------------------------------------------------------
# the worker
# ---------------------------------------------------------------------------------------------------------


class SegmentFailed(RuntimeError):
    """Stands in for an exception that cannot travel back to the driver (it does not unpickle)."""


def _raise_picklable(e: Exception) -> NoReturn:
    """Re-raise ``e`` as it is when it survives pickling, else as a SegmentFailed with its message: an
    exception Ray cannot deserialize would look like a dead worker to the driver, not a failed segment."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        raise SegmentFailed(f"{type(e).__name__}: {e}") from None
    raise e


class SegmentWorker:
    """One Ray actor: loads the models of ``settings`` once, then computes any number of segments.

    It runs with ``max_concurrency=2`` so that :meth:`progress` answers while :meth:`run` is busy.
    """

    def __init__(self, settings: cm.Settings):
        if settings.device.startswith("cuda"):  # Ray exposes the actor's own GPU as the only one
            settings = replace(settings, device="cuda")
        self.settings = settings
        cm.load_models(settings)  # once per worker; process_segment finds them in the cache
        self.frames = 0  # kept frames written in the current segment

    def run(self, film: Film, seg: Segment, work_dir: str, attempt: int) -> dict:
        """Compute ``seg`` into ``work_dir`` (both files appear only when the segment is complete)."""
        self.frames = 0
        crash = attempt == 0 and os.environ.get(FAIL_ENV, "") == str(seg.index)

        def tick(n: int) -> None:
            self.frames += n
            if crash:  # the test hook: a partial file exists now, the process dies without cleanup
                os._exit(1)

        private = Path(work_dir) / f"{ATTEMPT_PREFIX}{seg.name}-{uuid.uuid4().hex[:12]}"
        try:
            files = process_segment(film, seg, self.settings, private, progress=tick)
            final = segment_files(work_dir, seg, film.targets)
            for target in film.targets:  # the segment counts as done once the last file is in place
                os.replace(files[target], final[target])
        except Exception as e:
            _raise_picklable(e)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return {"index": seg.index, "frames": seg.n_frames, "pid": os.getpid(),
                "node": ray.get_runtime_context().get_node_id()}

    def progress(self) -> int:
        return self.frames


def _cause(error: RayTaskError) -> BaseException:
    """The exception a task raised, as itself (its one-line message reaches the CLI unchanged)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, Exception) else error.as_instanceof_cause()


def _prepare_here(film: str, outdir: str, plan: Plan | None, options: dict) -> tuple[Job, list[str]]:
    """:func:`convert.prepare` on a GPU node (run as a Ray task), its log lines returned to the driver."""
    lines: list[str] = []
    job = prepare(film, outdir, plan=plan, progress=False, log=lines.append, **options)
    return job, lines


# ---------------------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------------------


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Connect to the cluster at ``address``, or start a private local instance; True when this call
    opened the session (``ray.shutdown()`` then disconnects, or stops the local instance).

    A Ray session already open in this process (a notebook, the tests) is used as it is and left open.
    """
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **quiet)
        return True
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
             object_store_memory=OBJECT_STORE_MB << 20, **quiet)
    return True


def _check_reachable(address: str) -> None:
    """One clear error for a HOST:PORT nobody listens on (``ray.init`` would wait there for minutes)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"--address {address}: no Ray cluster answers there ({e}); start one with "
                              "`ray start --head` or leave out --address for a local one") from e


def _absolute(film, outdir, options: dict) -> tuple[str, str, dict]:
    """Absolute paths: workers may run elsewhere (same paths on a shared filesystem) or in another cwd."""
    opts = {k: (str(Path(v).resolve()) if k in PATH_OPTIONS and v else v) for k, v in options.items()}
    return str(Path(film).resolve()), str(Path(outdir).resolve()), opts


def _workers(num_workers: int | None, gpu: bool, n_todo: int, log: Callable[[str], None]) -> int:
    """How many actors: one per GPU (or CPU) of the cluster unless told, never more than fit or are needed."""
    res = ray.cluster_resources()
    fit = int(res.get("GPU", 0) if gpu else res.get("CPU", 0))
    if fit < 1:
        raise WorkerLost(f"the Ray cluster has no {'GPU' if gpu else 'CPU'} to run a worker on")
    n = num_workers or fit
    if n > fit:  # actors that can never be scheduled would hold their segments forever
        log(f"note: the Ray cluster fits {fit} worker(s) with 1 {'GPU' if gpu else 'CPU'} each, not {n}")
        n = fit
    return max(1, min(n, n_todo))


def _clean_attempts(root: Path) -> None:
    """Drop the private folders that killed workers left behind."""
    for p in root.glob(f"{ATTEMPT_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


class _Pool:
    """The actors, their busy segments and the per-segment attempt counts of one run."""

    def __init__(self, job: Job, n: int, gpu: bool):
        env = {FAIL_ENV: os.environ[FAIL_ENV]} if os.environ.get(FAIL_ENV) else None
        self.options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_concurrency": 2,
                        "runtime_env": {"env_vars": env} if env else None}
        self.job = job
        self.actors = [self._new() for _ in range(n)]
        self.idle = list(range(n))
        self.busy: dict[ray.ObjectRef, tuple[int, Segment]] = {}  # run() call -> (actor slot, segment)
        self.frames = [0] * n  # frames each busy actor reported for its current segment
        self.attempts: Counter[int] = Counter()

    def _new(self):
        return ray.remote(SegmentWorker).options(**self.options).remote(self.job.settings)

    def submit(self, seg: Segment) -> None:
        slot = self.idle.pop()
        root = str(self.job.work.root)
        ref = self.actors[slot].run.remote(self.job.film, seg, root, self.attempts[seg.index])
        self.attempts[seg.index] += 1
        self.busy[ref] = (slot, seg)

    def release(self, ref: ray.ObjectRef, dead: bool) -> Segment:
        """The call ``ref`` is over: its actor is free again (a fresh one when it died)."""
        slot, seg = self.busy.pop(ref)
        if dead:
            ray.kill(self.actors[slot], no_restart=True)
            self.actors[slot] = self._new()
        self.frames[slot] = 0
        self.idle.append(slot)
        return seg

    def poll(self, timeout: float) -> None:
        """Ask every busy actor how many frames of its current segment it has written."""
        calls = {self.actors[slot].progress.remote(): slot for slot, _ in self.busy.values()}
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=timeout) if calls else ([], [])
        for ref in ready:
            try:
                self.frames[calls[ref]] = ray.get(ref)
            except RayError:  # that actor is dying: its run() call will tell
                pass

    @property
    def in_flight(self) -> int:
        """Frames of unfinished segments written so far (they vanish from the bar if the segment fails)."""
        return sum(self.frames[slot] for slot, _ in self.busy.values())

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


def _run(job: Job, todo: list[Segment], n: int, gpu: bool, max_retries: int, progress: bool,
         on_segment: Callable[[Segment], None] | None, log: Callable[[str], None]) -> dict[int, int]:
    """Compute ``todo`` on ``n`` actors, retrying failures; returns the attempts per segment index."""
    pending, failures = deque(todo), Counter()
    done = job.film.n_frames - sum(s.n_frames for s in todo)  # frames finished before this run
    pool = _Pool(job, n, gpu)
    last_poll = time.monotonic()
    try:
        with tqdm(total=job.film.n_frames, initial=done, desc=f"convert ({n} ray workers)", unit="frame",
                  disable=not progress, smoothing=0.05) as bar:
            while pending or pool.busy:
                while pool.idle and pending:  # 1. every free actor takes the next segment
                    pool.submit(pending.popleft())
                ready, _ = ray.wait(list(pool.busy), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:  # 2. collect: a finished segment, or a retry
                    error, dead = None, False
                    try:
                        ray.get(ref)
                    except RayTaskError as e:  # the segment raised inside a healthy worker
                        error = e
                    except RayError as e:  # the worker died (killed, crashed, out of memory, node lost)
                        error, dead = e, True
                    seg = pool.release(ref, dead)
                    if error is None:
                        done += seg.n_frames
                        if on_segment is not None:
                            on_segment(seg)
                        continue
                    failures[seg.index] += 1
                    if failures[seg.index] > max_retries:
                        if not dead:
                            raise _cause(error) from error  # e.g. the ValueError the CLI prints
                        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                        raise WorkerLost(f"segment {seg.index} (frames {seg.start}-{seg.stop - 1}): its "
                                         f"worker died {failures[seg.index]} times; last: {first}")
                    what = "its worker died" if dead else f"it failed ({type(error).__name__})"
                    log(f"segment {seg.index}: {what}; retrying ({failures[seg.index]}/{max_retries})")
                    pending.appendleft(seg)
                if pool.busy and time.monotonic() - last_poll >= POLL_SECONDS:  # 3. the shared bar
                    pool.poll(POLL_SECONDS)
                    last_poll = time.monotonic()
                bar.update(done + pool.in_flight - bar.n)
    finally:
        pool.close()
        _clean_attempts(job.work.root)
    return dict(pool.attempts)


def convert_on_ray(film: str | os.PathLike, outdir: str | os.PathLike, *, address: str | None = None,
                   num_workers: int | None = None, max_retries: int = 2, keep_work: bool = False,
                   plan: Plan | None = None, progress: bool = True,
                   on_segment: Callable[[Segment], None] | None = None, log: Callable[[str], None] = print,
                   **options) -> dict:
    """:func:`convert.convert` with the segments computed by Ray actors; the same outputs, frame for frame.

    ``address``: a running cluster ("auto", "HOST:6379", "ray://HOST:10001"); None starts a local Ray
    instance with ``num_workers`` (default: all) CPUs and stops it at the end. ``num_workers``: actors,
    default one per GPU of the cluster when the models run on CUDA, else one per CPU. A worker that dies
    or a segment that raises is retried ``max_retries`` times. ``options`` as
    :func:`convert_models.resolve_settings`. Returns :func:`convert.finish`'s summary plus the engine,
    the worker count and the attempts per computed segment.
    """
    t0 = time.perf_counter()
    if (num_workers is not None and num_workers < 1) or max_retries < 0:
        raise ValueError(f"need --workers >= 1 and --retries >= 0 (got {num_workers}, {max_retries})")
    if address:
        _check_reachable(address)
    film, outdir, options = _absolute(film, outdir, options)
    # a CPU-only driver in front of a GPU cluster resolves the settings (device auto -> cuda) on a GPU node
    gpu_elsewhere = bool(address) and options.get("device", "auto") != "cpu" and not torch.cuda.is_available()
    opened = False
    try:
        if gpu_elsewhere:
            opened = _connect(address, num_workers)
            gpu_elsewhere = ray.cluster_resources().get("GPU", 0) > 0
        if gpu_elsewhere:
            log("preparing on a GPU node of the cluster (this machine has no CUDA GPU)")
            task = ray.remote(_prepare_here).options(num_cpus=1, num_gpus=1)
            try:
                job, lines = ray.get(task.remote(film, outdir, plan, options))
            except RayTaskError as e:  # a bad input or model file, as the local prepare reports it
                raise _cause(e) from e
            for line in lines:
                log(line)
        else:  # a bad input or model file fails here, before any cluster is started
            job = prepare(film, outdir, plan=plan, progress=progress, log=log, **options)
            opened = _connect(address, num_workers) or opened
        todo = job.todo()
        if len(todo) < len(job.segments):
            log(f"resuming from {job.work.root}: {len(job.segments) - len(todo)} of {len(job.segments)} "
                "segments are done")
        gpu = job.settings.device.startswith("cuda")
        n, attempts = 0, {}
        if todo:
            n = _workers(num_workers, gpu, len(todo), log)
            log(f"ray: {n} worker(s), 1 {'GPU' if gpu else 'CPU'} each, {len(todo)} segment(s) to compute")
            _clean_attempts(job.work.root)
            attempts = _run(job, todo, n, gpu, max_retries, progress, on_segment, log)
        summary = finish(job, todo, time.perf_counter() - t0, keep_work, progress, log)
    finally:
        if opened:
            ray.shutdown()
    return {**summary, "engine": "ray", "workers": n, "attempts": attempts}
