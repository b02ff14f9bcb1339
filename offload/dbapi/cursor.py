"""The cursor proxy: a DB-API cursor whose calls run on its connection's lane."""

from typing import TYPE_CHECKING, Any

from ..proxy import getattribute, setattribute, unwrap
from .lane import SessionProxy

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
    """

    __slots__ = ("_offload_conn", "_offload_closed")

    def __init__(self, raw: Any, connection: "Connection") -> None:
        super().__init__(raw, getattribute(connection, "_offload_session"))
        setattribute(self, "_offload_conn", connection)
        setattribute(self, "_offload_closed", False)

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        if value is unwrap(self._offload_conn):
            return self._offload_conn
        return value

    @property
    def connection(self) -> "Connection":
        """The :class:`~offload.dbapi.Connection` proxy this cursor belongs to."""
        return self._offload_conn

    def execute(self, operation, *args: Any, **kwargs: Any) -> Any:
        """Run the driver's ``execute`` in the lane; what it returns, the cursor as this proxy."""
        return self._offload_wrap(self._offload_call(self._offload_obj.execute, (operation,) + args, kwargs))

    def executemany(self, operation, seq_of_parameters, *args: Any, **kwargs: Any) -> Any:
        """Run the driver's ``executemany`` in the lane."""
        return self._offload_wrap(
            self._offload_call(self._offload_obj.executemany, (operation, seq_of_parameters) + args, kwargs)
        )

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._offload_call(self._offload_obj.fetchone)

    def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        """The next rows, ``arraysize`` of them unless a size is given."""
        return self._offload_call(self._offload_obj.fetchmany, args, kwargs)

    def fetchall(self) -> Any:
        """All the remaining rows."""
        return self._offload_call(self._offload_obj.fetchall)

    def close(self) -> None:
        """Close the cursor in the lane."""
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

    def __del__(self):
        # Close a forgotten cursor in its lane: some drivers (MySQLdb) read
        # the rest of a result when a cursor is torn down, which must not
        # happen from this thread while the lane uses the connection.
        try:
            session = getattribute(self, "_offload_session")
            if not getattribute(self, "_offload_closed") and not session.closed:
                session.lane.submit(getattribute(self, "_offload_obj").close)
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
