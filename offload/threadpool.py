"""A pool of real OS threads that greenlets can wait on cooperatively.

A call is put on a C :class:`queue.SimpleQueue` (the unpatched one) and taken
by a worker thread; the caller parks on a waiter from :mod:`offload._core.waiters`,
so only the calling greenlet waits while its hub runs everything else.
Workers are started on demand up to ``max_workers`` and live until
:meth:`ThreadPool.shutdown`, or until the pool is garbage collected; they are
raw threads, which the interpreter does not wait for, so its exit waits for
the calls they hold or have queued itself, up to ``OFFLOAD_EXIT_TIMEOUT``
(:mod:`offload._core.exiting`).
"""

import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures.thread import BrokenThreadPool
from contextvars import copy_context
from functools import partial
from typing import Any, TypeVar

from gevent._hub_local import get_hub_if_exists
from greenlet import getcurrent

from ._core import exiting, naming, native
from ._core.bridge import current_bridge
from ._core.calls import HubCall, ThreadCall
from ._core.checks import (
    check_bool,
    check_callable,
    check_count,
    check_initializer,
    check_name,
    env_count,
    name_of,
)
from ._core.hubs import prepare, wake_parked
from ._core.lifecycle import ForkRegistry
from ._core.observe import logger
from ._core.pace import Pace
from ._core.waiters import CrossThreadSemaphore
from ._poolbase import Counters, PoolBase
from ._threadworker import _in_chain, _new_work, _stop_one, _tls, _work, in_worker, in_worker_thread  # noqa: F401

__all__ = ["BrokenThreadPool", "ThreadPool", "default_size", "in_worker_thread", "worker_threads"]

worker_threads = naming.worker_threads

_T = TypeVar("_T")

# Not measured: enough for a handful of connections' worth of blocking calls
# without letting a burst start a hundred threads.  OFFLOAD_THREADS overrides.
_DEFAULT_SIZE = 10
# Threads an adaptive pool starts on demand before it asks the pace; see
# docs/choosing.rst ("adaptive") for the runs that chose it.
_ADAPTIVE_FLOOR = 4


_pools: "ForkRegistry[ThreadPool]" = ForkRegistry()


def default_size() -> int:
    """The number of threads a pool gets when none is asked for.

    ``OFFLOAD_THREADS`` from the environment if set, else 10.
    """
    return env_count("OFFLOAD_THREADS", _DEFAULT_SIZE)


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
    :param initializer: called as ``initializer(*initargs)`` in each new
        worker thread before its first call, as by
        :class:`~concurrent.futures.ThreadPoolExecutor`.  If it raises, the
        pool is broken, as the standard library's: the calls queued and every
        later one raise :exc:`concurrent.futures.thread.BrokenThreadPool`.
    :param initargs: the arguments for *initializer* (none without it).
    :param thread_name_prefix: worker threads are named
        ``<prefix>_<n>``; the default prefix is *name*.  The name is the
        thread's in the OS (Linux, 15 bytes), at the bottom of its stack in
        :mod:`faulthandler` dumps and :func:`sys._current_frames`, and in
        :func:`~offload.threadpool.worker_threads`.

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
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        thread_name_prefix: str = "",
    ) -> None:
        if max_workers is None:
            max_workers = default_size()
        check_count("max_workers", max_workers, 1)
        check_count("max_queue", max_queue, 0)
        check_name("name", name)
        check_bool("adaptive", adaptive)
        initargs = check_initializer(initializer, initargs)
        self._init = None if initializer is None else (initializer, initargs)
        if not isinstance(thread_name_prefix, str):
            raise TypeError(f"thread_name_prefix must be a str, not {type(thread_name_prefix).__name__}")
        self._max_workers = max_workers
        self._max_queue = max_queue
        self._pace = Pace(min(_ADAPTIVE_FLOOR, max_workers)) if adaptive else None
        self.name = name or f"ThreadPool-{id(self):x}"
        self._thread_name_prefix = thread_name_prefix or self.name
        self._threads_started = 0
        self._broken: str | None = None  # why, once an initializer failed
        self._is_shutdown = False
        self._reset()
        _pools.add(self)
        exiting.add(self)

    @property
    def _is_shutdown(self) -> bool:  # type: ignore[override]
        return self._shut

    @_is_shutdown.setter
    def _is_shutdown(self, value: bool) -> None:
        # Whoever shuts the pool (shutdown(), the interpreter's exit) closes
        # _put's fast path first: a put that saw it open re-checks after
        # queueing (see _put).
        if value:
            self._plain = False
        self._shut = value

    def _reset(self):
        super()._reset()
        # Idle workers with a hub (patched), each asleep on a lock of its own
        # (see offload/_core/hubs.py idle_get); every put wakes one.
        self._parked: deque = deque()
        self._slots = CrossThreadSemaphore(self._max_queue) if self._max_queue else None
        # The fast path of _put: open, not broken, no bounded queue, eager.
        open_ = not (self._is_shutdown or self._broken)
        self._plain = open_ and self._slots is None and self._pace is None

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
        own = _tls.queue
        if own is self._queue:
            return fn(*args, **kwargs)
        if own is not None:  # a worker of another pool calls in, and will wait
            fn = self._nested(fn, _tls.chain + (own,))
        work = _new_work((fn, args, kwargs, copy_context()))
        # current_bridge(), spelled out to find the greenlet once for the item.
        hub = get_hub_if_exists()
        glet = getcurrent()
        if hub is None or glet is hub:
            bridge = None
            item: HubCall | ThreadCall = ThreadCall(work, None)
        else:
            try:
                bridge = hub._offload_bridge
            except AttributeError:
                bridge = current_bridge()
            item = HubCall(work, bridge, glet)
        if self._put(item) and bridge is not None and not bridge.gathering:
            bridge.gather()
        # The name only matters for a timeout's message: skip the lookup otherwise.
        return item.settle(timeout, name_of(fn) if timeout is not None else None)

    def _nested(self, fn, chain):
        """*fn*, made to run with *chain* (the waiting workers' queues) known
        to its worker; raises if every thread of this pool is in *chain*."""
        if chain.count(self._queue) >= self._max_workers:
            raise RuntimeError(
                f"{name_of(fn)} cannot run in {self.name}: all {self._max_workers} of its threads "
                "wait, further up this chain of nested calls, for the call making this one, so "
                "it would deadlock (pool A -> pool B -> pool A); give that pool more threads, "
                "or make the inner call before entering the other pool"
            )
        return partial(_in_chain, chain, fn)

    def _in_own_worker(self):
        return _tls.queue is self._queue

    def _pack(self, fn, args, kwargs):
        return _new_work((fn, args, kwargs, copy_context()))

    def _put(self, item):
        if not self._plain:
            return self._put_checked(item)
        self._submitted += 1
        self._queue.put(item)
        parked = self._parked
        if parked:  # workers with hubs sleep on locks of their own (patched): wake one
            try:
                parked.pop().lock.release()  # wake_parked, inline: every call passes here
            except IndexError:
                pass
        if not self._plain:  # shutdown() or a failed initializer since the check above
            return self._after_put(item)
        # _wake_or_spawn, spelled out for an eager pool: every call passes here.
        idle = self._idle
        if idle:
            try:
                idle.pop()
                return self._queue.qsize() > 1
            except IndexError:
                pass
        if len(self._workers) < self._max_workers:
            self._spawn()
            if self._is_shutdown and not self._workers:
                self._cancel_queued()  # as in _after_put: the worker was refused
            return False
        return self._queue.qsize() > 0

    def _put_checked(self, item):
        if self._broken is not None:
            raise BrokenThreadPool(self._broken)
        if self._is_shutdown:
            raise RuntimeError(exiting.refusal())
        if self._slots is not None:
            self._slots.acquire()
            if self._is_shutdown:
                self._slots.release()
                raise RuntimeError(exiting.refusal())
        self._submitted += 1
        self._queue.put(item)
        if self._parked:
            wake_parked(self._parked)
        return self._after_put(item)

    def _after_put(self, item):
        if self._is_shutdown:
            # shutdown() ran since the check above, and may have queued the
            # workers' stop markers ahead of this call.  The last worker to
            # stop cancels whatever is left; if none is left, do it here.
            # (No lock on this path: it is every call's.)
            if not self._workers:
                self._cancel_queued()
            return False
        if self._broken is not None:
            self._fail_queued()  # broken since the check above: none will run it
            return False
        busy = self._wake_or_spawn()
        if self._is_shutdown and not self._workers:
            # shutdown() landed between the put and the start of a worker,
            # which it then refused: no worker will ever take the call.
            self._cancel_queued()
        return busy

    # -- workers ----------------------------------------------------------

    def _spawn(self):
        with self._lock:
            if len(self._workers) >= self._max_workers or self._is_shutdown:
                return
            counters = Counters(self.name)
            self._workers.append(counters)
            started = len(self._workers)
            self._threads_started += 1
            thread_name = f"{self._thread_name_prefix}_{self._threads_started - 1}"
        queue = self._queue
        # The worker holds the pool only weakly, as the standard library's
        # does: a pool dropped without shutdown() is collected, and this
        # callback stops the worker.
        pool_ref = weakref.ref(self, partial(_stop_one, queue, self._parked))
        prepare()  # see offload/_core/hubs.py: the worker imports nothing as it starts
        exiting.worker_started(counters, queue)  # before it runs: the exit may come first
        try:
            native.start_new_thread(
                naming.named(_work, thread_name),
                (
                    pool_ref,
                    queue,
                    self._parked,
                    self._idle,
                    self._slots,
                    self._max_workers,
                    counters,
                    self._pace,
                ),
                {"name": thread_name, "init": self._init},
            )
        except BaseException:
            exiting.worker_stopped(counters)
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

    def _initializer_failed(self):
        """A worker's initializer raised: the pool is broken, as the stdlib's.

        Every call queued now fails with :exc:`BrokenThreadPool`, and every
        later submit raises it.
        """
        self._plain = False
        self._broken = "A thread initializer failed, the thread pool is not usable anymore"
        self._fail_queued()

    def _fail_queued(self):
        """Fail every call still queued with :exc:`BrokenThreadPool`."""
        items = self._drain()
        if self._slots is not None:
            for _ in items:
                self._slots.release()
        failed = 0
        for item in items:
            if item.start():
                item.finish(None, BrokenThreadPool(self._broken))
                failed += 1
        with self._lock:
            self._retired.failed += failed

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
            _stop_one(self._queue, self._parked)
        if wait and workers and _tls.queue is not self._queue:
            self._stopped.result()

    def _live_counters(self):
        return self._workers, len(self._workers)
