"""`deeperfour convert --engine ray`: 2 local Ray workers give the single-process run's frames and bytes;
a worker killed mid-segment is replaced and its segment redone once; a failing segment is retried, then
its own error surfaces; a restarted run skips finished segments. One Ray session (2 CPUs) for the whole
file; the tiny models of test_convert, a 3-shot clip with audio."""

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

import deeperfour.convert.pipeline as conv
import deeperfour.convert.ray_engine as ray_engine
from deeperfour.cli import main
from deeperfour.film.video import probe

from . import test_convert
from .conftest import make_clip

weights = test_convert.weights  # the same tiny models (colorizer, style "tiny", ConvLSTM), once per module
N, CUTS = 24, (8, 16)  # 3 shots of 8 frames
PLAN = conv.Plan(max_frames=5)  # each shot -> 4 + 4 frames; the second chunk warms up from the shot start
N_SEGMENTS = 6
OPTIONS = dict(device="cpu", batch=2, stabilizer="convlstm")


@pytest.fixture(scope="module")
def ray_session():
    """A local 2-CPU Ray instance shared by the tests (starting one takes several seconds);
    convert_on_ray uses an open session as it is and leaves it running."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=ray_engine.OBJECT_STORE_MB << 20, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("film") / "film.mp4", n=N, cut_at=CUTS, audio_seconds=0.8)


@contextlib.contextmanager
def one_thread():
    """oneDNN splits its reductions by thread count, so bitwise equality with a 1-CPU Ray worker needs the
    single-process run on one thread too (both engines give identical frames at equal threads per process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _kw(weights):
    return dict(weights=weights, models=weights / "released", plan=PLAN, progress=False, log=lambda s: None,
                keep_work=True, **OPTIONS)


@pytest.fixture(scope="module")
def single(film, weights, tmp_path_factory) -> Path:
    """The single-process reference run, lossless segments kept, on ONE thread like each 1-CPU Ray worker
    (``one_thread``)."""
    out = tmp_path_factory.mktemp("single")
    with one_thread():
        summary = conv.convert(film, out, **_kw(weights))
    assert summary["segments"] == N_SEGMENTS and summary["shots"] == len(CUTS) + 1
    return out


def work_dir(out: Path) -> Path:
    (work,) = (out / ".deeperfour").iterdir()
    return work


def assert_same_as(single: Path, out: Path, film: Path) -> None:
    """Same lossless frames, same final bytes (deterministic H.264), same count, fps fraction, audio."""
    assert work_dir(out).name == work_dir(single).name  # same work key: the engines share runs
    names = [sorted(p.name for p in work_dir(o).iterdir()) for o in (single, out)]
    assert names[0] == names[1]
    for target in ("colorized", "cartoon"):
        a, b = test_convert.segment_frames(single, target), test_convert.segment_frames(out, target)
        assert len(a) == len(b) == N
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), target
    src = probe(film)
    for name in conv.OUTPUTS:
        assert (single / name).read_bytes() == (out / name).read_bytes(), name
        i = probe(out / name)
        assert (i.n_frames, i.fps, i.has_audio) == (N, src.fps, True)  # 30000/1001 stays a fraction
        assert abs(i.audio_seconds - src.audio_seconds) < 0.05


def test_cli_ray_equals_single_process(ray_session, film, weights, single, tmp_path, capsys):
    out = tmp_path / "ray"
    code = main(["convert", str(film), "-o", str(out), "--engine", "ray", "--workers", "2",
                 "--weights", str(weights), "--models", str(weights / "released"), "--device", "cpu",
                 "--batch", "2", "--stabilizer", "convlstm", "--segment-frames", "5", "--keep-work",
                 "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0 and "ray: 2 worker(s), 1 CPU each, 6 segment(s)" in stdout
    assert_same_as(single, out, film)


def test_killed_worker_is_replaced_and_segment_redone_once(ray_session, film, weights, single, tmp_path,
                                                           monkeypatch):
    """The hook makes the worker os._exit(1) after writing 1 frame of segment 3 (a partial file exists)."""
    monkeypatch.setenv(ray_engine.FAIL_ENV, "3")
    lines, finished = [], []
    kw = {**_kw(weights), "log": lines.append, "on_segment": finished.append}
    summary = ray_engine.convert_on_ray(film, tmp_path / "out", num_workers=2, **kw)
    assert "segment 3: its worker died; retrying (1/2)" in lines
    assert summary["attempts"] == {i: 2 if i == 3 else 1 for i in range(N_SEGMENTS)}
    assert sorted(s.index for s in finished) == list(range(N_SEGMENTS))  # every segment done exactly once
    assert summary["computed"] == N_SEGMENTS and summary["frames"] == N
    assert not [p for p in work_dir(tmp_path / "out").iterdir() if "partial" in p.name or
                p.name.startswith(ray_engine.ATTEMPT_PREFIX)]
    assert_same_as(single, tmp_path / "out", film)


def test_retries_exhausted_is_one_clear_error(ray_session, film, weights, tmp_path, monkeypatch):
    monkeypatch.setenv(ray_engine.FAIL_ENV, "0")
    with pytest.raises(ray_engine.WorkerLost, match="segment 0 .*worker died 1 times"):
        ray_engine.convert_on_ray(film, tmp_path / "out", num_workers=1, max_retries=0, **_kw(weights))
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_failing_segment_retried_then_its_own_error(ray_session, film, weights, tmp_path):
    """A segment that raises (here: the film is overwritten after segment 0) is retried in the same
    worker, then the task's own exception (not Ray's wrapper) reaches the caller, and no film is made."""
    src = tmp_path / "film.mp4"
    src.write_bytes(film.read_bytes())
    lines = []

    def spoil(seg):
        src.write_text("not a film any more")

    with pytest.raises(Exception, match="film.mp4") as e:
        ray_engine.convert_on_ray(src, tmp_path / "out", num_workers=1, max_retries=1, on_segment=spoil,
                          **{**_kw(weights), "log": lines.append})
    assert not isinstance(e.value, ray.exceptions.RayError), type(e.value)
    assert any(line.startswith("segment 1: it failed") and line.endswith("retrying (1/1)") for line in lines)
    assert not list((tmp_path / "out").glob("*.mp4"))


class Stop(RuntimeError):
    pass


def test_restart_skips_finished_segments(ray_session, film, weights, single, tmp_path, monkeypatch):
    """A run stopped after 2 segments (here a single-process one: both engines share the work folder)
    is finished by the Ray engine, which computes only the other segments."""
    out = tmp_path / "out"

    def stop_at_two(seg):
        if seg.index == 1:
            raise Stop

    with pytest.raises(Stop), one_thread():
        conv.convert(film, out, on_segment=stop_at_two, **_kw(weights))
    assert not list(out.glob("*.mp4"))
    kept = {p: p.stat().st_mtime_ns for p in work_dir(out).glob("seg_*.mkv")}
    assert sorted(p.name for p in kept) == ["seg_00000.cartoon.mkv", "seg_00001.cartoon.mkv"]

    lines = []
    summary = ray_engine.convert_on_ray(film, out, num_workers=2, **{**_kw(weights), "log": lines.append})
    assert f"resuming from {work_dir(out)}: 2 of {N_SEGMENTS} segments are done" in lines
    assert sorted(summary["attempts"]) == list(range(2, N_SEGMENTS)) and summary["reused"] == 2
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())  # finished segments untouched
    assert_same_as(single, out, film)


def test_bad_address_and_options_fail_in_one_line(film, weights, tmp_path, capsys):
    base = ["convert", str(film), "-o", str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu"]
    assert main([*base, "--workers", "2"]) == 2  # without --engine ray
    assert main([*base, "--engine", "ray", "--address", "127.0.0.1:1", "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and "need --engine ray" in err[0] and "no Ray cluster answers there" in err[1]
    assert not os.path.exists(tmp_path / "out" / "colorized.mp4")
