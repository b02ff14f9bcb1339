"""wrap_executor over real foreign executors: a Dask LocalCluster, loky, stdlib.

The executors complete their futures on threads of their own; the façade
must wake only the waiting greenlet, and the hub must keep ticking.  What
the façade promises like every offload pool (over a ThreadPoolExecutor) is
in test_executor_contract.py.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import gevent
import psutil
import pytest
from children import add, fail, getpid, sleep_then, spin, timed_sleep

import offload

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
