"""offload.Heartbeat, probe and percentile: the instrument the suite relies on.

Mirrors offload/heartbeat.py.  A real freeze is a C-level ``time.sleep``
(``offload._core.native.sleep``), which holds the hub's thread; a real
cooperative wait is ``gevent.sleep``.
"""

import math
import time

import gevent
import pytest

import offload
from offload import Heartbeat, probe
from offload._core import native
from offload.heartbeat import percentile

freeze = native.sleep  # C-level blocking, never yields to gevent


# -- Heartbeat --------------------------------------------------------------------------


def test_a_real_freeze_shows_as_one_late_tick():
    with Heartbeat(0.005) as beat:
        gevent.sleep(0.05)
        freeze(0.2)
        gevent.sleep(0.05)
    late = [lag for lag in beat.lags if lag > 0.1]
    assert len(late) == 1, beat.lags
    assert 0.19 <= beat.max_lag < 1.0, beat.max_lag  # the freeze, less at most one interval
    assert beat.lag(50) < 0.05  # the other ticks were on time, give or take the machine's load


def test_the_hub_running_freely_shows_no_lateness():
    with Heartbeat(0.005) as beat:
        gevent.sleep(0.2)
    assert len(beat.lags) >= 10
    assert beat.max_lag < 0.15, beat.max_lag


def test_a_freeze_at_the_very_end_is_counted():
    with Heartbeat(0.005) as beat:
        freeze(0.1)  # no tick can run before stop(): stop() records the overdue one
    assert beat.max_lag >= 0.09, beat.lags


def test_times_are_the_perf_counter_readings_of_the_ticks():
    before = time.perf_counter()
    with Heartbeat(0.005) as beat:
        gevent.sleep(0.1)
    after = time.perf_counter()
    assert len(beat.times) == len(beat.lags) >= 5
    assert beat.times == sorted(beat.times)
    assert before <= beat.times[0] and beat.times[-1] <= after


def test_start_stop_and_start_again():
    beat = Heartbeat(0.005)
    assert beat.lags == [] and beat.max_lag == 0.0 and beat.lag(99) == 0.0
    assert beat.start() is beat
    with pytest.raises(RuntimeError, match="already started"):
        beat.start()
    gevent.sleep(0.05)
    beat.stop()
    gevent.sleep(0)  # see test_no_tick_lands_after_stop
    ticks = len(beat.lags)
    assert ticks >= 3
    beat.stop()  # again: nothing to do
    beat.start()
    gevent.sleep(0.05)
    beat.stop()
    assert len(beat.lags) > ticks  # started again, it keeps adding


def test_the_context_manager_returns_the_heartbeat_and_stops_it_on_error():
    beat = Heartbeat(0.005)
    with pytest.raises(LookupError):
        with beat as entered:
            assert entered is beat
            gevent.sleep(0.02)
            raise LookupError
    assert beat.lags
    beat.start().stop()  # it was stopped (or start() would refuse), so it may start again


def test_no_tick_lands_after_stop():
    # Twenty tries, each stopping when the heartbeat's timer is due in the
    # same hub pass as this greenlet's (the race lands most tries today).
    added = []
    for _ in range(20):
        with Heartbeat(0.005) as beat:
            gevent.sleep(0.02)
        ticks = len(beat.lags)
        freeze(0.02)  # after the heartbeat: must not be measured
        gevent.sleep(0.01)
        added.append(len(beat.lags) - ticks)
    assert added == [0] * 20


@pytest.mark.parametrize(
    "interval, error",
    [(0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("1", TypeError),
     (None, TypeError), (True, TypeError)],
    ids=["zero", "negative", "nan", "inf", "str", "None", "bool"],
)  # fmt: skip
def test_bad_intervals_are_refused(interval, error):
    with pytest.raises(error, match="interval"):
        Heartbeat(interval)


# -- percentile --------------------------------------------------------------------------

# The nearest-rank method: the smallest value with at least q% of the values
# at or below it, i.e. the ceil(q / 100 * n)-th smallest (the first for q = 0).
VALUES = [35, 20, 50, 15, 40]  # sorted: 15 20 35 40 50


@pytest.mark.parametrize(
    "q, expected",
    [
        (0, 15),
        (5, 15),
        (30, 20),
        (40, 20),
        (50, 35),
        (100, 50),
        (20, 15),
        (60, 35),
    ],
)
def test_percentile_is_the_nearest_rank(q, expected):
    assert percentile(VALUES, q) == expected


def test_p99_of_a_hundred_values_is_the_99th():
    assert percentile(list(range(1, 101)), 99) == 99


def test_percentile_of_nothing_and_of_one_value():
    assert percentile([], 50) == 0.0
    assert percentile([0.25], 0) == percentile([0.25], 99) == 0.25
    values = [3.0, 1.0, 2.0]
    percentile(values, 50)
    assert values == [3.0, 1.0, 2.0]  # the caller's list is not sorted in place


# -- probe ----------------------------------------------------------------------------------


def test_probe_sees_a_real_blocking_call():
    result = probe(freeze, 0.2)
    assert result.blocked
    assert result.max_lag >= 0.19 and result.elapsed >= 0.2, result
    assert result.value is None


def test_probe_sees_a_cooperative_wait_as_not_blocking():
    result = probe(gevent.sleep, 0.2)
    assert not result.blocked, result
    assert result.ticks >= 10 and result.max_lag < result.p99_lag + 0.15
    assert result.elapsed >= 0.19  # libuv rounds timers to whole milliseconds


def test_probe_of_a_call_offloaded_to_a_thread_is_not_blocking():
    with offload.ThreadPool(1) as pool:
        result = probe(pool.call, freeze, 0.2)
    assert not result.blocked, result


def test_probe_passes_arguments_returns_the_value_and_lets_exceptions_through():
    result = probe(divmod, 7, 2)
    assert result.value == (3, 1)
    assert probe(lambda **kw: kw, a=1).value == {"a": 1}
    with pytest.raises(ZeroDivisionError):
        probe(divmod, 1, 0)


def test_probe_threshold_decides_what_counts_as_blocked():
    assert not probe(freeze, 0.05, threshold=0.5).blocked
    assert probe(freeze, 0.05, threshold=0.01).blocked


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": "fast"}, TypeError, "interval"),
        ({"threshold": -1}, ValueError, "threshold"),
        ({"threshold": "high"}, TypeError, "threshold"),
    ],
)
def test_probe_refuses_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        probe(len, "x", **kwargs)


def test_probe_refuses_a_non_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        probe(42)
