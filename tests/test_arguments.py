"""Every number (and flag, name, pool) the public API takes is checked once,
before it reaches a loop (issue 15, point 13).

A property-based test: for each argument of each public entry point,
hypothesis draws values of every kind -- ints in and out of range, huge ints,
floats with NaN and infinities, bools, strings, None, lists, objects -- and
an oracle says what the checks must do with each: accept it, or raise
TypeError (a wrong type) or ValueError (out of range, NaN) whose message
names the argument.  Each example runs under a watchdog that fails the run
with a stack dump instead of hanging.
"""

import concurrent.futures as cf
import faulthandler
import math
import sqlite3
from numbers import Real

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import offload
from offload import Heartbeat, ProcessPool, Proxy, ThreadPool
from offload.dbapi import ConnectionPool

WATCHDOG = 20  # seconds one example may take before the process is dumped and killed

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([10**400, 2**63, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, 0.0, -0.0]),
    st.text(max_size=4),
    st.sampled_from(["thread", "", "5"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.just(object()),
)


def _real(v):
    return isinstance(v, Real) and not isinstance(v, bool)


def _float(v):
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


# -- the oracle: None (accepted), TypeError or ValueError ------------------


def count(minimum, maximum=None, none=False):
    def judge(v):
        if v is None and none:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            return TypeError
        if v < minimum or (maximum is not None and v > maximum):
            return ValueError
        return None

    return judge


def timeout(v):
    if v is None:
        return None
    if not _real(v):
        return TypeError
    f = _float(v)
    return ValueError if math.isnan(f) or f < 0 else None


def seconds(positive):
    def judge(v):
        if not _real(v):
            return TypeError
        f = _float(v)
        if math.isnan(f) or math.isinf(f) or f < 0 or (positive and f == 0):
            return ValueError
        return None

    return judge


def number(lo, hi):
    def judge(v):
        if not _real(v):
            return TypeError
        f = _float(v)
        return None if lo <= f <= hi else ValueError

    return judge


def flag(v):
    return None if isinstance(v, bool) else TypeError


def name(v):
    if v is None:
        return None
    if not isinstance(v, str):
        return TypeError
    return ValueError if not v else None


def text(v):
    return None if isinstance(v, str) else TypeError


def pool_arg(v):
    if v is None or v == "thread":
        return None
    return ValueError if isinstance(v, str) else TypeError


# -- the entry points --------------------------------------------------------

_thread_pool = ThreadPool(2, name="arguments")
_done = _thread_pool.submit(int, 1)
_done.result()
_process_pool = ProcessPool(1)  # never started: map over nothing needs no process
_facade = offload.wrap_executor(cf.ThreadPoolExecutor(1))
_heartbeat = Heartbeat(0.01)
_heartbeat.lags.extend([0.001, 0.002])
_connections = ConnectionPool(sqlite3, ":memory:", minconn=0, maxconn=1, check_same_thread=False)


def _make(cls, **kw):
    made = cls(**kw)
    if hasattr(made, "shutdown"):
        made.shutdown(wait=False)


def _connection_pool(**kw):
    ConnectionPool(sqlite3, ":memory:", check_same_thread=False, **kw).close()


ENTRY_POINTS = {
    # name: (call taking the value, argument name, oracle)
    "ThreadPool(max_workers)": (
        lambda v: _make(ThreadPool, max_workers=v),
        "max_workers",
        count(1, none=True),
    ),
    "ThreadPool(max_queue)": (lambda v: _make(ThreadPool, max_queue=v), "max_queue", count(0)),
    "ThreadPool(name)": (lambda v: _make(ThreadPool, name=v), "name", name),
    "ThreadPool(adaptive)": (lambda v: _make(ThreadPool, adaptive=v), "adaptive", flag),
    "ThreadPool(thread_name_prefix)": (
        lambda v: _make(ThreadPool, thread_name_prefix=v),
        "thread_name_prefix",
        text,
    ),
    "ProcessPool(max_workers)": (
        lambda v: _make(ProcessPool, max_workers=v),
        "max_workers",
        count(1, none=True),
    ),
    "ProcessPool(max_tasks_per_child)": (
        lambda v: _make(ProcessPool, max_tasks_per_child=v),
        "max_tasks_per_child",
        count(1, none=True),
    ),
    "ProcessPool(kill_on_timeout)": (
        lambda v: _make(ProcessPool, kill_on_timeout=v),
        "kill_on_timeout",
        flag,
    ),
    "ProcessPool(name)": (lambda v: _make(ProcessPool, name=v), "name", name),
    "ThreadPool.map(timeout)": (lambda v: list(_thread_pool.map(int, [], timeout=v)), "timeout", timeout),
    "ThreadPool.map(chunksize)": (
        lambda v: list(_thread_pool.map(int, [], chunksize=v)),
        "chunksize",
        count(1),
    ),
    "ProcessPool.map(timeout)": (lambda v: list(_process_pool.map(int, [], timeout=v)), "timeout", timeout),
    "ProcessPool.map(chunksize)": (
        lambda v: list(_process_pool.map(int, [], chunksize=v)),
        "chunksize",
        count(1),
    ),
    "wrap_executor.map(timeout)": (lambda v: list(_facade.map(int, [], timeout=v)), "timeout", timeout),
    "wrap_executor.map(chunksize)": (
        lambda v: list(_facade.map(int, [], chunksize=v)),
        "chunksize",
        count(1),
    ),
    "Future.result(timeout)": (lambda v: _done.result(timeout=v), "timeout", timeout),
    "Future.exception(timeout)": (lambda v: _done.exception(timeout=v), "timeout", timeout),
    "offload(timeout)": (lambda v: offload.offload(int, timeout=v), "timeout", timeout),
    "offload(pool)": (lambda v: offload.offload(int, pool=v), "pool", pool_arg),
    "call(pool)": (lambda v: offload.call(int, 1, pool=v), "pool", pool_arg),
    "submit(pool)": (lambda v: offload.submit(int, 1, pool=v).result(), "pool", pool_arg),
    "Proxy(pool)": (lambda v: Proxy(3, pool=v), "pool", pool_arg),
    "wait(timeout)": (lambda v: offload.wait([_done], timeout=v), "timeout", timeout),
    "as_completed(timeout)": (lambda v: list(offload.as_completed([_done], timeout=v)), "timeout", timeout),
    "Heartbeat(interval)": (lambda v: Heartbeat(v), "interval", seconds(positive=True)),
    "Heartbeat.lag(q)": (lambda v: _heartbeat.lag(v), "q", number(0, 100)),
    "probe(threshold)": (lambda v: offload.probe(int, threshold=v), "threshold", seconds(positive=False)),
    "ConnectionPool(maxconn)": (lambda v: _connection_pool(minconn=0, maxconn=v), "maxconn", count(1)),
    "ConnectionPool(minconn)": (lambda v: _connection_pool(minconn=v, maxconn=2), "minconn", count(0, 2)),
    "ConnectionPool.getconn(timeout)": (
        lambda v: _connections.putconn(_connections.getconn(timeout=v)),
        "timeout",
        timeout,
    ),
}


def _probe_interval(v):
    # A valid but long interval only delays the first tick: keep runs short.
    if _real(v) and 0.5 < _float(v) < math.inf:
        v = 0.5
    offload.probe(int, interval=v)


ENTRY_POINTS["probe(interval)"] = (_probe_interval, "interval", seconds(positive=True))


@pytest.fixture(autouse=True, scope="module")
def _watchdog():
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_every_argument_is_checked(entry, value):
    call, argument, oracle = ENTRY_POINTS[entry]
    expected = oracle(value)
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)  # a hang kills the run, with a dump
    try:
        if expected is None:
            call(value)  # accepted
        else:
            with pytest.raises(expected) as info:
                call(value)
            assert argument in str(info.value), (entry, value, info.value)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_nan_and_huge_are_never_silently_accepted(entry):
    call, argument, oracle = ENTRY_POINTS[entry]
    for value in (float("nan"), 10**400, -1.0):
        expected = oracle(value)
        if expected is None:
            call(value)  # 10**400 means "no limit" for a timeout
            continue
        with pytest.raises(expected, match=argument):
            call(value)
