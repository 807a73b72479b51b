"""The `deeperfour` command: help lists the commands; bad inputs give one clear error line."""

import subprocess
import sys

import pytest

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
