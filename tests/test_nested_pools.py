"""Nested calls across pools (issue 15, point 19): A -> B -> A.

A worker of A waits for its call into B; if that call calls back into A and
every thread of A is such a waiter, nothing can ever run it.  offload raises
at once instead of hanging.  A call back into A with a thread to spare runs.
"""

import threading

import pytest

import offload
from offload import ThreadPool


def test_a_to_b_to_a_with_one_thread_raises_at_once():
    a, b = ThreadPool(1, name="A"), ThreadPool(1, name="B")
    with pytest.raises(RuntimeError, match="cannot run in A.*deadlock"):
        a.call(b.call, a.call, int, 1)
    # Both pools are usable afterwards, and the inline same-pool case still works.
    assert a.call(a.call, int, 2) == 2
    assert b.call(int, 3) == 3
    a.shutdown()
    b.shutdown()


def test_three_pools_deep_and_through_the_default_call():
    a, b, c = ThreadPool(1, name="A"), ThreadPool(1, name="B"), ThreadPool(1, name="C")

    def back_to_a():
        return offload.call(int, 4, pool=a)

    with pytest.raises(RuntimeError, match="cannot run in A"):
        a.call(b.call, c.call, back_to_a)
    assert a.call(b.call, c.call, int, 5) == 5  # no cycle: fine


def test_a_to_b_to_a_with_a_thread_to_spare_runs():
    a, b = ThreadPool(2, name="A2"), ThreadPool(1, name="B1")
    assert a.call(b.call, a.call, int, 6) == 6
    # B's one thread already waits up the chain: refused.
    with pytest.raises(RuntimeError, match="cannot run in B1: all 1 of its threads"):
        a.call(b.call, a.call, b.call, int, 7)
    # Both threads of A waiting up the chain: refused.
    b2 = ThreadPool(2, name="B2")
    with pytest.raises(RuntimeError, match="cannot run in A2: all 2 of its threads"):
        a.call(b2.call, a.call, b2.call, a.call, int, 8)


def test_a_worker_calling_another_pool_without_a_cycle_is_unaffected():
    a, b = ThreadPool(1), ThreadPool(1)
    idents = a.call(lambda: (threading.get_ident(), b.call(threading.get_ident)))
    assert idents[0] != idents[1]
