"""One connection's lane: the thread its calls run on, and the path every call takes.

A :class:`Session` holds the driver's connection, the one-thread
:class:`~offload.ThreadPool` it lives on, and whether it is closed.  Every
call on a :class:`~offload.dbapi.Connection` or on one of its cursors goes
through :meth:`Session.call`, so what a call checks first (closed, forked)
and how it waits is written once.
"""

import importlib
import os
from types import ModuleType
from typing import Any

from .._core.lifecycle import ForkRegistry
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


_sessions = ForkRegistry()
#: Inherited connections whose socket could not be found: kept alive in the
#: child, so that no finalizer closes them on the parent's session.
_inherited: list = []


class Session:
    """A driver connection on its lane: the state every proxy of it shares."""

    __slots__ = ("raw", "module", "lane", "owned", "closed", "pid", "forked", "settings", "__weakref__")

    def __init__(self, raw: Any, module: ModuleType, lane: ThreadPool, owned: bool) -> None:
        self.raw = raw
        self.module = module
        self.lane = lane
        self.owned = owned
        self.closed = False
        self.pid = os.getpid()
        self.forked = False  # set in a forked child: the connection is the parent's
        self.settings: dict | None = None  # what a pool restores (see reset.py)
        _sessions.add(self)

    def check(self) -> None:
        """Raise the driver's ``InterfaceError`` if the connection cannot take calls."""
        if self.forked:
            raise self.error(
                "InterfaceError",
                f"this connection was opened in process {self.pid}, before os.fork(); process "
                f"{os.getpid()} must not use it (both processes would talk on one session): open a "
                "new connection in the child (offload.dbapi.ConnectionPool does so by itself)",
            )
        if self.closed and self.owned:
            raise self.error("InterfaceError", "connection already closed")

    def _after_fork(self) -> None:
        """In a forked child: make the parent's connection unusable here, and harmless.

        The child must neither use it nor close it: closing sends the
        driver's goodbye (psycopg2's Terminate, PyMySQL's COM_QUIT) on the
        socket the parent still uses, and ends the parent's session.  Nor may
        the child just ``os.close`` the socket: the number would be reused by
        the child's next file or socket, and the driver's finalizer would
        then write its goodbye into that.  So the socket's descriptor is
        pointed at ``/dev/null`` (``dup2``): the number stays taken, the
        parent's socket is untouched, and whatever the driver sends when the
        object is finally collected goes nowhere.  A driver whose socket
        cannot be found is kept alive instead, never finalized in the child.
        """
        self.forked = True
        if self.closed:
            return
        try:
            fd = socket_fd(self.raw)
            if fd is None:
                if self.module.__name__ != "sqlite3":  # a file, not a session: nothing to protect
                    _inherited.append(self.raw)
                return
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
        except Exception:  # never fail the fork; keep the object alive instead
            _inherited.append(self.raw)

    def error(self, name: str, message: str) -> Exception:
        """The driver's exception class *name* (else RuntimeError) with *message*."""
        return getattr(self.module, name, RuntimeError)(message)

    def call(self, fn, args=(), kwargs=None):
        """Run ``fn(*args, **kwargs)`` in the lane; only the calling greenlet waits."""
        self.check()
        args, kwargs = unwrap_args(args, kwargs or {})
        return self.lane._call(fn, args, kwargs, None)


def socket_fd(raw: Any) -> int | None:
    """The file descriptor of *raw*'s socket to the server, if the driver shows it."""
    fileno = getattr(raw, "fileno", None)  # psycopg2, psycopg
    if fileno is None:
        sock = getattr(raw, "_sock", None)  # PyMySQL
        fileno = getattr(sock, "fileno", None)
    if not callable(fileno):
        return None
    fd = fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None


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

    def __getattr__(self, name):
        # Only the real object's own methods run in the lane.  Everything
        # else is returned as it is: the driver's exception classes
        # (``conn.Error`` must work in ``except``), other classes, functions
        # stored as attributes (sqlite3's ``row_factory``), plain values.
        attr = getattr(self._offload_obj, name)
        if getattr(attr, "__self__", None) is self._offload_obj and not isinstance(attr, type):
            return self._offload_method(attr, name)
        return self._offload_wrap(attr, name)

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, unwrap(value)))

    def __delattr__(self, name):
        self._offload_call(delattr, (self._offload_obj, name))
