"""The proxy machinery of offload.mongo.

:class:`Runner` is where one client's calls run (its pool, or inline) and
what bounds their wait; the registry says which proxy class wraps which
PyMongo type; :class:`MongoProxy` is the base every offload.mongo proxy
shares, built on :class:`offload.ProxyBase`, with the two small bases for
``with`` and ``x[name]``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, ClassVar, TypeVar

import pymongo
from pymongo.errors import NetworkTimeout, WaitQueueTimeoutError

from .._core.checks import name_of
from .._poolbase import run_inline
from ..future import Future
from ..proxy import ProxyBase, getattribute, unwrap_args
from ..threadpool import ThreadPool
from . import _pymongo

__all__ = ["EnterInline", "ItemsInline", "MongoProxy", "Runner", "register", "runner_of", "wrapper_for"]

_P = TypeVar("_P", bound="MongoProxy")

# Past its deadline, how long a call already running may take to raise
# PyMongo's own timeout error before the caller stops waiting for it.
REPORT_GRACE = 1.0


class Runner:
    """Where one client's calls run: its pool, or inline.

    Every proxy made from a client shares its runner, as its ``pool``: the
    runner keeps offload's pool protocol (``_call``, ``submit``), so
    :class:`~offload.ProxyBase` sends calls through it unchanged.  Closing
    the client (which shuts a dedicated pool down) is seen by all of them.

    A call under a deadline -- ``pymongo.timeout()`` around it, or the
    client's ``timeoutMS`` -- runs in the worker under that same deadline
    (PyMongo then sends it to the server as ``maxTimeMS``), and its caller
    waits no longer than the deadline: a call still queued then is cancelled
    and never reaches the server.
    """

    __slots__ = ("pool", "owned", "inline", "timeout")

    def __init__(
        self, pool: ThreadPool | None, owned: bool, inline: bool, timeout: float | None = None
    ) -> None:
        self.pool = pool
        self.owned = owned
        self.inline = inline
        self.timeout = timeout  # the client's timeoutMS, in seconds

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout: float | None) -> Any:
        if self.inline:
            return fn(*args, **kwargs)
        pool = self.pool
        assert pool is not None  # only an inline runner has none
        if self.timeout is None and not _pymongo.csot_active():
            return pool._call(fn, args, kwargs, timeout)
        return self._call_by_deadline(pool, fn, args, kwargs)

    def _call_by_deadline(self, pool: ThreadPool, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        # The client's timeoutMS counts from here, not from when a worker
        # is free: the wait for a thread is part of the operation, as the
        # wait for a connection is in PyMongo.
        scope = nullcontext() if _pymongo.csot_active() else pymongo.timeout(self.timeout)
        with scope:
            remaining = _pymongo.csot_remaining() or 0.0
            # The worker runs in a copy of this context: the deadline goes along.
            future = pool.submit(fn, *args, **kwargs)
        try:
            return future.result(max(remaining, 0.0))
        except TimeoutError:
            if future.cancel():
                raise WaitQueueTimeoutError(
                    f"offload.mongo: {name_of(fn)} waited for a thread of {pool.name} until its "
                    f"deadline ({_deadline_text(self.timeout)}) and was cancelled before it started; "
                    "nothing reached the server. Give the client more threads, or the call more time"
                ) from None
            if future.done():
                raise  # the call's own TimeoutError
        except BaseException:
            future.cancel()  # the caller went away: a queued call never runs
            raise
        return _late_result(future, fn)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` where this client's calls run."""
        if self.pool is None:
            return run_inline(fn, args, kwargs)
        return self.pool.submit(fn, *args, **kwargs)

    def closed(self) -> None:
        """The client is closed: later calls run inline (and raise PyMongo's InvalidOperation)."""
        if self.owned and self.pool is not None and not self.inline:
            self.pool.shutdown(wait=False)
        self.inline = True


def _late_result(future: Future[Any], fn: Callable[..., Any]) -> Any:
    """Wait a little past the deadline for PyMongo's own timeout error from a running call."""
    try:
        return future.result(REPORT_GRACE)
    except TimeoutError:
        if future.done():
            raise
    raise NetworkTimeout(
        f"offload.mongo: {name_of(fn)} was still running {REPORT_GRACE:g}s past its deadline; "
        "its thread is abandoned to finish it"
    )


def _deadline_text(client_timeout: float | None) -> str:
    if _pymongo.csot_active():
        return "pymongo.timeout()"
    return f"timeoutMS={client_timeout * 1000:g}" if client_timeout is not None else "none"


# -- which proxy class wraps which PyMongo type ----------------------------------

_wrappers: dict[type, type[MongoProxy]] = {}  # PyMongo type -> proxy class, filled by register()
_wrapper_cache: dict[type, type[MongoProxy] | None] = {}


def register(proxy_cls: type[MongoProxy], *types: type) -> None:
    """Wrap instances of *types* (and their subclasses) in *proxy_cls*."""
    for t in types:
        _wrappers[t] = proxy_cls
    _wrapper_cache.clear()


def wrapper_for(t: type) -> type[MongoProxy] | None:
    """The proxy class for instances of *t*, or None (cached per type)."""
    try:
        return _wrapper_cache[t]
    except KeyError:
        pass
    found = None
    for base in t.__mro__:
        found = _wrappers.get(base)
        if found is not None:
            break
    _wrapper_cache[t] = found
    return found


def runner_of(proxy: MongoProxy) -> Runner:
    """The runner a proxy's calls go through."""
    return getattribute(proxy, "_offload_pool")


# -- the proxies -------------------------------------------------------------------


class MongoProxy(ProxyBase):
    """A proxy that knows which PyMongo calls do I/O.

    ``_offload_inline`` names methods that do none: they run in the greenlet.
    ``_offload_pooled`` names properties that do: they are read in the pool.
    Any other method runs in the pool; any other attribute is read inline.
    Results that are PyMongo objects come back wrapped, sharing the runner.
    """

    __slots__ = ()

    _offload_inline: ClassVar[frozenset[str]] = frozenset()
    _offload_pooled: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, obj: Any, runner: Runner) -> None:
        super().__init__(obj, pool=runner)

    @classmethod
    def _wrap_existing(cls: type[_P], obj: Any, runner: Runner) -> _P:
        """Wrap a PyMongo object that exists already (a subclass's own ``__init__``
        may build one, as :class:`~offload.mongo.MongoClient` does)."""
        self = object.__new__(cls)
        ProxyBase.__init__(self, obj, pool=runner)
        return self

    @property
    def _offload_runner(self) -> Runner:
        """The runner (the ``pool`` of every proxy of one client)."""
        return runner_of(self)

    def _offload_wrap(self, value: Any, name: str | None = None) -> Any:
        if value is self._offload_obj:
            return self
        cls = wrapper_for(type(value))
        if cls is not None:
            return cls._wrap_existing(value, runner_of(self))
        if type(value) is list and value and wrapper_for(type(value[0])) is not None:
            return [self._offload_wrap(v) for v in value]
        return value

    def _offload_child(self, value: Any) -> MongoProxy:
        return MongoProxy._wrap_existing(value, runner_of(self))

    def _offload_method(self, attr: Callable[..., Any], name: str) -> Callable[..., Any]:
        if name not in self._offload_inline:
            return super()._offload_method(attr, name)

        def method(*args, **kwargs):
            args, kwargs = unwrap_args(args, kwargs)
            return self._offload_wrap(attr(*args, **kwargs), name)

        # Two attributes, not functools.wraps: this runs for every find() and chained call.
        method.__name__ = name
        method.__doc__ = getattr(attr, "__doc__", None)
        return method

    def __getattr__(self, name: str) -> Any:
        obj = self._offload_obj
        if name in self._offload_pooled:
            return self._offload_wrap(self._offload_call(getattr, (obj, name)))
        attr = getattr(obj, name)
        # Databases and collections are callable (they raise a helpful
        # TypeError) but are values here: wrap them, do not call them.
        if callable(attr) and wrapper_for(type(attr)) is None:
            return self._offload_method(attr, name)
        return self._offload_wrap(attr, name)


class EnterInline(MongoProxy):
    """``with`` returns the proxy at once (PyMongo's ``__enter__`` returns
    self and does no I/O); the real ``__exit__`` -- closing, ending,
    committing -- runs in the pool."""

    __slots__ = ()

    def __enter__(self):
        return self


class ItemsInline(MongoProxy):
    """``x[name]`` builds a database or collection: no I/O, no hop."""

    __slots__ = ()

    def __getitem__(self, key):
        return self._offload_wrap(self._offload_obj[key])
