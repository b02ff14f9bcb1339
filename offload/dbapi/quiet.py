"""Which driver calls do no I/O, per driver: those a connection may make in the caller's thread.

A hop to the connection's lane costs a thread round trip.  Some calls the
driver answers from memory, without a word to the server; when nothing of
the connection is queued or running in its lane (``Session.here`` in
``offload/dbapi/lane.py``), such a call runs in the caller's thread instead
-- the driver's own method, so its checks, its errors and its effects are
exactly what they would have been in the lane.  What each
driver answers from memory, read in its source:

- **psycopg2**: ``cursor()`` (``psyco_conn_cursor``: checks, then the cursor
  class is instantiated; ``cursor_setup`` touches no socket); ``close()`` of
  an unnamed cursor (``curs_close``: only a named one sends ``CLOSE``);
  ``rollback()`` and ``commit()`` with no transaction open (``pq_abort`` /
  ``pq_commit`` return before any command unless the status is
  ``STATUS_BEGIN``; a two-phase transaction is never ``STATUS_READY``).
- **psycopg (3)**: ``cursor()`` (``_check_connection_ok`` reads libpq's
  status; the cursor classes' ``__init__`` only set fields); ``close()`` of a
  client-side cursor (``Cursor.close`` -> ``_close``; a ``ServerCursor``
  sends ``CLOSE``); ``rollback()`` and ``commit()`` outside a pipeline with
  the session ``IDLE`` (``_rollback_gen`` / ``_commit_gen`` raise or return
  before any command; ``wait`` runs the generator before it polls).
- **PyMySQL**: ``cursor()`` (``cursorclass(self)``: fields only); ``close()``
  of a buffered cursor whose result has no further result set
  (``Cursor.close`` -> ``nextset`` reads the next one only if
  ``_result.has_next``; ``SSCursor.close`` drains the rows, so it hops).
  ``rollback``/``commit`` always send a command.
- **mysqlclient** (``MySQLdb``): ``cursor()`` (``BaseCursor.__init__``:
  fields only).  ``close()`` asks the C library for more results: it hops.
- **sqlite3**, and drivers offload does not know: nothing.  sqlite3's objects
  refuse every thread but the one that made them (``check_same_thread``).

Another OS thread sharing the connection may queue a call while one of
these runs here; each is one the driver allows alongside a call in another
thread (psycopg2's and psycopg's connections take their own lock, so a
rollback racing a statement that opens a transaction waits for it and then
sends its ``ROLLBACK`` from here; the PyMySQL and mysqlclient calls touch
only the cursor being made or closed).

A cursor class is trusted to make its cursors without I/O only if its
``__init__`` and ``__new__`` are the driver's own (or :class:`object`'s):
a subclass that adds methods keeps the driver's construction, one with an
``__init__`` of its own hops.
"""

import importlib
from typing import Any

__all__ = ["Quiet", "quiet_for"]


def _home(fn: Any) -> str:
    """The top-level package that defines *fn* (a function, slot wrapper or builtin)."""
    module = getattr(fn, "__module__", None)
    if module is None:  # slot wrappers and C methods: the class that holds them
        owner = getattr(fn, "__objclass__", None) or getattr(fn, "__self__", None)
        module = getattr(owner, "__module__", None)
    return (module or "").split(".")[0]


def made_quietly(cls: Any, package: str) -> bool:
    """Whether instances of *cls* are made by the driver's own code (or :class:`object`'s) alone."""
    if type(cls) is not type:  # a factory function, or a metaclass whose __call__ may do anything
        return False
    return all(_home(getattr(cls, name)) in (package, "builtins") for name in ("__init__", "__new__"))


class Quiet:
    """The rules for a driver offload does not know (and sqlite3): every call hops."""

    def cursor(self, raw: Any, args: tuple, kwargs: dict) -> bool:
        """Whether ``raw.cursor(*args, **kwargs)`` does no I/O."""
        return False

    def close(self, cursor: Any) -> bool:
        """Whether ``cursor.close()`` does no I/O now."""
        return False

    def end(self, raw: Any) -> bool:
        """Whether ``raw.rollback()`` and ``raw.commit()`` do no I/O now (no transaction open)."""
        return False


class _Psycopg2(Quiet):
    def __init__(self) -> None:
        extensions = importlib.import_module("psycopg2.extensions")
        self._close = extensions.cursor.close
        self._ready = extensions.STATUS_READY

    def cursor(self, raw: Any, args: tuple, kwargs: dict) -> bool:
        # cursor(name=None, cursor_factory=None, withhold=False, scrollable=None)
        factory = kwargs.get("cursor_factory", args[1] if len(args) > 1 else None)
        if factory is None:
            factory = raw.cursor_factory
        return factory is None or made_quietly(factory, "psycopg2")

    def close(self, cursor: Any) -> bool:
        return cursor.name is None and type(cursor).close is self._close

    def end(self, raw: Any) -> bool:
        return raw.closed == 0 and raw.status == self._ready


class _Psycopg(Quiet):
    def __init__(self) -> None:
        psycopg = importlib.import_module("psycopg")
        self._close = psycopg.Cursor.close
        self._idle = psycopg.pq.TransactionStatus.IDLE

    def cursor(self, raw: Any, args: tuple, kwargs: dict) -> bool:
        # cursor(name="", *, binary=False, row_factory=None, scrollable=None, withhold=False)
        named = kwargs.get("name", args[0] if args else "")
        return made_quietly(raw.server_cursor_factory if named else raw.cursor_factory, "psycopg")

    def close(self, cursor: Any) -> bool:
        return type(cursor).close is self._close

    def end(self, raw: Any) -> bool:
        # A pipeline is synced (I/O) before the status is looked at; "unknown": a psycopg without it.
        return getattr(raw, "_pipeline", "unknown") is None and raw.pgconn.transaction_status == self._idle


class _PyMySQL(Quiet):
    def __init__(self) -> None:
        self._close = importlib.import_module("pymysql.cursors").Cursor.close

    def cursor(self, raw: Any, args: tuple, kwargs: dict) -> bool:
        # cursor(cursor=None)
        cls = kwargs.get("cursor", args[0] if args else None) or raw.cursorclass
        return made_quietly(cls, "pymysql")

    def close(self, cursor: Any) -> bool:
        if type(cursor).close is not self._close:  # SSCursor's reads the rest of its rows
            return False
        result = cursor._result
        return cursor.connection is None or result is None or not result.has_next


class _MySQLdb(Quiet):
    def cursor(self, raw: Any, args: tuple, kwargs: dict) -> bool:
        # cursor(cursorclass=None)
        cls = kwargs.get("cursorclass", args[0] if args else None) or raw.cursorclass
        return made_quietly(cls, "MySQLdb")


_RULES = {"psycopg2": _Psycopg2, "psycopg": _Psycopg, "pymysql": _PyMySQL, "MySQLdb": _MySQLdb}
_made: dict[str, Quiet] = {}


def quiet_for(kind: str) -> Quiet:
    """The rules for the driver family *kind* (see :func:`offload.dbapi.reset.kind_of`)."""
    rules = _made.get(kind)
    if rules is None:
        try:
            rules = _RULES.get(kind, Quiet)()
        except (ImportError, AttributeError):  # a driver version without what the rules read
            rules = Quiet()
        _made[kind] = rules
    return rules
