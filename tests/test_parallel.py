"""Side-by-side films: panel layout, labels, streaming writer keeping fps, count and audio."""

import numpy as np
import pytest

from deeperfour.convert.parallel import panel_size, side_by_side, write_parallel
from deeperfour.film.video import VideoError, VideoWriter, probe, read_frames

from .conftest import make_clip


def test_side_by_side_layout_and_labels():
    gray = np.full((20, 30), 100, np.uint8)
    rgb = np.zeros((40, 60, 3), np.uint8)  # larger: shrunk to the first panel's size
    rgb[..., 0] = 200
    out = side_by_side([gray, rgb, rgb])
    assert out.shape == (20, 90, 3) and out.dtype == np.uint8
    assert (out[:, :30] == 100).all() and (out[:, 30:, 0] == 200).all()
    labelled = side_by_side([gray, rgb, rgb], size=(60, 40), labels=["a", "b", "c"])
    assert labelled.shape == (40, 180, 3)
    changed = np.argwhere((labelled != side_by_side([gray, rgb, rgb], size=(60, 40))).any(axis=2))
    assert len(changed) and changed[:, 0].max() < 20  # text only near the top of each panel


def test_panel_size_even_and_capped():
    assert panel_size(64, 48) == (64, 48)
    assert panel_size(63, 47) == (64, 48)  # even sides: yuv420p
    w, h = panel_size(1920, 1080, max_width=3840)
    assert 3 * w <= 3840 + 2 and w % 2 == 0 and h % 2 == 0 and abs(w / h - 16 / 9) < 0.01


def _split_lossless(src, dst_dir, cut):
    """The frames of ``src`` as two lossless files [0, cut) and [cut, n): a segment list."""
    info = probe(src)
    frames = list(read_frames(src))
    paths = [dst_dir / "a.mkv", dst_dir / "b.mkv"]
    for p, part in zip(paths, (frames[:cut], frames[cut:]), strict=True):
        with VideoWriter(p, info.fps, info.width, info.height) as w:
            for f in part:
                w.write(f)
    return paths, frames


def test_write_parallel_keeps_fps_count_audio(tmp_path):
    bw = make_clip(tmp_path / "bw.mp4", n=12, cut_at=(6,), audio_seconds=0.4)
    segs, frames = _split_lossless(bw, tmp_path, 5)
    dst = write_parallel(bw, segs, segs, tmp_path / "parallel.mp4", labels=False)
    i, b = probe(dst), probe(bw)
    assert (i.n_frames, i.fps, i.width, i.height) == (12, b.fps, 3 * b.width, b.height)
    assert i.has_audio and abs(i.audio_seconds - b.audio_seconds) < 0.05
    out = list(read_frames(dst))
    middle = out[7][:, b.width:2 * b.width].astype(int)  # the "colorized" panel = frame 7 of the source
    assert np.abs(middle - frames[7].astype(int)).mean() < 6  # H.264 is lossy


def test_write_parallel_refuses_mismatched_films(tmp_path):
    bw = make_clip(tmp_path / "bw.mp4", n=10, cut_at=(), audio_seconds=None)
    segs, _ = _split_lossless(bw, tmp_path, 4)
    with pytest.raises(VideoError, match="a.mkv.*ends at frame 4"):
        write_parallel(bw, segs[0], segs, tmp_path / "p.mp4")
    assert not list(tmp_path.glob("p*.mp4"))

