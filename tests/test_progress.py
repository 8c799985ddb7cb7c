"""Progress text: rate and time left, durations, throttled plain lines."""
from __future__ import annotations

from ciml_ter.progress import Rate, Throttle, duration, plain_every_s


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_and_eta():
    clock = Clock()
    rate = Rate(3_000_000, clock=clock)
    assert rate.text(0) == "0/3,000,000 rows, 0 rows/s, ETA unknown"
    clock.now += 20
    assert rate.text(1_000_000) == "1,000,000/3,000,000 rows, 50,000 rows/s, ETA 40 s"


def test_durations():
    assert [duration(s) for s in (0, 42.4, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]


def test_throttle_passes_one_line_per_interval(monkeypatch):
    clock, seen = Clock(), []
    lines = Throttle(seen.append, 30.0, clock=clock)
    lines("a")
    clock.now += 29
    lines("b")
    clock.now += 2
    lines("c")
    lines("d")
    lines("e", force=True)
    assert seen == ["c", "e"]
    monkeypatch.setenv("CIML_PROGRESS_EVERY", "5")
    assert plain_every_s() == 5.0
