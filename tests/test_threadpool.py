"""ThreadPool and call/submit in the unpatched pytest process.

What every executor promises (submit, map, shutdown, cancelling, stats, bad
arguments) is in test_executor_contract.py, run for ThreadPool too; Future
on its own is in test_future.py.  This file holds what is ThreadPool's own.
"""

import contextvars
import gc
import os
import threading
import time
import traceback
import weakref

import gevent
import pytest

import offload
from offload import ThreadPool
from offload._core import native as _native

sleep = _native.sleep  # C-level blocking, never yields to gevent


@pytest.fixture
def pool():
    pool = ThreadPool(4, name="test")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


# -- arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"max_queue": -1}, ValueError, "max_queue"),
        ({"max_queue": "10"}, TypeError, "max_queue"),
    ],
)
def test_bad_arguments_fail_early(kwargs, error, words):
    with pytest.raises(error, match=words):
        ThreadPool(**kwargs)


def test_default_size_from_environment(monkeypatch):
    monkeypatch.setenv("OFFLOAD_THREADS", "3")
    assert ThreadPool().max_workers == 3
    monkeypatch.delenv("OFFLOAD_THREADS")
    assert ThreadPool().max_workers == 10
    monkeypatch.setenv("OFFLOAD_THREADS", "many")
    with pytest.raises(ValueError, match="OFFLOAD_THREADS"):
        ThreadPool()
    monkeypatch.setenv("OFFLOAD_THREADS", "0")
    with pytest.raises(ValueError, match="OFFLOAD_THREADS"):
        ThreadPool()


def test_the_default_pool_refuses_non_callables_at_once():
    for bad in (None, 42, "len"):
        with pytest.raises(TypeError, match="fn must be callable"):
            offload.call(bad)
        with pytest.raises(TypeError, match="fn must be callable"):
            offload.submit(bad)


def test_bad_pool_argument():
    with pytest.raises(ValueError, match="pool must be one of"):
        offload.call(len, "x", pool="gpu")
    with pytest.raises(TypeError, match="pool must be"):
        offload.call(len, "x", pool=object())


# -- calls ---------------------------------------------------------------


def test_call_runs_on_a_real_thread(pool):
    assert pool.call(threading.get_ident) != threading.get_ident()
    assert offload.call(_native.get_ident) != _native.get_ident()


def test_calls_overlap_and_the_hub_keeps_ticking(pool):
    with offload.Heartbeat(0.005) as hb:
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(pool.call, sleep, 0.2) for _ in range(4)])
        elapsed = time.perf_counter() - started
    assert elapsed < 0.6  # serial would be 0.8 s
    assert len(hb.lags) >= 10
    assert hb.max_lag < 0.15


def test_call_from_a_plain_thread_blocks_only_that_thread(pool):
    waited = []

    def caller():
        started = time.perf_counter()
        pool.call(sleep, 0.2)
        waited.append(time.perf_counter() - started)

    with offload.Heartbeat(0.005) as hb:
        threads = [threading.Thread(target=caller) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            gevent.sleep(0.01)  # Thread.join would block the hub: unpatched here
    assert len(waited) == 3 and min(waited) >= 0.2, waited  # each caller's thread waited
    # ... and only that thread: the hub ticked all along.
    assert len(hb.lags) >= 10 and hb.max_lag < 0.15, (len(hb.lags), hb.max_lag)


def test_call_from_the_hub_greenlet_blocks_the_thread(pool):
    # A callback runs in the hub itself, which cannot park: it must still work.
    box = []
    gevent.get_hub().loop.run_callback(lambda: box.append(pool.call(lambda: "from hub")))
    gevent.sleep(0.05)
    assert box == ["from hub"]


def test_exception_keeps_type_and_worker_frames(pool, capfd):
    def deep_in_the_worker():
        raise LookupError("the real line")

    def caller_that_handles_it():
        try:
            pool.call(deep_in_the_worker)
        except LookupError as exc:
            return exc

    error = gevent.spawn(caller_that_handles_it).get()
    assert error.args == ("the real line",)
    frames = [f.name for f in traceback.extract_tb(error.__traceback__)]
    assert frames[0] == "caller_that_handles_it" and frames[-1] == "deep_in_the_worker"
    assert "_work" not in frames  # the pool's own loop is trimmed away
    gevent.sleep(0.01)
    assert capfd.readouterr().err == ""


def test_contextvars_are_visible_in_the_call(pool):
    var = contextvars.ContextVar("var")

    def in_greenlet(value):
        var.set(value)
        return pool.call(var.get), pool.submit(var.get).result()

    greenlets = [gevent.spawn(in_greenlet, f"g{i}") for i in range(5)]
    assert [g.get() for g in greenlets] == [(f"g{i}", f"g{i}") for i in range(5)]


def test_nested_call_from_a_worker_runs_inline():
    one = ThreadPool(1)
    assert one.call(lambda: one.call(lambda: one.submit(_native.get_ident).result()) == _native.get_ident())
    one.shutdown()


# -- cancellation and timeouts -------------------------------------------


def test_timeouts_do_not_oversubscribe_the_pool():
    # A running call keeps its thread until it really ends (the capacity is
    # never handed out twice), however many waiters gave up: calls made after
    # the waiters of two running calls gave up start only once one has ended.
    two = ThreadPool(2)
    lock = _native.allocate_lock()
    spans, running, most = [], [0], [0]

    def counted_sleep(seconds):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        started = time.perf_counter()
        sleep(seconds)
        with lock:
            running[0] -= 1
            spans.append((seconds, started, time.perf_counter()))

    def give_up_on_a_running_call():
        with pytest.raises(TimeoutError, match="did not finish"):
            offload.offload(counted_sleep, pool=two, timeout=0.15)(0.4)

    gevent.joinall([gevent.spawn(give_up_on_a_running_call) for _ in range(2)], raise_error=True)
    gevent.joinall([gevent.spawn(two.call, counted_sleep, 0.01) for _ in range(4)], raise_error=True)
    two.shutdown(wait=True)
    long_ends = [end for seconds, _, end in spans if seconds == 0.4]
    quick_starts = [start for seconds, start, _ in spans if seconds == 0.01]
    assert len(long_ends) == 2 and len(quick_starts) == 4
    assert min(quick_starts) >= min(long_ends), "a call started on a thread that was still busy"
    assert most[0] == 2, most[0]


# -- waking callers ------------------------------------------------------


def _in_a_fresh_hub(fn):
    """Run *fn* in a new thread, so that its hub (and bridge) are new too."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join(30)
    assert box, "the thread did not finish"
    return box[0]


def test_a_busy_pool_wakes_its_callers_in_batches(monkeypatch):
    passes = []
    drain = offload._core.bridge.Bridge._drain

    def counting_drain(bridge):
        passes.append(len(bridge.ready))
        drain(bridge)

    monkeypatch.setattr(offload._core.bridge.Bridge, "_drain", counting_drain)
    two = ThreadPool(2)

    def scenario():
        def caller():
            for _ in range(25):
                two.call(sleep, 0.0002)

        gevent.joinall([gevent.spawn(caller) for _ in range(20)], raise_error=True)
        return two.stats()["completed"]

    assert _in_a_fresh_hub(scenario) == 500
    # Passes that found callers to wake: every call is in ``ready`` when some
    # pass begins (one cut short by PASS_FOR leaves the rest to the next,
    # which counts them again).
    woke = [n for n in passes if n]
    assert sum(woke) >= 500
    # One pass per call without gathering; about ten per pass with it.
    assert len(woke) < 500 / 3, len(woke)
    two.shutdown()


def test_timers_run_while_a_busy_pool_keeps_waking_callers():
    # Each woken caller spends 0.3 ms in the hub in a system call (a socket
    # write, say: the GIL is released, the hub thread blocks) before its
    # next call, while eight threads finish a call every 1 ms between them:
    # there is always someone to wake, and workers append while the callers
    # run.  A pass that also woke those would never end, and the heartbeat
    # would not tick until the stop.
    eight = ThreadPool(8)
    stop, ticks = [], []

    def caller():
        while not stop:
            eight.call(sleep, 0.001)
            sleep(0.0003)

    def heartbeat():
        while not stop:
            gevent.sleep(0.01)
            ticks.append(time.perf_counter())

    def scenario():
        glets = [gevent.spawn(caller) for _ in range(40)] + [gevent.spawn(heartbeat)]
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            gevent.sleep(0.05)
        stop.append(1)
        gevent.joinall(glets, raise_error=True)
        return eight.stats()["completed"]

    assert _in_a_fresh_hub(scenario) > 200  # the pool was busy all along
    assert len(ticks) >= 20, len(ticks)  # 38 here under load; without the bound the hub never ticks
    eight.shutdown()


def test_a_pass_of_the_bridge_leaves_the_loop_its_turn_after_pass_for():
    # Sixteen threads finish a 1 ms call every ~0.06 ms between them, and
    # each woken caller then works 1 ms in the hub: a pass that woke every
    # caller ready when it began would run for as many milliseconds as there
    # are callers ready, and the heartbeat's timer wait for it.  Cut after
    # PASS_FOR (1 ms), a pass runs about 2 ms.
    from offload._core.bridge import PASS_FOR
    from offload.heartbeat import Heartbeat

    assert PASS_FOR <= 0.002
    sixteen = ThreadPool(16)
    stop = []

    def caller():
        while not stop:
            sixteen.call(sleep, 0.001)
            until = time.perf_counter() + 0.001
            while time.perf_counter() < until:
                pass

    def scenario():
        glets = [gevent.spawn(caller) for _ in range(64)]
        with Heartbeat(0.005) as beat:
            gevent.sleep(1.0)
        stop.append(1)
        gevent.joinall(glets, raise_error=True)
        return beat.lag(99)

    lag = _in_a_fresh_hub(scenario)
    assert lag < 0.05, lag  # 3.9 ms alone, 20 ms in a full CI run; 118 ms without the cut
    sixteen.shutdown()


def test_a_pool_with_free_workers_wakes_its_caller_at_once(pool, monkeypatch):
    gathered = []
    monkeypatch.setattr(offload._core.bridge.Bridge, "gather", lambda bridge: gathered.append(1))
    started = time.perf_counter()
    for i in range(200):
        assert pool.call(abs, -i) == i
    elapsed = time.perf_counter() - started
    # Gathering each wake-up would take at least 200 x GATHER_FOR = 0.2 s.
    assert elapsed < 0.1
    assert len(gathered) <= 2


def test_a_gathered_wake_up_waits_for_no_other_call():
    two = ThreadPool(2)
    long_call = gevent.spawn(two.call, sleep, 1.0)
    gevent.sleep(0.02)
    started = time.perf_counter()
    quick = [gevent.spawn(two.call, abs, -k) for k in range(3)]  # two of them queue
    gevent.joinall(quick, raise_error=True, timeout=0.9)
    elapsed = time.perf_counter() - started
    assert [g.value for g in quick] == [0, 1, 2]
    assert not long_call.ready()
    assert elapsed < 0.3  # the long call ends at 1 s
    long_call.join()
    two.shutdown()


# -- backpressure, shutdown, stats ---------------------------------------


def test_max_queue_makes_submit_wait_and_drops_nothing():
    small = ThreadPool(1, max_queue=2)
    with offload.Heartbeat(0.005) as hb:
        futures = [small.submit(sleep, 0.02) for _ in range(8)]
        assert small.stats()["queued"] <= 2
    assert [f.result() for f in futures] == [None] * 8
    assert len(hb.lags) >= 5  # the greenlet waited cooperatively
    # From plain threads the submitters block instead.
    results = []

    def submitter(i):
        results.append(small.submit(lambda: i).result())

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == list(range(6))
    small.shutdown()


def test_killed_submitter_waiting_for_queue_space_loses_nothing():
    small = ThreadPool(1, max_queue=1)
    small.submit(sleep, 0.1)
    small.submit(sleep, 0.01)
    waiting = gevent.spawn(small.submit, sleep, 0.01)
    gevent.sleep(0.02)
    waiting.kill()
    assert small.submit(lambda: "next").result(timeout=5) == "next"
    small.shutdown()


def test_stats_of_an_eager_pool_under_a_burst(pool):
    # What every executor's stats promise is in test_executor_contract.py;
    # this is an eager pool's growth, and the waits of calls beyond its size.
    gevent.joinall([gevent.spawn(pool.call, sleep, 0.05) for _ in range(6)], raise_error=False)
    with pytest.raises(ZeroDivisionError):
        pool.call(lambda: 1 / 0)
    blocker = gevent.spawn(pool.call, sleep, 0.1)
    gevent.sleep(0.02)
    busy = pool.stats()
    # Six calls at once on an eager pool of four started all four threads.
    assert busy["active"] == 1 and busy["workers"] == 4
    blocker.join()
    stats = pool.stats()
    assert (stats["submitted"], stats["completed"], stats["failed"], stats["queued"]) == (8, 7, 1, 0)
    assert stats["run_time"] >= 0.35 and stats["mean_run"] > 0
    assert stats["wait_time"] > 0  # six 50 ms calls on four threads: two waited
    assert "test" in repr(pool)


def test_default_pool_is_shared():
    assert offload.get_default_pool() is offload.get_default_pool()
    assert offload.submit(len, "abc").result() == 3
    assert offload.call(len, "abcd") == 4


# -- no leaks ------------------------------------------------------------


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_100k_calls_leak_nothing():
    pool = ThreadPool(4)

    def maybe_fail(i):
        if i % 2:
            raise ValueError(i)
        return i

    def batch(n):
        def one_greenlet(start):
            for i in range(start, start + n):
                try:
                    pool.call(maybe_fail, i)
                except ValueError:
                    pass

        gevent.joinall([gevent.spawn(one_greenlet, k * n) for k in range(50)])

    batch(200)  # warm up: threads, bridges, caches
    gc.collect()
    objects, rss = len(gc.get_objects()), _rss_kb()
    batch(2000)  # 100k calls, half of them failing
    gc.collect()
    assert pool.stats()["completed"] + pool.stats()["failed"] == 110_000
    assert len(gc.get_objects()) - objects < 500
    assert _rss_kb() - rss < 8 * 1024
    pool.shutdown()


def _os_threads():
    return len(os.listdir("/proc/self/task"))


def test_a_dropped_pool_stops_its_threads():
    before = _os_threads()
    pool = ThreadPool(3)
    gevent.joinall([gevent.spawn(pool.call, sleep, 0.02) for _ in range(3)])
    assert pool.stats()["workers"] == 3
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is None
    # The workers saw their stop sentinel and ended (raw threads: count via /proc).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _os_threads() > before:
        time.sleep(0.01)
    assert _os_threads() <= before


def test_huge_timeout_in_a_plain_thread_is_accepted(pool):
    box = []
    t = threading.Thread(target=lambda: box.append(pool.submit(lambda: 1).result(timeout=1e12)))
    t.start()
    t.join(5)
    assert box == [1]


def test_shutdown_while_a_submitter_waits_for_queue_space_strands_nothing():
    # A plain thread waits in submit() for queue space while another thread
    # shuts the pool down: the call must be refused, not queued behind the
    # workers' stop markers where nobody would ever run it.
    pool = ThreadPool(1, max_queue=1)
    release = _native.allocate_lock()
    release.acquire()
    pool.submit(release.acquire)  # occupies the worker
    pool.submit(int)  # fills the queue
    outcome = []

    def submitter():
        try:
            outcome.append(pool.submit(int))
        except RuntimeError as exc:
            outcome.append(exc)

    t = threading.Thread(target=submitter)
    t.start()
    deadline = time.monotonic() + 5
    while not pool._slots._waiters and time.monotonic() < deadline:
        time.sleep(0.001)
    assert pool._slots._waiters, "the submitter never waited for space"
    stopper = threading.Thread(target=pool.shutdown)  # queues the stop marker, then waits
    stopper.start()
    deadline = time.monotonic() + 5
    while not pool._is_shutdown and time.monotonic() < deadline:
        time.sleep(0.001)
    release.release()  # the worker finishes; queue space opens for the submitter
    t.join(5)
    stopper.join(5)
    assert not stopper.is_alive() and not t.is_alive()
    # The submitter was woken by queue space only after shutdown() had begun
    # (the loop above waited for it): it must be refused, never queued.
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError), outcome[0]
    assert "after shutdown" in str(outcome[0])


class _ShutdownBeforeNextPut:
    """A queue that runs pool.shutdown() just before the next call is put:
    the interleaving where a submitter passed the shutdown check and the
    stop markers land ahead of its call."""

    def __init__(self, pool):
        self.pool, self.real, self.armed = pool, pool._queue, False

    def put(self, item):
        if self.armed and item is not None:
            self.armed = False
            self.pool.shutdown(wait=False)
        self.real.put(item)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("busy_worker", [True, False])
def test_a_call_queued_behind_the_stop_markers_is_cancelled_not_stranded(busy_worker):
    pool = ThreadPool(1)
    release = _native.allocate_lock()
    release.acquire()
    if busy_worker:
        running = pool.submit(release.acquire)  # the worker stays alive, busy
    queue = pool._queue = _ShutdownBeforeNextPut(pool)
    queue.armed = True
    late = pool.submit(int)  # passes the check; shutdown() runs; then it is queued
    release.release()
    deadline = time.monotonic() + 5
    while not late.done() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert late.cancelled(), "a call queued behind the stop markers was left to wait forever"
    if busy_worker:
        assert running.result(timeout=5) is True
    assert pool.stats()["cancelled"] == 1


def test_in_worker_thread_and_its_deprecated_alias_in_offload_threadpool():
    # offload.threadpool is where users import them from, wherever they are defined.
    from offload.threadpool import in_worker, in_worker_thread

    pool = ThreadPool(1)
    assert in_worker_thread() is False and pool.call(in_worker_thread) is True
    with pytest.warns(DeprecationWarning, match="deprecated since offload 0.2.0; use in_worker_thread"):
        assert in_worker() is False
    pool.shutdown()
