"""@offload in all its forms."""

import time

import gevent
import pytest

import offload
from offload import ThreadPool
from offload import offload as offload_decorator
from offload._core import native as _native


@pytest.fixture
def pool():
    pool = ThreadPool(2)
    yield pool
    pool.shutdown()


def test_bare_and_called_forms_run_in_the_default_pool():
    @offload_decorator
    def bare():
        """Docs."""
        return _native.get_ident()

    @offload_decorator()
    def called():
        return _native.get_ident()

    here = _native.get_ident()
    assert bare() != here and called() != here
    assert bare.__name__ == "bare" and bare.__doc__ == "Docs." and bare.__wrapped__() == here


def test_pool_argument(pool):
    @offload_decorator(pool=pool)
    def work(x, *, y):
        return x + y

    assert work(1, y=2) == 3
    assert pool.stats()["completed"] == 1
    assert offload_decorator(pool="thread")(len)("abc") == 3


def test_methods_staticmethods_and_classmethods(pool):
    class Service:
        factor = 3

        @offload_decorator(pool=pool)
        def method(self, x):
            return (x * self.factor, _native.get_ident())

        @offload_decorator(pool=pool)
        @staticmethod
        def static(x):
            return x + 1

        @offload_decorator(pool=pool)
        @classmethod
        def klass(cls, x):
            return cls.factor + x

    value, ident = Service().method(2)
    assert value == 6 and ident != _native.get_ident()
    assert Service.static(1) == Service().static(1) == 2
    assert Service.klass(1) == 4
    assert pool.stats()["completed"] == 4


def test_decorated_calls_overlap(pool):
    @offload_decorator(pool=pool)
    def block():
        _native.sleep(0.2)

    with offload.Heartbeat(0.005) as hb:
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(block) for _ in range(2)])
        elapsed = time.perf_counter() - started
    assert elapsed < 0.35, elapsed  # one after the other would take 0.4 s
    assert len(hb.lags) >= 10 and hb.max_lag < 0.15


def test_timeout(pool):
    @offload_decorator(pool=pool, timeout=0.02)
    def slow():
        _native.sleep(0.2)

    with pytest.raises(TimeoutError):
        slow()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"pool": "gpu"}, ValueError, "pool"),
        ({"pool": 42}, TypeError, "pool"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "soon"}, TypeError, "timeout"),
    ],
)
def test_bad_options_fail_at_decoration(kwargs, error, words):
    with pytest.raises(error, match=words):
        offload_decorator(**kwargs)


def test_non_callable_fails_at_decoration():
    with pytest.raises(TypeError, match="fn must be callable"):
        offload_decorator(42)
