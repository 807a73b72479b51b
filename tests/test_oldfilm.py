"""The B&W film maker: luminance, seeded degradation, ground truth kept, fps/count/audio kept."""

import numpy as np
import pytest

from deeperfour.film.color import luminance
from deeperfour.film.oldfilm import Degradation, degrade, make_bw_film
from deeperfour.film.video import probe, read_frames


def test_clean_film_is_exact_luminance(clip, tmp_path):
    n = make_bw_film(clip, tmp_path / "bw.mkv", tmp_path / "color.mkv", progress=False)
    src, bw, col = probe(clip), probe(tmp_path / "bw.mkv"), probe(tmp_path / "color.mkv")
    assert n == src.n_frames == bw.n_frames == col.n_frames
    assert bw.fps == col.fps == src.fps
    assert bw.has_audio and col.has_audio
    for rgb, y, c in zip(read_frames(clip), read_frames(tmp_path / "bw.mkv", gray=True),
                         read_frames(tmp_path / "color.mkv"), strict=True):
        np.testing.assert_array_equal(y, luminance(rgb))
        np.testing.assert_array_equal(c, rgb)


def test_degradation_is_seeded_and_per_frame():
    y = np.full((60, 80), 128, np.uint8)
    deg = Degradation(grain=6, flicker=0.05, scratches=1, vignette=0.3, blur=0.7)
    a = degrade(y, 7, deg, seed=1)
    np.testing.assert_array_equal(a, degrade(y, 7, deg, seed=1))  # same seed and index: same frame
    assert not np.array_equal(a, degrade(y, 7, deg, seed=2))
    assert not np.array_equal(a, degrade(y, 8, deg, seed=1))
    assert abs(float(a.mean()) - 128) < 25
    assert degrade(y, 3, Degradation(), seed=0) is y  # no degradation: untouched


def test_vignette_darkens_corners_only():
    y = np.full((60, 80), 200, np.uint8)
    out = degrade(y, 0, Degradation(vignette=0.5))
    assert out[30, 40] >= 199 and out[0, 0] < 150


def test_max_frames(clip, tmp_path):
    assert make_bw_film(clip, tmp_path / "bw.mkv", max_frames=7, progress=False) == 7
    assert probe(tmp_path / "bw.mkv").n_frames == 7


@pytest.mark.parametrize("field, value", [("grain", -5), ("blur", -1), ("flicker", float("nan")),
                                          ("scratches", float("inf")), ("vignette", 5), ("vignette", -0.1)])
def test_degradation_refuses_out_of_range_strengths(field, value):
    """Negative, non-finite, or (vignette) above 1: an error naming the strength and its range, not 'off'."""
    with pytest.raises(ValueError, match=f"degradation {field} = {value}: must be"):
        Degradation(**{field: value})


def test_bw_film_never_overwrites_its_source(clip, tmp_path):
    """The source under another spelling or a symlink is still the source: refused, left as it was."""
    before = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    for out in (clip, tmp_path / "link.mp4", tmp_path / "." / clip.name):
        with pytest.raises(ValueError, match="overwrite the source"):
            make_bw_film(clip, out, progress=False)
        with pytest.raises(ValueError, match="overwrite the source"):
            make_bw_film(clip, tmp_path / "bw.mkv", color_out=out, progress=False)
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "link.mp4"]


def test_variable_rate_source_keeps_every_frame_with_a_note(tmp_path):
    """A VFR source: every frame kept at the average rate, and the log says so."""
    from test_video import vfr_clip

    src, notes = vfr_clip(tmp_path / "vfr.mp4"), []
    n = make_bw_film(src, tmp_path / "bw.mkv", progress=False, log=notes.append)
    assert n == probe(tmp_path / "bw.mkv").n_frames == 30
    assert float(probe(tmp_path / "bw.mkv").fps) == pytest.approx(float(probe(src).fps), rel=1e-3)  # average
    assert len(notes) == 1 and notes[0].startswith(f"note: {src} has a variable frame rate")
