"""Keyframes for an artist, colored references read back and checked, and the round trip through
propagation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import make_clip
from skimage.color import deltaE_ciede2000, rgb2lab
from test_video import truncated_clip

from deeperfour.cli import main
from deeperfour.film.color import gray_to_rgb, luminance
from deeperfour.film.keyframes import References, Shot, keyframe_name, read_references, write_keyframes
from deeperfour.film.video import VideoError, VideoWriter, probe, read_frames
from deeperfour.infer.propagate import propagate_film


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """A 40-frame color clip (64x48, cut at 20) and its B&W film (lossless luma)."""
    d = tmp_path_factory.mktemp("films")
    color = make_clip(d / "color.mp4", audio_seconds=None)
    frames = list(read_frames(color))
    with VideoWriter(d / "bw.mkv", probe(color).fps, 64, 48, gray=True) as w:
        for f in frames:
            w.write(luminance(f))
    return color, d / "bw.mkv", frames


def save(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def test_write_keyframes_one_per_shot_and_every(films, tmp_path):
    _, bw, frames = films
    assert write_keyframes(bw, tmp_path / "a") == [0, 20]
    assert write_keyframes(bw, tmp_path / "b", every=8) == [0, 8, 16, 20, 28, 36]
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == [keyframe_name(i) for i in (0, 8, 16, 20, 28, 36)] and names[1] == "000008.png"
    png = cv2.imread(str(tmp_path / "b" / "000028.png"), cv2.IMREAD_UNCHANGED)  # lossless, gray, 8-bit
    assert png.dtype == np.uint8 and png.ndim == 2 and np.array_equal(png, luminance(frames[28]))


@pytest.mark.parametrize("every", [0, -3, 2.5])
def test_write_keyframes_bad_every(films, tmp_path, every):
    with pytest.raises(ValueError, match="every"):
        write_keyframes(films[1], tmp_path / "k", every=every)
    assert not (tmp_path / "k").exists()


def test_write_keyframes_keeps_colored_references(films, tmp_path):
    save(tmp_path / "000000.png", films[2][0])
    with pytest.raises(FileExistsError, match="choose an empty folder"):
        write_keyframes(films[1], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.png"]


def test_write_keyframes_truncated_film_leaves_nothing(tmp_path):
    bad = truncated_clip(tmp_path)
    with pytest.raises(VideoError, match="clip.mp4"):
        write_keyframes(bad, tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_cli_keyframes(films, tmp_path, capsys):
    assert main(["keyframes", str(films[1]), "-o", str(tmp_path / "k"), "--every", "15"]) == 0
    out = capsys.readouterr().out
    assert "000000.png" in out and "2 shots" in out
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [
        "000000.png", "000015.png", "000020.png", "000035.png"]
    assert main(["keyframes", str(films[1]), "-o", str(tmp_path / "k2"), "--every", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deeperfour: error:") and "--every" in err and "\n" not in err
    assert not (tmp_path / "k2").exists()


def test_read_references_kinds_and_resize_note(films, tmp_path):
    _, bw, frames = films
    info = probe(bw)
    save(tmp_path / "000005.png", frames[5])
    big = cv2.resize(frames[30], (128, 96), interpolation=cv2.INTER_CUBIC)  # same aspect, twice the size
    save(tmp_path / "shot02.png", big)
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    refs = read_references(tmp_path, info, [0, 20])
    assert isinstance(refs, References) and set(refs) == {5, Shot(1)}
    assert np.array_equal(refs[5], frames[5]) and refs[Shot(1)].shape == (48, 64, 3)
    assert len(refs.notes) == 1 and "128x96 resized to the film's 64x48" in refs.notes[0]


BAD_CASES = {
    "empty": ([], "holds no reference images"),
    "not_image": ([("notes.txt", "text")], "is not a PNG or JPG image"),
    "corrupt": ([("000003.png", "junk")], "cannot be read as an image"),
    "bad_name": ([("frame3.png", 3)], "neither a frame index nor a shot"),
    "past_end": ([("000040.png", 3)], "frame 40 is past the end of the film (40 frames"),
    "shot_past_end": ([("shot03.png", 3)], "shot 3 does not exist"),
    "shot_zero": ([("shot00.png", 3)], "numbered from 1"),
    "aspect": ([("000003.png", "wide")], "aspect"),
    "gray": ([("000003.png", "gray")], "is gray: color it first"),
    "uncolored_keyframe": ([("000003.png", "gray1")], "is gray: color it first"),
    "duplicate": ([("000003.png", 3), ("000003.jpg", 3)], "two references for frame 3"),
    "duplicate_digits": ([("3.png", 3), ("000003.png", 3)], "two references for frame 3"),
    "shot_and_frame": ([("shot02.png", 25), ("000025.png", 25)],
                       "has a shot reference and a frame reference"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_references_one_line_and_nothing_written(films, tmp_path, case):
    _, bw, frames = films
    files, message = BAD_CASES[case]
    refs = tmp_path / "refs"
    refs.mkdir()
    for name, what in files:
        if what == "text":
            (refs / name).write_text("colors: red")
        elif what == "junk":
            (refs / name).write_bytes(b"\x89PNG not really")
        elif what == "wide":
            save(refs / name, cv2.resize(frames[3], (96, 48)))
        elif what == "gray1":
            assert cv2.imwrite(str(refs / name), luminance(frames[3]))
        elif what == "gray":
            save(refs / name, gray_to_rgb(luminance(frames[3])))
        else:
            save(refs / name, frames[what])
    with pytest.raises(ValueError) as e:
        read_references(refs, probe(bw), [0, 20])
    msg = str(e.value)
    assert message in msg and "\n" not in msg, msg
    with pytest.raises(ValueError) as e2:  # the same line from the whole command, before any output
        propagate_film(bw, refs, tmp_path / "out" / "colorized.mkv")
    assert str(e2.value) == msg
    assert not (tmp_path / "out").exists()


def test_missing_folder(films, tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        read_references(tmp_path / "nope", probe(films[1]), [0, 20])


def test_round_trip_keyframes_color_propagate(films, tmp_path):
    """keyframes -> 'colored' by taking the color original's frames -> propagate: colors come back."""
    color, bw, frames = films
    keys = write_keyframes(bw, tmp_path / "refs")
    for i in keys:  # the artist's work
        save(tmp_path / "refs" / keyframe_name(i), frames[i])
    prop = propagate_film(bw, tmp_path / "refs", tmp_path / "colorized.mkv")
    assert prop.uncolored_shots == [] and prop.keyframes == {0: [0], 1: [20]}
    out = list(read_frames(tmp_path / "colorized.mkv"))
    assert len(out) == probe(bw).n_frames == 40
    gray = list(read_frames(bw, gray=True))
    assert max(int(np.abs(luminance(o).astype(int) - g).max()) for o, g in zip(out, gray, strict=True)) <= 1
    de = np.mean([deltaE_ciede2000(rgb2lab(frames[i]), rgb2lab(out[i])).mean() for i in range(40)])
    de_gray = np.mean([deltaE_ciede2000(rgb2lab(frames[i]), rgb2lab(gray_to_rgb(gray[i]))).mean()
                       for i in range(40)])
    assert de < 0.35 * de_gray, (de, de_gray)
