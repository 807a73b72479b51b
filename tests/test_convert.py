"""`deeperfour convert`: outputs keep count, fps and audio; resumable segments; stabilizers reset at
shot starts; every bad input gives one error line and no .mp4. Tiny models made here, tiny clips."""

import concurrent.futures
import copy
import multiprocessing
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import deeperfour.convert.models as cm
import deeperfour.convert.pipeline as conv
from deeperfour.cli import main
from deeperfour.convert.segments import Segment, plan_segments, read_range, scan_film
from deeperfour.film.video import VideoWriter, probe, read_frames
from deeperfour.infer.cartoonize import TemporalCartoonizer
from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator
from deeperfour.models.colorizer import ColorizerConfig, build_colorizer, save_colorizer
from deeperfour.models.convlstm import ConvLSTMConfig, TemporalConsistencyNet
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator

from .conftest import make_clip

N, CUT = 24, 12  # frames of the test clip, its one shot cut
PLAN = conv.Plan(max_frames=5, warmup=2)  # 2 shots -> 3 + 3 segments


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A weights folder in the layout `dvc repro` leaves: tiny colorizer, style 'tiny', ConvLSTM."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    colorizer = build_colorizer(ColorizerConfig(width=16), pretrained=False)
    save_colorizer(root / "colorize" / "colorizer.pt", colorizer, chroma_scale=2.0, render_factor=2)
    cfg = CartoonGANConfig(variant="light", base_channels=8, n_res_blocks=2)
    CartoonGenerator(cfg).save(root / "train_cartoongan" / "tiny" / "generator.pt")
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1))
    net.save(root / "convlstm" / "convlstm.pt")
    (root / "released").mkdir()  # an empty models/ folder: no released files
    return root


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("film") / "film.mp4", n=N, cut_at=(CUT,), audio_seconds=0.8)


def run(film, out, weights, *extra, **kw):
    """convert() with the tiny models, silent; keyword arguments override."""
    args = dict(weights=weights, models=weights / "released", device="cpu", plan=PLAN, batch=3,
                progress=False, log=lambda line: None)
    return conv.convert(film, out, *extra, **{**args, **kw})


def segment_frames(out: Path, target: str) -> list[np.ndarray]:
    """All kept lossless frames of ``target``, in film order: its segments' files, or for colors from
    keyframes (no colorized segments, ``Film.targets``) the keyframe film."""
    (work,) = (out / ".deeperfour").iterdir()
    files = sorted(work.glob(f"seg_*.{target}.mkv"))
    if target == "colorized" and (work / conv.KEYFRAME_FILM).is_file():
        assert not files  # the colorized output is made from the keyframe film, never stored twice
        files = [work / conv.KEYFRAME_FILM]
    return [f for p in files for f in read_frames(p)]


# ------------------------------------------------------------------------------------------------ plan


def test_plan_covers_film_in_shots_with_warmup():
    segs = plan_segments([0, 12, 30], 31, max_frames=5, warmup=2)
    assert [(s.start, s.stop) for s in segs][:3] == [(0, 4), (4, 8), (8, 12)]
    assert sum(s.n_frames for s in segs) == 31 and [s.index for s in segs] == list(range(len(segs)))
    assert all(s.stop - s.start <= 5 for s in segs)
    shot = {12: 12, 30: 30, 0: 0}
    for s in segs:
        if s.start in shot:
            assert s.lead == s.start  # a shot start never warms up across the cut
        else:
            assert s.lead == max(s.start - 2, max(k for k in shot if k <= s.start))
    assert segs == plan_segments([0, 12, 30], 31, max_frames=5, warmup=2)  # deterministic
    assert plan_segments([0], 7, 200) == [Segment(0, 0, 0, 7)]


def test_read_range_equals_sequential_decode(film, tmp_path):
    lossless = tmp_path / "film.mkv"
    with VideoWriter(lossless, probe(film).fps, 64, 48, gray=True) as w:
        for f in read_frames(film, gray=True):
            w.write(f)
    for path in (film, lossless):
        info = scan_film(path)
        assert info.n_frames == N and info.shot_starts == (0, CUT) and info.first_pts is not None
        every = list(read_frames(path, gray=True))
        for a, b in [(0, 3), (5, 9), (13, 24), (23, 24)]:
            got = list(read_range(info, a, b))
            assert len(got) == b - a
            assert all(np.array_equal(x, y) for x, y in zip(got, every[a:b], strict=True))


# ------------------------------------------------------------------------------------------------ outputs


def test_cli_outputs_keep_count_fps_audio_and_luminance(film, weights, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["convert", str(film), "-o", str(out), "--weights", str(weights), "--models",
                 str(weights / "released"), "--device", "cpu", "--segment-frames", "5", "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert str(weights / "colorize" / "colorizer.pt") in stdout and "stabilizer: convlstm" in stdout
    assert "in color; only its luminance is used" in stdout  # the test clip is a color film
    assert sorted(p.name for p in out.iterdir()) == ["cartoon.mp4", "colorized.mp4", "parallel.mp4"]
    src = probe(film)
    for name in ("colorized", "cartoon", "parallel"):
        i = probe(out / f"{name}.mp4")
        assert (i.n_frames, i.fps, i.height) == (N, src.fps, src.height)
        assert i.has_audio and abs(i.audio_seconds - src.audio_seconds) < 0.05
    assert probe(out / "parallel.mp4").width == 3 * src.width
    y_in = np.stack(list(read_frames(film, gray=True))).astype(float)
    y_out = np.stack(list(read_frames(out / "colorized.mp4", gray=True))).astype(float)
    assert np.abs(y_in - y_out).mean() < 3.0  # the colorizer keeps the luminance; H.264 is lossy


def test_stabilized_equals_per_frame_at_shot_starts(film, weights, tmp_path):
    run(film, tmp_path / "stab", weights, stabilizer="convlstm", keep_work=True, colorize="per-frame")
    run(film, tmp_path / "per", weights, stabilizer="none", keep_work=True, colorize="per-frame")
    for target in ("colorized", "cartoon"):
        stab, per = segment_frames(tmp_path / "stab", target), segment_frames(tmp_path / "per", target)
        assert len(stab) == len(per) == N
        for t in (0, CUT):
            assert np.array_equal(stab[t], per[t]), (target, t)
        assert any(not np.array_equal(stab[t], per[t]) for t in (1, 2, CUT + 1)), target  # it stabilized


def test_colors_from_keyframes_are_not_stabilized_again(film, weights, tmp_path):
    """The default --colorize keyframes: the colorized film is the propagation itself (stable by
    construction), whatever the stabilizer; the cartoon is still stabilized."""
    run(film, tmp_path / "stab", weights, stabilizer="convlstm", keep_work=True)
    run(film, tmp_path / "per", weights, stabilizer="none", keep_work=True)
    stab, per = segment_frames(tmp_path / "stab", "colorized"), segment_frames(tmp_path / "per", "colorized")
    assert len(stab) == N and all(np.array_equal(a, b) for a, b in zip(stab, per, strict=True))
    stab, per = segment_frames(tmp_path / "stab", "cartoon"), segment_frames(tmp_path / "per", "cartoon")
    assert any(not np.array_equal(stab[t], per[t]) for t in (1, 2, CUT + 1))


def test_flow_default_and_max_side(film, weights, tmp_path):
    partial = tmp_path / "w"
    for sub in ("colorize", "train_cartoongan"):
        (partial / sub).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(weights / sub, partial / sub)
    lines = []
    run(film, tmp_path / "out", partial, log=lines.append, plan=conv.Plan(max_frames=200), max_side=32)
    assert any(line.startswith("stabilizer: flow") and "convlstm.pt" in line for line in lines)
    for name in ("colorized", "cartoon"):  # processed at 32x24, resized back
        i = probe(tmp_path / "out" / f"{name}.mp4")
        assert (i.n_frames, i.width, i.height) == (N, 64, 48)
    y_in = np.stack(list(read_frames(film, gray=True))).astype(float)
    y_out = np.stack(list(read_frames(tmp_path / "out" / "colorized.mp4", gray=True))).astype(float)
    assert np.abs(y_in - y_out).mean() < 3.0  # full-resolution luminance whatever the processing size


def test_released_deoldify_colorizer_when_none_is_trained(film, weights, tmp_path):
    from deeperfour.models.deoldify import DeOldifyConfig, build_deoldify, save_deoldify

    w, released = tmp_path / "w", tmp_path / "models"
    (w / "train_cartoongan").parent.mkdir(parents=True)
    os.symlink(weights / "train_cartoongan", w / "train_cartoongan")
    torch.manual_seed(0)
    save_deoldify(released / "ColorizeVideo_gen.pth", build_deoldify(DeOldifyConfig(arch="wide", resnet=18,
                                                                                    body_width=8, nf=32)))
    lines = []
    run(film, tmp_path / "out", w, models=released, stabilizer="none", render_factor=2, log=lines.append)
    assert any(line.startswith(f"colorizer: {released / 'ColorizeVideo_gen.pth'} (deoldify, render factor 2")
               for line in lines)
    assert probe(tmp_path / "out" / "colorized.mp4").n_frames == N


# ------------------------------------------------------------------------------------------------ resume


class Crash(RuntimeError):
    pass


def test_resume_redoes_only_unfinished_segments(film, weights, tmp_path, monkeypatch):
    run(film, tmp_path / "whole", weights, keep_work=True)

    def crash_after_two(seg):
        if seg.index == 1:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        run(film, out, weights, keep_work=True, on_segment=crash_after_two)
    assert not list(out.glob("*.mp4"))
    (work,) = (out / ".deeperfour").iterdir()
    kept = {p: p.stat().st_mtime_ns for p in work.glob("seg_*.mkv")}
    assert sorted(p.name for p in kept) == ["seg_00000.cartoon.mkv", "seg_00001.cartoon.mkv"]  # Film.targets
    kept[work / conv.KEYFRAME_FILM] = (work / conv.KEYFRAME_FILM).stat().st_mtime_ns  # made once, reused

    computed = []
    real = conv.process_segment
    monkeypatch.setattr(conv, "process_segment", lambda film, seg, *a, **k: computed.append(seg.index)
                        or real(film, seg, *a, **k))
    summary = run(film, out, weights, keep_work=True)
    assert computed == [2, 3, 4, 5] and summary["reused"] == 2
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())  # finished segments untouched
    for target in ("colorized", "cartoon"):
        a, b = segment_frames(tmp_path / "whole", target), segment_frames(out, target)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    for name in conv.OUTPUTS:  # deterministic H.264: same frames, same bytes
        assert (tmp_path / "whole" / name).read_bytes() == (out / name).read_bytes()

    run(film, out, weights, render_factor=3)  # other settings: a new work folder, nothing reused
    assert len(computed) == 4 + 6 and not (out / ".deeperfour" / work.name / "seg_00006.cartoon.mkv").exists()
    assert sorted(p.name for p in (out / ".deeperfour").iterdir()) == [work.name]  # its own folder removed


@pytest.mark.integration
def test_process_segment_runs_alone_in_another_process(film, weights, tmp_path):
    """What a Ray task does: (film, segment, settings) pickled to a fresh process gives the same files."""
    job = conv.prepare(film, tmp_path / "out", plan=PLAN, progress=False, log=lambda line: None,
                       weights=weights, models=weights / "released", device="cpu", batch=3)
    seg = job.segments[4]  # mid-shot: starts with warm-up frames
    assert seg.lead < seg.start
    here = conv.process_segment(job.film, seg, job.settings, tmp_path / "here")
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        there = pool.submit(conv.process_segment, job.film, seg, job.settings, tmp_path / "there").result()
    assert set(here) == set(there) == set(job.film.targets) == {"cartoon"}  # colors: the keyframe film
    for target in here:
        a, b = list(read_frames(here[target])), list(read_frames(there[target]))
        assert len(a) == seg.n_frames and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------ temporal


def test_temporal_cartoon_is_the_temporal_generators_stream(film, weights, tmp_path):
    """Under ``--stabilizer temporal`` the cartoon IS the temporal-loss generator's streaming output.

    One segment per shot (so every segment starts fresh at a shot start), lossless segments kept: the
    cartoon frames equal a fresh TemporalCartoonizer stepped over (colorized, B&W) frame by frame, reset
    at the cut (the same computation repeated, so bit-exact), and they are not the colorized frames.
    On 3d00329 this fails: a late-bound generator expression wrote the colorized film as the cartoon.
    """
    w = tmp_path / "w"
    for sub in ("colorize", "train_cartoongan"):
        (w / sub).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(weights / sub, w / sub)
    torch.manual_seed(1)
    cfg = CartoonGANConfig(variant="light", base_channels=8, n_res_blocks=2)
    TemporalCartoonGenerator(CartoonGenerator(cfg)).save(w / "temporal_loss" / "generator.pt")
    out, lines = tmp_path / "out", []
    summary = run(film, out, w, stabilizer="temporal", style="tiny", plan=conv.Plan(max_frames=100, warmup=2),
                  keep_work=True, precision="fp32", log=lines.append)
    assert summary["frames"] == probe(out / "cartoon.mp4").n_frames == N
    assert any("--style tiny is ignored" in line for line in lines)
    cols, carts = segment_frames(out, "colorized"), segment_frames(out, "cartoon")
    model = TemporalCartoonGenerator.from_checkpoint(w / "temporal_loss" / "generator.pt")
    stream = TemporalCartoonizer(model, "cpu", "fp32")
    expected = []
    for t, (gray, col) in enumerate(zip(read_frames(film, gray=True), cols, strict=True)):
        if t in (0, CUT):
            stream.reset()
        expected.append(stream.step(col, gray))
    assert len(carts) == N
    assert all(np.array_equal(a, b) for a, b in zip(carts, expected, strict=True))
    assert sum(not np.array_equal(a, b) for a, b in zip(carts, cols, strict=True)) == N


# ------------------------------------------------------------------------------------------------ bad input


def _no_frames(path: Path) -> None:
    c = av.open(str(path), "w")
    s = c.add_stream("ffv1", rate=25)
    s.width, s.height, s.pix_fmt = 16, 16, "gray"
    c.start_encoding()
    c.close()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("case", ["text", "empty", "no_frames", "truncated", "style", "no_weights",
                                  "bad_colorizer", "bad_convlstm", "unwritable", "interrupted"])
def test_bad_input_one_line_error_no_mp4(case, film, weights, tmp_path, capsys, monkeypatch):
    src, out, w, extra = film, tmp_path / "out", weights, []
    if case == "text":
        src = tmp_path / "notes.mp4"
        src.write_text("not a film")
    elif case == "empty":
        src = tmp_path / "empty.mp4"
        src.write_bytes(b"")
    elif case == "no_frames":
        src = tmp_path / "none.mkv"
        _no_frames(src)
    elif case == "truncated":
        src = tmp_path / "cut.mp4"
        src.write_bytes(film.read_bytes()[: film.stat().st_size // 2])
    elif case == "style":
        extra = ["--style", "nosuch"]
    elif case == "no_weights":
        w = tmp_path / "empty_weights"
        w.mkdir()
    elif case in ("bad_colorizer", "bad_convlstm"):
        w = tmp_path / "w"
        for sub in ("colorize", "train_cartoongan", "convlstm"):
            (w / sub).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(weights / sub, w / sub)
        bad = w / ("colorize" if case == "bad_colorizer" else "convlstm")
        bad.unlink()
        bad.mkdir()
        name = "colorizer.pt" if case == "bad_colorizer" else "convlstm.pt"
        os.symlink(weights / "train_cartoongan" / "tiny" / "generator.pt", bad / name)  # the wrong network
    elif case == "unwritable":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif case == "interrupted":
        monkeypatch.setattr(conv, "process_segment", _interrupt)
    code = main(["convert", str(src), "-o", str(out), "--weights", str(w), "--models",
                 str(weights / "released"), "--device", "cpu", "--quiet", *extra])
    captured = capsys.readouterr()
    out_text, err = captured.out, [line for line in captured.err.split("\n") if line.strip()]
    assert code != 0
    assert len(err) == 1 and err[0].startswith("deeperfour:"), err
    expected = {"text": "not a readable video", "empty": "empty", "no_frames": "no video frames",
                "truncated": str(src), "style": "nosuch", "no_weights": "colorizer.pt",
                "bad_colorizer": "colorizer.pt", "bad_convlstm": "convlstm.pt", "unwritable": "cannot write",
                "interrupted": "interrupted"}[case]
    assert expected in err[0]
    if case == "interrupted":
        assert "run the same command again to resume" in out_text
    if case == "style":
        assert "available: tiny" in err[0]
    if case.startswith("bad_"):
        assert "expected" in err[0]
    assert not (out.is_dir() and list(out.rglob("*.mp4")))


def test_profile_charges_every_part_and_adds_up(film, weights, tmp_path):
    """With ``sections``, every part of the pipeline is timed and the parts add up to about the wall time."""
    import time

    from deeperfour.convert.profile import Sections

    sec, t0 = Sections(), time.perf_counter()
    summary = run(film, tmp_path / "out", weights, stabilizer="flow", sections=sec)
    wall = time.perf_counter() - t0
    assert summary["frames"] == N
    parts = {"decode", "colorize", "propagate", "flow", "stabilize", "cartoonize", "encode"}
    assert parts <= set(sec.seconds)
    assert all(v >= 0 for v in sec.seconds.values())
    assert sum(sec.seconds.values()) <= wall  # exclusive parts never count a second twice
    sec = Sections()
    run(film, tmp_path / "per", weights, stabilizer="flow", sections=sec, colorize="per-frame")
    assert "propagate" not in sec.seconds and sec.seconds["colorize"] > 0


def test_abstraction_style_needs_no_cartoon_weights(film, weights, tmp_path):
    """--style abstraction: the classical cartoon, per shot, with no style generator on disk."""
    w = tmp_path / "w"
    w.mkdir()
    os.symlink(weights / "colorize", w / "colorize")  # a colorizer, but no train_cartoongan/ at all
    lines = []
    summary = run(film, tmp_path / "out", w, style="abstraction", stabilizer="none", log=lines.append)
    assert summary["frames"] == probe(tmp_path / "out" / "cartoon.mp4").n_frames == N
    assert any("cartoon style: abstraction" in line for line in lines)
    cols, carts = (list(read_frames(tmp_path / "out" / f)) for f in ("colorized.mp4", "cartoon.mp4"))
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(cols, carts, strict=True)]) > 2


# ------------------------------------------------------------------------------------------------ keyframes


def test_reference_keyframes_round_trip(film, weights, tmp_path, capsys):
    """keyframes -> colored (here: the color original's frames) -> convert --reference: the colorized
    film takes the references' colors, keeps the input's luma, and a shot without one is reported and
    colored from the colorizer's keyframe."""
    from deeperfour.film.color import luminance

    refs = tmp_path / "refs"
    assert main(["keyframes", str(film), "-o", str(refs)]) == 0
    written = sorted(p.name for p in refs.glob("*.png"))
    assert written == ["000000.png", f"{CUT:06d}.png"]
    originals = list(read_frames(film))
    import cv2

    cv2.imwrite(str(refs / "000000.png"), cv2.cvtColor(originals[0], cv2.COLOR_RGB2BGR))  # shot 1 colored
    (refs / f"{CUT:06d}.png").unlink()  # shot 2 left to the colorizer
    lines = []
    out = tmp_path / "out"
    summary = run(film, out, weights, reference=refs, stabilizer="none", log=lines.append, keep_work=True)
    assert summary["frames"] == N
    assert any("without a colored reference" in line and ": 2 (of 2)" in line for line in lines)
    cols = segment_frames(out, "colorized")  # lossless: the exact colorized frames
    gray = list(read_frames(film, gray=True))  # the B&W film convert starts from
    assert max(np.abs(luminance(c).astype(int) - g).max() for c, g in zip(cols, gray, strict=True)) <= 1

    def chroma_error(a, b):  # uint8 RGB: mean |difference of RGB - Y|, the color apart from brightness
        ca = a.astype(float) - luminance(a)[..., None]
        return np.abs(ca - b.astype(float) + luminance(b)[..., None]).mean()

    shot1 = list(zip(cols[:CUT], originals[:CUT], strict=True))
    keyed = np.mean([chroma_error(c, o) for c, o in shot1])
    grayish = np.mean([chroma_error(np.repeat(luminance(o)[..., None], 3, 2), o) for _, o in shot1])
    assert keyed < 0.5 * grayish  # shot 1 carries the reference's colors


def test_colorize_keyframes_without_references_and_bad_reference_folder(film, weights, tmp_path, capsys):
    lines = []
    summary = run(film, tmp_path / "out", weights, colorize="keyframes", stabilizer="none", log=lines.append)
    assert summary["frames"] == N and any("each shot's first frame" in line for line in lines)
    assert main(["convert", str(film), "-o", str(tmp_path / "bad"), "--weights", str(weights), "--quiet",
                 "--reference", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and not list((tmp_path / "bad").glob("*.mp4"))


def test_propagation_choice_follows_the_refiners_own_verdict(film, weights, tmp_path, capsys):
    """--propagation auto takes the refiner only where stage colorize_reference recorded that it won on
    the validation clip; refined without a refiner is one error line; the refiner's file keys the work."""
    from deeperfour.models.propagation_refiner import PropagationRefiner, RefinerConfig

    w = tmp_path / "weights"
    shutil.copytree(weights, w)
    s, notes = cm.resolve_settings(weights=w, models=w / "released", device="cpu", colorize="keyframes")
    assert s.refiner_file == "" and any("propagation: classical (no refiner" in n for n in notes)
    with pytest.raises(FileNotFoundError, match="no propagation refiner"):
        cm.resolve_settings(weights=w, models=w / "released", device="cpu", colorize="keyframes",
                            propagation="refined")
    refiner = PropagationRefiner(RefinerConfig(width=4))
    refiner.save(w / cm.REFINER_FILE, {"default_method": "classical"})
    s, notes = cm.resolve_settings(weights=w, models=w / "released", device="cpu", colorize="keyframes")
    assert s.refiner_file == "" and any("did not beat it" in n for n in notes)
    refiner.save(w / cm.REFINER_FILE, {"default_method": "refined"})
    s, notes = cm.resolve_settings(weights=w, models=w / "released", device="cpu", colorize="keyframes")
    assert s.refiner_file.endswith("refiner.pt") and s.refiner_file in s.files()
    per_frame, _ = cm.resolve_settings(weights=w, models=w / "released", device="cpu", colorize="per-frame")
    assert per_frame.refiner_file == ""  # the per-frame colorizer propagates nothing
    summary = run(film, tmp_path / "out", w, colorize="keyframes", stabilizer="none")
    assert summary["frames"] == N
    assert main(["convert", str(film), "-o", str(tmp_path / "bad"), "--weights", str(weights), "--quiet",
                 "--colorize", "keyframes", "--propagation", "refined"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no propagation refiner" in err[0]


def test_compile_module_off_is_untouched_and_bad_mode_is_refused():
    from deeperfour.core.compile import compile_module

    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1))
    assert compile_module(net, enabled=False) is net and net._compiled_call_impl is None
    with pytest.raises(ValueError, match="compile mode 'fastest'"):
        compile_module(net, mode="fastest")


@pytest.mark.integration
def test_compiled_networks_agree_with_eager_within_one_level(film, weights, tmp_path):
    """--compile: every network compiled (colorizer, cartoon generator, ConvLSTM). Each one, given the same
    input as its eager self, returns the same frames within one 8-bit level (fp32: the fused kernels only
    reorder float sums). The ConvLSTM is teacher-forced: every step gets the eager run's past (O_{t-1},
    I_{t-1}, memory), so its own rounding does not feed back. The cached eager colorizer stays eager."""
    from deeperfour.infer.cartoonize import FrameCartoonizer
    from deeperfour.infer.colorize import colorize_frames
    from deeperfour.infer.stabilize import ConvLSTMStabilizer

    lines = []
    summary = run(film, tmp_path / "compiled", weights, colorize="per-frame", stabilizer="convlstm",
                  precision="fp32", compile=True, log=lines.append)
    assert any("torch.compile" in line for line in lines) and summary["frames"] == N
    s, _ = cm.resolve_settings(weights=weights, models=weights / "released", device="cpu", precision="fp32",
                               colorize="per-frame", stabilizer="convlstm", compile=True)
    compiled, eager = cm.load_models(s), cm._load_networks(s)
    for net in (compiled.colorizer, compiled.cartoon, compiled.convlstm):
        assert net._compiled_call_impl is not None
    for net in (eager.colorizer, eager.cartoon, eager.convlstm):
        assert net._compiled_call_impl is None
    grays = list(read_frames(film, gray=True))
    nets = (("eager", eager), ("compiled", compiled))
    colors = {name: list(colorize_frames(m.colorizer, grays, s.render_factor, s.chroma_scale, "cpu", 3,
                                         "fp32")) for name, m in nets}
    cartoons = {name: list(FrameCartoonizer(m.cartoon, "cpu", "fp32", 3).stream(zip(colors["eager"], grays,
                                                                                   strict=True)))
                for name, m in nets}
    stab = {name: ConvLSTMStabilizer(m.convlstm, "cpu", "fp32") for name, m in nets}
    stabilized = {"eager": [], "compiled": []}
    for frame, gray in zip(cartoons["eager"], grays, strict=True):
        past = (stab["eager"].state, stab["eager"].o_prev, stab["eager"].i_prev, stab["eager"].src_prev)
        c = stab["compiled"]
        c.state, c.o_prev, c.i_prev, c.src_prev = copy.deepcopy(past)
        stabilized["eager"].append(stab["eager"].step(frame, gray))
        stabilized["compiled"].append(c.step(frame, gray))
    assert len(stabilized["eager"]) == len(grays) > 2
    for target, outs in (("colorizer", colors), ("cartoon", cartoons), ("convlstm", stabilized)):
        pairs = zip(outs["eager"], outs["compiled"], strict=True)
        worst = max(int(np.abs(a.astype(int) - b).max()) for a, b in pairs)
        assert worst <= 1, (target, worst)
