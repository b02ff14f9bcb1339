"""Cursors, command cursors and change streams: one server batch per thread hop.

A worker runs the ``find`` or one ``getMore`` and decodes the batch; the
greenlet then takes documents from the cursor's buffer with no hop at all,
the way Motor does for asyncio.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from pymongo.change_stream import ChangeStream as _ChangeStream
from pymongo.command_cursor import CommandCursor as _CommandCursor
from pymongo.command_cursor import RawBatchCommandCursor as _RawBatchCommandCursor
from pymongo.cursor import Cursor as _Cursor
from pymongo.cursor import RawBatchCursor as _RawBatchCursor

from ..proxy import getitem
from . import _pymongo
from ._proxy import EnterInline, MongoProxy, Runner, register

__all__ = ["DEFAULT_BATCH_SIZE", "ChangeStream", "CommandCursor", "Cursor"]

#: The batch size a proxy gives a cursor that has none (server default).
#: A worker decodes a whole batch while holding the GIL, so a server-sized
#: batch (up to 16 MB) would freeze the hub for as long as it takes; a
#: thousand documents keep that to a few milliseconds for small documents
#: and cost one extra round trip per thousand.  Set ``batch_size`` on a
#: cursor to choose otherwise.
DEFAULT_BATCH_SIZE = 1000

# An empty change-stream getMore that returns faster than this means the
# server ignores maxAwaitTimeMS; polling then backs off instead of spinning.
_QUICK_EMPTY_POLL = 0.005
_MAX_POLL_BACKOFF = 0.1

_plain_next_cache: dict[type, bool] = {}


def _bound_batches(cursor: Any) -> None:
    if _pymongo.batch_size(cursor) != 0 or _is_raw(type(cursor)):
        return
    if isinstance(cursor, _Cursor) and _pymongo.cursor_started(cursor):
        return  # PyMongo refuses to change it now
    cursor.batch_size(DEFAULT_BATCH_SIZE)


def _is_raw(t: type) -> bool:
    # Raw-batch cursors hand out undecoded batches: nothing to bound, and
    # the caller sees the batching.
    return issubclass(t, (_RawBatchCursor, _RawBatchCommandCursor))


def _plain_next(t: type) -> bool:
    """True if ``next()`` of cursor type *t* only pops its buffer when it
    has documents; then the proxy pops it directly."""
    try:
        return _plain_next_cache[t]
    except KeyError:
        plain = _plain_next_cache[t] = getattr(t, "next", None) in (_Cursor.next, _CommandCursor.next)
        return plain


def _try_next(proxy: MongoProxy, buffered: Any) -> Any:
    """``try_next()`` inline from what is *buffered*, else one ``getMore`` in the pool."""
    obj = proxy._offload_obj
    if buffered:
        return obj.try_next()
    return proxy._offload_call(obj.try_next)


class _CursorBase(MongoProxy):
    __slots__ = ()

    @classmethod
    def _wrap_existing(cls, obj, runner: Runner):
        _bound_batches(obj)
        return super()._wrap_existing(obj, runner)

    def __iter__(self):
        return self

    def __next__(self):
        cursor = self._offload_obj
        data = _pymongo.buffered_documents(cursor)
        if data:
            if _plain_next(type(cursor)):
                return data.popleft()  # type: ignore[attr-defined]  # PyMongo's buffer is a deque
            return self._offload_wrap(cursor.next())
        return self._offload_wrap(self._offload_call(cursor.next))

    next = __next__

    def to_list(self, length: int | None = None) -> list:
        """The remaining documents (at most *length*), in one hop at most."""
        cursor = self._offload_obj
        data = _pymongo.buffered_documents(cursor)
        if data and (_pymongo.cursor_killed(cursor) or (length is not None and 0 < length <= len(data))):
            return self._offload_wrap(cursor.to_list(length))
        return self._offload_wrap(self._offload_call(cursor.to_list, (length,)))

    def close(self) -> None:
        """Close the cursor; in the pool only if a server cursor is open."""
        cursor = self._offload_obj
        if _pymongo.server_cursor_open(cursor):
            self._offload_call(cursor.close)
        else:
            cursor.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()


class Cursor(_CursorBase):
    """A proxy for :class:`pymongo.cursor.Cursor` (and raw-batch and GridFS cursors).

    Chaining (``sort``, ``skip``, ``limit``, ``batch_size``, ...) runs
    inline.  Iteration runs one ``find``/``getMore`` per hop and yields the
    batch from the buffer in the greenlet.
    """

    __slots__ = ()

    _offload_inline = frozenset(
        {
            "add_option",
            "allow_disk_use",
            "batch_size",
            "clone",
            "collation",
            "comment",
            "hint",
            "limit",
            "max",
            "max_await_time_ms",
            "max_scan",
            "max_time_ms",
            "min",
            "remove_option",
            "skip",
            "sort",
            "where",
        }
    )

    def __getitem__(self, index):
        """A slice makes a new cursor inline; an index runs a query in the pool."""
        cursor = self._offload_obj
        if isinstance(index, slice):
            return self._offload_wrap(cursor[index])
        return self._offload_wrap(self._offload_call(getitem, (cursor, index)))


class CommandCursor(_CursorBase):
    """A proxy for :class:`pymongo.command_cursor.CommandCursor`
    (``aggregate``, ``list_indexes``, ...), batched like :class:`Cursor`."""

    __slots__ = ()

    _offload_inline = frozenset({"batch_size"})

    def try_next(self) -> Any:
        """The next document, or None after one ``getMore`` that found none."""
        return _try_next(self, _pymongo.buffered_documents(self._offload_obj))


class ChangeStream(EnterInline):
    """A proxy for a :class:`pymongo.change_stream.ChangeStream`.

    :meth:`try_next` runs at most one ``getMore`` in the pool.  Iteration
    polls with it, so a quiet stream holds a worker only for one
    ``maxAwaitTimeMS`` at a time instead of for ever.
    """

    __slots__ = ()

    def try_next(self) -> Any:
        """The next change, or None after one ``getMore`` that found none."""
        return _try_next(self, _pymongo.stream_documents(self._offload_obj))

    def __iter__(self):
        return self

    def __next__(self):
        stream = self._offload_obj
        backoff = 0.0
        while stream.alive:
            started = time.monotonic()
            change = self.try_next()
            if change is not None:
                return change
            if time.monotonic() - started < _QUICK_EMPTY_POLL:
                # The server answered an empty getMore without awaiting.
                backoff = min(max(backoff * 2, 0.001), _MAX_POLL_BACKOFF)
                gevent.sleep(backoff)
            else:
                backoff = 0.0
        raise StopIteration

    next = __next__


register(Cursor, _Cursor)
register(CommandCursor, _CommandCursor)
register(ChangeStream, _ChangeStream)
