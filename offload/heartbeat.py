"""Measure how long the hub is frozen: a heartbeat greenlet, and :func:`probe`.

A greenlet that sleeps for ``interval`` and then notes how late it woke up
sees every freeze of the hub as lateness.  :class:`Heartbeat` is that
greenlet; :func:`probe` runs one call beside it and reports whether the call
blocked the hub -- the answer to "after monkey patching, does my driver
still block?", measured instead of guessed.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import gevent

from ._core.checks import check_callable, check_number, check_seconds

__all__ = ["Heartbeat", "ProbeResult", "probe", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of *values*, nearest rank; 0.0 if empty."""
    q = check_number("q", q, 0, 100)
    if not values:
        return 0.0
    ordered = sorted(values)
    # The smallest value with at least q% of the values at or below it; the
    # epsilon keeps float noise (0.07 * 100 = 7.000000000000001) off the next rank.
    rank = math.ceil(q / 100 * len(ordered) - 1e-9) - 1
    return ordered[min(len(ordered) - 1, max(0, rank))]


class Heartbeat:
    """A greenlet that ticks every *interval* seconds and records its lateness.

    Use as a context manager around the code to watch; ``lags`` then holds
    one lateness (seconds) per tick, and ``times`` the
    :func:`time.perf_counter` reading at each tick.  A tick that is overdue
    when the heartbeat stops is counted too, so a freeze at the very end is
    not lost.
    """

    def __init__(self, interval: float = 0.001) -> None:
        interval = check_seconds("interval", interval, positive=True)
        self.interval = interval
        self.lags: list[float] = []
        self.times: list[float] = []
        self._glet: gevent.Greenlet | None = None
        self._due = 0.0

    def start(self) -> "Heartbeat":
        """Start ticking in a greenlet of this hub; return the heartbeat.

        ``with Heartbeat(...) as hb:`` calls it.  It yields once, so the first
        tick is armed before the watched code runs.  A heartbeat starts once.
        """
        if self._glet is not None:
            raise RuntimeError("heartbeat already started")
        self._due = perf_counter() + self.interval
        self._glet = gevent.spawn(self._run)
        gevent.sleep(0)  # let it arm its first timer before the watched code runs
        return self

    def stop(self) -> None:
        """Stop ticking; a tick overdue at this moment counts as one more lag.

        Stopping a heartbeat that is not running does nothing.
        """
        glet, self._glet = self._glet, None
        if glet is None:
            return
        glet.kill(block=False)
        now = perf_counter()
        if now > self._due:
            self.lags.append(now - self._due)
            self.times.append(now)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _run(self):
        interval = self.interval
        lags, times = self.lags, self.times
        sleep = gevent.sleep
        me = gevent.getcurrent()
        while True:
            sleep(interval)
            if self._glet is not me:  # stopped while this tick's timer was due: not a tick
                return
            now = perf_counter()
            lags.append(max(0.0, now - self._due))
            times.append(now)
            self._due = now + interval

    @property
    def max_lag(self) -> float:
        """The worst lag recorded, in seconds (0.0 before the first tick)."""
        return max(self.lags, default=0.0)

    def lag(self, q: float) -> float:
        """The *q*-th percentile of the recorded lags, in seconds."""
        return percentile(self.lags, q)


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` saw.  Lags and ``elapsed`` are in seconds."""

    blocked: bool
    max_lag: float
    p50_lag: float
    p99_lag: float
    ticks: int
    elapsed: float
    value: Any = None


def probe(
    fn: Callable[..., Any], /, *args: Any, interval: float = 0.005, threshold: float = 0.05, **kwargs: Any
) -> ProbeResult:
    """Run ``fn(*args, **kwargs)`` here while a heartbeat ticks every *interval*.

    The call runs in the calling greenlet, exactly as the application would
    run it; the result says whether the hub froze meanwhile (``blocked``: the
    worst lag exceeded *threshold*), the lag figures, and ``fn``'s return
    value.  Exceptions from ``fn`` propagate.

    >>> import time, offload
    >>> offload.probe(time.sleep, 0.1).blocked        # unpatched sleep freezes the hub
    True
    >>> offload.probe(offload.call, time.sleep, 0.1).blocked
    False
    """
    check_callable(fn)
    interval = check_seconds("interval", interval, positive=True)
    threshold = check_seconds("threshold", threshold, positive=False)
    heartbeat = Heartbeat(interval)
    with heartbeat:
        started = perf_counter()
        value = fn(*args, **kwargs)
        elapsed = perf_counter() - started
    return ProbeResult(
        blocked=heartbeat.max_lag > threshold,
        max_lag=heartbeat.max_lag,
        p50_lag=heartbeat.lag(50),
        p99_lag=heartbeat.lag(99),
        ticks=len(heartbeat.lags),
        elapsed=elapsed,
        value=value,
    )
