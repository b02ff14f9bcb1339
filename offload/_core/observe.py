"""What the pools tell the outside world: the ``offload`` logger, the buckets
of their wait and run histograms, and the hook a metrics exporter sets.

Nothing here costs a call that is not watched more than a comparison: the
histograms are counted in the worker loop with one bisect each, a call is
logged only when it ran longer than :data:`slow_call` seconds and the logger
wants debug records, and :data:`call_observer` is None unless an exporter
(OpenTelemetry) wants every call.
"""

import logging
from collections.abc import Callable

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


def log_slow(pool: str, work: object, run: float) -> None:
    """The debug record of a call that ran *run* seconds, more than :data:`slow_call`."""
    fn = getattr(work, "fn", None) or getattr(work, "name", None) or work
    name = getattr(fn, "__qualname__", None) or str(fn)
    logger.debug("%s: %s ran for %.3f s (slow_call is %.3f s)", pool, name, run, slow_call)
