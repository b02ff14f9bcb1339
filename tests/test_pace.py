"""ThreadPool(adaptive=True): threads beyond the floor start only while they help.

The calls here wait on real things in real threads: ``sleep`` (a remote
server's latency: more threads, more throughput) and a server thread that
serves one request at a time (more threads only make each call wait longer).
"""

import threading
import time

import gevent
import pytest

from offload import ThreadPool
from offload._core import native as _native
from offload._core.pace import STUCK, Pace
from offload._poolbase import Counters

sleep = _native.sleep  # C-level blocking, never yields to gevent

FLOOR = 4


def fan_out(pool, fn, greenlets, calls):
    def one():
        for _ in range(calls):
            pool.call(fn)

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(one) for _ in range(greenlets)], raise_error=True)
    return time.perf_counter() - started


def test_adaptive_must_be_a_bool():
    with pytest.raises(TypeError, match="adaptive"):
        ThreadPool(4, adaptive="yes")


def test_latency_bound_calls_grow_the_pool():
    # 10 ms of pure waiting per call: run time does not depend on how many
    # run at once, so every call earns a thread until all 40 callers have one.
    pool = ThreadPool(100, adaptive=True)
    try:
        elapsed = fan_out(pool, lambda: sleep(0.01), greenlets=40, calls=10)
        workers = pool.stats()["workers"]
    finally:
        pool.shutdown()
    assert workers > 20, workers
    # At the floor it would take 40 * 10 * 10 ms / 4 = 1 s.
    assert elapsed < 0.6, elapsed


@pytest.mark.timing
def test_a_saturated_server_keeps_the_pool_near_its_floor():
    # One server thread serving requests one at a time, in order, 2 ms each:
    # with more threads each call only waits longer in its queue.
    requests = _native.SimpleQueue()

    def serve():
        while (reply := requests.get()) is not None:
            sleep(0.002)
            reply.release()

    def query():
        reply = _native.allocate_lock()
        reply.acquire()
        requests.put(reply)
        reply.acquire()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    adaptive = ThreadPool(100, adaptive=True)
    eager = ThreadPool(100)
    try:
        fan_out(adaptive, query, greenlets=50, calls=8)
        fan_out(eager, query, greenlets=50, calls=8)
        grown, eager_workers = adaptive.stats()["workers"], eager.stats()["workers"]
    finally:
        adaptive.shutdown()
        eager.shutdown()
        requests.put(None)
        server.join()
    # An eager pool starts a thread for each call that finds none idle: about
    # one per greenlet (under load, a put can race a worker on its way back).
    assert eager_workers >= 40, eager_workers
    assert grown <= 2 * FLOOR, grown


@pytest.mark.timing
def test_the_pool_never_grows_past_its_callers():
    # Quick calls keep earning threads, but 24 greenlets never have more than
    # 24 calls in flight: a thread more would only idle.  (The queue briefly
    # holds calls that idle threads were woken for but have not yet taken,
    # while the hub holds the GIL: those are not a backlog.)
    pool = ThreadPool(100, adaptive=True)
    try:
        fan_out(pool, lambda: sleep(0.005), greenlets=24, calls=20)
        workers = pool.stats()["workers"]
    finally:
        pool.shutdown()
    assert 16 < workers <= 24, workers


@pytest.mark.timing
def test_calls_that_keep_the_hub_waiting_for_the_gil_stop_the_growth():
    # Each call runs 0.5 ms of Python, holding the GIL, then waits 2 ms: a
    # pure-Python driver.  Five threads keep the GIL busy; beyond that a
    # thread only makes the hub wait longer for it, which the hub's late
    # gathering timer shows before the calls' run times do (without that
    # probe the pool grew to 13-18 threads here, in the same time).
    def call():
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        sleep(0.002)

    pool = ThreadPool(100, adaptive=True)
    try:
        fan_out(pool, call, greenlets=40, calls=20)
        workers = pool.stats()["workers"]
    finally:
        pool.shutdown()
    assert FLOOR <= workers <= 10, workers


def test_a_late_hub_is_seen_by_its_bridge():
    from offload._core.bridge import LAG_BUDGET, current_bridge

    def late_once():
        bridge = current_bridge()
        bridge.gather()
        sleep(0.02)  # holds the hub's thread: the timer fires 19 ms late
        gevent.sleep(0.005)
        late, bridge.late = bridge.late, 0.0  # leave the hub on time for other tests
        return late

    # Smoothed over eight windows: one 19 ms delay counts for ~2.4 ms.
    assert gevent.spawn(late_once).get() > LAG_BUDGET


def test_long_calls_do_not_leave_short_ones_without_a_thread():
    pool = ThreadPool(100, adaptive=True)
    try:
        pool.call(lambda: None)
        longs = [gevent.spawn(pool.call, sleep, 1.0) for _ in range(FLOOR + 2)]
        gevent.sleep(3 * STUCK)  # every thread is now stuck in a long call
        started = time.perf_counter()
        pool.call(lambda: None)
        waited = time.perf_counter() - started
        gevent.joinall(longs, raise_error=True)
    finally:
        pool.shutdown()
    assert waited < 0.5, waited


def test_a_burst_starts_no_more_than_the_floor_before_any_call_finishes():
    pool = ThreadPool(100, adaptive=True)
    try:
        futures = [pool.submit(sleep, 0.02) for _ in range(30)]
        assert pool.stats()["workers"] == FLOOR
        for f in futures:
            f.result()
    finally:
        pool.shutdown()


def test_pace_compares_each_function_with_its_own_fastest_run():
    pace = Pace(FLOOR)

    def quick():
        pass

    def query():
        pass

    pace.finished(quick, 0.00001, now=0.0)
    pace.credit = False
    # A call a hundred times slower than `quick` is not slowed down: it is
    # another kind of call, compared only with itself.
    pace.finished(query, 0.001, now=0.0)
    assert pace.credit
    for _ in range(20):
        pace.finished(query, 0.005, now=0.0)  # five times slower, again and again
    pace.credit = False
    pace.finished(query, 0.005, now=0.0)
    assert not pace.credit


def test_pace_gives_no_credit_for_calls_whose_hub_is_late():
    pace = Pace(FLOOR)

    def query():
        pass

    pace.finished(query, 0.001, now=0.0, hub_keeps_up=False)
    assert not pace.credit
    pace.finished(query, 0.001, now=0.0)
    assert pace.credit


def test_pace_starts_a_thread_on_credit_at_most_every_grow_interval():
    from offload._core.pace import _GROW_EVERY

    pace = Pace(FLOOR)

    def query():
        pass

    workers = []
    for _ in range(FLOOR):
        c = Counters()
        c.active, c.since = 1, time.monotonic()
        workers.append(c)
    pace.finished(query, 0.001, now=0.0)
    assert pace.starts(workers, backlog=10, queued=10) == 1
    pace.finished(query, 0.001, now=0.0)
    assert pace.starts(workers, backlog=10, queued=10) == 0  # too soon
    assert pace.credit  # kept for later
    time.sleep(_GROW_EVERY)
    assert pace.starts(workers, backlog=10, queued=10) == 1


def test_pace_forgets_old_minima_after_two_windows():
    from offload._core.pace import _WINDOW

    pace = Pace(FLOOR)

    def query():
        pass

    pace.finished(query, 0.001, now=0.0)
    for now in (_WINDOW + 1, 2 * _WINDOW + 2):
        for _ in range(20):
            pace.finished(query, 0.005, now=now)
    pace.credit = False
    pace.finished(query, 0.005, now=2 * _WINDOW + 3)
    assert pace.credit  # 5 ms is the new normal
