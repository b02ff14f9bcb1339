"""The cursor proxy: a DB-API cursor whose calls run on its connection's lane.

Rows are never lost to a caller that gave up.  A fetch puts the rows the
driver returned into the proxy's own buffer, in the lane, and the caller
takes them from there: if the caller was killed or timed out meanwhile, the
rows stay for the next fetch instead of vanishing with the dropped result.
Every call that starts a new result (``execute``, ``executemany``,
``callproc``, ``nextset``, ``scroll``) empties the buffer in the lane, after
any fetch queued before it.
"""

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from ..proxy import getattribute, setattribute, unwrap
from .lane import SessionProxy
from .reset import kind_of

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Cursor", "is_cursor"]

_ITER_BATCH = 100  # rows per round trip when iterating a cursor


def is_cursor(value: Any) -> bool:
    """Whether *value* looks like a DB-API cursor (a result to wrap as a :class:`Cursor`)."""
    return callable(getattr(value, "fetchone", None)) and callable(getattr(value, "execute", None))


class Cursor(SessionProxy):
    """A DB-API cursor whose every call runs on its connection's thread.

    ``execute``, ``executemany``, ``fetchone``, ``fetchmany``, ``fetchall``,
    ``callproc``, ``nextset``, ``close`` and any other method run in the lane;
    ``description``, ``rowcount`` and other attributes are read inline.
    Iterating fetches rows in batches (one round trip per
    ``max(arraysize, 100)`` rows, or psycopg2's ``itersize``).  ``with cursor:``
    closes it at the end, for every driver (sqlite3's cursors included).

    A fetch interrupted by a kill or a :class:`gevent.Timeout` keeps the rows
    the driver returned for the next fetch, so a retry gets them; the
    driver's ``rownumber`` then counts them as fetched.  Optional DB-API
    extensions (``callproc``, ``nextset``, ``scroll``, ``lastrowid`` ...) are
    there exactly when the driver's cursor has them.
    """

    __slots__ = ("_offload_conn", "_offload_closed", "_offload_rows", "_offload_buffered", "_offload_batch")

    def __init__(self, raw: Any, connection: "Connection") -> None:
        session = getattribute(connection, "_offload_session")
        super().__init__(raw, session)
        setattribute(self, "_offload_conn", connection)
        setattribute(self, "_offload_closed", False)
        # Rows fetched in the lane and not yet handed to a caller; the lane
        # appends, callers take from the left (both atomic on a deque).
        setattribute(self, "_offload_rows", _Rows())
        kind = kind_of(session.module)
        # The driver holds the whole result after execute: bring it back in the same hop.
        setattribute(self, "_offload_buffered", raw if _buffers_on_execute(raw, kind) else None)
        # A server-side cursor: fetchone reads a batch (itersize rows) per hop.
        named = kind == "psycopg2" and getattr(raw, "name", None) is not None
        setattribute(self, "_offload_batch", named)

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        if value is unwrap(self._offload_conn):
            return self._offload_conn
        return value

    def _offload_method(self, attr, name):
        if name == "scroll":
            attr = partial(_rewound, self._offload_rows, self._offload_obj, attr)
        elif name in _NEW_RESULT:
            attr = partial(_fresh, self._offload_rows, attr)
        return super()._offload_method(attr, name)

    @property
    def connection(self) -> "Connection":
        """The :class:`~offload.dbapi.Connection` proxy this cursor belongs to."""
        if not hasattr(self._offload_obj, "connection"):  # an optional DB-API extension
            raise AttributeError(f"{type(self._offload_obj).__name__} has no attribute 'connection'")
        return self._offload_conn

    @property
    def rownumber(self) -> int | None:
        """The driver's ``rownumber``, less the rows this proxy holds and has not handed out."""
        number = self._offload_obj.rownumber  # AttributeError where the driver has none
        return number - len(self._offload_rows) if number is not None else None

    def execute(self, operation, *args: Any, **kwargs: Any) -> Any:
        """Run the driver's ``execute`` in the lane; what it returns, the cursor as this proxy.

        Where the driver holds the whole result once ``execute`` returns
        (psycopg2's and psycopg's client-side cursors, PyMySQL's buffered
        ones, mysqlclient's store-result ones), the rows come back in the
        same hop and the fetches that follow take them without one.
        """
        fn = self._offload_obj.execute
        args = (self._offload_rows, self._offload_buffered, fn, operation) + args
        return self._offload_wrap(self._offload_call(_execute, args, kwargs))

    def executemany(self, operation, seq_of_parameters, *args: Any, **kwargs: Any) -> Any:
        """Run the driver's ``executemany`` in the lane."""
        fn = self._offload_obj.executemany
        args = (self._offload_rows, fn, operation, seq_of_parameters) + args
        return self._offload_wrap(self._offload_call(_fresh, args, kwargs))

    def fetchone(self) -> Any:
        """The next row, or None."""
        rows = self._offload_rows
        if rows:
            return rows.popleft()
        if rows.complete:
            return rows.end(None)
        if self._offload_batch:
            self._fill(self._offload_obj.fetchmany, (self._offload_obj.itersize,))
        else:
            self._hop(_one_into, (rows, self._offload_obj.fetchone))
        return rows.popleft() if rows else None

    def _hop(self, fetch_into, args):
        """Run a fetch in the lane; raise instead what a fetch nobody waited for left."""
        rows = self._offload_rows
        self._raise_left(rows)
        try:
            result = self._offload_call(fetch_into, args)
        except BaseException as exc:
            if exc is rows.error:  # this caller got it: nobody else should
                rows.error = None
            raise
        self._raise_left(rows)  # an abandoned fetch queued before this one failed meanwhile
        return result

    def _raise_left(self, rows):
        error = rows.error
        if error is not None:
            rows.error = None
            raise self._offload_session.error(
                "InterfaceError",
                f"an earlier fetch on this cursor failed after its caller went away ({error!r}); "
                "the rows from there on cannot be fetched: execute the query again",
            ) from error

    def fetchmany(self, size: int | None = None) -> Any:
        """The next rows, ``arraysize`` of them unless *size* is given."""
        rows = self._offload_rows
        if size is None:
            size = self._offload_obj.arraysize
        if rows.complete:
            if not rows:
                rows.end(None)
        elif len(rows) < size or size <= 0:
            self._fill(self._offload_obj.fetchmany, (size - len(rows),) if size > 0 else (size,))
        return rows.kind(rows.popleft() for _ in range(min(size, len(rows))))

    def fetchall(self) -> Any:
        """All the remaining rows."""
        rows = self._offload_rows
        if rows.complete:
            if not rows:
                rows.end(None)
        else:
            self._fill(self._offload_obj.fetchall, ())
        return rows.kind(rows.popleft() for _ in range(len(rows)))

    def _fill(self, fetch, args):
        self._hop(_many_into, (self._offload_rows, fetch, args))

    def close(self) -> None:
        """Close the cursor: in the lane, or here where the driver's close does no I/O.

        Here when nothing of the connection is queued or running in the lane
        and the driver's close only marks the cursor (psycopg2's unnamed and
        psycopg's client-side cursors, PyMySQL's buffered ones with no
        further result set; see :mod:`offload.dbapi.quiet`).  From the hub it
        is queued, as ever.
        """
        setattribute(self, "_offload_closed", True)
        self._offload_rows.clear()
        session = self._offload_session
        raw = self._offload_obj
        if session.here(deferrable=True) and session.quiet.close(raw):
            raw.close()
            return
        session.call(raw.close, deferrable=True)  # from the hub: queued

    def __iter__(self):
        raw = self._offload_obj
        size = getattr(raw, "itersize", None) or max(getattr(raw, "arraysize", 1), _ITER_BATCH)
        return _rows(self, size)

    def __next__(self):
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __del__(self):
        # Close a forgotten cursor in its lane: some drivers (MySQLdb) read
        # the rest of a result when a cursor is torn down, which must not
        # happen from this thread while the lane uses the connection.  Where
        # the close does no I/O and the lane has nothing of the connection,
        # close it here: queued, it would make the connection's next call
        # (an ORM's next cursor()) hop behind it.
        try:
            session = getattribute(self, "_offload_session")
            if not getattribute(self, "_offload_closed") and not session.closed:
                raw = getattribute(self, "_offload_obj")
                if not session.forked and session.here() and session.quiet.close(raw):
                    raw.close()
                else:
                    session.submit(raw.close)
        except Exception:  # half-built, interpreter shutdown, lane already stopped
            return

    def __repr__(self):
        return f"<offload.dbapi.Cursor {self._offload_obj!r}>"


def _rows(cursor, size):
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield from rows


#: Cursor methods after which the rows held are no longer the current result's.
_NEW_RESULT = frozenset(("callproc", "nextset"))

# What runs in the lane: the rows go into the proxy's buffer there, so a
# caller that gave up leaves them for the next fetch.


class _Rows(deque):
    """Rows fetched and not yet taken, and what is known about the rest."""

    error: BaseException | None = None  # of a fetch nobody waited for (see Cursor._hop)
    complete = False  # all the result's rows are here: fetches need no hop
    pending: BaseException | None = None  # raised by the driver's fetch in the execute hop
    kind: type = list  # what the driver returns rows in (PyMySQL: tuple)

    def start(self):
        """A new result: forget the old one's rows (in the lane)."""
        self.clear()
        self.error = self.pending = None
        self.complete = False

    def end(self, value):
        """Past the last row of a complete result: *value*, or the fetch's own error."""
        error = self.pending
        if error is not None:
            self.pending = None
            raise error
        return value


def _buffers_on_execute(raw, kind):
    """Whether the driver's cursor *raw* holds its whole result once execute returns."""
    if kind in ("psycopg2", "psycopg"):
        return getattr(raw, "name", None) is None  # not a server-side (named) cursor
    if kind == "pymysql":
        import pymysql.cursors

        return not isinstance(raw, pymysql.cursors.SSCursor)  # the unbuffered kind
    if kind == "MySQLdb":
        import MySQLdb.cursors

        return isinstance(raw, MySQLdb.cursors.CursorStoreResultMixIn)  # mysql_store_result: all in memory
    return False  # sqlite3 computes rows as they are stepped: reading ahead would do work early


def _fresh(rows, fn, *args, **kwargs):
    rows.start()
    return fn(*args, **kwargs)


def _execute(rows, buffered, fn, *args, **kwargs):
    rows.start()
    result = fn(*args, **kwargs)
    if buffered is not None and buffered.description is not None:
        try:
            got = buffered.fetchall()  # in memory already: no round trip to the server
        except Exception as exc:  # raised where the caller's fetch would have raised it
            rows.pending = exc
        else:
            rows.extend(got)
            if type(got) in (list, tuple):
                rows.kind = type(got)
        rows.complete = True
    return result


def _rewound(rows, raw, fn, *args, **kwargs):
    held = len(rows)
    rows.start()
    if held:  # the driver is ahead of the caller by the rows held: go back first
        raw.scroll(-held, "relative")
    return fn(*args, **kwargs)


def _failed(rows, exc):
    rows.error = exc  # for the caller, if still there; else for the next fetch (see Cursor._hop)
    return exc


def _one_into(rows, fetchone):
    try:
        row = fetchone()
    except BaseException as exc:
        raise _failed(rows, exc)  # noqa: B904 -- the driver's own exception, re-raised as it is
    if row is not None:
        rows.append(row)


def _many_into(rows, fetch, args):
    try:
        result = fetch(*args)
    except BaseException as exc:
        raise _failed(rows, exc)  # noqa: B904 -- the driver's own exception, re-raised as it is
    rows.extend(result)
    if type(result) in (list, tuple):
        rows.kind = type(result)
