"""DB-API 2.0 drivers that never block the hub: connections with thread affinity.

C drivers -- psycopg2, mysqlclient, sqlite3 -- wait for the server inside C
code, so no amount of monkey patching makes them yield: one slow query
freezes every greenlet.  :func:`connect` opens the connection in a worker
thread of its own (a one-thread *lane*) and returns a proxy that runs every
call on the connection and its cursors in that lane, while only the calling
greenlet waits.

One lane per connection is what the drivers require: sqlite3 refuses a
connection used from another thread (``check_same_thread``), and drivers that
declare ``threadsafety = 1`` must not see two threads on one connection.  A
lane runs its calls one at a time, in order, always on the same OS thread, so
any number of greenlets may share a connection; different connections run in
parallel on their own threads.  :class:`ConnectionPool` hands connections to
greenlets, waiting cooperatively when all are in use and discarding the ones
a server restart broke.

Errors are the driver's own exceptions, raised in the caller with the
driver's traceback.
"""

import importlib
from collections import deque
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from ._core import native
from ._core.waiters import CrossThreadSemaphore
from .proxy import ProxyBase, getattribute, setattribute, unwrap, unwrap_args
from .threadpool import ThreadPool

__all__ = ["connect", "call", "Connection", "Cursor", "ConnectionPool"]

_ITER_BATCH = 100  # rows per round trip when iterating a cursor


def _check_module(module: ModuleType | str) -> ModuleType:
    if isinstance(module, str):
        module = importlib.import_module(module)
    if not callable(getattr(module, "connect", None)):
        raise TypeError(
            f"module must be a DB-API 2.0 module (with connect()) or its import name, "
            f"not {type(module).__name__}"
        )
    return module


def _lane_for(pool, module):
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


def connect(
    module: ModuleType | str, *args: Any, pool: ThreadPool | None = None, **kwargs: Any
) -> "Connection":
    """Open a DB-API connection in a thread of its own; return a :class:`Connection` proxy.

    ``module.connect(*args, **kwargs)`` runs in the connection's lane and only
    the calling greenlet waits for it.

    :param module: a DB-API 2.0 module (``psycopg2``, ``sqlite3``, ``pymysql``,
        ``MySQLdb``, ...) or its import name.
    :param pool: ``None`` (the default) gives the connection a new one-thread
        :class:`~offload.ThreadPool` that it owns and shuts down on
        :meth:`~Connection.close`.  An :class:`~offload.ThreadPool` with
        ``max_workers=1`` pins the connection to that thread instead: several
        connections may share it (their calls then take turns), and closing
        the connection leaves the pool running.  Any other pool is refused,
        because a pool of several threads cannot keep a connection on one.

    Errors from the driver (``psycopg2.OperationalError``, ...) propagate
    unchanged.
    """
    module = _check_module(module)
    lane, owned = _lane_for(pool, module)
    try:
        raw = lane._call(module.connect, args, kwargs, None)
    except BaseException:
        if owned:
            lane.shutdown(wait=False)
        raise
    return Connection(raw, module=module, lane=lane, owned=owned)


def call(target: "Connection | Cursor", fn, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(raw, *args, **kwargs)`` on *target*'s thread; return its result.

    *target* is a :class:`Connection` or :class:`Cursor` proxy and ``raw`` the
    driver's own object behind it.  Use it to hand the raw object to code that
    needs it (``psycopg2.extras.register_hstore``, a batch of statements in
    one round trip) without ever touching it from another thread.
    """
    if not isinstance(target, (Connection, Cursor)):
        raise TypeError(f"target must be an offload.dbapi Connection or Cursor, not {type(target).__name__}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    raw = getattribute(target, "_offload_obj")
    return target._offload_call(fn, (raw,) + args, kwargs)


class Connection(ProxyBase):
    """A DB-API connection whose every call runs on its own thread.

    Made by :func:`connect`.  The DB-API methods -- :meth:`cursor`,
    :meth:`commit`, :meth:`rollback`, :meth:`close` -- and any other method of
    the driver's connection (``set_session``, ``execute`` for sqlite3, ...) run
    in the connection's lane while only the calling greenlet waits; methods
    that return a cursor return a :class:`Cursor`.  Attribute reads happen
    inline; attribute writes (``conn.autocommit = True``) run in the lane.
    ``with conn:`` means what the driver says (a transaction for psycopg2 and
    sqlite3; closing for PyMySQL), run in the lane.

    Calls made by many greenlets are queued and run one at a time, in order.
    A greenlet killed (or timed out) while its call waits in the queue
    cancels it; a call that already runs finishes and its result is dropped.
    """

    __slots__ = ("_offload_module", "_offload_owned", "_offload_closed")

    def __init__(self, raw, *, module, lane, owned):
        super().__init__(raw, pool=lane)
        setattribute(self, "_offload_module", module)
        setattribute(self, "_offload_owned", owned)
        setattribute(self, "_offload_closed", False)

    def _offload_call(self, fn, args=(), kwargs=None):
        if self._offload_closed and self._offload_owned:
            raise _closed_error(self._offload_module)
        args, kwargs = unwrap_args(args, kwargs or {})
        return self._offload_pool._call(fn, args, kwargs, None)

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        if _is_cursor(value):
            return Cursor(value, self)
        return value

    def cursor(self, *args: Any, **kwargs: Any) -> "Cursor":
        """A new :class:`Cursor`, made by the driver's ``cursor()`` in the lane."""
        return Cursor(self._offload_call(self._offload_obj.cursor, args, kwargs), self)

    def commit(self) -> None:
        """Commit the driver's transaction, in the connection's lane."""
        self._offload_call(self._offload_obj.commit)

    def rollback(self) -> None:
        """Roll the driver's transaction back, in the connection's lane."""
        self._offload_call(self._offload_obj.rollback)

    def close(self) -> None:
        """Close the connection in its lane, then stop the lane if it owns one.

        Closing twice is harmless.  Afterwards every call raises the driver's
        ``InterfaceError``.
        """
        if self._offload_closed:
            return
        try:
            self._offload_call(self._offload_obj.close)
        finally:
            setattribute(self, "_offload_closed", True)
            if self._offload_owned:
                self._offload_pool.shutdown(wait=False)

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, unwrap(value)))

    def __delattr__(self, name):
        self._offload_call(delattr, (self._offload_obj, name))

    def __del__(self):
        # A connection dropped without close(): close it where it lives (the
        # driver would otherwise be torn down from this thread) and stop the
        # lane, so a forgotten connection does not keep a thread alive.
        try:
            if not getattribute(self, "_offload_closed"):
                lane = getattribute(self, "_offload_pool")
                lane.submit(getattribute(self, "_offload_obj").close)
                if getattribute(self, "_offload_owned"):
                    lane.shutdown(wait=False)
        except Exception:  # half-built, interpreter shutdown, lane already stopped
            return

    def __repr__(self):
        state = "closed" if self._offload_closed else "open"
        return f"<offload.dbapi.Connection {state} {self._offload_obj!r}>"


class Cursor(ProxyBase):
    """A DB-API cursor whose every call runs on its connection's thread.

    ``execute``, ``executemany``, ``fetchone``, ``fetchmany``, ``fetchall``,
    ``callproc``, ``nextset``, ``close`` and any other method run in the lane;
    ``description``, ``rowcount`` and other attributes are read inline.
    Iterating fetches rows in batches (one round trip per
    ``max(arraysize, 100)`` rows, or psycopg2's ``itersize``).  ``with cursor:``
    closes it at the end, for every driver (sqlite3's cursors included).
    """

    __slots__ = ("_offload_conn", "_offload_closed")

    def __init__(self, raw, connection):
        super().__init__(raw, pool=connection._offload_pool)
        setattribute(self, "_offload_conn", connection)
        setattribute(self, "_offload_closed", False)

    def _offload_call(self, fn, args=(), kwargs=None):
        conn = self._offload_conn
        if conn._offload_closed and conn._offload_owned:
            raise _closed_error(conn._offload_module)
        args, kwargs = unwrap_args(args, kwargs or {})
        return self._offload_pool._call(fn, args, kwargs, None)

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        if value is unwrap(self._offload_conn):
            return self._offload_conn
        return value

    @property
    def connection(self) -> Connection:
        """The :class:`Connection` proxy this cursor belongs to."""
        return self._offload_conn

    def execute(self, operation, *args: Any, **kwargs: Any) -> Any:
        return self._offload_wrap(self._offload_call(self._offload_obj.execute, (operation,) + args, kwargs))

    def executemany(self, operation, seq_of_parameters, *args: Any, **kwargs: Any) -> Any:
        return self._offload_wrap(
            self._offload_call(self._offload_obj.executemany, (operation, seq_of_parameters) + args, kwargs)
        )

    def fetchone(self) -> Any:
        return self._offload_call(self._offload_obj.fetchone)

    def fetchmany(self, *args: Any, **kwargs: Any) -> list:
        return self._offload_call(self._offload_obj.fetchmany, args, kwargs)

    def fetchall(self) -> list:
        return self._offload_call(self._offload_obj.fetchall)

    def callproc(self, procname, *args: Any, **kwargs: Any) -> Any:
        return self._offload_call(self._offload_obj.callproc, (procname,) + args, kwargs)

    def close(self) -> None:
        setattribute(self, "_offload_closed", True)
        self._offload_call(self._offload_obj.close)

    def __iter__(self):
        raw = self._offload_obj
        size = getattr(raw, "itersize", None) or max(getattr(raw, "arraysize", 1), _ITER_BATCH)
        return _rows(self, raw.fetchmany, size)

    def __next__(self):
        row = self._offload_call(self._offload_obj.fetchone)
        if row is None:
            raise StopIteration
        return row

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, unwrap(value)))

    def __del__(self):
        # Close a forgotten cursor in its lane: some drivers (MySQLdb) read
        # the rest of a result when a cursor is torn down, which must not
        # happen from this thread while the lane uses the connection.
        try:
            conn = getattribute(self, "_offload_conn")
            if not getattribute(self, "_offload_closed") and not getattribute(conn, "_offload_closed"):
                getattribute(self, "_offload_pool").submit(getattribute(self, "_offload_obj").close)
        except Exception:  # half-built, interpreter shutdown, lane already stopped
            return

    def __repr__(self):
        return f"<offload.dbapi.Cursor {self._offload_obj!r}>"


def _rows(cursor, fetchmany, size):
    while True:
        rows = cursor._offload_call(fetchmany, (size,))
        if not rows:
            return
        yield from rows


def _is_cursor(value):
    return callable(getattr(value, "fetchone", None)) and callable(getattr(value, "execute", None))


def _closed_error(module):
    error = getattr(module, "InterfaceError", RuntimeError)
    return error("connection already closed")


class ConnectionPool:
    """A pool of :class:`Connection` proxies for a gevent application.

    ``ConnectionPool(psycopg2, dsn, minconn=1, maxconn=10)`` opens *minconn*
    connections at once with ``offload.dbapi.connect(module, *args,
    **kwargs)`` and up to *maxconn* as demand needs them; they stay open for
    reuse.  Each connection has its own thread, so *maxconn* is also the most
    threads the pool runs.

    ``with pool.connection() as conn:`` lends a connection to the block.  When
    all are in use the calling greenlet waits (only it) for one to come back.
    At the end of the block anything not committed is rolled back, as
    DB-API's ``close()`` would; a connection whose rollback fails -- the
    server went away, the backend was killed -- is discarded instead of
    reused.  After a broken one is found, idle connections opened before it
    are checked with ``SELECT 1`` when next lent, so one server restart does
    not fail one request per pooled connection.
    """

    def __init__(
        self, module: ModuleType | str, *args: Any, minconn: int = 1, maxconn: int = 10, **kwargs: Any
    ):
        for name, value in (("minconn", minconn), ("maxconn", maxconn)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if maxconn < 1:
            raise ValueError(f"maxconn must be at least 1, not {maxconn}")
        if not 0 <= minconn <= maxconn:
            raise ValueError(f"minconn must be between 0 and maxconn ({maxconn}), not {minconn}")
        if "pool" in kwargs:
            raise TypeError("ConnectionPool gives each connection its own thread; pool= is not accepted")
        self.module = _check_module(module)
        self.minconn = minconn
        self.maxconn = maxconn
        self._args = args
        self._kwargs = kwargs
        self._lock = native.allocate_lock()
        self._slots = CrossThreadSemaphore(maxconn)
        self._idle: deque[tuple[Connection, int]] = deque()  # (connection, generation it was opened in)
        self._generation = 0  # bumped whenever a broken connection is found
        self._size = 0
        self._opened = self._discarded = 0
        self._closed = False
        try:
            for _ in range(minconn):
                conn = self._open()
                self._idle.append((conn, self._generation))
        except BaseException:
            self.close()
            raise

    @contextmanager
    def connection(self, timeout: float | None = None):
        """Lend a :class:`Connection` to a ``with`` block.

        :param timeout: the most seconds to wait for a free connection;
            ``None`` waits as long as it takes.  Past it, :class:`TimeoutError`.
        """
        conn = self.getconn(timeout)
        try:
            yield conn
        except BaseException:
            self.putconn(conn)
            raise
        self.putconn(conn)

    def getconn(self, timeout: float | None = None) -> Connection:
        """Take a connection out of the pool; give it back with :meth:`putconn`."""
        if timeout is not None:
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
                raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
            if timeout < 0:
                raise ValueError(f"timeout must be >= 0, not {timeout}")
        self._check_open()
        if not self._slots.acquire(timeout):
            raise TimeoutError(f"no connection came free within {timeout} seconds (maxconn={self.maxconn})")
        try:
            self._check_open()
            return self._checkout()
        except BaseException:
            self._slots.release()
            raise

    def _checkout(self):
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, generation = self._idle.pop()
                suspect = generation < self._generation
            if not suspect:
                return conn
            try:
                alive = self._alive(conn)
            except BaseException:
                self._discard(conn)
                raise
            if alive:
                return conn
            self._discard(conn)
        return self._open()

    def putconn(self, conn: Connection, *, discard: bool = False) -> None:
        """Give back a connection from :meth:`getconn`, rolled back first.

        :param discard: close it instead of keeping it for reuse.
        """
        if not isinstance(conn, Connection):
            raise TypeError(f"conn must be a Connection from this pool, not {type(conn).__name__}")
        try:
            if not discard and not self._closed and self._reset(conn):
                with self._lock:
                    if not self._closed:
                        self._idle.append((conn, self._generation))
                        return
            self._discard(conn)
        finally:
            self._slots.release()

    def _reset(self, conn):
        """Roll back what the borrower left; False if the connection is broken."""
        if conn._offload_closed:
            return False
        try:
            conn.rollback()
        except Exception:
            with self._lock:
                self._generation += 1
            return False
        except BaseException:
            # Interrupted while waiting for the rollback: its state is unknown.
            self._discard(conn)
            raise
        return True

    def _alive(self, conn):
        try:
            cursor = conn.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
            finally:
                cursor.close()
            conn.rollback()
        except Exception:
            return False
        return True

    def _open(self):
        conn = connect(self.module, *self._args, **self._kwargs)
        with self._lock:
            self._size += 1
            self._opened += 1
        return conn

    def _discard(self, conn):
        with self._lock:
            self._size -= 1
            self._discarded += 1
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            return

    def _check_open(self):
        if self._closed:
            raise RuntimeError("connection pool is closed")

    def close(self) -> None:
        """Close the idle connections now and the lent ones when they come back."""
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
        for conn, _ in idle:
            self._discard(conn)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def stats(self) -> dict:
        """``size`` open connections, ``idle`` of them, and totals ``opened``/``discarded``."""
        with self._lock:
            return {
                "size": self._size,
                "idle": len(self._idle),
                "in_use": self._size - len(self._idle),
                "maxconn": self.maxconn,
                "opened": self._opened,
                "discarded": self._discarded,
            }

    def __repr__(self):
        s = self.stats()
        state = " closed" if self._closed else ""
        name = self.module.__name__
        return f"<offload.dbapi.ConnectionPool {name} {s['in_use']}/{s['size']} in use{state}>"
