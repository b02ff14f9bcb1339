"""Numbers to watch in production: every live pool's stats and histograms.

A pool here is an offload :class:`~offload.ThreadPool` or
:class:`~offload.ProcessPool`, or a :func:`~offload.wrap_executor` façade.

:func:`snapshot` reads them from any thread; the exporters build on it:
:mod:`offload.metrics.prometheus` (a ``prometheus_client`` collector) and
:mod:`offload.metrics.otel` (OpenTelemetry instruments), each an extra.
The ``offload`` :mod:`logging` logger has debug records for pool growth,
worker crashes and replacements, cancelled calls, and calls slower than
:func:`set_slow_call` seconds.
"""

import sys
from dataclasses import dataclass
from typing import Any

from .._core import observe
from .._core.checks import check_seconds
from .._poolbase import PoolBase
from ..wrap import ExecutorFacade, _facades

__all__ = ["BOUNDS", "PoolMetrics", "enable_histograms", "pools", "set_slow_call", "snapshot"]

#: The upper bounds (seconds) of the wait and run histograms' buckets.
BOUNDS = observe.BOUNDS


@dataclass(frozen=True)
class PoolMetrics:
    """One pool's figures at one moment.

    ``kind`` is ``"thread"``, ``"process"`` or ``"executor"`` (a
    :func:`~offload.wrap_executor` façade), ``stats`` what
    :meth:`~offload.ThreadPool.stats` returns (a façade's ``workers`` and
    ``max_workers`` may be None: see :class:`~offload.wrap.ExecutorFacade`),
    and ``wait``/``run`` the counts per bucket of :data:`BOUNDS` (plus one
    for longer calls).
    """

    name: str
    kind: str
    stats: dict[str, Any]
    wait: list[int]
    run: list[int]


def pools() -> list[PoolBase | ExecutorFacade[Any]]:
    """Every live offload pool of this process (threads, and processes if
    used), and every live :func:`~offload.wrap_executor` façade."""
    from ..threadpool import _pools as thread_pools

    found: list[PoolBase | ExecutorFacade[Any]] = list(thread_pools)
    processpool = sys.modules.get("offload.processpool")  # not imported: no process pool exists
    if processpool is not None:
        found.extend(processpool._pools)
    found.extend(_facades)
    return found


def _kind(pool: Any) -> str:
    if isinstance(pool, ExecutorFacade):
        return "executor"
    return "process" if type(pool).__name__ == "ProcessPool" else "thread"


def snapshot() -> list[PoolMetrics]:
    """The figures of every live pool, from any thread."""
    result = []
    for pool in pools():
        histograms = pool.histograms()
        kind = _kind(pool)
        result.append(PoolMetrics(pool.name, kind, pool.stats(), histograms["wait"], histograms["run"]))
    return result


def enable_histograms() -> None:
    """Count every call from now on into its pool's wait and run histograms.

    Off by default (the buckets cost about a tenth of a round trip); the
    exporters turn it on when they are registered.  Calls made before are
    not in the histograms, only in the counters of ``stats()``.
    """
    observe.watched = True


def set_slow_call(seconds: float) -> None:
    """Log (at debug level, logger ``offload``) every call that runs longer than *seconds*.

    The default is 1 second.
    """
    observe.slow_call = check_seconds("seconds", seconds, positive=False)
