"""What every ``offload_*`` dialect adds to SQLAlchemy's stock dialect for its driver.

:class:`OffloadDialect` is a mixin placed before the stock dialect class
(``class OffloadPsycopg2Dialect(OffloadDialect, PGDialect_psycopg2)``).  It
changes where the DB-API calls run, never what they are:

- ``connect()`` opens the driver's connection with
  :func:`offload.dbapi.connect`, so the pool holds
  :class:`offload.dbapi.Connection` proxies and every cursor, execute,
  fetch, commit and rollback runs in that connection's one-thread lane while
  only the calling greenlet waits.
- The dialect's own on-connect set-up (``register_uuid``, ``register_hstore``,
  ``create_function``, ``SET NAMES`` ...) runs in the lane on the *real*
  connection: C functions such as psycopg2's ``register_*`` refuse a proxy
  (``TypeError: argument 2 must be a connection, cursor or None``).
- ``do_ping`` and ``do_executemany`` run whole in the lane: one hop instead
  of one per statement (psycopg2's ``execute_batch`` mogrifies each row).
- A rollback, commit or close asked for where waiting is wrong -- in the hub
  itself (a garbage-collection finalizer, gevent #1937), in an offload
  worker thread, or while a kill or timeout unwinds the caller -- is queued
  on the lane instead of awaited.  The lane runs its calls in order, so the
  rollback still happens before the next borrower's first statement.
- Its default pool is :class:`~offload.sqlalchemy.CooperativeQueuePool`.
"""

import sys
from typing import Any

from gevent.hub import Hub
from greenlet import getcurrent
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from .. import dbapi
from ..threadpool import in_worker_thread
from .pool import CooperativeQueuePool

__all__ = ["OffloadDialect", "must_not_wait"]


def must_not_wait() -> bool:
    """Whether the caller must not wait for a connection's lane.

    True in a gevent hub (a finalizer or callback: parking would raise
    ``BlockingSwitchOutError``, blocking would freeze every greenlet), in an
    offload worker thread (it may be the lane itself), and while a
    BaseException -- ``GreenletExit``, ``gevent.Timeout``, a Celery time
    limit -- is being handled: a cancelled caller should end now, not after
    the query its lane is still running.
    """
    if isinstance(getcurrent(), Hub) or in_worker_thread():
        return True
    exc = sys.exc_info()[1]
    return exc is not None and not isinstance(exc, Exception)


def lane_proxy(conn: Any) -> Any:
    """The :class:`offload.dbapi.Connection` behind a pool's connection fairy, or *conn*."""
    if isinstance(conn, dbapi.Connection):
        return conn
    inner = getattr(conn, "dbapi_connection", None)
    return inner if isinstance(inner, dbapi.Connection) else conn


def in_lane(target: Any, fn: Any, *args: Any) -> Any:
    """``fn(raw, *args)`` in *target*'s lane if it is an offload proxy, else ``fn(target, *args)`` here."""
    target = lane_proxy(target)
    if isinstance(target, (dbapi.Connection, dbapi.Cursor)):
        return dbapi.call(target, fn, *args)
    return fn(target, *args)


def _lane_hook(hook: Any) -> Any:
    """Wrap an on-connect function so that it gets the real connection, in its lane."""
    if hook is None or getattr(hook, "_offload_in_lane", False):
        return hook

    def on_connect(conn: Any) -> None:
        in_lane(conn, hook)

    on_connect._offload_in_lane = True  # type: ignore[attr-defined]
    return on_connect


def _close(raw: Any) -> None:
    raw.close()


class OffloadDialect:
    """Mixin: the stock dialect with its DB-API calls run through :mod:`offload.dbapi`."""

    # The stock dialect's attributes and methods come from the class after
    # this one in the MRO; these annotations only tell mypy they exist.
    loaded_dbapi: Any

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Open the driver's connection in a new lane; return its :class:`offload.dbapi.Connection`."""
        return dbapi.connect(self.loaded_dbapi, *cargs, **cparams)

    def on_connect_url(self, url: Any) -> Any:
        """The stock dialect's on-connect set-up, run in the lane on the real connection."""
        return _lane_hook(super().on_connect_url(url))  # type: ignore[misc]

    def on_connect(self) -> Any:
        return _lane_hook(super().on_connect())  # type: ignore[misc]

    @classmethod
    def get_pool_class(cls, url: Any) -> Any:
        """:class:`CooperativeQueuePool` wherever the stock dialect would use a QueuePool."""
        stock = super().get_pool_class(url)  # type: ignore[misc]
        if issubclass(stock, QueuePool) and not issubclass(stock, AsyncAdaptedQueuePool):
            return CooperativeQueuePool
        return stock

    def do_ping(self, dbapi_connection: Any) -> Any:
        return in_lane(dbapi_connection, super().do_ping)  # type: ignore[misc]

    def do_executemany(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        stock = super().do_executemany  # type: ignore[misc]
        in_lane(cursor, lambda raw: stock(raw, statement, parameters, context))

    def do_rollback(self, dbapi_connection: Any) -> None:
        self._run_or_queue(dbapi_connection, super().do_rollback)  # type: ignore[misc]

    def do_commit(self, dbapi_connection: Any) -> None:
        self._run_or_queue(dbapi_connection, super().do_commit)  # type: ignore[misc]

    def do_close(self, dbapi_connection: Any) -> None:
        self._run_or_queue(dbapi_connection, _close)

    def _run_or_queue(self, conn: Any, fn: Any) -> None:
        """``fn(conn)`` here, or queued on the lane with the real connection where waiting is wrong."""
        proxy = lane_proxy(conn)
        if isinstance(proxy, dbapi.Connection) and must_not_wait():
            dbapi.submit(proxy, fn)
            return
        fn(proxy)  # never the fairy: a fairy's close() would check it back in
