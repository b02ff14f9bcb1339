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
a server restart broke.  The few calls a driver answers from memory --
``cursor()``, closing a client-side cursor, a rollback with no transaction
open -- run in the caller's thread instead, but only when nothing of the
connection is queued or running in its lane, so they never overlap nor
overtake its other calls (:mod:`~offload.dbapi.quiet`; never for sqlite3).

Errors are the driver's own exceptions, raised in the caller with the
driver's traceback.

The package: ``lane`` (the path every call takes), ``connection``,
``cursor``, ``pool``, :mod:`~offload.dbapi.reset` (what a pool resets),
:mod:`~offload.dbapi.cancel` (how a statement is stopped),
:mod:`~offload.dbapi.hub` (calls made from the hub) and
:mod:`~offload.dbapi.quiet` (the calls that need no hop).
"""

from .connection import Connection, call, connect, stats, submit
from .cursor import Cursor
from .pool import ConnectionPool

__all__ = ["connect", "call", "submit", "stats", "Connection", "Cursor", "ConnectionPool"]
