"""One connection's lane: the thread its calls run on, and the path every call takes.

A :class:`Session` holds the driver's connection, the one-thread
:class:`~offload.ThreadPool` it lives on, and whether it is closed.  Every
call on a :class:`~offload.dbapi.Connection` or on one of its cursors goes
through :meth:`Session.call`, so what a call checks first (closed, forked)
and how it waits is written once.
"""

import importlib
from types import ModuleType
from typing import Any

from ..proxy import ProxyBase, setattribute, unwrap, unwrap_args
from ..threadpool import ThreadPool


def check_module(module: ModuleType | str) -> ModuleType:
    """The DB-API module *module* names (imported if a str)."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    if not callable(getattr(module, "connect", None)):
        raise TypeError(
            f"module must be a DB-API 2.0 module (with connect()) or its import name, "
            f"not {type(module).__name__}"
        )
    return module


def lane_for(pool: ThreadPool | None, module: ModuleType) -> tuple[ThreadPool, bool]:
    """The one-thread pool a new connection runs in, and whether it owns it."""
    if pool is None:
        name = f"offload.dbapi:{getattr(module, '__name__', 'db')}"
        return ThreadPool(1, name=name), True
    if not isinstance(pool, ThreadPool):
        raise TypeError(
            f"pool must be None or an offload.ThreadPool with max_workers=1, not {type(pool).__name__}"
        )
    if pool.max_workers != 1:
        raise ValueError(
            "pool must have max_workers=1: a connection's calls must all run on one thread, "
            f"and {pool!r} has {pool.max_workers}"
        )
    return pool, False


class Session:
    """A driver connection on its lane: the state every proxy of it shares."""

    __slots__ = ("raw", "module", "lane", "owned", "closed")

    def __init__(self, raw: Any, module: ModuleType, lane: ThreadPool, owned: bool) -> None:
        self.raw = raw
        self.module = module
        self.lane = lane
        self.owned = owned
        self.closed = False

    def check(self) -> None:
        """Raise the driver's ``InterfaceError`` if the connection cannot take calls."""
        if self.closed and self.owned:
            raise self.error("InterfaceError", "connection already closed")

    def error(self, name: str, message: str) -> Exception:
        """The driver's exception class *name* (else RuntimeError) with *message*."""
        return getattr(self.module, name, RuntimeError)(message)

    def call(self, fn, args=(), kwargs=None):
        """Run ``fn(*args, **kwargs)`` in the lane; only the calling greenlet waits."""
        self.check()
        args, kwargs = unwrap_args(args, kwargs or {})
        return self.lane._call(fn, args, kwargs, None)


class SessionProxy(ProxyBase):
    """What a :class:`~offload.dbapi.Connection` and a :class:`~offload.dbapi.Cursor`
    share: their calls go through their :class:`Session`, attribute writes
    run in the lane."""

    __slots__ = ("_offload_session",)

    def __init__(self, raw: Any, session: Session) -> None:
        super().__init__(raw, pool=session.lane)
        setattribute(self, "_offload_session", session)

    def _offload_call(self, fn, args=(), kwargs=None):
        return self._offload_session.call(fn, args, kwargs)

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, unwrap(value)))

    def __delattr__(self, name):
        self._offload_call(delattr, (self._offload_obj, name))
