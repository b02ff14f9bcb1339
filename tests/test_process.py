"""ProcessPool with real worker processes, in the (unpatched) pytest process.

What the children run is in children.py (importable by name); the promises
every executor keeps are in test_executor_contract.py.  The same scenarios
under ``patch_all()`` are in test_process_modes.py.
"""

import os
import pickle
import signal
import threading
import time

import gevent
import psutil
import pytest
from children import (
    add,
    bad_initializer,
    decorated_square,
    die,
    echo,
    fail,
    get_value,
    getpid,
    lock_result,
    nested_call,
    set_value,
    sleep_then,
    spin,
    write_pid_and_sleep,
)

import offload
from offload import ProcessPool, WorkerCrashed
from offload.defaults import resolve_pool

# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    pool = ProcessPool(2, name="test-process")
    yield pool
    pool.shutdown()


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        gevent.sleep(0.01)


def gone(pid):
    """True once *pid* no longer exists at all (a zombie still exists)."""
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


# -- calls ---------------------------------------------------------------------


def test_calls_run_in_the_children_that_pids_lists(pool):
    child = pool.call(getpid)
    assert child != os.getpid()
    assert psutil.Process(child).is_running()
    assert child in pool.pids()


def test_child_exception_keeps_type_and_traceback(pool):
    with pytest.raises(ValueError, match="raised in the child") as info:
        pool.call(fail, "value")
    cause = info.value.__cause__
    assert isinstance(cause, offload.processpool.RemoteTraceback)
    assert "in fail" in cause.text and 'raise ValueError("raised in the child")' in cause.text


def test_exception_that_cannot_come_back(pool):
    with pytest.raises(RuntimeError, match="children.Odd: odd 1 2") as info:
        pool.call(fail, "odd")
    assert "raise Odd(1, 2)" in info.value.__cause__.text


def test_unpicklable_arguments_raise_at_once(pool):
    before = pool.stats()["submitted"]
    with pytest.raises(pickle.PicklingError, match="cannot send add and its arguments"):
        pool.call(add, threading.Lock(), 1)
    with pytest.raises(pickle.PicklingError, match="<lambda>"):
        pool.submit(lambda: 1)
    assert pool.stats()["submitted"] == before  # nothing was queued
    assert pool.call(add, 1, 2) == 3


def test_unpicklable_result(pool):
    with pytest.raises(pickle.PicklingError, match="result of lock_result"):
        pool.call(lock_result)
    assert pool.call(add, 1, 2) == 3


def test_decorated_function_and_named_pool():
    value, child = decorated_square(7)
    assert value == 49 and child != os.getpid()
    assert offload.call(add, 1, 2, pool="process") == 3
    assert resolve_pool("process") is offload.get_default_process_pool()
    inner, child, x = offload.call(nested_call, 5, pool="process")
    assert inner == child and x == 5


def test_large_arguments_and_results(pool):
    # Larger than a pipe's buffer both ways: the writes and reads must resume.
    blob = os.urandom(3_000_000)
    futures = [pool.submit(echo, blob) for _ in range(3)]
    assert all(f.result(timeout=60) == blob for f in futures)


def test_spawn_context():
    # With spawn the workers are this process's own children: it reaps them.
    with ProcessPool(1, mp_context="spawn") as spawned:
        assert spawned.call(add, 1, 2) == 3
        first = spawned.call(getpid)
        assert psutil.Process(first).ppid() == os.getpid()
        with pytest.raises(WorkerCrashed, match="SIGKILL"):
            spawned.call(die, "sigkill")
        assert gone(first)  # reaped, not a zombie
        second = spawned.call(getpid)
    assert gone(second)


# -- crashes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "how, exitcode, text",
    [("exit", 3, "exit code 3"), ("sigkill", -9, "signal SIGKILL"), ("segfault", -11, "signal SIGSEGV")],
)
def test_crash_fails_only_that_call(pool, how, exitcode, text):
    others = [pool.submit(sleep_then, 0.2, i) for i in range(4)]
    with pytest.raises(WorkerCrashed, match=text) as info:
        pool.call(die, how)
    assert info.value.exitcode == exitcode
    assert [f.result(timeout=30) for f in others] == [0, 1, 2, 3]
    assert pool.call(add, 1, 2) == 3
    wait_until(lambda: len(pool.pids()) == 2)  # a replacement was started


def test_external_sigkill_while_running(pool, tmp_path):
    path = tmp_path / "pid"
    victim = pool.submit(write_pid_and_sleep, str(path), 30)
    bystander = pool.submit(sleep_then, 0.5, "fine")
    wait_until(lambda: path.exists() and path.read_text())
    pid = int(path.read_text())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed, match="SIGKILL"):
        victim.result(timeout=30)
    assert bystander.result(timeout=30) == "fine"
    wait_until(lambda: gone(pid))
    assert pool.call(add, 2, 2) == 4


def test_worker_killed_while_idle_is_replaced():
    with ProcessPool(1) as solo:
        pid = solo.call(getpid)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: gone(pid))
        assert solo.call(getpid) != pid  # replaced on the next call, which did not fail


# -- waiting, cancelling, timeouts ------------------------------------------------


def test_kill_on_timeout_kills_only_that_process():
    with ProcessPool(2, kill_on_timeout=True) as pool:
        list(pool.map(getpid, range(2)))  # both processes started
        bystander = pool.submit(sleep_then, 2.0, "unharmed")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="did not finish .* was killed"):
            pool._call(sleep_then, (30,), {}, 0.3)
        wait_until(lambda: len(pool.pids()) == 2)  # replaced; the next call runs at once
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.3):
                pool.call(sleep_then, 30)
        assert time.monotonic() - started < 20  # neither 30 s call was waited for
        assert bystander.result(timeout=30) == "unharmed"
        assert pool.call(add, 1, 2) == 3
        wait_until(lambda: pool.stats()["failed"] == 2)  # the two killed calls


def test_two_hundred_greenlets_share_two_processes(pool):
    n = 20_000
    with offload.Heartbeat(0.005) as beat:
        glets = [gevent.spawn(pool.call, spin, n + i) for i in range(200)]
        gevent.joinall(glets, raise_error=True)
    assert [g.value for g in glets] == [spin(n + i) for i in range(200)]
    assert len(beat.lags) > 5
    assert beat.max_lag < 0.25, beat.max_lag  # the hub kept ticking


def test_heartbeat_ticks_while_children_compute(pool):
    with offload.Heartbeat(0.005) as beat:
        futures = [pool.submit(spin, 3_000_000) for _ in range(2)]
        started = time.perf_counter()
        results = [f.result(timeout=60) for f in futures]
        elapsed = time.perf_counter() - started
    assert results == [spin(3_000_000)] * 2
    assert len(beat.lags) >= elapsed / 0.005 / 10  # a tenth of the ticks, at least
    assert beat.lag(99) < 0.05, beat.lag(99)


# -- map ---------------------------------------------------------------------------


def test_map_in_order_with_chunks(pool):
    before = pool.stats()["submitted"]
    assert list(pool.map(add, range(50), range(50), chunksize=10)) == [2 * i for i in range(50)]
    assert pool.stats()["submitted"] - before == 5  # five chunks, not fifty calls
    assert list(pool.map(add, range(3), range(10))) == [0, 2, 4]


def test_map_chunk_runs_in_one_process(pool):
    pids = list(pool.map(getpid, range(20), chunksize=10))
    assert len(set(pids[:10])) == 1 and len(set(pids[10:])) == 1


# -- lifecycle ------------------------------------------------------------------


def test_max_tasks_per_child():
    with ProcessPool(1, max_tasks_per_child=2) as pool:
        pids = [pool.call(getpid) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3
    for pid in set(pids):
        wait_until(lambda pid=pid: gone(pid))


def test_initializer():
    with ProcessPool(1, initializer=set_value, initargs=(42,)) as pool:
        assert pool.call(get_value) == 42
    with ProcessPool(1, initializer=bad_initializer) as pool:
        with pytest.raises(RuntimeError, match="initializer") as info:
            pool.call(get_value)
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(RuntimeError, match="initializer"):
            pool.call(get_value)  # each new process tries again; none hangs


def test_shutdown_reaps_the_children():
    pool = ProcessPool(1)
    pid = pool.call(getpid)
    running = pool.submit(sleep_then, 0.5, "done")
    wait_until(lambda: pool.stats()["active"] == 1)
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "done"
    assert gone(pid)
    assert pool.pids() == []


# -- bad input -------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="forkserver"):
        ProcessPool(1, mp_context="fork")
    with pytest.raises(TypeError, match="mp_context"):
        ProcessPool(1, mp_context=42)
    with pytest.raises(TypeError, match="picklable"):
        ProcessPool(1, initializer=lambda: None)
    with pytest.raises(ValueError, match="max_tasks_per_child"):
        ProcessPool(1, max_tasks_per_child=0)
    with pytest.raises(TypeError, match="kill_on_timeout"):
        ProcessPool(1, kill_on_timeout="yes")
    pool = ProcessPool(1)
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(add, [1], [2], chunksize=0)
    pool.shutdown()


def test_resolve_pool_points_to_wrap_executor():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        with pytest.raises(TypeError, match="wrap_executor"):
            offload.call(add, 1, 2, pool=executor)
        assert offload.call(add, 1, 2, pool=offload.wrap_executor(executor)) == 3
