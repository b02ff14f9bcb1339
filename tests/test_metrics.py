"""offload.metrics: a real /metrics endpoint, OpenTelemetry instruments, the logger."""

import logging
import os
import urllib.request

import gevent
import pytest
from services import free_port

import offload
import offload.metrics
from offload._core import native as _native

prometheus_client = pytest.importorskip("prometheus_client")


def _noop(x):
    return x


def test_a_scrape_of_a_real_metrics_endpoint_shows_each_pool():
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.parser import text_string_to_metric_families

    import offload.metrics.prometheus

    registry = CollectorRegistry()
    offload.metrics.prometheus.register(registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    pool = offload.ThreadPool(3, name="scraped")
    try:
        gevent.joinall([gevent.spawn(pool.call, _native.sleep, 0.002) for _ in range(20)])
        with pytest.raises(ZeroDivisionError):
            pool.call(lambda: 1 / 0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        pool.shutdown()
        server.shutdown()
        server.server_close()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("pool") == "scraped":
                key = (sample.name, sample.labels.get("le"))
                samples[key] = sample.value
    assert samples[("offload_pool_calls_submitted_total", None)] == 21
    assert samples[("offload_pool_calls_completed_total", None)] == 20
    assert samples[("offload_pool_calls_failed_total", None)] == 1
    assert samples[("offload_pool_max_workers", None)] == 3
    assert samples[("offload_pool_run_seconds_count", None)] == 21
    assert samples[("offload_pool_run_seconds_bucket", "+Inf")] == 21
    # 20 calls slept 2 ms: none of them ran in under 1 ms.
    assert samples[("offload_pool_run_seconds_bucket", "0.001")] <= 1
    assert samples[("offload_pool_run_seconds_sum", None)] >= 20 * 0.002
    assert samples[("offload_pool_wait_seconds_count", None)] == 21


def test_a_scrape_shows_a_wrap_executor_facade():
    from concurrent.futures import ThreadPoolExecutor

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    import offload.metrics.prometheus

    registry = CollectorRegistry()
    offload.metrics.prometheus.register(registry)
    facade = offload.wrap_executor(ThreadPoolExecutor(2), name="facade")
    try:
        gevent.joinall([gevent.spawn(facade.call, _native.sleep, 0.002) for _ in range(10)])
        with pytest.raises(ZeroDivisionError):
            facade.call(lambda: 1 / 0)
        body = generate_latest(registry).decode()
    finally:
        facade.shutdown()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("pool") == "facade":
                assert sample.labels["kind"] == "executor"
                samples[(sample.name, sample.labels.get("le"))] = sample.value
    assert samples[("offload_pool_calls_submitted_total", None)] == 11
    assert samples[("offload_pool_calls_completed_total", None)] == 10
    assert samples[("offload_pool_calls_failed_total", None)] == 1
    assert samples[("offload_pool_max_workers", None)] == 2
    assert samples[("offload_pool_workers", None)] == 2
    assert samples[("offload_pool_run_seconds_count", None)] == 11
    assert samples[("offload_pool_run_seconds_sum", None)] >= 10 * 0.002
    assert samples[("offload_pool_run_seconds_bucket", "0.001")] <= 1  # the sleeps took 2 ms


def test_opentelemetry_instruments_read_the_pools_and_record_every_call():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import offload.metrics.otel

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    offload.metrics.otel.instrument(provider)
    pool = offload.ThreadPool(2, name="otel")
    try:
        for i in range(7):
            assert pool.call(_noop, i) == i
        data = reader.get_metrics_data()
    finally:
        offload.metrics.otel.uninstrument()
        pool.shutdown()
    found = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if point.attributes.get("pool") == "otel":
                        found[metric.name] = point
    assert found["offload.pool.calls.submitted"].value == 7
    assert found["offload.pool.calls.completed"].value == 7
    assert found["offload.pool.run"].count == 7
    assert found["offload.pool.wait"].count == 7


def test_the_logger_tells_of_growth_slow_calls_and_cancellations(caplog):
    caplog.set_level(logging.DEBUG, logger="offload")
    offload.metrics.set_slow_call(0.05)
    pool = offload.ThreadPool(1, name="logged")
    try:
        pool.call(_native.sleep, 0.1)
        blocker = gevent.spawn(pool.call, _native.sleep, 0.3)
        gevent.sleep(0.05)
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.05):
                pool.call(_noop, 1)  # queued behind the blocker: cancelled, never runs
        blocker.join()
    finally:
        offload.metrics.set_slow_call(1.0)
        pool.shutdown()
    messages = [r.getMessage() for r in caplog.records if r.name == "offload"]
    assert any("logged: started thread 1 of 1" in m for m in messages), messages
    assert any("logged: " in m and "sleep ran for" in m for m in messages), messages
    assert any("queued call was cancelled" in m and "Timeout" in m for m in messages), messages


def test_nothing_is_logged_at_the_default_level(caplog):
    caplog.set_level(logging.INFO, logger="offload")
    pool = offload.ThreadPool(2, name="quiet")
    try:
        for _ in range(50):
            pool.call(_noop, 0)
    finally:
        pool.shutdown()
    assert [r for r in caplog.records if r.name == "offload"] == []


def _die():
    os._exit(3)


def test_a_crashed_worker_process_and_its_replacement_are_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="offload")
    with offload.ProcessPool(1, name="crashy") as pool:
        with pytest.raises(offload.WorkerCrashed):
            pool.call(_die)
        assert pool.call(_noop, 5) == 5
    messages = [r.getMessage() for r in caplog.records if r.name == "offload"]
    assert any("crashy: the worker process" in m and "exit code 3" in m for m in messages), messages
    assert any("crashy: started worker process" in m for m in messages), messages


def test_bad_slow_call_thresholds_are_refused():
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        offload.metrics.set_slow_call(float("nan"))
    with pytest.raises(TypeError, match="seconds must be"):
        offload.metrics.set_slow_call("1")
