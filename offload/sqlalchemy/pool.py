"""A QueuePool whose checkout waits cooperatively, and forgets the parent's connections after fork.

SQLAlchemy's :class:`~sqlalchemy.pool.QueuePool` waits for a free
connection on a :class:`threading.Condition`.  Unpatched, that is a real
condition: the first greenlet to find the pool exhausted blocks the hub
thread, so no other greenlet can give a connection back and every waiter
times out in turn.  :class:`CooperativeQueuePool` is the same pool over
:class:`CooperativeQueue`, whose waits park only the waiting greenlet (or
block a plain thread) in every patching mode, while ``pool_timeout`` still
ends in :class:`sqlalchemy.exc.TimeoutError`.

After ``os.fork()`` the child must never talk over a connection the parent
opened: both would read and write the same socket.  In the child every
connection the pool holds is cut off from its socket (see
:func:`offload.sqlalchemy.inherit.forget`) and its record is emptied, so
that the next checkout opens a connection of the child's own -- what
SQLAlchemy's ``engine.dispose(close=False)`` recipe does, done for you, and
without the parent's sessions being closed by the child's garbage
collector.
"""

import os
import threading
import weakref
from collections import deque
from typing import Any

from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue

from .._core import native
from .._core.lifecycle import ForkRegistry
from .._core.waiters import CrossThreadSemaphore
from .inherit import forget

__all__ = ["CooperativeQueue", "CooperativeQueuePool"]

_forks: "ForkRegistry[CooperativeQueuePool]" = ForkRegistry()


class CooperativeQueue(sqla_queue.QueueCommon[Any]):
    """The queue SQLAlchemy's QueuePool keeps its idle connections in, made cooperative.

    ``get(block, timeout)`` waits on a cross-thread semaphore that counts the
    items: a greenlet parks (only it waits), a plain thread blocks, and an
    item put from any thread -- a greenlet, a finalizer in the hub, another
    thread -- wakes the first waiter.  ``put`` never waits: QueuePool only
    puts with ``block=False``, and a full queue raises
    :class:`sqlalchemy.util.queue.Full` at once, whatever *block* says.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[Any] = deque()
        self._lock = native.allocate_lock()
        self._ready = CrossThreadSemaphore(0)  # one unit per item in _items

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self.full():
                raise sqla_queue.Full
            self._items.append(item)
        self._ready.release()

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout}")
        if not self._ready.acquire(timeout if block else 0):
            raise sqla_queue.Empty
        with self._lock:
            return self._items.pop() if self.use_lifo else self._items.popleft()

    def get_nowait(self) -> Any:
        return self.get(False)

    def drain(self) -> list[Any]:
        """Every item now queued, left in the queue (for the fork hook)."""
        with self._lock:
            return list(self._items)


class _CooperativeLock(CrossThreadSemaphore):
    """A lock for ``with``: a greenlet waiting for it parks instead of blocking the hub."""

    def __init__(self) -> None:
        super().__init__(1)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


class CooperativeQueuePool(QueuePool):
    """:class:`sqlalchemy.pool.QueuePool` that never freezes the hub while waiting, and is fork-safe.

    The default pool of every ``offload_*`` dialect; usable with any engine
    (``create_engine(url, poolclass=CooperativeQueuePool)``).  Everything else
    -- ``pool_size``, ``max_overflow``, ``pool_timeout``, ``pool_pre_ping``,
    ``pool_recycle``, ``pool_use_lifo``, events, ``engine.dispose()`` -- is
    QueuePool's.
    """

    _queue_class = CooperativeQueue

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pid = os.getpid()
        self._guard_lock = native.allocate_lock()
        _forks.add(self)

    def _create_connection(self) -> Any:
        record = super()._create_connection()
        self._records.add(record)  # so that the fork hook finds checked-out ones too
        return record

    def _do_get(self) -> Any:
        if self._pid != os.getpid():  # a fork the hook did not see (an unusual fork path)
            self._after_fork()
        self._guard_first_connect()
        return super()._do_get()

    def _guard_first_connect(self) -> None:
        """Make the engine's first-connect mutex cooperative.

        The first connection runs the dialect's ``initialize()`` (server
        version, isolation level, ...) under a mutex SQLAlchemy creates as a
        real :class:`threading.Lock`.  That initialisation waits in the lane,
        so the greenlet holding the mutex parks, and a second greenlet
        connecting meanwhile would block the hub thread on the lock for good:
        a deadlock.  SQLAlchemy creates the mutex only on first use, so
        putting a cooperative one in its place before the first checkout is
        enough; after a successful first connect no mutex is used.
        """
        connect = self.dispatch.connect
        if getattr(connect, "_exec_w_sync_once", True) or isinstance(
            getattr(connect, "_exec_once_mutex", None), _CooperativeLock
        ):
            return
        with self._guard_lock:
            if not isinstance(connect._exec_once_mutex, _CooperativeLock):  # type: ignore[attr-defined]
                connect._exec_once_mutex = _CooperativeLock()  # type: ignore[attr-defined]

    def _after_fork(self) -> None:
        """In the child: forget every connection the parent opened.

        Each record keeps its place in the pool (the counts stay right) but
        loses its connection, which SQLAlchemy then opens anew on checkout.
        The parent's connections are cut off from their sockets first, so
        nothing the child does -- closing them, collecting them, exiting --
        reaches the parent's sessions.
        """
        self._pid = os.getpid()
        self._overflow_lock = threading.Lock()  # the parent's may have been held by another thread
        for record in list(self._records):
            conn = record.dbapi_connection
            if conn is not None:
                forget(conn)
                record.dbapi_connection = None
