"""What offload's pools share: the worker loop, its counters, stats, shutdown.

:class:`~offload.ThreadPool` and :class:`~offload.ProcessPool` differ in what
a worker is (a thread, or a thread looking after a child process) and so in
how one call is run.  How a worker takes calls off the queue and counts what
it did (:func:`serve`), how the pool reports it, drains its queue on
shutdown, and answers a ``submit`` made by one of its own workers is the
same, and lives here.
"""

import abc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from logging import DEBUG
from time import monotonic
from typing import Any, TypeVar

from ._core import exiting, lifecycle, native, observe
from ._core.calls import FutureCall, QueueItem
from ._core.checks import check_callable, check_map
from ._core.observe import BOUNDS, logger
from ._core.pace import Pace
from .future import Future

_T = TypeVar("_T")

#: How a pool runs one call it took off the queue: (value, error), never raises.
Execute = Callable[[QueueItem], "tuple[Any, BaseException | None]"]
#: What a pool does after each call it ran: (the call's work, the item, run
#: seconds, when it ended).  Called after the caller was woken.
AfterEach = Callable[[Any, QueueItem, float, float], None]


def run_inline(fn, args, kwargs):
    """Run ``fn(*args, **kwargs)`` here; return a finished :class:`Future`.

    What ``submit`` does when called by one of the pool's own workers, so that
    a pool of one cannot deadlock on itself.
    """
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as error:
        future.set_exception(error)
    return future


class Counters:
    """What one worker has done; only that worker writes to it.

    ``active`` is 1 while it runs a call, which it started at ``since``;
    ``current`` is that call's queue item (what a fork or the interpreter's
    exit reports as running), else None.  Readers (``stats()``, the pace)
    see each field whole, if not all fields from the same instant.
    """

    _TOTALS = ("taken", "completed", "failed", "cancelled", "active", "wait_time", "run_time")
    __slots__ = _TOTALS + ("since", "current", "pool", "wait_buckets", "run_buckets")

    def __init__(self, pool: str = "") -> None:
        self.pool = pool  # the pool's name, for log records and metrics
        self.taken = self.completed = self.failed = self.cancelled = self.active = 0
        self.wait_time = self.run_time = self.since = 0.0
        self.current: Any = None
        # Counts per bucket of observe.BOUNDS, the last for longer ones.
        self.wait_buckets = [0] * (len(BOUNDS) + 1)
        self.run_buckets = [0] * (len(BOUNDS) + 1)

    def add(self, other: "Counters") -> None:
        for name in self._TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.wait_buckets, other.wait_buckets), (self.run_buckets, other.run_buckets)):
            for i, count in enumerate(theirs):
                mine[i] += count


def serve(
    queue: Any,
    idle: deque,
    max_idle: int,
    counters: Counters,
    execute: Execute | None = None,
    after_each: AfterEach | None = None,
    slots: Any = None,
    get: Callable[[], Any] | None = None,
) -> None:
    """The loop of one worker: take a call, run it, wake its caller.

    *execute* runs the call and returns (value, error); None runs a
    ThreadPool's call (fn, args, kwargs, context) in this thread.

    Returns at a stop marker (None) on *queue*.  Every call taken is counted
    in *counters*: cancelled if its caller gave up before a worker claimed
    it, else completed or failed, with the seconds it waited and ran.  After
    each call the worker leaves a token in *idle* (up to *max_idle*): the
    next put then knows a worker is on its way back to the queue.  *slots*
    is the pool's bounded-queue semaphore, released as each call leaves the
    queue.  *get* replaces ``queue.get`` (see :func:`offload._core.hubs.idle_get`).
    """
    if get is None:
        get = queue.get
    qsize = queue.qsize
    while True:
        item = get()
        if item is None:
            return
        # Off the queue, the item is only here: a fork must find it.
        counters.current = item
        counters.taken += 1
        if slots is not None:
            slots.release()
        if not item.start():
            counters.cancelled += 1
            counters.current = None
            continue
        started = counters.since = monotonic()
        counters.active = 1
        wait = started - item.queued_at
        counters.wait_time += wait
        work = item.work
        if execute is None:
            # A thread pool's call runs here, in its caller's context (inline:
            # a frame less per call than an execute function).
            fn, args, kwargs, context = work
            try:
                value, error = context.run(fn, *args, **kwargs), None
            except BaseException as exc:
                # Drop this frame: the traceback starts at the user's code.
                value, error = None, exc.with_traceback(exc.__traceback__.tb_next)  # type: ignore[union-attr]
        else:
            value, error = execute(item)
        ended = monotonic()
        run = ended - started
        counters.run_time += run
        counters.active = 0
        if error is None:
            counters.completed += 1
        else:
            counters.failed += 1
        if observe.watched:
            # Before the wake-up: a caller that has its result finds its call
            # in the histograms.  A failing observer must not keep it asleep.
            try:
                observe.record(counters, wait, run)
            except Exception:
                logger.exception("%s: the metrics observer failed", counters.pool)
        item.finish(value, error, qsize() > 0)
        counters.current = None  # after finish: a fork in between finds it done, not lost
        if after_each is not None:
            after_each(work, item, run, ended)
        if run > observe.slow_call and logger.isEnabledFor(DEBUG):
            observe.log_slow(counters.pool, work, run)
        # Drop the references before blocking on the queue again: the
        # value, error and arguments must not live until the next call.
        item = work = value = error = fn = args = kwargs = context = None
        if len(idle) < max_idle:
            idle.append(None)


class CheckedMap(futures.Executor):
    """An executor whose ``map`` checks its arguments at the call.

    :meth:`concurrent.futures.Executor.map` checks nothing; offload's pools
    and the :func:`~offload.wrap_executor` façade share this one.
    """

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[_T]:
        """Like :func:`map`, with each call made in the pool; results in order.

        Every call is submitted before this returns (and, for processes,
        pickled); each result is awaited cooperatively, and leaving the
        iterator early cancels the calls that have not started.

        :param timeout: seconds from this call until the iterator raises
            :exc:`TimeoutError` for a result not yet ready.
        :param chunksize: for a :class:`~offload.ProcessPool`, how many calls
            travel to a process together: large chunks save round trips for
            many small calls, and an exception fails its whole chunk.  A
            :class:`~offload.ThreadPool` accepts and ignores it, as
            :class:`concurrent.futures.ThreadPoolExecutor` does.
        """
        timeout = check_map(fn, timeout, chunksize)
        return self._map(fn, iterables, timeout, chunksize)

    def _map(self, fn, iterables, timeout, chunksize):
        return futures.Executor.map(self, fn, *iterables, timeout=timeout)


class PoolBase(CheckedMap):
    """The parts of a pool that do not depend on what its workers are.

    A subclass sets ``name``, ``_max_workers`` and ``_is_shutdown``, calls
    :meth:`_reset` (which makes the rest), and defines :meth:`_live_counters`
    and :meth:`_spawn`.
    """

    name: str
    _max_workers: int
    _is_shutdown: bool
    _lock: Any
    _queue: Any
    _submitted: int
    _retired: Counters  # the Counters of workers that stopped
    _workers: list
    _idle: deque
    _stopped: Future
    _pace: Pace | None = None  # set if threads start adaptively

    @abc.abstractmethod
    def _live_counters(self) -> tuple[list[Counters], int]:
        """The Counters of the live workers, and how many are alive (under ``_lock``)."""

    @abc.abstractmethod
    def _spawn(self) -> None:
        """Start one more worker, unless the pool is full or shut down."""

    def _reset(self) -> None:
        """Start from nothing: on creation, and in the child after a fork
        (where the workers, and any lock they held, are gone)."""
        self._lock = native.allocate_lock()
        self._queue = native.SimpleQueue()
        self._idle = deque()
        self._workers = []
        self._retired = Counters()
        self._submitted = 0
        self._stopped = Future()

    @abc.abstractmethod
    def _in_own_worker(self) -> bool:
        """Whether the caller is one of this pool's workers (its calls run inline)."""

    @abc.abstractmethod
    def _pack(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """The work a queue item carries to a worker for ``fn(*args, **kwargs)``."""

    @abc.abstractmethod
    def _put(self, item: Any) -> bool:
        """Queue *item*; True if it must wait for a busy worker."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` and return a :class:`~offload.Future`.

        Waiting on the future's ``result()`` parks only the calling greenlet
        (in a plain thread, it blocks the thread).  From one of the pool's
        own workers the call runs at once, inline, and the future comes back
        done.
        """
        check_callable(fn)
        if self._in_own_worker():
            return run_inline(fn, args, kwargs)
        future: Future[_T] = Future()
        self._put(FutureCall(future, self._pack(fn, args, kwargs)))
        return future

    @property
    def max_workers(self) -> int:
        """The most workers (threads, or processes) the pool runs at once."""
        return self._max_workers

    def _drain(self) -> list:
        """Take every call still queued (dropping stop markers) and count them as
        taken; the caller cancels them."""
        items = native.take_all(self._queue)
        with self._lock:
            self._retired.taken += len(items)
        return items

    def _cancel(self, items: list) -> None:
        """Cancel drained *items*, counting those that had not been cancelled yet."""
        cancelled = sum(item.cancel() for item in items)
        with self._lock:
            self._retired.cancelled += cancelled

    def _abandon_at_exit(self) -> list[tuple[str, str, str]]:
        """The exit's wait ran out: see :func:`offload._core.exiting.abandon`."""
        return exiting.abandon(self)

    def _after_fork(self) -> None:
        """In a forked child: start afresh, failing the copies of the calls
        the parent had queued or running (their waiters would wait for ever);
        :meth:`_forget_workers` first, for what a subclass's workers held."""
        orphans = lifecycle.take_orphans(self._queue, self._live_counters()[0])
        self._forget_workers()
        self._reset()
        lifecycle.fail_orphans(orphans, self.name)

    def _forget_workers(self) -> None:
        """In a forked child, before :meth:`_reset`: let go of the parent's workers."""

    def _wake_or_spawn(self):
        """After a put: leave the call to a worker, starting one if none is free.

        ``_idle`` holds one token per call a worker finished; a token means a
        worker is (about to be) back on the queue, so no new one is needed.
        An adaptive pool asks its pace instead, for the calls queued beyond
        the worker on its way.  Returns whether the call must wait for a busy
        worker: then its caller may let the hub gather wake-ups.
        """
        idle = self._idle
        coming = 0
        if idle:
            try:
                idle.pop()
                coming = 1
            except IndexError:
                pass
        pace = self._pace
        if pace is None:
            if not coming and len(self._workers) < self._max_workers:
                self._spawn()
                return False
            return self._queue.qsize() > coming
        queued = self._queue.qsize()
        backlog = queued - coming
        if backlog <= 0:
            return False
        starts = pace.starts(self._workers, backlog, queued)
        for _ in range(starts):
            self._spawn()
        return backlog > starts

    def stats(self) -> dict[str, Any]:
        """A snapshot of what the pool has done, as a dict of numbers.

        ``workers`` alive (threads, or worker processes), ``active`` running a
        call now, ``queued`` waiting for a worker, and totals since creation:
        ``submitted``, ``completed``, ``failed`` (raised, or their process
        crashed), ``cancelled`` (never ran); ``wait_time``/``run_time`` are the
        seconds calls spent queued/running (for processes, the round trip to
        the child included), with their means per call in
        ``mean_wait``/``mean_run``.
        """
        with self._lock:
            total = Counters()
            total.add(self._retired)
            live, workers = self._live_counters()
            for counters in live:
                total.add(counters)
        ran = total.completed + total.failed
        return {
            "name": self.name,
            "max_workers": self._max_workers,
            "workers": workers,
            "active": total.active,
            "queued": max(self._submitted - total.taken, 0),
            "submitted": self._submitted,
            "completed": total.completed,
            "failed": total.failed,
            "cancelled": total.cancelled,
            "wait_time": total.wait_time,
            "run_time": total.run_time,
            "mean_wait": total.wait_time / ran if ran else 0.0,
            "mean_run": total.run_time / ran if ran else 0.0,
        }

    def histograms(self) -> dict[str, Any]:
        """How long calls waited and ran, as bucket counts.

        ``bounds`` are the buckets' upper bounds in seconds;
        ``wait``/``run`` hold one count per bucket plus a last one for
        longer calls (not cumulative).  What :mod:`offload.metrics` exports.
        """
        with self._lock:
            total = Counters()
            total.add(self._retired)
            for counters in self._live_counters()[0]:
                total.add(counters)
        return {"bounds": BOUNDS, "wait": total.wait_buckets, "run": total.run_buckets}

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.name!r} workers={len(self._workers)}"
            f"/{self._max_workers}{' shut down' if self._is_shutdown else ''}>"
        )
