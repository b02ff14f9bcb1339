"""offload.Future: the standard Future, with waits that park only the caller.

Mirrors offload/future.py.  The futures here are completed by hand from real
threads (a pool's worker is one more such thread; what the pools promise
about their futures is in test_executor_contract.py).
"""

import concurrent.futures as cf
import threading
import time

import gevent
import pytest

import offload
from offload import Future
from offload._core import native

sleep = native.sleep  # C-level blocking, never yields to gevent


def later(seconds, action, *args):
    """Run ``action(*args)`` on a new OS thread after *seconds*; return the thread."""

    def run():
        sleep(seconds)
        action(*args)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(thread, timeout=10.0):
    """Wait for *thread* without blocking the hub (Thread.join would: threading is unpatched here)."""
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        assert time.monotonic() < deadline, "the thread did not finish"
        gevent.sleep(0.005)


def test_it_is_a_standard_future():
    future = Future()
    assert isinstance(future, cf.Future)
    assert not future.done() and not future.running() and not future.cancelled()
    assert future.set_running_or_notify_cancel() and future.running()
    future.set_result(7)
    assert future.done() and future.result() == 7 and future.exception() is None
    assert "finished returned int" in repr(future)


# -- waiting ----------------------------------------------------------------------


def test_result_in_greenlets_parks_only_them():
    future = Future()
    setter = later(0.2, future.set_result, "ready")
    with offload.Heartbeat(0.005) as beat:
        waiters = [gevent.spawn(future.result) for _ in range(3)]
        gevent.joinall(waiters, raise_error=True)
    assert [g.value for g in waiters] == ["ready"] * 3
    # The hub ran all along: a wait on a threading.Condition would freeze it for 0.2 s.
    assert len(beat.lags) >= 10 and beat.max_lag < 0.15, (len(beat.lags), beat.max_lag)
    wait_for(setter)


def test_exception_in_a_greenlet_parks_only_it():
    future = Future()
    error = LookupError("from the thread")
    setter = later(0.2, future.set_exception, error)
    with offload.Heartbeat(0.005) as beat:
        waiter = gevent.spawn(future.exception)
        waiter.join()
    assert waiter.value is error
    with pytest.raises(LookupError, match="from the thread"):
        future.result()
    assert len(beat.lags) >= 10 and beat.max_lag < 0.15, (len(beat.lags), beat.max_lag)
    wait_for(setter)


def test_result_in_a_plain_thread_blocks_that_thread():
    future = Future()
    seen = []

    def waiter():
        started = time.perf_counter()
        seen.append((future.result(timeout=10), time.perf_counter() - started))

    thread = threading.Thread(target=waiter)
    thread.start()
    gevent.sleep(0.1)
    assert thread.is_alive() and not seen  # still waiting
    future.set_result("from the hub")
    wait_for(thread)
    assert seen[0][0] == "from the hub" and seen[0][1] >= 0.1, seen


def test_set_from_a_worker_thread_wakes_waiters_on_two_hubs(capfd):
    future = Future()
    other_hub = []

    def in_another_hub():
        # This thread has its own hub; its greenlet parks on that hub.
        other_hub.append(gevent.spawn(future.result, timeout=10).get())

    thread = threading.Thread(target=in_another_hub)
    thread.start()
    here = gevent.spawn(future.result, timeout=10)
    gevent.sleep(0.05)
    setter = later(0, future.set_result, "both")
    here.join(10)
    wait_for(thread)
    wait_for(setter)
    assert here.value == "both" and other_hub == ["both"]
    assert capfd.readouterr().err == ""  # no hub complained of being touched from a thread


# -- timeouts -----------------------------------------------------------------------


def _timed_wait(wait, box):
    started = time.perf_counter()
    try:
        wait(timeout=0.05)
    except BaseException as exc:
        box.append((type(exc), time.perf_counter() - started))


@pytest.mark.parametrize("where", ["greenlet", "thread"])
@pytest.mark.parametrize("method", ["result", "exception"])
def test_a_timeout_raises_builtin_timeout_error(method, where):
    future = Future()
    box = []
    if where == "greenlet":
        gevent.spawn(_timed_wait, getattr(future, method), box).join()
    else:
        thread = threading.Thread(target=_timed_wait, args=(getattr(future, method), box))
        thread.start()
        wait_for(thread)
    kind, waited = box[0]
    assert kind is TimeoutError and waited >= 0.05, box
    future.set_result(1)  # a timed-out wait does not spoil the future
    assert getattr(future, method)(timeout=0) in (1, None)


def test_a_timer_that_fires_early_does_not_end_the_wait(monkeypatch):
    # libuv's clock counts whole milliseconds, so its timers can fire up to
    # 1 ms early (a matrix run saw result(timeout=0.05) give up after 49.6 ms).
    # Here the deadline is set by a clock 30 ms ahead, so the loop's timer
    # fires 30 ms before it, on any loop: the wait must go on to the deadline.
    from offload._core import waiters

    real = time.monotonic
    monkeypatch.setattr(waiters, "monotonic", lambda: real() + 0.03, raising=False)
    future = Future()
    box = []
    glet = gevent.spawn(_timed_wait, future.result, box)
    gevent.sleep(0)  # the wait has begun: its deadline is set
    monkeypatch.setattr(waiters, "monotonic", real)
    glet.join()
    kind, waited = box[0]
    assert kind is TimeoutError and waited >= 0.075, box


@pytest.mark.parametrize(
    "timeout, error",
    [(-1, ValueError), ("soon", TypeError), (float("nan"), ValueError)],
    ids=["negative", "str", "nan"],
)
def test_a_bad_timeout_is_refused(timeout, error):
    future = Future()
    future.set_result(1)
    with pytest.raises(error, match="timeout"):
        future.result(timeout=timeout)
    with pytest.raises(error, match="timeout"):
        future.exception(timeout=timeout)


def test_an_infinite_timeout_means_no_timeout():
    future = Future()
    setter = later(0.05, future.set_result, "done")
    assert gevent.spawn(future.result, timeout=float("inf")).get() == "done"
    wait_for(setter)


# -- callbacks and cancelling ------------------------------------------------------------


def test_callbacks_run_once_in_the_completing_thread_or_at_once_when_done():
    future = Future()
    calls = []
    future.add_done_callback(lambda f: calls.append((f, threading.get_ident())))
    setter = later(0.05, future.set_result, 1)
    setter_ident = setter.ident
    assert future.result(timeout=10) == 1
    wait_for(setter)
    assert calls == [(future, setter_ident)]
    future.add_done_callback(lambda f: calls.append((f, threading.get_ident())))
    assert calls[1] == (future, threading.get_ident())  # already done: runs here, at once
    assert len(calls) == 2


def test_cancel_wakes_the_waiters_with_cancelled_error():
    future = Future()
    waiter = gevent.spawn(future.result, timeout=10)
    gevent.sleep(0.01)
    assert future.cancel() and future.cancelled() and future.done()
    waiter.join(5)
    assert isinstance(waiter.exception, cf.CancelledError)
    assert not future.set_running_or_notify_cancel()  # a worker that takes it now skips it


def test_a_running_future_cannot_be_cancelled():
    future = Future()
    assert future.set_running_or_notify_cancel()
    assert not future.cancel() and not future.cancelled()
    future.set_result(None)


# -- concurrent.futures.wait and as_completed ----------------------------------------------


def test_wait_and_as_completed_with_timeouts():
    fast, slow = Future(), Future()
    setters = [later(0.02, fast.set_result, "fast"), later(0.5, slow.set_result, "slow")]
    done, pending = cf.wait([fast, slow], timeout=0.2)
    assert done == {fast} and pending == {slow}
    done, pending = cf.wait([fast, slow], return_when=cf.FIRST_COMPLETED, timeout=5)
    assert fast in done
    finished = []
    # The stdlib's own as_completed raises its TimeoutError (a class of its
    # own before Python 3.11, the builtin since).
    with pytest.raises(cf.TimeoutError):
        for f in cf.as_completed([fast, slow], timeout=0.1):
            finished.append(f.result())
    assert finished == ["fast"]
    assert [f.result() for f in cf.as_completed([slow], timeout=5)] == ["slow"]
    for setter in setters:
        wait_for(setter)


def test_a_timeout_counts_from_the_wait_even_after_the_hub_sat_idle():
    # libev caches "now" at each pass of the loop; a hub that last ran long
    # ago must not fire a new timeout at once because of it.
    pool = offload.ThreadPool(1)
    try:
        gevent.sleep(0)  # the hub runs a pass, then sits idle while this thread blocks
        native.sleep(0.5)
        started = time.perf_counter()
        assert pool.submit(native.sleep, 0.2).result(timeout=0.4) is None
        assert time.perf_counter() - started >= 0.15
        native.sleep(0.5)
        assert offload.offload(native.sleep, pool=pool, timeout=0.4)(0.2) is None
    finally:
        pool.shutdown()
