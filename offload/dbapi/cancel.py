"""How a running statement is stopped when its caller goes away, per driver.

When the greenlet waiting on a call is killed, or its ``gevent.Timeout`` or
``timeout=`` fires, while the statement runs in the lane, offload asks the
server to stop it, from a thread of its own (``cancel_pool()``), so that
the caller gets its exception at once:

- **psycopg2**: ``connection.cancel()`` (libpq's ``PQcancel``, documented
  thread-safe; it returns once the server has the request).
- **psycopg (3)**: ``Connection.cancel_safe()``.
- **PyMySQL, mysqlclient**: ``KILL QUERY <connection id>`` on a side
  connection opened with the connection's own arguments and 3-second
  connect, read and write timeouts, kept open for the next cancel (one per
  server and process) and closed at the interpreter's exit; a forked child
  leaves its parent's alone (:mod:`offload.dbapi.forked`).
- **sqlite3**: ``Connection.interrupt()``.

Any other driver is not cancelled: its statement runs to its end, as before.
A cancel is sent only while the abandoned call is still the one running on
the connection, and the lane does not start its next call until the cancel
has been delivered, so a cancel can never stop the next borrower's statement.
"""

import abc
import atexit
import os
from types import ModuleType
from typing import Any

from .._core import native
from .._core.lifecycle import ForkRegistry, LazyDefault
from ..threadpool import ThreadPool
from .forked import disarm
from .reset import kind_of

__all__ = ["Canceller", "canceller_for", "cancel_pool"]

#: Seconds a side connection may take to connect, and to answer the KILL.
SIDE_TIMEOUT = 3
_ER_QUERY_INTERRUPTED = 1317  # MySQL/MariaDB: "Query execution was interrupted"

# Cancels wait for the server (a connection for MySQL): never in the hub.
_cancel_pool = LazyDefault(lambda: ThreadPool(4, name="offload.dbapi.cancel"))


def cancel_pool() -> ThreadPool:
    """The threads that send cancels, made on first use."""
    return _cancel_pool.get()


class Canceller(abc.ABC):
    """Stops the statement running on one driver's connections."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    @abc.abstractmethod
    def cancel(self, raw: Any, dial: tuple) -> None:
        """Ask the server to stop what *raw* runs; *dial* is ``(args, kwargs)`` of its connect()."""

    def took_effect(self, error: BaseException | None) -> bool:
        """Whether a statement that ended with *error* (None: no error) was stopped by the cancel."""
        return False

    def close(self) -> None:
        """Let go of what it holds open (at the interpreter's exit)."""
        return None  # most drivers cancel through the connection itself: nothing held

    def _after_fork(self) -> None:
        """In a forked child: stop using what the parent holds open."""
        return None


class _Psycopg2(Canceller):
    def cancel(self, raw, dial):
        raw.cancel()

    def took_effect(self, error):
        return isinstance(error, self.module.extensions.QueryCanceledError)


class _Psycopg(Canceller):
    def cancel(self, raw, dial):
        raw.cancel_safe(timeout=SIDE_TIMEOUT)

    def took_effect(self, error):
        return isinstance(error, self.module.errors.QueryCanceled)


class _MySQL(Canceller):
    # One side connection per server and process, kept for the next KILL:
    # opening one per cancel (an authentication each) made ten cancels take
    # 0.75-3 s on a loaded machine.
    def __init__(self, module):
        super().__init__(module)
        self._lock = native.allocate_lock()  # the cancel threads share the side connections
        self._side: dict = {}

    def cancel(self, raw, dial):
        key = repr(dial)  # one per server and credentials (a forked child starts with none: _after_fork)
        statement = f"KILL QUERY {int(raw.thread_id())}"
        with self._lock:
            side = self._side.pop(key, None)
            if side is not None:
                try:
                    _execute(side, statement)
                except Exception:  # gone since the last cancel: open another
                    _close_quietly(side)
                else:
                    self._side[key] = side
                    return
            side = self._open(dial)
            try:
                _execute(side, statement)
            except BaseException:
                _close_quietly(side)
                raise
            self._side[key] = side

    def close(self):
        # Without it a side connection is dropped when the process ends: the
        # server counts an aborted client and logs "Aborted connection", and
        # PyMySQL's finalizer, run late in the interpreter's shutdown, can
        # print "Exception ignored in Connection._force_close".
        if not self._lock.acquire(timeout=SIDE_TIMEOUT):
            return  # a cancel thread is still waiting on the server: leave it be
        try:
            sides = list(self._side.values())
            self._side.clear()
        finally:
            self._lock.release()
        for side in sides:
            _close_quietly(side)

    def _after_fork(self):
        self._lock = native.allocate_lock()  # a cancel thread, gone in the child, may have held it
        for side in self._side.values():
            disarm(side)  # the parent's: its goodbye must not reach the server
        self._side.clear()

    def _open(self, dial):
        args, kwargs = dial
        bounded = dict(connect_timeout=SIDE_TIMEOUT, read_timeout=SIDE_TIMEOUT, write_timeout=SIDE_TIMEOUT)
        return self.module.connect(*args, **dict(kwargs, **bounded))

    def took_effect(self, error):
        # SLEEP() killed returns 1 instead of failing: an end after the KILL counts.
        return error is None or getattr(error, "args", (None,))[:1] == (_ER_QUERY_INTERRUPTED,)


class _SQLite(Canceller):
    def cancel(self, raw, dial):
        raw.interrupt()

    def took_effect(self, error):
        return isinstance(error, self.module.OperationalError) and "interrupt" in str(error)


def _execute(connection, statement):
    cursor = connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _close_quietly(connection):
    try:
        connection.close()
    except Exception:  # already broken: nothing to close
        return


_BY_DRIVER: dict[str, type[Canceller]] = {
    "psycopg2": _Psycopg2,
    "psycopg": _Psycopg,
    "pymysql": _MySQL,
    "MySQLdb": _MySQL,
    "sqlite3": _SQLite,
}


_made: dict = {}  # module -> its Canceller: one per driver, shared by its connections
_made_lock = native.allocate_lock()
_forks: "ForkRegistry[Canceller]" = ForkRegistry()


def canceller_for(module: ModuleType) -> Canceller | None:
    """How to cancel *module*'s statements, or None for a driver offload does not know."""
    cls = _BY_DRIVER.get(kind_of(module))
    if cls is None:
        return None
    with _made_lock:
        made = _made.get(module)
        if made is None:
            made = _made[module] = cls(module)
            _forks.add(made)
        return made


@atexit.register
def _close_all() -> None:
    for canceller in list(_made.values()):
        canceller.close()


def _after_fork_in_child() -> None:
    global _made_lock
    _made_lock = native.allocate_lock()  # a thread of the parent's may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)
