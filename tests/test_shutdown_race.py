"""A shutdown landing between a fresh pool's queue put and its first worker.

``shutdown(wait=False)`` there used to leave the call queued for ever: the
put had seen the pool open, shutdown saw no worker (so queued no stop marker
and cancelled nothing), and the worker start was then refused.  The
interleaving is forced: the pool's ``_spawn`` (what the put calls to start
the first worker) is wrapped to shut the pool down first.
"""

import concurrent.futures as cf

import pytest

from offload import ProcessPool, ThreadPool


def _shutdown_before_spawn(pool):
    original = pool._spawn

    def spawn():
        pool.shutdown(wait=False)  # lands after the put, before the worker starts
        return original()

    pool._spawn = spawn


@pytest.mark.parametrize("cls", [ThreadPool, ProcessPool])
def test_shutdown_between_put_and_first_worker_cancels_the_call(cls):
    pool = cls(2)
    _shutdown_before_spawn(pool)
    future = pool.submit(int, 1)
    # Settled at once: cancelled, since no worker exists or will be started.
    assert future.cancelled()
    with pytest.raises(cf.CancelledError):
        future.result(timeout=5)
    stats = pool.stats()
    assert stats["queued"] == 0 and stats["workers"] == 0
    assert stats["cancelled"] == 1
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(int, 1)


@pytest.mark.parametrize("cls", [ThreadPool, ProcessPool])
def test_shutdown_between_put_and_first_worker_in_call(cls):
    pool = cls(1)
    _shutdown_before_spawn(pool)
    with pytest.raises(cf.CancelledError):
        pool._call(int, (1,), {}, 5)  # the waiting form: woken, not stranded
