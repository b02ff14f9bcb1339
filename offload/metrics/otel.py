"""OpenTelemetry metrics for offload's pools (``pip install offload[otel]``).

:func:`instrument` creates observable instruments read from every live
pool at each collection (``offload.pool.workers``, ``.active``, ``.queued``
as gauges; ``offload.pool.calls.submitted``, ``.completed``, ``.failed``,
``.cancelled`` as counters), attributes ``pool`` and ``kind``, and two
histograms, ``offload.pool.wait`` and ``offload.pool.run`` (seconds), that
every worker records a call into as it finishes (a
:func:`~offload.wrap_executor` façade: each call it timed, as the foreign
future is done).  A façade whose executor does not tell its workers (Dask)
has no ``offload.pool.workers`` observation.
"""

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._core import observe
from . import snapshot

__all__ = ["instrument", "uninstrument"]


Read = Callable[[dict[str, Any]], "float | None"]


def _observe(read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"pool": p.name, "kind": p.kind})
            for p in snapshot()
            if (value := read(p.stats)) is not None  # a façade's workers it cannot see
        ]

    return callback


def instrument(meter_provider: Any = None) -> None:
    """Export offload's pools through *meter_provider* (the global one if None)."""
    meter = otel_metrics.get_meter("offload", meter_provider=meter_provider)
    for key in ("workers", "active", "queued"):
        meter.create_observable_gauge(f"offload.pool.{key}", callbacks=[_observe(itemgetter(key))], unit="1")
    for key in ("submitted", "completed", "failed", "cancelled"):
        meter.create_observable_counter(
            f"offload.pool.calls.{key}", callbacks=[_observe(itemgetter(key))], unit="1"
        )
    wait = meter.create_histogram(
        "offload.pool.wait", unit="s", description="seconds calls waited in the queue"
    )
    run = meter.create_histogram("offload.pool.run", unit="s", description="seconds calls ran")

    def record(pool: str, waited: float, ran: float) -> None:
        attributes = {"pool": pool}
        wait.record(waited, attributes)
        run.record(ran, attributes)

    observe.call_observer = record
    observe.watched = True


def uninstrument() -> None:
    """Stop recording calls into the histograms (the observable instruments stay)."""
    observe.call_observer = None
