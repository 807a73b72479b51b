"""Output paths, checked before any work starts: one clear error naming the path, the problem and the fix.

Shared by the film tools (``bw``, ``frames``) and ``convert`` (``convert.pipeline`` re-uses
:func:`check_writable`), so every command words an unwritable output the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

VIDEO_SUFFIXES = (".mkv", ".mp4", ".mov", ".m4v")  # what VideoWriter writes: FFV1 (.mkv) or H.264
VIDEO_FIX = "name it .mkv (lossless FFV1) or .mp4 (H.264)"


def _why(folder: Path, e: OSError) -> str:
    """Why ``folder`` cannot be written, in words: a file standing where a folder is needed, else the OS's."""
    for p in (folder, *folder.parents):
        if p.exists():
            return f"{p} is a file, not a folder" if not p.is_dir() else (e.strerror or str(e))
    return e.strerror or str(e)


def _unwritable(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".deeperfour-write-test"):
            pass
    except OSError as e:
        return _why(folder, e)
    return None


def check_writable(outdir: Path, flag: str = "-o") -> None:
    """Create ``outdir`` and prove a file can be written there (one clear error otherwise)."""
    why = _unwritable(Path(outdir))
    if why:
        raise PermissionError(f"{outdir}: cannot write the output folder here ({why}); choose another {flag}")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (other spelling, symlink or hard link included)."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return a.resolve() == b.resolve()


def check_output_file(path: str | os.PathLike, flag: str = "-o",
                      inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output file that is a folder, is one of ``inputs``, or whose folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a file; give {flag} a file name, e.g. {path / 'out'}")
    for src in inputs:
        if same_file(path, src):
            raise ValueError(f"{flag} {path}: is the input film {src}; writing there would overwrite the "
                             f"source, choose another {flag}")
    why = _unwritable(path.parent)
    if why:
        raise PermissionError(f"{path}: cannot write the output file here ({why}); choose another {flag}")


def check_video_output(path: str | os.PathLike, flag: str = "-o",
                       inputs: Iterable[str | os.PathLike] = ()) -> None:
    """:func:`check_output_file` for a film, which also needs a name that says the format (.mkv, .mp4)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a file; give {flag} a file name, e.g. {path / 'out.mkv'}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        kind = f"'{path.suffix}' is not a film format written here" if path.suffix else "has no extension"
        raise ValueError(f"{path}: {kind}; {VIDEO_FIX}")
    check_output_file(path, flag, inputs)
