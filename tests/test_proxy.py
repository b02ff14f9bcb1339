"""Proxy: methods and protocols in the pool, plain attributes inline."""

import collections
import io
import time

import gevent
import pytest

import offload
from offload import Proxy, ThreadPool, unwrap
from offload._core import native as _native


class Child:
    def __init__(self, n):
        self.n = n

    def grandchild(self):
        return Child(self.n + 1)

    def where(self):
        return _native.get_ident()


class Thing:
    label = "plain attribute"

    def __init__(self):
        self.items = {"a": 1}
        self.entered = self.exited = False

    def where(self):
        return _native.get_ident()

    def child(self):
        return Child(1)

    def named(self):
        return {"not a Child": True}

    def identity(self, value, *, key=None):
        return value, key

    def fail(self):
        raise KeyError("from the worker")

    def __call__(self, x):
        return x * 2

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        return self.items[key]

    def __setitem__(self, key, value):
        self.items[key] = value

    def __delitem__(self, key):
        del self.items[key]

    def __contains__(self, key):
        return key in self.items

    def __iter__(self):
        return iter(sorted(self.items))

    def __enter__(self):
        self.entered = _native.get_ident()
        return self

    def __exit__(self, *exc_info):
        self.exited = exc_info[0]
        return False

    def __repr__(self):
        return "<Thing>"


@pytest.fixture
def pool():
    pool = ThreadPool(2)
    yield pool
    pool.shutdown()


def hops(pool, action):
    """How many calls *action* sent to *pool*."""
    before = pool.stats()["submitted"]
    result = action()
    return pool.stats()["submitted"] - before, result


def test_methods_run_in_the_pool_and_attributes_inline(pool):
    proxy = Proxy(Thing(), pool=pool)
    n, ident = hops(pool, proxy.where)
    assert n == 1 and ident != _native.get_ident()
    n, label = hops(pool, lambda: proxy.label)
    assert n == 0 and label == "plain attribute"
    n, _ = hops(pool, lambda: (str(proxy), repr(proxy), bool(proxy), hash(proxy), proxy == proxy))
    assert n == 0
    assert repr(proxy) == "<Thing>"


def test_method_calls_overlap_and_keep_the_hub_running(pool):
    class Slow:
        def work(self):
            _native.sleep(0.2)

    proxy = Proxy(Slow(), pool=pool)
    with offload.Heartbeat(0.005) as hb:
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(proxy.work) for _ in range(2)])
        elapsed = time.perf_counter() - started
    assert elapsed < 0.35, elapsed  # one after the other would take 0.4 s
    assert len(hb.lags) >= 10 and hb.max_lag < 0.15


def test_protocols_are_offloaded(pool):
    thing = Thing()
    proxy = Proxy(thing, pool=pool)
    assert hops(pool, lambda: len(proxy)) == (1, 1)
    assert hops(pool, lambda: proxy["a"]) == (1, 1)
    assert hops(pool, lambda: proxy.__setitem__("b", 2))[0] == 1
    assert hops(pool, lambda: "b" in proxy) == (1, True)
    assert hops(pool, lambda: proxy(21)) == (1, 42)
    n, keys = hops(pool, lambda: list(proxy))
    # len (list's size hint), iter, then next for a, b and the StopIteration
    assert keys == ["a", "b"] and n == 5
    del proxy["b"]
    assert thing.items == {"a": 1}
    with proxy as entered:
        assert entered is proxy
    assert thing.entered != _native.get_ident()
    with pytest.raises(KeyError):
        with proxy:
            raise KeyError("inside")
    assert thing.exited is KeyError


def test_exceptions_come_back_unchanged(pool):
    with pytest.raises(KeyError, match="from the worker"):
        Proxy(Thing(), pool=pool).fail()


def test_autowrap_by_type_and_name_and_children_keep_settings(pool):
    proxy = Proxy(Thing(), autowrap=(Child,), autowrap_names={"named"}, pool=pool)
    child = proxy.child()
    assert isinstance(child, Proxy) and child.n == 1
    grandchild = child.grandchild()  # eventlet drops the settings here
    assert isinstance(grandchild, Proxy) and grandchild.n == 2
    assert grandchild.where() != _native.get_ident()
    named = proxy.named()
    assert isinstance(named, Proxy) and named["not a Child"] is True
    assert not isinstance(Proxy(Thing(), pool=pool).child(), Proxy)


def test_proxies_passed_as_arguments_are_unwrapped(pool):
    inner = Thing()
    proxy = Proxy(Thing(), pool=pool)
    value, key = proxy.identity(Proxy(inner), key=Proxy(inner))
    assert value is inner and key is inner
    assert unwrap(proxy) is not proxy and unwrap(inner) is inner
    assert Proxy(proxy, pool=pool) == proxy  # wrapping a proxy wraps the real object


def test_setattr_and_delattr_reach_the_object(pool):
    thing = Thing()
    proxy = Proxy(thing, pool=pool)
    proxy.extra = Proxy(io.StringIO())
    assert isinstance(thing.extra, io.StringIO)
    del proxy.extra
    assert not hasattr(thing, "extra")
    assert "where" in dir(proxy)


def test_plain_containers_work():
    proxy = Proxy(collections.OrderedDict(a=1))
    proxy["b"] = 2
    assert len(proxy) == 2 and list(proxy) == ["a", "b"] and proxy.get("b") == 2


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"autowrap": (1,)}, TypeError),
        ({"autowrap_names": "cursor"}, TypeError),
        ({"autowrap_names": (1,)}, TypeError),
        ({"pool": "nowhere"}, ValueError),
        ({"pool": 3}, TypeError),
    ],
)
def test_bad_settings_fail_early(kwargs, error):
    with pytest.raises(error):
        Proxy(Thing(), **kwargs)
