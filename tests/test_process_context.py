"""contextvars reach ProcessPool calls: the picklable values of module-level variables."""

import contextvars
import threading

import pytest

import offload

REQUEST = contextvars.ContextVar("REQUEST")
LOCKED = contextvars.ContextVar("LOCKED")
UNSET = contextvars.ContextVar("UNSET")


def read_vars():
    """What the call sees of the caller's variables, in the child."""
    return REQUEST.get("unset"), LOCKED.get("skipped"), UNSET.get("unset")


def set_and_read():
    before = REQUEST.get("unset")
    REQUEST.set("changed in the child")
    return before


@pytest.fixture(scope="module")
def pool():
    with offload.ProcessPool(1) as p:
        yield p


def test_picklable_values_travel_and_others_are_skipped(pool):
    def caller():
        REQUEST.set("req-42")
        LOCKED.set(threading.Lock())  # unpicklable: skipped, the call still runs
        return pool.call(read_vars), pool.submit(read_vars).result()

    got = contextvars.copy_context().run(caller)
    assert got == (("req-42", "skipped", "unset"),) * 2


def test_each_call_gets_a_fresh_copy(pool):
    def caller():
        REQUEST.set("mine")
        first = pool.call(set_and_read)
        return first, pool.call(set_and_read), REQUEST.get()

    # The child's change reaches neither the next call nor the caller.
    assert contextvars.copy_context().run(caller) == ("mine", "mine", "mine")


def test_no_context_no_values(pool):
    assert contextvars.Context().run(pool.call, read_vars) == ("unset", "skipped", "unset")
