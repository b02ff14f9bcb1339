"""A pool of real OS threads that greenlets can wait on cooperatively.

A call is put on a C :class:`queue.SimpleQueue` (the unpatched one) and taken
by a worker thread; the caller parks on a waiter from :mod:`offload._core.waiters`,
so only the calling greenlet waits while its hub runs everything else.
Workers are started on demand up to ``max_workers`` and live until
:meth:`ThreadPool.shutdown`, or until the pool is garbage collected; they are
raw threads that never keep the interpreter from exiting.
"""

import contextvars
import warnings
import weakref
from collections.abc import Callable
from contextvars import Context
from functools import partial
from typing import Any, NamedTuple, TypeVar

import gevent
from gevent._hub_local import get_hub_if_exists

from ._core import native
from ._core.bridge import current_bridge
from ._core.calls import HubCall, ThreadCall
from ._core.checks import (
    check_bool,
    check_callable,
    check_count,
    check_name,
    env_count,
    name_of,
)
from ._core.lifecycle import ForkRegistry
from ._core.observe import logger
from ._core.pace import Pace
from ._core.waiters import CrossThreadSemaphore
from ._poolbase import Counters, PoolBase, serve

__all__ = ["ThreadPool", "default_size", "in_worker_thread"]

_T = TypeVar("_T")

# Not measured: enough for a handful of connections' worth of blocking calls
# without letting a burst start a hundred threads.  OFFLOAD_THREADS overrides.
_DEFAULT_SIZE = 10
# Threads an adaptive pool starts on demand before it asks the pace; see
# docs/choosing.rst ("adaptive") for the runs that chose it.
_ADAPTIVE_FLOOR = 4


class ThreadWork(NamedTuple):
    """What a ThreadPool queue item carries to its worker."""

    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    context: Context


# NamedTuple's own __new__ is a Python function: a frame on every call.
_new_work = partial(tuple.__new__, ThreadWork)


class _WorkerLocal(native.local):
    queue = None  # the queue of the ThreadPool whose worker this thread is


_tls = _WorkerLocal()
_pools: "ForkRegistry[ThreadPool]" = ForkRegistry()


def default_size() -> int:
    """The number of threads a pool gets when none is asked for.

    ``OFFLOAD_THREADS`` from the environment if set, else 10.
    """
    return env_count("OFFLOAD_THREADS", _DEFAULT_SIZE)


def in_worker_thread() -> bool:
    """Whether the calling thread is a worker of an offload :class:`ThreadPool`."""
    return _tls.queue is not None


def in_worker() -> bool:
    """Deprecated alias of :func:`in_worker_thread`."""
    warnings.warn(
        "offload.threadpool.in_worker is deprecated since offload 0.2.0; use in_worker_thread instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return in_worker_thread()


class ThreadPool(PoolBase):
    """A :class:`concurrent.futures.Executor` of real OS threads for gevent.

    :param max_workers: the most threads it runs at once; ``None`` means
        :func:`~offload.threadpool.default_size` (``OFFLOAD_THREADS``, else 10).
    :param name: a label for :func:`repr` and :meth:`stats`.
    :param max_queue: the most calls that may wait for a thread; a full queue
        makes :meth:`submit` wait (cooperatively in a greenlet).  0 means
        unbounded.
    :param adaptive: start threads beyond the first four only while calls do
        not slow down as threads are added and the callers' hub keeps up
        (see :ref:`adaptive`).  Without
        it, a call that finds no idle thread starts one, up to *max_workers*.

    Waiting on it -- :meth:`call`, or ``submit(...).result()`` -- blocks only
    the calling greenlet; in a plain thread it blocks that thread.  With
    ``max_queue`` set and the queue full, :meth:`submit` itself waits
    (cooperatively in a greenlet) until a worker takes a call.  A call made
    from one of this pool's own workers runs inline, so a pool of one thread
    cannot deadlock on itself.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        name: str | None = None,
        max_queue: int = 0,
        adaptive: bool = False,
    ) -> None:
        if max_workers is None:
            max_workers = default_size()
        check_count("max_workers", max_workers, 1)
        check_count("max_queue", max_queue, 0)
        check_name("name", name)
        check_bool("adaptive", adaptive)
        self._max_workers = max_workers
        self._max_queue = max_queue
        self._pace = Pace(min(_ADAPTIVE_FLOOR, max_workers)) if adaptive else None
        self.name = name or f"ThreadPool-{id(self):x}"
        self._is_shutdown = False
        self._reset()
        _pools.add(self)

    def _reset(self):
        super()._reset()
        self._slots = CrossThreadSemaphore(self._max_queue) if self._max_queue else None

    # -- submitting -------------------------------------------------------

    def call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` in a worker thread and return its result.

        Only the calling greenlet waits.  If it is killed, or a
        :class:`gevent.Timeout` fires, while the call is still queued, the call
        is cancelled and never runs; a call already running finishes in its
        thread and its result is dropped.  Exceptions, including
        BaseExceptions, are re-raised here with the worker's frames in the
        traceback.
        """
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout):
        # The test before the call: check_callable costs a frame on every call.
        if not callable(fn):
            check_callable(fn)
        if _tls.queue is self._queue:
            return fn(*args, **kwargs)
        bridge = current_bridge()
        work = _new_work((fn, args, kwargs, contextvars.copy_context()))
        item = (ThreadCall if bridge is None else HubCall)(work, bridge)
        if self._put(item) and bridge is not None:
            bridge.gather()
        # The name only matters for a timeout's message: skip the lookup otherwise.
        return item.settle(timeout, name_of(fn) if timeout is not None else None)

    def _in_own_worker(self):
        return _tls.queue is self._queue

    def _pack(self, fn, args, kwargs):
        return _new_work((fn, args, kwargs, contextvars.copy_context()))

    def _put(self, item):
        if self._is_shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._slots is not None:
            self._slots.acquire()
            if self._is_shutdown:
                self._slots.release()
                raise RuntimeError("cannot schedule new futures after shutdown")
        self._submitted += 1
        self._queue.put(item)
        if self._is_shutdown:
            # shutdown() ran since the check above, and may have queued the
            # workers' stop markers ahead of this call.  The last worker to
            # stop cancels whatever is left; if none is left, do it here.
            # (No lock on this path: it is every call's.)
            if not self._workers:
                self._cancel_queued()
            return False
        return self._wake_or_spawn()

    # -- workers ----------------------------------------------------------

    def _spawn(self):
        with self._lock:
            if len(self._workers) >= self._max_workers or self._is_shutdown:
                return
            counters = Counters(self.name)
            self._workers.append(counters)
            started = len(self._workers)
        queue = self._queue
        # The worker holds the pool only weakly, as the standard library's
        # does: a pool dropped without shutdown() is collected, and this
        # callback stops the worker.
        pool_ref = weakref.ref(self, lambda _, queue=queue: queue.put(None))  # type: ignore[misc]
        try:
            native.start_new_thread(
                _work, (pool_ref, queue, self._idle, self._slots, self._max_workers, counters, self._pace)
            )
        except BaseException:
            with self._lock:
                self._workers.remove(counters)
            raise
        logger.debug("%s: started thread %d of %d", self.name, started, self._max_workers)

    def _retire(self, counters):
        with self._lock:
            self._workers.remove(counters)
            self._retired.add(counters)
            last = not self._workers and self._is_shutdown
        if last:
            self._cancel_queued()  # anything queued behind the stop markers
            self._stopped.set_result(None)

    def _cancel_queued(self):
        """Cancel every call still in the queue; drop leftover stop markers."""
        items = self._drain()
        if self._slots is not None:
            for _ in items:
                self._slots.release()
        self._cancel(items)

    # -- lifecycle --------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls and let the workers exit when the queue is done.

        :param wait: wait (cooperatively, in a greenlet) for the workers to exit.
        :param cancel_futures: cancel the calls that no worker has taken yet.
        """
        with self._lock:
            self._is_shutdown = True  # from here on no worker is started
            workers = len(self._workers)
        if cancel_futures:
            self._cancel_queued()
        for _ in range(workers):
            self._queue.put(None)
        if wait and workers and _tls.queue is not self._queue:
            self._stopped.result()

    def _after_fork(self):
        # Only the forking thread exists in the child: the workers, and any
        # lock they held, are gone.  Calls queued in the parent are the
        # parent's to run.
        self._reset()

    def _live_counters(self):
        return self._workers, len(self._workers)


def _work(pool_ref, queue, idle, slots, max_idle, counters, pace):
    """The body of one worker thread: serve the queue, then retire."""
    _tls.queue = queue
    monitored = gevent.config.monitor_thread
    if pace is None and not monitored:
        after_each = None  # the common case: nothing to do between calls
    else:

        def after_each(work, item, run, ended):
            if pace is not None:
                pace.finished(work.fn, run, ended, item.hub_keeps_up())
            if monitored:
                _unmonitor()

    try:
        serve(queue, idle, max_idle, counters, None, after_each, slots)
    finally:
        pool = pool_ref()
        if pool is not None:
            pool._retire(counters)


def _unmonitor():
    # If the call made a hub in this thread, gevent's monitor must not report
    # this thread as blocking the hub: blocking is its job.
    hub = get_hub_if_exists()
    if hub is not None and hub.periodic_monitoring_thread is not None:
        hub.periodic_monitoring_thread.ignore_current_greenlet_blocking()
