"""The connection proxy, and the functions that open one or hand its raw object over."""

from types import ModuleType
from typing import Any

from .._core.checks import check_bool, check_callable
from ..future import Future
from ..proxy import getattribute, unwrap, unwrap_args
from ..threadpool import ThreadPool
from .cursor import Cursor, is_cursor
from .lane import Session, SessionProxy, check_module, lane_for

__all__ = ["connect", "call", "submit", "stats", "Connection"]


def connect(
    module: ModuleType | str,
    *args: Any,
    pool: ThreadPool | None = None,
    cancel_on_abandon: bool = True,
    **kwargs: Any,
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
    :param cancel_on_abandon: when a caller goes away (killed, timed out)
        while its statement runs, ask the server to stop the statement (see
        :doc:`cancellation`).  ``False`` lets it run to its end.

    Errors from the driver (``psycopg2.OperationalError``, ...) propagate
    unchanged.
    """
    return open_connection(check_module(module), args, kwargs, pool, cancel_on_abandon, None)


def open_connection(module, args, kwargs, pool, cancel_on_abandon, counters) -> "Connection":
    """:func:`connect`, with the :class:`~offload.dbapi.lane.Stats` to count in (a pool's)."""
    check_bool("cancel_on_abandon", cancel_on_abandon)
    lane, owned = lane_for(pool, module)
    opening = lane.submit(module.connect, *args, **kwargs)
    try:
        raw = opening.result()
    except BaseException:
        # The caller went away (or connect failed): a connect still queued
        # never runs; one under way is closed when it lands; either way a
        # lane nobody will use stops.
        if opening.cancel():
            if owned:
                lane.shutdown(wait=False)
        else:
            opening.add_done_callback(lambda f: _abandon_open(f, lane, owned))
        raise
    dial = (args, kwargs)
    return Connection(
        raw, Session(raw, module, lane, owned, dial=dial, cancel_on_abandon=cancel_on_abandon, stats=counters)
    )


def _abandon_open(future, lane, owned):
    try:
        if not future.cancelled() and future.exception() is None:
            future.result().close()
    finally:
        if owned:
            lane.shutdown(wait=False)


def _target(target: Any) -> Session:
    if not isinstance(target, SessionProxy):
        raise TypeError(f"target must be an offload.dbapi Connection or Cursor, not {type(target).__name__}")
    return getattribute(target, "_offload_session")


def call(target: "Connection | Cursor", fn, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(raw, *args, **kwargs)`` on *target*'s thread; return its result.

    *target* is a :class:`Connection` or :class:`Cursor` proxy and ``raw`` the
    driver's own object behind it.  Use it to hand the raw object to code that
    needs it (``psycopg2.extras.register_hstore``, a batch of statements in
    one round trip) without ever touching it from another thread.
    """
    session = _target(target)
    check_callable(fn)
    return session.call(fn, (unwrap(target),) + args, kwargs)


def submit(target: "Connection | Cursor", fn, /, *args: Any, **kwargs: Any) -> Future:
    """Queue ``fn(raw, *args, **kwargs)`` on *target*'s thread; return a :class:`~offload.Future` at once.

    Like :func:`call`, but nobody waits: for code that must not block -- a
    garbage-collection finalizer running in the hub, a caller being
    cancelled -- yet needs the call made before any later one on the same
    connection (a lane runs its calls in order).
    """
    session = _target(target)
    check_callable(fn)
    session.check()
    return session.submit(fn, unwrap(target), *args, **kwargs)


def stats(target: "Connection | Cursor") -> dict:
    """What happened to *target*'s connection's calls whose callers went away, and hub calls.

    ``abandoned``, ``cancels_sent``, ``cancels_effective``, ``cancel_seconds``
    (the longest a cancelled statement took to end), ``hub_blocking``,
    ``hub_deferred``; for a pooled connection, the pool's totals (see
    :meth:`ConnectionPool.stats <offload.dbapi.ConnectionPool.stats>`).
    """
    return _target(target).stats.snapshot()


class Connection(SessionProxy):
    """A DB-API connection whose every call runs on its own thread.

    Made by :func:`connect`.  The DB-API methods -- :meth:`cursor`,
    :meth:`commit`, :meth:`rollback`, :meth:`close` -- and any other method of
    the driver's connection (``set_session``, ``execute`` for sqlite3, ...) run
    in the connection's lane while only the calling greenlet waits; methods
    that return a cursor return a :class:`Cursor`.  The calls the driver
    answers without I/O (``cursor()``; ``rollback()`` and ``commit()`` with no
    transaction open, for psycopg2 and psycopg) run in the caller's thread
    when nothing of the connection is queued or running in the lane (see
    :mod:`offload.dbapi.quiet`).  Attribute reads happen
    inline; attribute writes (``conn.autocommit = True``) run in the lane.
    ``with conn:`` means what the driver says (a transaction for psycopg2 and
    sqlite3; closing for PyMySQL), run in the lane.

    Calls made by many greenlets are queued and run one at a time, in order.
    A greenlet killed (or timed out) while its call waits in the queue
    cancels it; while its statement runs, the server is asked to stop it
    (psycopg2, psycopg, PyMySQL, mysqlclient, sqlite3; see
    :doc:`cancellation`), and other drivers' calls finish and their result
    is dropped.
    """

    __slots__ = ()

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        if is_cursor(value):
            return Cursor(value, self)
        return value

    def cursor(self, *args: Any, **kwargs: Any) -> Cursor:
        """A new :class:`Cursor`, made by the driver's ``cursor()``.

        In the caller's thread where the driver makes cursors without I/O
        and nothing of the connection is queued or running in the lane
        (psycopg2, psycopg, PyMySQL, mysqlclient; see
        :mod:`offload.dbapi.quiet`), else in the lane.
        """
        session = self._offload_session
        raw = self._offload_obj
        if session.here() and session.quiet.cursor(raw, args, kwargs):
            args, kwargs = unwrap_args(args, kwargs)
            return Cursor(raw.cursor(*args, **kwargs), self)
        return Cursor(session.call(raw.cursor, args, kwargs), self)

    def commit(self) -> None:
        """Commit, in the lane; with no transaction open (psycopg2, psycopg), the driver's commit here."""
        session = self._offload_session
        raw = self._offload_obj
        if session.here() and session.quiet.end(raw):
            raw.commit()  # the driver's own: its checks and errors, without I/O
            return
        session.call(raw.commit)

    def rollback(self) -> None:
        """Roll back, in the lane (from the hub: queued, see :mod:`offload.dbapi.hub`).

        With no transaction open (psycopg2, psycopg), the driver's rollback
        runs here instead: it sends nothing then.
        """
        session = self._offload_session
        raw = self._offload_obj
        if session.here(deferrable=True) and session.quiet.end(raw):
            raw.rollback()  # the driver's own: its checks and errors, without I/O
            return
        session.call(raw.rollback, deferrable=True)

    def close(self) -> None:
        """Close the connection in its lane, then stop the lane if it owns one.

        Closing twice is harmless.  Afterwards every call raises the driver's
        ``InterfaceError``.  In a process forked after the connection was
        opened it only marks it closed: closing would end the parent's session.
        """
        session = self._offload_session
        if session.closed:
            return
        if session.forked:  # the parent's session: never closed from here (see Session._after_fork)
            session.closed = True
            return
        try:
            session.call(self._offload_obj.close, deferrable=True)  # from the hub: queued
        finally:
            session.closed = True
            if session.owned:
                session.lane.shutdown(wait=False)

    def __del__(self):
        # A connection dropped without close(): close it where it lives (the
        # driver would otherwise be torn down from this thread) and stop the
        # lane, so a forgotten connection does not keep a thread alive.
        try:
            session = getattribute(self, "_offload_session")
            if not session.closed and not session.forked:
                session.submit(session.raw.close)
                if session.owned:
                    session.lane.shutdown(wait=False)
        except Exception:  # half-built, interpreter shutdown, lane already stopped
            return

    def __repr__(self):
        state = "closed" if self._offload_session.closed else "open"
        return f"<offload.dbapi.Connection {state} {self._offload_obj!r}>"
