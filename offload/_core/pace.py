"""How many threads an adaptive :class:`~offload.ThreadPool` starts.

Growth follows run times, the client-side cousin of TCP Vegas: threads
beyond ``floor`` start only while calls do not slow down as threads are
added, never while idle ones could take the calls queued, never for callers
whose hub is later than ``LAG_BUDGET`` (:mod:`offload._core.bridge`), and at
most one every ``_GROW_EVERY`` seconds; a thread held longer than
:data:`STUCK` by one call does not count towards the floor.  The rules, the
reasons and the runs that chose the numbers are in ``docs/choosing.rst``
("Adaptive pools").
"""

from collections.abc import Sequence
from time import monotonic
from typing import Any

#: A call running longer than this (seconds) leaves its thread out of the floor.
STUCK = 0.05

# A function's fastest run is the fastest of the last one or two windows of
# this many seconds, so that a server that became slower for good (a
# fail-over, a farther replica) is the new normal within a minute.
_WINDOW = 30.0

# Seconds between two threads started on credit: time for the calls, and
# the hub's lateness, to show what the last one changed.
_GROW_EVERY = 0.01

# The weight of each run in a function's smoothed run time.
_SMOOTHING = 1 / 8

# Distinct functions remembered; beyond it the memory starts afresh (callers
# that make a new closure or partial per call would otherwise fill it).
_MAX_KINDS = 256


class _Runs:
    """What the pace remembers of one kind of call."""

    __slots__ = ("window_start", "fastest", "fastest_before", "smoothed")

    def __init__(self, now: float, run: float) -> None:
        self.window_start = now
        self.fastest = run  # in the window that began at window_start
        self.fastest_before = run  # in the window before it
        self.smoothed = run


def _kind(fn: object) -> object:
    """What makes two calls comparable: their code, not their closure."""
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, "__code__", fn)


class Pace:
    """The growth state of one adaptive pool, written by its workers and read
    when a call is queued.  Races between threads only blur a heuristic, so
    there is no lock."""

    __slots__ = ("floor", "kinds", "credit", "grown")

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.kinds: dict[object, _Runs] = {}  # kind of call -> its runs
        self.credit = False  # a call finished unslowed since the last start
        self.grown = 0.0  # when a call's credit last started a thread

    def finished(self, fn: object, run: float, now: float, hub_keeps_up: bool = True) -> None:
        """A worker ran ``fn`` for *run* seconds, ending at *now*, for a
        caller whose hub is within its lag budget or not."""
        kinds = self.kinds
        kind = _kind(fn)
        k = kinds.get(kind)
        if k is None:
            if len(kinds) >= _MAX_KINDS:
                kinds.clear()
            k = kinds[kind] = _Runs(now, run)
        else:
            if now - k.window_start > _WINDOW:
                k.window_start, k.fastest_before, k.fastest = now, k.fastest, run
            elif run < k.fastest:
                k.fastest = run
            k.smoothed += (run - k.smoothed) * _SMOOTHING
        limit = 2 * min(k.fastest, k.fastest_before)
        if hub_keeps_up and run < limit and k.smoothed < limit:
            self.credit = True

    def starts(self, workers: "Sequence[Any]", backlog: int, queued: int) -> int:
        """How many threads to start for *backlog* queued calls that no
        worker is on its way to (of *queued* in all), given the live
        workers' Counters."""
        now = monotonic()
        running = busy = 0
        for c in workers:
            if c.active:
                busy += 1
                if now - c.since > STUCK:
                    continue
            running += 1
        wanted = min(self.floor, backlog) - running
        if self.credit and queued > len(workers) - busy and now - self.grown >= _GROW_EVERY:
            self.credit = False
            self.grown = now
            wanted = max(wanted, 0) + 1
        return wanted
