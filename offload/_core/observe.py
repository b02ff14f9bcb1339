"""What the pools tell the outside world: the ``offload`` logger, the buckets
of their wait and run histograms, and the hook a metrics exporter sets.

Nothing here costs a call that is not watched more than two comparisons in
the worker loop: the histograms are counted (one bisect each) only once an
exporter asked for them (:data:`watched`), and a call is logged only when it
ran longer than :data:`slow_call` seconds and the logger wants debug records.
"""

import logging
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("offload")

#: Upper bounds (seconds) of the wait and run histograms' buckets; a last
#: bucket counts everything longer.  From 50 µs (a hop) to 10 s (a slow query).
BOUNDS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Calls that ran longer than this many seconds get a debug record.
slow_call = 1.0

#: Called as ``call_observer(pool_name, wait_seconds, run_seconds)`` after every
#: call, from the worker; set by :func:`offload.metrics.otel.instrument`.
call_observer: Callable[[str, float, float], None] | None = None

#: Whether workers count calls into the histograms (and tell
#: :data:`call_observer`): off until an exporter or
#: :func:`offload.metrics.enable_histograms` turns it on, because the buckets
#: cost about a tenth of a round trip.
watched = False


def count(counters: Any, wait: float, run: float) -> None:
    """Count one call that waited *wait* and ran *run* seconds into the buckets of *counters*."""
    counters.wait_buckets[bisect_left(BOUNDS, wait)] += 1
    counters.run_buckets[bisect_left(BOUNDS, run)] += 1


def record(counters: Any, wait: float, run: float) -> None:
    """:func:`count` one call, and tell :data:`call_observer` (see :data:`watched`)."""
    # count() spelled out: a call less in a worker's loop.
    counters.wait_buckets[bisect_left(BOUNDS, wait)] += 1
    counters.run_buckets[bisect_left(BOUNDS, run)] += 1
    observer = call_observer
    if observer is not None:
        observer(counters.pool, wait, run)


def log_slow(pool: str, work: object, run: float) -> None:
    """The debug record of a call that ran *run* seconds, more than :data:`slow_call`."""
    fn = getattr(work, "fn", None) or getattr(work, "name", None) or work
    name = getattr(fn, "__qualname__", None) or str(fn)
    logger.debug("%s: %s ran for %.3f s (slow_call is %.3f s)", pool, name, run, slow_call)
