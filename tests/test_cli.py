"""The `deeperfour` command: help lists the commands; bad inputs give one clear error line."""

import os
import re
import subprocess
import sys

import pytest
from test_video import truncated_clip, vfr_clip

from deeperfour.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "deeperfour", *args], capture_output=True, text=True)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("data", "frames", "info", "shots", "bw"):
        assert cmd in r.stdout


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_bad_film_one_line_error(kind, tmp_path, capsys):
    p = tmp_path / "film.mp4"
    if kind == "text":
        p.write_text("hello")
    elif kind == "empty":
        p.write_bytes(b"")
    out = tmp_path / "bw.mkv"
    assert main(["bw", str(p), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deeperfour: error:") and str(p) in err and "\n" not in err
    assert not out.exists() and list(tmp_path.glob("*.partial*")) == []


def test_info_and_shots(clip, capsys):
    assert main(["info", str(clip)]) == 0
    out = capsys.readouterr().out
    assert "40 frames at 30000/1001 fps" in out and "aac" in out
    assert main(["shots", str(clip)]) == 0
    assert "shots start at frames [0, 20]" in capsys.readouterr().out


def test_bw_command(clip, tmp_path, capsys):
    out = tmp_path / "bw.mp4"
    assert main(["bw", str(clip), "-o", str(out), "--grain", "4", "--flicker", "0.03"]) == 0
    from deeperfour.film.video import probe

    assert probe(out).n_frames == 40 and probe(out).has_audio


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.split("\n") if line.strip()]
    assert len(err) == 1 and err[0].startswith("deeperfour: error: "), err
    return err[0]


def frames_args(tmp_path, source) -> list[str]:
    """The `frames` stage on ``source``, every output under tmp_path/out."""
    params = tmp_path / "params.yaml"
    params.write_text(f"frames:\n  source: {source}\n  max_frames: 0\n  seed: 0\n  degrade: {{}}\n"
                      "  shots: {threshold: 0.8, ratio: 2.0, window: 8, min_shot: 5}\n")
    out = tmp_path / "out"
    return ["frames", "--params", str(params), "--out", str(out / "frames"), "--metrics",
            str(out / "frames.json"), "--figures", str(out / "figures"), "--quiet"]


@pytest.mark.parametrize("command", ["info", "shots", "bw", "frames"])
def test_truncated_film_is_an_error_in_every_command(command, tmp_path, capsys):
    """A truncated mp4 (index: 75 frames): one error line naming how many frames decode, exit 2, no output."""
    film = truncated_clip(tmp_path, keep=0.9)
    out = tmp_path / "out"
    argv = {"info": ["info", str(film)], "shots": ["shots", str(film)],
            "bw": ["bw", str(film), "-o", str(out / "bw.mkv"), "--color-out", str(out / "color.mkv")],
            "frames": frames_args(tmp_path, film)}[command]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert str(film) in err and re.search(r"\d+ of the 75 frames its index lists decode", err), err
    assert "re-download" in err
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("case", ["under_a_file", "folder", "unknown_format", "no_extension", "the_input",
                                  "input_via_symlink", "input_other_spelling", "color_out_is_output"])
def test_bw_bad_output_paths_one_line_error(case, clip, tmp_path, capsys):
    """Unusable -o paths are refused before any work, naming the path and the fix; the source is untouched."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.mp4").symlink_to(clip)
    before = clip.read_bytes()
    out, extra = {
        "under_a_file": (tmp_path / "file" / "bw.mkv", []),
        "folder": (tmp_path / "folder", []),
        "unknown_format": (tmp_path / "bw.xyz", []),
        "no_extension": (tmp_path / "bw", []),
        "the_input": (clip, []),
        "input_via_symlink": (tmp_path / "link.mp4", []),
        "input_other_spelling": (tmp_path / "folder" / ".." / clip.name, []),
        "color_out_is_output": (tmp_path / "bw.mkv", ["--color-out", str(tmp_path / "folder/../bw.mkv")]),
    }[case]
    assert main(["bw", str(clip), "-o", str(out), *extra]) == 2
    err = one_error_line(capsys)
    fix = {"under_a_file": "is a file, not a folder", "folder": "give -o a file name",
           "unknown_format": ".mkv", "no_extension": ".mkv", "the_input": "overwrite the source",
           "input_via_symlink": "overwrite the source", "input_other_spelling": "overwrite the source",
           "color_out_is_output": "different names"}[case]
    assert fix in err and ("choose another" in err or ".mkv" in err or "names" in err), err
    assert clip.name in err or str(out) in err, err
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"clip.mp4", "file", "folder", "link.mp4"}), list(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_bw_unwritable_folder_names_the_path(clip, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["bw", str(clip), "-o", str(locked / "bw.mkv")]) == 2
    err = one_error_line(capsys)
    assert str(locked / "bw.mkv") in err and "Permission denied" in err and "choose another -o" in err


def test_frames_output_under_a_file_one_line_error(clip, tmp_path, capsys):
    """`frames` checks --out, --metrics and --figures before making anything."""
    argv = frames_args(tmp_path, clip)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "figures").write_text("a file where the figures folder goes")
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert str(tmp_path / "out" / "figures") in err and "choose another --figures" in err, err
    assert not (tmp_path / "out" / "frames" / "bw.mkv").exists()
    assert not (tmp_path / "out" / "frames.json").exists()


@pytest.mark.parametrize("args, promise", [
    (["shots", "{clip}", "--threshold", "-1"], "--threshold -1.0: must be a finite number > 0"),
    (["shots", "{clip}", "--threshold", "nan"], "--threshold nan: must be a finite number > 0"),
    (["shots", "{clip}", "--threshold", "0"], "--threshold 0.0: must be a finite number > 0"),
    (["bw", "{clip}", "-o", "{out}", "--grain", "-5"], "--grain -5.0: must be a finite number >= 0"),
    (["bw", "{clip}", "-o", "{out}", "--blur", "-1"], "--blur -1.0: must be a finite number >= 0"),
    (["bw", "{clip}", "-o", "{out}", "--vignette", "5"], "--vignette 5.0: must be 0..1"),
    (["bw", "{clip}", "-o", "{out}", "--flicker", "nan"], "--flicker nan: must be a finite number >= 0"),
    (["bw", "{clip}", "-o", "{out}", "--scratches", "-0.5"], "--scratches -0.5: must be a finite number"),
    (["bw", "{clip}", "-o", "{out}", "--scratches", "inf"], "--scratches inf: must be a finite number >= 0"),
    (["convert", "{clip}", "-o", "{out}", "--device", "tpu9"],
     "--device tpu9: not a device; use auto, cpu, cuda or cuda:N"),
])
def test_bad_values_one_line_error(args, promise, clip, tmp_path, capsys):
    """Out-of-range options are refused with their valid range, before any output exists."""
    out = tmp_path / "out.mkv"
    assert main([a.format(clip=clip, out=out) for a in args]) == 2
    assert promise in one_error_line(capsys)
    assert not out.exists() and list(tmp_path.glob("*.partial*")) == []


@pytest.mark.parametrize("command", ["info", "bw", "frames"])
def test_variable_frame_rate_is_reported(command, tmp_path, capsys):
    """A VFR film is written at its average rate with every frame kept, and the user is told so."""
    film = vfr_clip(tmp_path / "vfr.mkv")
    argv = {"info": ["info", str(film)], "bw": ["bw", str(film), "-o", str(tmp_path / "bw.mkv")],
            "frames": frames_args(tmp_path, film)}[command]
    assert main(argv) == 0
    out = capsys.readouterr().out
    if command == "info":
        assert "30 frames at a variable frame rate, average 24 fps" in out
    else:
        assert (f"note: {film} has a variable frame rate; the output is written at a constant 24 fps with "
                "every frame kept") in out
