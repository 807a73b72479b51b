"""deeperfour.film.video: streaming decode/encode, exact fps, frame counts, audio, lossless, errors."""

from fractions import Fraction

import numpy as np
import pytest

from deeperfour.film.video import VideoError, VideoWriter, copy_video, probe, read_frames, read_frames_at


def test_bigbuckbunny_roundtrip_keeps_frames_fps_and_audio(sample, tmp_path):
    out = copy_video(sample("bigbuckbunny.mp4"), tmp_path / "bbb.mp4")
    info = probe(out)
    assert info.n_frames == 132
    assert info.fps == Fraction(25)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.audio_seconds == pytest.approx(5.3, abs=0.05)
    assert sum(1 for _ in read_frames(out)) == 132


def test_carphone_keeps_ntsc_rate_exactly_lossless(sample, tmp_path):
    src = sample("carphone_pristine.mp4")
    out = copy_video(src, tmp_path / "carphone.mkv")  # FFV1: bit-exact
    info = probe(out)
    assert info.n_frames == 120
    assert info.fps == Fraction(30000, 1001)
    for a, b in zip(read_frames(src, stop=10), read_frames(out, stop=10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gray_lossless_roundtrip_and_odd_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (33, 47), dtype=np.uint8) for _ in range(5)]
    with VideoWriter(tmp_path / "g.mkv", Fraction(24000, 1001), 47, 33, gray=True) as w:
        for f in frames:
            w.write(f)
    back = list(read_frames(tmp_path / "g.mkv", gray=True))
    assert len(back) == 5
    for a, b in zip(frames, back, strict=True):
        np.testing.assert_array_equal(a, b)
    # odd-sized H.264 output works too (yuv444p)
    with VideoWriter(tmp_path / "odd.mp4", 25, 47, 33) as w:
        for f in frames:
            w.write(np.repeat(f[..., None], 3, axis=2))
    assert probe(tmp_path / "odd.mp4").n_frames == 5


def test_audio_is_carried_and_interleaved(clip, tmp_path):
    out = copy_video(clip, tmp_path / "out.mkv", gray=True)
    src, dst = probe(clip), probe(out)
    assert dst.n_frames == src.n_frames == 40
    assert dst.fps == src.fps == Fraction(30000, 1001)
    assert dst.has_audio
    assert dst.audio_seconds == pytest.approx(src.audio_seconds, abs=0.03)


def test_read_frames_at_and_ranges(clip):
    all_frames = list(read_frames(clip))
    picked = read_frames_at(clip, [7, 3, 3])
    assert len(picked) == 2
    np.testing.assert_array_equal(picked[0], all_frames[3])
    np.testing.assert_array_equal(picked[1], all_frames[7])
    assert len(list(read_frames(clip, start=10, stop=15))) == 5
    gray = next(read_frames(clip, gray=True))
    assert gray.shape == (48, 64) and gray.dtype == np.uint8


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25, 32, 32) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="size"):
        with VideoWriter(out, 25, 32, 32) as w:
            w.write(np.zeros((16, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoError, match="no frames"):
        VideoWriter(out, 25, 32, 32).close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "dir", "empty", "text", "truncated"])
def test_bad_inputs_name_the_file(kind, sample, tmp_path):
    p = tmp_path / f"bad_{kind}.mp4"
    if kind == "dir":
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not a video\n" * 20)
    elif kind == "truncated":
        data = sample("bikes.mp4").read_bytes()
        p.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError) as e:
        probe(p)
        list(read_frames(p))
    assert str(p) in str(e.value)


def test_truncated_faststart_mp4_detected_while_decoding(tmp_path):
    import av

    path = tmp_path / "fs.mp4"
    c = av.open(str(path), "w", options={"movflags": "faststart"})
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(50):
        for p in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                                                     format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated"):
        list(read_frames(path))


def test_video_with_no_frames(tmp_path):
    import av

    p = tmp_path / "none.mkv"
    c = av.open(str(p), "w")
    s = c.add_stream("ffv1", rate=25)
    s.width, s.height, s.pix_fmt = 32, 32, "gray"
    c.start_encoding()
    c.close()
    with pytest.raises(VideoError, match="no video frames"):
        probe(p)


def test_same_frames_give_identical_files(clip, tmp_path):
    """Byte-identical outputs keep DVC hashes stable across `dvc repro -f`."""
    a = copy_video(clip, tmp_path / "a.mkv", gray=True).read_bytes()
    b = copy_video(clip, tmp_path / "b.mkv", gray=True).read_bytes()
    assert a == b


def truncated_clip(tmp_path, n: int = 75, keep: float = 0.5):
    """An mp4 whose index (moov first: faststart) lists ``n`` frames, cut to its first ``keep`` of bytes."""
    import av
    from conftest import make_clip

    full = make_clip(tmp_path / "full.mp4", n=n, audio_seconds=None)
    path = tmp_path / "clip.mp4"
    with av.open(str(full)) as src, av.open(str(path), "w", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for p in src.demux(src.streams.video[0]):
            if p.dts is not None:
                p.stream = out
                dst.mux(p)
    full.unlink()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def vfr_clip(path, n: int = 30):
    """A variable-frame-rate clip: frames alternately 50 ms and 33 ms apart (about 24 fps on average)."""
    import av

    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=24)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.codec_context.time_base = Fraction(1, 1000)
    rng, t = np.random.default_rng(0), 0
    for i in range(n):
        f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
        f.pts, f.time_base = t, Fraction(1, 1000)
        t += 33 if i % 2 else 50
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_mp4_is_an_error_for_probe_and_every_full_pass(keep, tmp_path):
    """A file whose index lists 75 frames but ends early never passes as a short film: probe, a full
    read and a read up to the listed count all raise, naming how many frames decode out of 75."""
    p = truncated_clip(tmp_path, keep=keep)
    promise = r"clip.mp4: is truncated or damaged: \d+ of the 75 frames its index lists decode"
    with pytest.raises(VideoError, match=promise):
        probe(p)
    with pytest.raises(VideoError, match=promise):
        list(read_frames(p))
    with pytest.raises(VideoError, match=promise):
        list(read_frames(p, gray=True, stop=75))  # what the B&W film maker asks for
    assert len(list(read_frames(p, stop=5))) == 5  # the frames before the break still stream


def test_probe_decodes_nothing_on_a_complete_file(clip, monkeypatch):
    """The truncation check reads the last group of pictures only; frames are decoded only when it fails."""
    import deeperfour.film.video as video

    def no_decoding(*args, **kwargs):
        raise AssertionError("probe decoded a complete file")

    monkeypatch.setattr(video, "_decode", no_decoding)
    assert probe(clip).n_frames == 40


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_is_detected(suffix, clip, tmp_path):
    """Unevenly spaced frames set variable_rate; constant-rate films (even in Matroska's ms ticks) do not."""
    assert probe(vfr_clip(tmp_path / f"vfr{suffix}")).variable_rate
    assert not probe(clip).variable_rate
    assert not probe(copy_video(clip, tmp_path / f"cfr{suffix}")).variable_rate


@pytest.mark.parametrize("case", ["under_a_file", "unknown_format"])
def test_writer_names_the_output_path(case, tmp_path):
    """An output the writer cannot create gives one error naming the path and the fix, and no file."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "x.mp4" if case == "under_a_file" else tmp_path / "x.xyz"
    with pytest.raises((PermissionError, ValueError)) as e:
        VideoWriter(out, 25, 32, 32)
    msg = str(e.value)
    assert str(out) in msg
    assert ("is a file, not a folder" in msg) if case == "under_a_file" else (".mkv" in msg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
