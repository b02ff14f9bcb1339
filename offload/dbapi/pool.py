"""ConnectionPool: connections lent to greenlets, each on a thread of its own."""

from collections import deque
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from .._core import native
from .._core.checks import check_bool, check_count, check_timeout
from .._core.lifecycle import ForkRegistry
from .._core.waiters import CrossThreadSemaphore
from .connection import Connection, call, open_connection
from .hub import in_hub
from .lane import Stats, check_module
from .reset import baseline, kind_of, restore

__all__ = ["ConnectionPool"]

_pools: "ForkRegistry[ConnectionPool]" = ForkRegistry()


class ConnectionPool:
    """A pool of :class:`Connection` proxies for a gevent application.

    ``ConnectionPool(psycopg2, dsn, minconn=1, maxconn=10)`` opens *minconn*
    connections at once with ``offload.dbapi.connect(module, *args,
    **kwargs)`` and up to *maxconn* as demand needs them; they stay open for
    reuse.  Each connection has its own thread, so *maxconn* is also the most
    threads the pool runs.

    ``with pool.connection() as conn:`` lends a connection to the block.  When
    all are in use the calling greenlet waits (only it) for one to come back.
    At the end of the block anything not committed is rolled back, and the
    session is reset to what it was when the pool opened it (autocommit,
    isolation level, ``SET`` variables, temporary tables...; exactly what,
    per driver, is in :mod:`offload.dbapi.reset`), so no borrower inherits
    another's state.  A connection whose reset fails -- the server went away,
    the backend was killed -- is discarded instead of reused.  After a broken
    one is found, idle connections opened before it are checked with
    ``SELECT 1`` when next lent, so one server restart does not fail one
    request per pooled connection.

    :param cancel_on_abandon: ask the server to stop a statement whose
        caller went away (see :doc:`cancellation`); ``False`` lets it run.
    :param reset: ``"session"`` (the default) resets as above;
        ``"rollback"`` only rolls back; a function ``reset(raw)`` is called
        with the driver's connection, in its thread, after the rollback.

    After ``os.fork()`` the child's pool starts empty: the connections the
    parent opened are dropped there without being closed (closing would end
    the parent's sessions, see ``offload.dbapi.lane.Session._after_fork``), and the child opens its own.
    """

    def __init__(
        self,
        module: ModuleType | str,
        *args: Any,
        minconn: int = 1,
        maxconn: int = 10,
        reset: Any = "session",
        cancel_on_abandon: bool = True,
        **kwargs: Any,
    ):
        check_count("maxconn", maxconn, 1)
        check_count("minconn", minconn, 0, maxconn)
        if "pool" in kwargs:
            raise TypeError("ConnectionPool gives each connection its own thread; pool= is not accepted")
        if reset not in ("session", "rollback") and not callable(reset):
            raise ValueError(f'reset must be "session", "rollback" or a function, not {reset!r}')
        self.module = check_module(module)
        self.minconn = minconn
        self.maxconn = maxconn
        self._args = args
        self._kwargs = kwargs
        self._kind = kind_of(self.module)
        self._how = reset
        self._cancel = check_bool("cancel_on_abandon", cancel_on_abandon)
        self._counters = Stats()
        self._closed = False
        self._start()
        _pools.add(self)
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

        A block left by an exception gives the connection back reset, as
        always.  A block left because its greenlet was killed or timed out
        returns at once: the statement still running is cancelled (see
        :doc:`cancellation`), and the connection is reset in its lane after
        it ends, before anyone else can borrow it.
        """
        conn = self.getconn(timeout)
        try:
            yield conn
        except Exception:
            self.putconn(conn)
            raise
        except BaseException:
            self._give_back(conn, wait=False)
            raise
        self.putconn(conn)

    def _start(self):
        """The pool's state, empty: on creation, and in a forked child."""
        self._lock = native.allocate_lock()
        self._slots = CrossThreadSemaphore(self.maxconn)
        self._idle: deque[tuple[Connection, int]] = deque()  # (connection, generation it was opened in)
        self._generation = 0  # bumped whenever a broken connection is found
        self._size = 0
        self._opened = self._discarded = 0

    def _after_fork(self):
        # The parent's connections, idle or lent, are the parent's: each
        # session has made itself harmless here; the child opens its own.
        self._start()

    def getconn(self, timeout: float | None = None) -> Connection:
        """Take a connection out of the pool; give it back with :meth:`putconn`."""
        timeout = check_timeout(timeout)
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
        """Give back a connection from :meth:`getconn`, rolled back and reset first.

        :param discard: close it instead of keeping it for reuse.

        From the hub, or while a call whose caller went away still runs on
        the connection, it returns at once and the reset runs in the
        connection's lane; the connection is lent again only after it.
        """
        if not isinstance(conn, Connection):
            raise TypeError(f"conn must be a Connection from this pool, not {type(conn).__name__}")
        self._give_back(conn, discard, wait=not (in_hub() or conn._offload_session.busy()))

    def _give_back(self, conn, discard=False, wait=True):
        session = conn._offload_session
        if session.forked:
            return  # lent before a fork: the parent's, never counted by this process's pool
        if discard or self._closed or session.closed:
            self._settle(conn, False, wait)
        elif wait:
            try:
                ok = call(conn, self._restore, session)
            except BaseException:
                # Interrupted while waiting for the reset: its outcome is unknown.
                self._settle(conn, False, wait=False)
                raise
            self._settle(conn, ok)
        else:
            if in_hub():
                self._counters.add("hub_deferred")
            try:
                future = session.submit(self._restore, session.raw, session)
            except RuntimeError:  # the lane was shut down meanwhile
                self._settle(conn, False, wait=False)
                return
            future.add_done_callback(
                lambda f: self._settle(conn, f.exception() is None and f.result(), False)
            )

    def _restore(self, raw, session):
        """In the lane: reset what the borrower left; False if the connection is broken."""
        try:
            restore(raw, self._kind, session.settings or {}, self._how)
            if session.dirty:  # a cancel was sent: make sure it is spent and the session answers
                session.dirty = False
                _ping(raw)
        except Exception:
            with self._lock:
                self._generation += 1
            return False
        return True

    def _settle(self, conn, ok, wait=True):
        """Put *conn* back among the idle if *ok*, else discard it; free its slot (any thread)."""
        try:
            if ok:
                with self._lock:
                    if not self._closed:
                        self._idle.append((conn, self._generation))
                        return
            self._discard(conn, wait)
        finally:
            self._slots.release()

    def _alive(self, conn):
        try:
            call(conn, _ping)
        except Exception:
            return False
        return True

    def _open(self):
        conn = open_connection(self.module, self._args, self._kwargs, None, self._cancel, self._counters)
        try:
            conn._offload_session.settings = call(conn, baseline, self._kind)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._size += 1
            self._opened += 1
        return conn

    def _discard(self, conn, wait=True):
        """Close *conn* and forget it; without *wait*, the close is queued in its lane."""
        session = conn._offload_session
        if session.forked:
            return  # see _give_back
        with self._lock:
            self._size -= 1
            self._discarded += 1
        if not wait and not session.closed:
            session.closed = True
            session.submit(session.raw.close)
            if session.owned:
                session.lane.shutdown(wait=False)
            return
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
        """``size`` open connections, ``idle`` of them, totals ``opened``/``discarded``,
        and what :func:`offload.dbapi.stats` counts, for all the pool's connections:
        ``abandoned``, ``cancels_sent``, ``cancels_effective``, ``cancel_seconds``,
        ``hub_blocking``, ``hub_deferred``."""
        with self._lock:
            sizes = {
                "size": self._size,
                "idle": len(self._idle),
                "in_use": self._size - len(self._idle),
                "maxconn": self.maxconn,
                "opened": self._opened,
                "discarded": self._discarded,
            }
        return dict(sizes, **self._counters.snapshot())

    def __repr__(self):
        s = self.stats()
        state = " closed" if self._closed else ""
        name = self.module.__name__
        return f"<offload.dbapi.ConnectionPool {name} {s['in_use']}/{s['size']} in use{state}>"


def _ping(raw):
    """In the lane: raise unless the connection answers ``SELECT 1``."""
    cursor = raw.cursor()
    try:
        cursor.execute("SELECT 1")
        cursor.fetchall()
    finally:
        cursor.close()
    raw.rollback()
