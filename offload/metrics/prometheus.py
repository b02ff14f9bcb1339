"""A ``prometheus_client`` collector for offload's pools (``pip install offload[prometheus]``).

>>> from prometheus_client import REGISTRY              # doctest: +SKIP
>>> offload.metrics.prometheus.register(REGISTRY)       # doctest: +SKIP

Each pool is a label set ``{pool="<name>", kind="thread"|"process"|"executor"}``
(``executor``: a :func:`~offload.wrap_executor` façade).
Gauges: ``offload_pool_workers``, ``offload_pool_active``,
``offload_pool_queued``, ``offload_pool_max_workers``.  Counters:
``offload_pool_calls_submitted_total``, ``..._completed_total``,
``..._failed_total``, ``..._cancelled_total``.  Histograms:
``offload_pool_wait_seconds`` (queued until a worker took the call) and
``offload_pool_run_seconds``, counted from the registration on.  A façade
over an executor that does not tell its workers (Dask) has no
``offload_pool_workers`` or ``offload_pool_max_workers`` sample.
"""

from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from . import BOUNDS, enable_histograms, snapshot

__all__ = ["OffloadCollector", "register"]

_LABELS = ["pool", "kind"]
_GAUGES = ("workers", "active", "queued", "max_workers")
_COUNTERS = ("submitted", "completed", "failed", "cancelled")


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    bounds = [repr(bound) for bound in BOUNDS] + ["+Inf"]
    return list(zip(bounds, accumulate(counts), strict=True))


class OffloadCollector(Collector):
    """Reads every live pool's figures at each scrape."""

    def collect(self) -> Iterator[Any]:
        pools = snapshot()
        families = [
            (GaugeMetricFamily, f"offload_pool_{key}", f"the pool's {key.replace('_', ' ')}", key)
            for key in _GAUGES
        ] + [
            (CounterMetricFamily, f"offload_pool_calls_{key}", f"calls {key} since the pool was made", key)
            for key in _COUNTERS
        ]
        for family_type, name, documentation, key in families:
            family = family_type(name, documentation, labels=_LABELS)
            for pool in pools:
                value = pool.stats[key]
                if value is not None:  # a façade's workers it cannot see
                    family.add_metric([pool.name, pool.kind], value)
            yield family
        for key, what, total in (("wait", "waited in the queue", "wait_time"), ("run", "ran", "run_time")):
            histogram = HistogramMetricFamily(
                f"offload_pool_{key}_seconds", f"seconds calls {what}", labels=_LABELS
            )
            for pool in pools:
                histogram.add_metric([pool.name, pool.kind], _buckets(getattr(pool, key)), pool.stats[total])
            yield histogram


def register(registry: CollectorRegistry = REGISTRY) -> OffloadCollector:
    """Register an :class:`OffloadCollector` with *registry* (the default one); return it."""
    collector = OffloadCollector()
    registry.register(collector)
    enable_histograms()
    return collector
