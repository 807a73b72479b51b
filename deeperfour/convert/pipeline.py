"""``deeperfour convert FILM -o OUTDIR``: a B&W film in, colorized, cartoon and side-by-side films out.

Per frame (paper Fig. 1): B&W frame -> colorize (original luminance kept) -> colorized stabilizer
-> cartoonizer -> cartoon stabilizer. Two independent choices: the cartoonizer (a style's per-frame
generator, or Ruder et al.'s temporal-loss generator, which sees its own warped past) and the
stabilizer (none, flow blend, ConvLSTM). Everything recurrent is reset at every shot start.

The film streams through the pipeline one segment at a time (``segments.py``): every finished segment
is stored losslessly in a work folder, an interrupted run resumes where it stopped, and the three
H.264 films are assembled from the segments with the input's audio at the end.
:func:`process_segment` is a pure function of (film, segment, settings) -> segment files, so
segments can run as independent tasks on several workers.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from deeperfour.convert import models as cm
from deeperfour.convert.parallel import ParallelWriter, frames_of, panel_size, zip_films
from deeperfour.convert.profile import NoSections, Sections
from deeperfour.convert.segments import (
    Film,
    Segment,
    WorkDir,
    plan_segments,
    read_range,
    scan_film,
    segment_files,
    work_key,
)
from deeperfour.film.color import recombine_luma
from deeperfour.film.keyframes import read_references
from deeperfour.film.outputs import check_writable
from deeperfour.film.resize import fit_longer_side, resize
from deeperfour.film.video import VideoWriter, probe, read_frames, read_frames_at
from deeperfour.infer.colorize import colorize_frames
from deeperfour.infer.propagate import Refiner, propagate
from deeperfour.infer.stabilize import PerFrame

OUTPUTS = ("colorized.mp4", "cartoon.mp4", "parallel.mp4")
KEYFRAME_FILM = "colorized_keyframes.mkv"  # the film colored from keyframes, in the work folder
SEGMENT_FRAMES = 200  # longest segment, frames: bounds the work lost to an interruption
WARMUP_FRAMES = 10  # recurrent stabilizers start a mid-shot segment this many frames early


@dataclass(frozen=True)
class Plan:
    """How the film is cut into segments; part of the work key."""

    max_frames: int = SEGMENT_FRAMES
    warmup: int = WARMUP_FRAMES
    shot_threshold: float = 0.8  # deeperfour.film.shots cut score


# ---------------------------------------------------------------------------------------------------------
# one segment
# ---------------------------------------------------------------------------------------------------------


def _colorized(grays: Iterable[np.ndarray], models: cm.Models, s: cm.Settings
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(gray (H, W), per-frame colorized (H, W, 3)) pairs; colorize_frames batches internally."""
    pending: deque[np.ndarray] = deque()

    def feed() -> Iterator[np.ndarray]:
        for g in grays:
            pending.append(g)
            yield g

    for rgb in colorize_frames(models.colorizer, feed(), s.render_factor, s.chroma_scale, s.device,
                               s.batch, s.precision):
        yield pending.popleft(), rgb


def _timed(fn: Callable, sec: Sections, name: str) -> Callable:
    """``fn`` with its calls charged to section ``name``."""
    def timed(*args, **kwargs):
        with sec(name):
            return fn(*args, **kwargs)
    return timed


def _stable_colorized(g: np.ndarray, col: np.ndarray, stab, proc: tuple[int, int], sec: Sections):
    """Stabilize the colorized frame at the processing size -> (gray (h, w), colorized (H, W, 3),
    colorized (h, w, 3)). The stabilized chroma is recombined with the ORIGINAL luminance (the film's
    brightness is never altered); a frame the stabilizer left unchanged (shot starts) is kept bit-exact."""
    with sec("resize"):
        g_p, col_p = resize(g, proc), resize(col, proc)
    with sec("stabilize"):
        out = stab.step(col_p, g_p)
        if out is not col_p and not np.array_equal(out, col_p):
            col = recombine_luma(g, out)  # (H, W, 3), luma == g
            col_p = resize(col, proc)
    return g_p, col, col_p


def _cartoonized(items: Iterable[tuple], cartoonizer) -> Iterator[tuple]:
    """Append the cartoon of each (gray (h, w), colorized (H, W, 3), colorized (h, w, 3)) item, made at
    the processing size by the cartoonizer's stream (it may batch, so items wait in a queue)."""
    pending: deque[tuple] = deque()

    def feed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for item in items:
            pending.append(item)
            yield item[2], item[0]  # (colorized, source) at the processing size

    for cart in cartoonizer.stream(feed()):
        yield (*pending.popleft(), cart)


def segment_frames(film: Film, seg: Segment, s: cm.Settings, sec: Sections | None = None
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(t, colorized (H, W, 3), cartoon (H, W, 3)) for lead <= t < stop.

    B&W frame -> colorizer -> colorized stabilizer -> cartoonizer (per-frame generator or the temporal-loss
    generator) -> cartoon stabilizer. The cartoonizer and both stabilizers start fresh at ``lead``.
    ``sec``: charge each part's time to its section (``convert/profile.py``).
    """
    sec = sec or NoSections()
    models = cm.load_models(s)
    full = (film.height, film.width)
    proc = fit_longer_side(*full, s.max_side, 8)
    col_stab, cart_stab = models.stabilizers()
    if film.colorized:  # colors carried from keyframes do not flicker (E_warp at the color original's own
        col_stab = PerFrame()  # level, stage colorize_reference): stabilizing them again only blurs them
    for stab in (col_stab, cart_stab):  # the stabilizers' optical flow is a part of its own in the profile
        if hasattr(stab, "flow"):
            stab.flow = _timed(stab.flow, sec, "flow")
    cartoonizer = models.cartoonizer()
    for fresh in (col_stab, cart_stab, cartoonizer):
        fresh.reset()
    grays = sec.iterate("decode", read_range(film, seg.lead, seg.stop))
    if film.colorized:  # colored from keyframes once for the whole film (prepare): read, not computed
        colors = sec.iterate("decode", read_frames(film.colorized, start=seg.lead, stop=seg.stop))
        pairs = zip(grays, colors, strict=True)
    else:
        pairs = sec.iterate("colorize", _colorized(grays, models, s))
    stable = (_stable_colorized(g, col, col_stab, proc, sec) for g, col in pairs)  # (g_p, col, col_p)
    cartoons = sec.iterate("cartoonize", _cartoonized(stable, cartoonizer))
    for t, (g_p, col, _, cart) in enumerate(cartoons, start=seg.lead):
        with sec("stabilize"):
            cart = cart_stab.step(cart, g_p)
        with sec("resize"):
            cart = resize(cart, full)
        yield t, col, cart


def process_segment(film: Film, seg: Segment, settings: cm.Settings, work_dir: str | os.PathLike,
                    progress: Callable[[int], None] | None = None, sec: Sections | None = None
                    ) -> dict[str, Path]:
    """Compute one segment and write ``seg_NNNNN.{colorized,cartoon}.mkv`` (lossless) into ``work_dir``
    (``film.targets``: the cartoon only when the colors come from keyframes).

    Pure in its arguments (all picklable): models are loaded from the settings (cached per process),
    frames are decoded from ``film.path`` by seeking. Warm-up frames [lead, start) are computed and
    dropped. Each file appears atomically when complete. ``progress(1)`` is called per kept frame.
    """
    files = segment_files(work_dir, seg, film.targets)
    fps, w, h = film.rate, film.width, film.height
    sec = sec or NoSections()
    with ExitStack() as stack:
        writers = {t: stack.enter_context(VideoWriter(p, fps, w, h)) for t, p in files.items()}
        for t, col, cart in segment_frames(film, seg, settings, sec):
            if t >= seg.start:
                with sec("encode"):
                    for target, frame in (("colorized", col), ("cartoon", cart)):
                        if target in writers:
                            writers[target].write(frame)
                if progress is not None:
                    progress(1)
    for writer in writers.values():
        if writer.n_written != seg.n_frames:
            raise RuntimeError(f"segment {seg.index}: wrote {writer.n_written} frames, "
                               f"expected {seg.n_frames}")
    return files


# ---------------------------------------------------------------------------------------------------------
# the whole film
# ---------------------------------------------------------------------------------------------------------


def assemble(film: Film, segments: list[Segment], work: WorkDir, outdir: Path, labels: list[str],
             progress: bool = True, sec: Sections | None = None) -> list[Path]:
    """Concatenate the lossless segments into the three H.264 films with the input's audio. Colors from
    keyframes come from the film's lossless colorized file instead (``Film.targets``).

    They are written inside the work folder and moved into ``outdir`` together at the end, so the
    output names never hold a partial film.
    """
    sec = sec or NoSections()
    final = work.root / f"final.{os.getpid()}"  # private to this process
    cols = [film.colorized] if film.colorized else [work.files(s)["colorized"] for s in segments]
    carts = [work.files(s)["cartoon"] for s in segments]
    fps, w, h, src = film.rate, film.width, film.height, film.path
    streams = (read_frames(src, gray=True), frames_of(cols), frames_of(carts))
    with (VideoWriter(final / OUTPUTS[0], fps, w, h, audio_from=src) as wc,
          VideoWriter(final / OUTPUTS[1], fps, w, h, audio_from=src) as wk,
          ParallelWriter(final / OUTPUTS[2], fps, panel_size(w, h), labels, audio_from=src) as wp):
        rows = sec.iterate("decode", zip_films(streams, (src, cols, carts), film.n_frames))
        for bw, col, cart in tqdm(rows, total=film.n_frames, desc="assemble", unit="frame", leave=False,
                                  disable=not progress):
            with sec("encode"):
                wc.write(col)
                wk.write(cart)
                wp.write((bw, col, cart))
    for name in OUTPUTS:
        os.replace(final / name, outdir / name)
    final.rmdir()
    return [outdir / name for name in OUTPUTS]


def _scan(src: Path, work: WorkDir, plan: Plan, n_expected: int, progress: bool) -> Film:
    """The film's scan: from the manifest of an interrupted run with the same key, else decoded now."""
    film = work.load_film()
    if film is not None:
        return film
    with tqdm(total=n_expected, desc="scan shots", unit="frame", leave=False, disable=not progress) as bar:
        return scan_film(src, plan.shot_threshold, progress=bar.update)


def _keyframe_colors(src: Path, film: Film, s: cm.Settings, work: WorkDir, log: Callable[[str], None],
                     progress: bool, sec: Sections | None = None) -> Path:
    """The whole film colored from keyframes (``infer/propagate.py``), lossless, in the work folder.

    The keyframes are the artist's references (``s.reference``, checked before anything is computed)
    and, for every shot without one, the colorizer's colors of the shot's first frame. Made once: a
    resumed run finds the finished file (written atomically) and reuses it.
    """
    out = work.root / KEYFRAME_FILM
    refs = read_references(s.reference, probe(src), film.shot_starts) if s.reference else {}
    for line in getattr(refs, "notes", []):
        log(f"note: {line}")
    if out.is_file():
        return out
    sec = sec or NoSections()
    keys = {k: refs[k] for k in refs}  # (one per shot, or a few): small
    auto = propagate(src, film.shot_starts, keys).uncolored_shots
    if auto:
        starts = [film.shot_starts[k] for k in auto]
        models = cm.load_models(s)
        with sec("colorize"):
            colors = list(colorize_frames(models.colorizer, read_frames_at(src, starts, gray=True),
                                          s.render_factor, s.chroma_scale, s.device, 1, s.precision))
        keys.update(zip(starts, colors, strict=True))
        if s.reference:
            log(f"shots without a colored reference, keyframe from the colorizer: "
                f"{', '.join(str(k + 1) for k in auto)} (of {len(film.shot_starts)})")
    work.root.mkdir(parents=True, exist_ok=True)
    refiner = Refiner.load(s.refiner_file, s.device, s.precision) if s.refiner_file else None
    bar = tqdm(total=film.n_frames, desc="keyframes", unit="frame", leave=False, disable=not progress)
    with VideoWriter(out, film.rate, film.width, film.height) as writer, bar:
        for rgb in sec.iterate("propagate", propagate(src, film.shot_starts, keys, refiner=refiner)):
            with sec("encode"):
                writer.write(rgb)
            bar.update()
    return out


@dataclass
class Job:
    """A prepared conversion: the film, the settings, THE segment plan and the work folder.

    ``convert`` runs ``job.todo()`` one by one with :func:`process_segment`; a distributed driver can
    send the same (job.film, segment, job.settings, job.work.root) to remote workers instead, then
    call :func:`finish`.
    """

    film: Film
    settings: cm.Settings
    segments: list[Segment]
    work: WorkDir
    outdir: Path

    def todo(self) -> list[Segment]:
        return [s for s in self.segments if not self.work.done(s, self.film.targets)]


def prepare(film: str | os.PathLike, outdir: str | os.PathLike, *, plan: Plan | None = None,
            progress: bool = True, log: Callable[[str], None] = print, sections: Sections | None = None,
            **options) -> Job:
    """Check the input, the models and the output folder; scan the film (or reuse an interrupted
    run's scan); plan the segments. ``options``: those of :func:`convert_models.resolve_settings`."""
    src, outdir, plan = Path(film), Path(outdir), plan or Plan()
    info = probe(src)  # not a video, no frames, missing: fail before loading any model
    settings, notes = cm.resolve_settings(**options)
    cm.load_models(settings)  # incompatible weights fail here, with the file's name
    for line in notes:
        log(line)
    check_writable(outdir)
    warmup = plan.warmup if settings.recurrent else 0
    plan_dict = {**asdict(plan), "warmup": warmup}
    work = WorkDir(outdir, work_key(src, asdict(settings), settings.files(), plan_dict))
    others = [p for p in work.root.parent.glob("*") if p.is_dir() and p != work.root]
    if others:
        log(f"note: {work.root.parent} also holds {len(others)} work folder(s) of other inputs or "
            "settings; delete them to free disk space")
    film_info = _scan(src, work, plan, info.n_frames, progress)
    if film_info.is_color:
        log(f"note: {src} is in color; only its luminance is used (the pipeline starts from a B&W film)")
    if settings.propagated:
        film_info = replace(film_info, colorized=str(_keyframe_colors(src, film_info, settings, work, log,
                                                                       progress, sections)))
    segments = plan_segments(film_info.shot_starts, film_info.n_frames, plan.max_frames, warmup)
    work.save(film_info, segments, asdict(settings))
    return Job(film_info, settings, segments, work, outdir)


def finish(job: Job, computed: list[Segment], seconds: float, keep_work: bool = False,
           progress: bool = True, log: Callable[[str], None] = print, sec: Sections | None = None) -> dict:
    """Assemble the three films from the finished segments, drop the work folder, print a summary."""
    labels = ["B&W", "colorized", f"cartoon: {job.settings.style_label}"]
    outputs = assemble(job.film, job.segments, job.work, job.outdir, labels, progress, sec)
    if not keep_work:
        job.work.remove()
    f, n_seg = job.film, len(job.segments)
    summary = {"frames": f.n_frames, "fps": f.fps, "shots": len(f.shot_starts), "segments": n_seg,
               "computed": len(computed), "reused": n_seg - len(computed), "seconds": round(seconds, 2),
               "outputs": [str(p) for p in outputs], "work": str(job.work.root)}
    rate = sum(s.n_frames for s in computed) / max(seconds, 1e-9)
    log(f"done: {f.n_frames} frames at {f.fps} fps, {summary['shots']} shots, {n_seg} segments "
        f"({len(computed)} computed, {summary['reused']} reused) in {seconds:.1f} s ({rate:.2f} frames/s)")
    for p in outputs:
        log(f"  {p}")
    if keep_work:
        log(f"  lossless segments kept in {job.work.root}")
    return summary


def convert(film: str | os.PathLike, outdir: str | os.PathLike, *, keep_work: bool = False,
            plan: Plan | None = None, progress: bool = True,
            on_segment: Callable[[Segment], None] | None = None, log: Callable[[str], None] = print,
            sections: Sections | None = None, **options) -> dict:
    """Convert ``film`` into ``outdir``/{colorized,cartoon,parallel}.mp4, resuming an interrupted run.

    ``options`` as :func:`convert_models.resolve_settings` (style, render_factor, stabilizer, device,
    weights, models, colorizer, max_side, batch, precision); the rest as ``deeperfour convert --help``.
    ``on_segment(seg)`` is called after each segment computed in this run. ``sections``: charge each
    part's time to it (``convert/profile.py``; the benchmark's convert profile). Returns a summary dict.
    """
    t0 = time.perf_counter()
    job = prepare(film, outdir, plan=plan, progress=progress, log=log, sections=sections, **options)
    todo = job.todo()
    if len(todo) < len(job.segments):
        log(f"resuming from {job.work.root}: {len(job.segments) - len(todo)} of {len(job.segments)} "
            "segments are done")
    done_frames = job.film.n_frames - sum(s.n_frames for s in todo)
    with tqdm(total=job.film.n_frames, initial=done_frames, desc="convert", unit="frame",
              disable=not progress, smoothing=0.05) as bar:
        for seg in todo:
            process_segment(job.film, seg, job.settings, job.work.root, progress=bar.update, sec=sections)
            if on_segment is not None:
                on_segment(seg)
    summary = finish(job, todo, time.perf_counter() - t0, keep_work, progress, log, sections)
    sys.stdout.flush()
    return summary
