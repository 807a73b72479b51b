"""Streaming video I/O with PyAV: probe, decode, encode, audio carry-over.

Design rules (paper step 1, "cutting original movies into frames"):

* constant memory: frames are decoded and encoded one at a time, never a whole film;
* exact fractional frame rates: 30000/1001 stays 30000/1001 (``fractions.Fraction``);
* identical frame counts: a frame in is a frame out, timestamps are frame indices;
* the input's audio stream is copied packet by packet, interleaved with the video;
* lossless storage for intermediates (FFV1 in Matroska); H.264 only for deliverables;
* atomic outputs: a writer writes ``<name>.partial.<ext>`` and renames it on success,
  so a failure never leaves a file under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deeperfour.film.outputs import VIDEO_FIX, check_output_file

LOSSLESS_SUFFIX = ".mkv"  # FFV1 in Matroska: bit-exact frames, keeps 30000/1001


class VideoError(RuntimeError):
    """A video file that cannot be used; the message names the file, the problem and a fix."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str = ""):
        self.path, self.problem, self.fix = Path(path), problem, fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)

    def __reduce__(self):
        """Picklable from its parts, so a worker process (Ray, multiprocessing) can raise it to the driver."""
        return type(self), (self.path, self.problem, self.fix)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction  # exact, e.g. Fraction(30000, 1001)
    n_frames: int
    has_audio: bool
    audio_codec: str | None
    audio_seconds: float | None
    variable_rate: bool = False  # frames are unevenly spaced in time; fps is their average rate

    @property
    def seconds(self) -> float:
        return float(self.n_frames / self.fps)


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(path, "file not found", "check the path")
    if path.is_dir():
        raise VideoError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "is empty (0 bytes)", "was the copy or download interrupted?")
    try:
        return av.open(str(path))
    except av.error.EOFError as e:
        raise VideoError(path, "contains no video frames (FFmpeg reached the end of the file at once)",
                         "is it an empty or truncated file?") from e
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise VideoError(path, f"is not a readable video (FFmpeg: {why})",
                         "a video file that is truncated or in a format FFmpeg does not read?") from e


def _video_stream(container, path: Path):
    if not container.streams.video:
        n_streams = len(container.streams)
        container.close()
        if n_streams == 0:
            raise VideoError(path, "contains no video frames (no stream holds any data)",
                             "is it an empty or truncated file?")
        raise VideoError(path, "has no video stream", "pass a video file, not audio or an image")
    return container.streams.video[0]


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's geometry, exact frame rate, frame count and audio, without decoding pixels.

    The frame count comes from the container's index when it has one (mp4), otherwise from
    counting packets (demux only). Raises VideoError for a missing file, a file that
    is not a video, a video with no frames, and a file that ends before the frames its index
    lists (found by reading the last group of pictures; frames are decoded and counted only then).
    ``variable_rate`` is set when the frames are unevenly spaced (mp4: the average rate differs
    from the stream's base rate; mkv: the packet times of the demux pass).
    """
    path = Path(path)
    with _open(path) as c:
        vs = _video_stream(c, path)
        fps = vs.average_rate or vs.guessed_rate or vs.base_rate
        if not fps:
            raise VideoError(path, "has no frame rate", "re-mux it with a constant frame rate")
        n = vs.frames
        variable = bool(vs.average_rate and vs.base_rate
                        and abs(vs.average_rate / vs.base_rate - 1) > 1e-3)
        if not n:
            pts = []
            try:
                pts = [p.pts for p in c.demux(vs) if p.size > 0]
            except av.error.FFmpegError as e:
                raise VideoError(path, f"is truncated or corrupt ({e})") from e
            n = len(pts)
            variable = variable or _uneven(pts, Fraction(fps), vs.time_base)
        elif not _tail_complete(c, vs):
            for _ in _decode(path):  # raises the VideoError naming how many frames decode
                pass
        if n == 0:
            raise VideoError(path, "contains no video frames", "is it an empty or truncated file?")
        a = c.streams.audio[0] if c.streams.audio else None
        a_codec = a.codec_context.name if a is not None else None
        a_sec = float(a.duration * a.time_base) if a is not None and a.duration is not None else None
        width, height = vs.codec_context.width, vs.codec_context.height
    if a is not None and a_sec is None:  # Matroska stores no stream duration: read packet times
        a_sec = _audio_seconds(path)
    return VideoInfo(path, width, height, Fraction(fps), int(n), a is not None, a_codec, a_sec, variable)


def _uneven(pts: list[int | None], fps: Fraction, time_base: Fraction | None) -> bool:
    """True when consecutive frame times differ from 1 / fps by more than a tick of the time base
    (Matroska's millisecond ticks round 30000/1001 fps to 33 and 34 ms: still constant)."""
    times = sorted(p for p in pts if p is not None)
    if len(times) < 3 or not time_base:
        return False
    step = 1 / (fps * time_base)  # ticks per frame
    return any(abs(b - a - step) > 1 for a, b in zip(times, times[1:], strict=False))


def _tail_complete(c, vs) -> bool:
    """Demux (no decoding) from the last keyframe: False when the end of the file is missing, i.e.
    a packet is cut short or the last frame's time falls short of the stream's duration."""
    start = vs.start_time or 0
    end = start + (vs.duration or 0)
    try:
        c.seek(end, stream=vs, backward=True, any_frame=False)
        last, cut = None, False
        for p in c.demux(vs):
            if p.size and p.pts is not None:
                p_end = p.pts + (p.duration or 0)
                last = p_end if last is None else max(last, p_end)
                cut = cut or p.is_corrupt
    except av.error.FFmpegError:
        return False
    return last is not None and not cut and (not vs.duration or last >= end)


def _audio_seconds(path: Path) -> float | None:
    """End time of the last audio packet (demux only, no decoding)."""
    with _open(path) as c:
        a = c.streams.audio[0]
        start = a.start_time or 0
        end = max(((p.pts or 0) + (p.duration or 0) for p in c.demux(a) if p.pts is not None), default=None)
        return None if end is None else float((end - start) * a.time_base)


def _decode(path: Path, start: int = 0, stop: int | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames ``start <= i < stop``; VideoError when the stream ends before ``stop`` with
    fewer frames than the container's index lists, or a packet fails to decode."""
    with _open(path) as c:
        vs = _video_stream(c, path)
        # frame threads decode fast but drop a broken frame without raising, so the frames that
        # come out are counted against the index below: a truncated file never passes as a short film
        vs.thread_type = "AUTO"
        expected = vs.frames  # from the container index when it has one (mp4), else 0
        n = 0
        try:
            for frame in c.decode(vs):
                if stop is not None and n >= stop:
                    return
                if n >= start:
                    yield frame
                n += 1
        except av.error.FFmpegError as e:
            of = f" of {expected}" if expected else ""
            raise VideoError(path, f"is truncated or damaged: decoding failed at frame {n}{of} ({e})",
                             "re-export or re-download it") from e
        if n == 0:
            raise VideoError(path, "contains no video frames", "is it an empty or truncated file?")
        if n < expected:
            raise VideoError(path, f"is truncated or damaged: {n} of the {expected} frames its index "
                             "lists decode", "the file ends early; re-export or re-download it")


def read_frames(path: str | os.PathLike, gray: bool = False, start: int = 0,
                stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames ``start <= i < stop`` one at a time: RGB (H, W, 3) uint8, or gray (H, W) uint8.

    Gray frames are the decoder's luma plane (BT.601 Y) when the stream is YUV, so a
    B&W film written by :class:`VideoWriter` reads back bit-exactly. A file that ends
    early (before ``stop`` and before the frame count its index lists) or has a corrupt
    packet raises VideoError naming how many frames decode.
    """
    fmt = "gray" if gray else "rgb24"
    for frame in _decode(Path(path), start, stop):
        yield frame.to_ndarray(format=fmt)


def read_frames_at(path: str | os.PathLike, indices, gray: bool = False) -> list[np.ndarray]:
    """The frames at ``indices`` (any order, sorted on return), decoding one pass up to the last."""
    wanted = {int(i) for i in indices}
    if not wanted:
        return []
    return [f for i, f in enumerate(read_frames(path, gray=gray, stop=max(wanted) + 1)) if i in wanted]


def _partial_name(path: Path) -> Path:
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class VideoWriter:
    """Encode frames one by one to ``path``; optionally carry the audio of ``audio_from``.

    ``lossless=True`` (default for ``.mkv``) writes FFV1 (gray or RGB, bit-exact);
    otherwise H.264 (CRF ``crf``, yuv420p, or yuv444p for odd sizes). The file is
    written as ``<stem>.partial<suffix>`` and renamed only by a clean ``close()``;
    leaving the ``with`` block by an exception deletes it.

    Frame i gets timestamp i / fps exactly (time base 1/fps): fps and count are preserved.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction, width: int, height: int,
                 gray: bool = False, lossless: bool | None = None, crf: int = 18,
                 audio_from: str | os.PathLike | None = None):
        self.path = Path(path)
        self.fps = Fraction(fps)
        self.width, self.height, self.gray = int(width), int(height), gray
        self.lossless = self.path.suffix == LOSSLESS_SUFFIX if lossless is None else lossless
        self._tmp = _partial_name(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # bitexact: no random segment UID or encoder stamps, so the same frames give the same bytes
            self._c = av.open(str(self._tmp), "w", options={"fflags": "+bitexact"})
        except OSError:  # one clear line naming the path (a file where a folder is needed, ...)
            check_output_file(self.path)
            raise
        except ValueError as e:
            if "output format" not in str(e):  # FFmpeg: "Could not determine output format"
                raise
            raise ValueError(f"{self.path}: FFmpeg knows no film format by the name '{self.path.suffix}'; "
                             f"{VIDEO_FIX}") from e
        if self.lossless:
            self._s = self._c.add_stream("ffv1", rate=self.fps)
            self._s.pix_fmt = "gray" if gray else "bgr0"
        else:
            self._s = self._c.add_stream("libx264", rate=self.fps)
            even = width % 2 == 0 and height % 2 == 0
            self._s.pix_fmt = "yuv420p" if even else "yuv444p"
            # mbtree=0: x264's macroblock-tree rate control (its SIMD code here) made the same frames give
            # different bytes now and then, depending on memory contents and thread timing
            self._s.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
        self._s.width, self._s.height = self.width, self.height
        self._s.time_base = 1 / self.fps
        self._s.codec_context.time_base = 1 / self.fps
        self._audio = _AudioCopy(Path(audio_from), self._c) if audio_from else None
        self.n_written = 0
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) RGB uint8, or (H, W) uint8 gray."""
        expected = (self.height, self.width)
        if frame.shape[:2] != expected:
            raise ValueError(f"{self.path}: frame {self.n_written} has size {frame.shape[:2]}, "
                             f"the video is {expected} (H, W)")
        if frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be uint8, got {frame.dtype}")
        if frame.ndim == 2:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.n_written
        vf.time_base = self._s.codec_context.time_base
        for packet in self._s.encode(vf):
            self._c.mux(packet)
        self.n_written += 1
        if self._audio is not None:
            self._audio.mux_until(float(self.n_written / self.fps))

    def close(self) -> Path:
        """Flush, copy the remaining audio, and move the finished file to its final name."""
        if self._closed:
            return self.path
        if self.n_written == 0:
            self.abort()
            raise VideoError(self.path, "no frames were written, so no video was created")
        self._closed = True
        try:
            for packet in self._s.encode():
                self._c.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(float("inf"))
        finally:
            if self._audio is not None:
                self._audio.close()
            self._c.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (called automatically when the ``with`` block fails)."""
        if self._closed:
            return
        self._closed = True
        if self._audio is not None:
            self._audio.close()
        try:
            self._c.close()
        except av.error.FFmpegError:
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _AudioCopy:
    """Copy the first audio stream of ``src`` into ``out`` packet by packet (no re-encode),
    interleaved with the video so the muxer never buffers a whole film."""

    def __init__(self, src: Path, out):
        self._in = _open(src)
        self._stream_in = self._in.streams.audio[0] if self._in.streams.audio else None
        self._stream_out = None
        self._packets = iter(())
        self._pending = None
        if self._stream_in is not None:
            self._stream_out = out.add_stream_from_template(self._stream_in)
            self._packets = self._in.demux(self._stream_in)
        self._out = out

    def mux_until(self, t: float) -> None:
        if self._stream_out is None:
            return
        while True:
            p = self._pending or next(self._packets, None)
            self._pending = None
            if p is None:
                return
            if p.dts is None:  # demuxer flush packet
                continue
            if float(p.pts * p.time_base) > t:
                self._pending = p
                return
            p.stream = self._stream_out
            self._out.mux(p)

    def close(self) -> None:
        self._in.close()


def copy_video(src: str | os.PathLike, dst: str | os.PathLike, gray: bool = False,
               lossless: bool | None = None) -> Path:
    """Decode ``src`` and re-encode it to ``dst`` frame by frame, keeping fps, count and audio."""
    info = probe(src)
    with VideoWriter(dst, info.fps, info.width, info.height, gray=gray, lossless=lossless,
                     audio_from=src) as w:
        for frame in read_frames(src, gray=gray):
            w.write(frame)
    return Path(dst)
