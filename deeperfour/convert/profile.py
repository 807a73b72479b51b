"""Where a conversion's time goes: exclusive wall time per part of the pipeline.

The pipeline is a chain of generators (decode -> colorize -> stabilize -> cartoonize -> stabilize ->
encode), so a part's ``next()`` runs the parts upstream of it. :class:`Sections` keeps a stack and
subtracts every nested part's time from its parent's, so each part is charged only its own work::

    sections = Sections()
    frames = sections.iterate("decode", read_frames(path))   # each next() timed as "decode"
    with sections("encode"):
        writer.write(frame)
    sections.per_frame(n)   # {"decode": s/frame, "encode": s/frame, ...}
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Sections:
    """Exclusive seconds per named section; sections nest (a child's time is not its parent's)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._children: list[float] = []  # time spent in nested sections, one entry per open section

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        self._children.append(0.0)
        try:
            yield
        finally:
            inner = self._children.pop()
            dt = time.perf_counter() - t0
            self.seconds[name] += dt - inner
            if self._children:
                self._children[-1] += dt

    def iterate(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """``items`` with each ``next()`` timed as section ``name`` (the consumer's time is not)."""
        it = iter(items)
        while True:
            with self(name):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item

    def per_frame(self, n_frames: int) -> dict[str, float]:
        """{section: seconds per frame}, sorted by cost."""
        return {k: v / max(n_frames, 1) for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])}


class NoSections(Sections):
    """The same interface, timing nothing (the default: no overhead on the hot path)."""

    @contextmanager
    def __call__(self, name: str):
        yield

    def iterate(self, name: str, items: Iterable[T]) -> Iterator[T]:
        return iter(items)
