"""How many threads an adaptive :class:`~offload.ThreadPool` starts.

A pool that starts a thread for every call that finds no idle one ends up
with as many threads as callers.  Where calls wait on a remote server, that
is what they need: more calls in flight, more throughput.  Where they wait
on something saturated -- the GIL, or a server already at full load -- the
extra threads add nothing but wake-ups and GIL hand-offs, and the hub pays
for them in lag.  Run times tell the two apart: in the first case a call
takes as long with more threads as with few; in the second it takes longer
as threads are added.  The pace is the client-side cousin of TCP Vegas:

* up to ``floor`` threads start on demand;
* beyond it, a call earns one more thread if both its run time and its
  function's smoothed run time are within twice that function's fastest
  recent run; the thread starts when a call is queued with no worker on
  its way to it, at most one every ``_GROW_EVERY`` seconds -- growth for as
  long as calls do not slow down, paced so that each thread's effect shows
  before the next;
* no thread starts while idle ones could take the calls queued;
* nor for calls whose hub is late: when the hub's gathering timer fires,
  smoothed, more than ``LAG_BUDGET`` late (:mod:`offload._core.bridge`), the
  threads already running Python keep the hub waiting for the GIL, and
  another would add lag rather than throughput;
* a thread busy with one call for longer than :data:`STUCK` seconds (a
  change-stream poll, a long aggregation) does not count towards the floor,
  so long calls never leave short ones with no thread to run on.
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
