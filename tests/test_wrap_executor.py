"""wrap_executor over real foreign executors: a Dask LocalCluster, loky, stdlib.

The executors complete their futures on threads of their own; the façade
must wake only the waiting greenlet, and the hub must keep ticking.  What
the façade promises like every offload pool (over a ThreadPoolExecutor) is
in test_executor_contract.py.
"""

import multiprocessing
import os
import sys
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor, ThreadPoolExecutor

import gevent
import psutil
import pytest
from children import add, fail, getpid, sleep_then, spin, timed_sleep, write_pid_and_sleep

import offload
import offload.metrics
from offload._core import observe

SPIN = 600_000


def _check_facade(facade, parent_pid, expect_other_process=True):
    """What every wrapped executor must do; returns the worker pids seen."""
    # Long enough (about 0.2 s in threads) for a 5 ms heartbeat to tick
    # several times even while the hub competes with them for the GIL.
    with offload.Heartbeat(0.005) as beat:
        glets = [gevent.spawn(facade.call, spin, SPIN + i) for i in range(8)]
        gevent.joinall(glets, raise_error=True)
    assert [g.value for g in glets] == [spin(SPIN + i) for i in range(8)]
    assert beat.max_lag < 0.25, beat.max_lag
    assert len(beat.lags) > 2

    assert facade.submit(add, 1, 2).result(timeout=60) == 3
    assert offload.call(add, 2, 3, pool=facade) == 5
    assert offload.offload(add, pool=facade)(3, 4) == 7
    assert list(facade.map(add, range(5), range(5))) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="raised in the child"):
        facade.call(fail, "value")
    pids = {facade.call(getpid) for _ in range(4)}
    if expect_other_process:
        assert parent_pid not in pids
    return pids


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.timeout(240)
def test_dask_local_cluster(dask_client):
    facade = offload.wrap_executor(dask_client.get_executor())
    _check_facade(facade, os.getpid())
    # Two calls run at once on the two workers while the hub waits.
    with offload.Heartbeat(0.005) as beat:
        glets = [gevent.spawn(facade.call, timed_sleep, 1.0) for _ in range(2)]
        gevent.joinall(glets, raise_error=True)
    (start_a, end_a), (start_b, end_b) = (g.value for g in glets)
    assert max(start_a, start_b) < min(end_a, end_b)
    assert beat.max_lag < 0.25


@pytest.mark.timeout(240)
def test_dask_stats_count_the_calls_and_do_not_guess_workers_or_times(dask_client):
    facade = offload.wrap_executor(dask_client.get_executor(), name="dask-facade")
    started = time.monotonic()
    assert [facade.call(add, i, i) for i in range(3)] == [0, 2, 4]
    with pytest.raises(ValueError):
        facade.call(fail, "value")
    elapsed = time.monotonic() - started
    stats = facade.stats()
    expected = {"submitted": 4, "completed": 3, "failed": 1, "cancelled": 0, "active": 0, "queued": 0}
    assert {key: stats[key] for key in expected} == expected
    # Its client would have to ask the scheduler; its futures never say they
    # started, so only one already done when submit returned is timed (from
    # submit): no wait, and no run longer than the calls took.
    assert (stats["workers"], stats["max_workers"], facade.max_workers) == (None, None, None)
    assert stats["wait_time"] == 0.0 and 0.0 <= stats["run_time"] < elapsed
    prometheus = pytest.importorskip("offload.metrics.prometheus")
    samples = {
        (family.name, sample.labels["kind"])
        for family in prometheus.OffloadCollector().collect()
        for sample in family.samples
        if sample.labels.get("pool") == "dask-facade"
    }
    assert ("offload_pool_calls_completed", "executor") in samples
    assert ("offload_pool_queued", "executor") in samples
    assert ("offload_pool_workers", "executor") not in samples  # no sample rather than a made-up one


@pytest.mark.timeout(240)
def test_dask_timeout_cancels(dask_client):
    facade = offload.wrap_executor(dask_client.get_executor())
    with pytest.raises(TimeoutError):
        facade._call(sleep_then, (5, "late"), {}, 0.2)
    assert facade.call(add, 1, 1) == 2


@pytest.mark.timeout(120)
def test_loky_reusable_executor():
    loky = pytest.importorskip("loky")
    executor = loky.get_reusable_executor(max_workers=2)
    facade = offload.wrap_executor(executor)
    pids = _check_facade(facade, os.getpid())
    # The calls ran in loky's workers: processes this one started.
    ours = {child.pid for child in psutil.Process().children(recursive=True)}
    assert pids and pids <= ours, (pids, ours)
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.2):
            facade.call(sleep_then, 1.0)
    assert facade.call(add, 5, 5) == 10


def test_stdlib_thread_pool_executor():
    with ThreadPoolExecutor(2) as executor:
        facade = offload.wrap_executor(executor)
        _check_facade(facade, os.getpid(), expect_other_process=False)
        # Queued behind two busy threads, a call whose waiter gives up is cancelled.
        busy = [facade.submit(sleep_then, 0.3) for _ in range(2)]
        with pytest.raises(TimeoutError, match="did not start"):
            facade._call(add, (1, 1), {}, 0.05)
        for future in busy:
            future.result(timeout=10)
        facade.shutdown(wait=True)
        assert executor._shutdown


def test_wrap_executor_arguments():
    with pytest.raises(TypeError, match="Executor"):
        offload.wrap_executor(42)
    pool = offload.ThreadPool(1)
    assert offload.wrap_executor(pool) is pool  # already an offload pool
    with ThreadPoolExecutor(1) as executor:
        facade = offload.wrap_executor(executor)
        assert offload.wrap_executor(facade) is facade
        assert facade.executor is executor


# -- stats() -------------------------------------------------------------------------


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.005)


def _mixed_calls(facade, tmp_path):
    """One busy call, then queued ones behind it: 3 succeed, 2 fail, 2 are
    cancelled while queued.  Returns the stats seen while the busy one ran."""
    path = tmp_path / "busy"
    busy = facade.submit(write_pid_and_sleep, str(path), 0.3)
    _wait_until(lambda: path.exists() and path.read_text())
    good = [facade.submit(sleep_then, 0.02, i) for i in range(3)]
    bad = [facade.submit(fail, "value") for _ in range(2)]
    doomed = [facade.submit(add, i, i) for i in range(2)]
    assert all(future.cancel() for future in doomed)
    during = facade.stats()
    assert busy.result(timeout=30) == "slept"
    assert [future.result(timeout=30) for future in good] == [0, 1, 2]
    assert all(isinstance(future.exception(timeout=30), ValueError) for future in bad)
    for future in doomed:
        with pytest.raises(CancelledError):
            future.result(timeout=0)
    assert facade.call(add, 1, 2) == 3  # one worker, in order: it has passed the cancelled calls
    return during


EXPECTED = {"submitted": 9, "completed": 5, "failed": 2, "cancelled": 2, "active": 0, "queued": 0}


def _check_times(stats):
    assert stats["run_time"] >= 0.3 + 3 * 0.02  # what the calls slept, at least
    assert stats["mean_run"] == pytest.approx(stats["run_time"] / 7)
    assert stats["wait_time"] > 3 * 0.2  # three calls, at least, waited for the busy one
    assert stats["mean_wait"] == pytest.approx(stats["wait_time"] / 7)


def test_stats_over_a_thread_pool_executor_count_each_outcome(tmp_path):
    watched = observe.watched
    offload.metrics.enable_histograms()
    facade = offload.wrap_executor(ThreadPoolExecutor(1), name="tpe-stats")
    try:
        assert facade.stats()["workers"] == 0  # no thread before the first call
        during = _mixed_calls(facade, tmp_path)
        # The busy call runs; the other seven wait, the cancelled two included
        # until the worker passes them over, as in an offload pool.
        assert (during["active"], during["queued"], during["submitted"]) == (1, 7, 8)
        stats = facade.stats()
        assert {key: stats[key] for key in EXPECTED} == EXPECTED
        assert (stats["name"], stats["workers"], stats["max_workers"]) == ("tpe-stats", 1, 1)
        assert facade.max_workers == 1
        _check_times(stats)
        histograms = facade.histograms()
        assert histograms["bounds"] == offload.metrics.BOUNDS
        assert sum(histograms["wait"]) == sum(histograms["run"]) == 7
        assert sum(histograms["run"][observe.BOUNDS.index(0.25) + 1 :]) == 1  # the busy call, 0.3 s
        assert [m.kind for m in offload.metrics.snapshot() if m.name == "tpe-stats"] == ["executor"]
    finally:
        observe.watched = watched
        facade.shutdown(wait=True)
    assert facade.stats()["workers"] == 0


@pytest.mark.timeout(120)
def test_stats_over_a_process_pool_executor_count_each_outcome(tmp_path):
    # forkserver: forking the pytest process itself runs every at-fork hook
    # its imports registered (eventlet's warns, and warnings are errors here).
    facade = offload.wrap_executor(
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    )
    try:
        during = _mixed_calls(facade, tmp_path)
        # The executor marks a call running as it hands it to its processes'
        # call queue (max_workers + EXTRA_QUEUED_CALLS = 2 deep): the one the
        # process runs, and up to two behind it.
        assert during["submitted"] == 8 and during["active"] in (1, 2, 3)
        assert during["active"] + during["queued"] == 8
        stats = facade.stats()
        assert {key: stats[key] for key in EXPECTED} == EXPECTED
        assert (stats["workers"], stats["max_workers"]) == (1, 1)
        _check_times(stats)
    finally:
        facade.shutdown(wait=True)
    assert facade.stats()["workers"] == 0


def test_stats_add_up_while_many_threads_complete_calls():
    facade = offload.wrap_executor(ThreadPoolExecutor(8))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every few bytecodes
    unbalanced = []
    try:
        futures = [facade.submit(add, i, 1) for i in range(3000)]
        while not futures[-1].done():
            s = facade.stats()
            # Every call is in exactly one place, at every snapshot.
            if s["submitted"] != s["completed"] + s["failed"] + s["cancelled"] + s["active"] + s["queued"]:
                unbalanced.append(s)
        assert [future.result(timeout=60) for future in futures] == [i + 1 for i in range(3000)]
        stats = facade.stats()
    finally:
        sys.setswitchinterval(interval)
        facade.shutdown(wait=True)
    assert unbalanced == []
    assert (stats["submitted"], stats["completed"], stats["active"], stats["queued"]) == (3000, 3000, 0, 0)
    assert 1 <= stats["workers"] <= 8


def test_a_shutdown_that_cancels_counts_the_calls_it_cancelled(tmp_path):
    facade = offload.wrap_executor(ThreadPoolExecutor(1))
    path = tmp_path / "busy"
    busy = facade.submit(write_pid_and_sleep, str(path), 0.2)
    _wait_until(lambda: path.exists() and path.read_text())
    queued = [facade.submit(add, i, i) for i in range(4)]
    facade.shutdown(wait=True, cancel_futures=True)
    assert busy.result(timeout=0) == "slept" and all(future.cancelled() for future in queued)
    stats = facade.stats()
    assert (stats["completed"], stats["cancelled"], stats["queued"], stats["active"]) == (1, 4, 0, 0)


def test_a_facade_name():
    with ThreadPoolExecutor(1) as executor:
        assert offload.wrap_executor(executor, name="reports").name == "reports"
        assert offload.wrap_executor(executor).name.startswith("wrap_executor-")
        with pytest.raises(TypeError, match="name"):
            offload.wrap_executor(executor, name=3)
    with offload.ThreadPool(1) as pool:
        with pytest.raises(ValueError, match="already an offload pool"):
            offload.wrap_executor(pool, name="other")
