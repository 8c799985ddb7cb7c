"""Progress of long work: rate and time-left text, and how often plain lines are printed.

On a terminal the CLI shows a live bar; in batch logs (Slurm output files) it prints plain
timed lines, at most one every ``plain_every_s()`` seconds (``CIML_PROGRESS_EVERY``, default
30 s), so that a long step is never silent and a log never floods.
"""
from __future__ import annotations

import os
import time
from typing import Callable

DEFAULT_PLAIN_EVERY_S = 30.0

# progress(done, total, message): how stages report steps (None: nobody listens)
ProgressCallback = Callable[[int, int, str], None] | None


def plain_every_s() -> float:
    """Seconds between plain progress lines (``CIML_PROGRESS_EVERY``, default 30)."""
    return float(os.environ.get("CIML_PROGRESS_EVERY", DEFAULT_PLAIN_EVERY_S))


def duration(seconds: float) -> str:
    """A short duration: "42 s", "3 min 05 s", "2 h 07 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Rate:
    """Units done of ``total`` since this object was made: "done/total unit, rate unit/s, ETA"."""

    def __init__(self, total: int, unit: str = "rows", clock=time.monotonic):
        self.total, self.unit, self.clock = total, unit, clock
        self.start = clock()

    def text(self, done: int) -> str:
        elapsed = self.clock() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = duration((self.total - done) / rate) if rate > 0 else "unknown"
        return f"{done:,}/{self.total:,} {self.unit}, {rate:,.0f} {self.unit}/s, ETA {eta}"


class Throttle:
    """Calls ``sink(message)`` at most once every ``every`` seconds (the first call too waits
    ``every``; ``force`` always passes)."""

    def __init__(self, sink, every: float, clock=time.monotonic):
        self.sink, self.every, self.clock = sink, every, clock
        self.last = clock()

    def __call__(self, message: str, force: bool = False) -> None:
        now = self.clock()
        if force or now - self.last >= self.every:
            self.last = now
            self.sink(message)


def timed_lines(title: str, sink) -> Callable[[str], None]:
    """``line(message)`` for batch logs: "title [elapsed] message" passed to ``sink`` at most
    once every ``plain_every_s()`` seconds."""
    start = time.monotonic()
    lines = Throttle(sink, plain_every_s())
    return lambda message: lines(f"{title} [{duration(time.monotonic() - start)}] {message}")
