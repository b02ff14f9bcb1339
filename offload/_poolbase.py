"""What offload's pools share: argument checks, worker counters, stats.

:class:`~offload.ThreadPool` and :class:`~offload.ProcessPool` differ in what
a worker is (a thread, or a thread looking after a child process).  How they
check their arguments, count what their workers did, report it, and answer a
``submit`` made by one of their own workers is the same, and lives here.
"""

import abc
from collections import deque
from concurrent import futures
from typing import Any

from ._core import native
from .future import Future


def check_count(name, value, minimum):
    """Raise TypeError/ValueError unless *value* is an int >= *minimum*."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


def check_timeout(timeout):
    """Raise TypeError/ValueError unless *timeout* is None or seconds >= 0."""
    if timeout is None:
        return
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, not {timeout}")


def check_callable(fn):
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")


def name_of(fn):
    """How error messages name a call's function."""
    return getattr(fn, "__qualname__", None) or repr(fn)


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

    ``active`` is 1 while it runs a call, which it started at ``since``.
    """

    _TOTALS = ("taken", "completed", "failed", "cancelled", "active", "wait_time", "run_time")
    __slots__ = _TOTALS + ("since",)

    def __init__(self):
        self.taken = self.completed = self.failed = self.cancelled = self.active = 0
        self.wait_time = self.run_time = self.since = 0.0

    def add(self, other):
        for name in self._TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class PoolBase(futures.Executor):
    """The parts of a pool that do not depend on what its workers are.

    A subclass sets ``name``, ``_max_workers``, ``_is_shutdown``, ``_lock``,
    ``_submitted``, ``_retired`` (the :class:`Counters` of workers that
    stopped), ``_workers`` and ``_idle`` -- :meth:`_reset` makes the last
    five -- and defines :meth:`_live_counters` and ``_spawn()``.
    """

    name: str
    _max_workers: int
    _is_shutdown: bool
    _lock: Any
    _submitted: int
    _retired: Counters
    _workers: list
    _idle: Any
    _pace: Any = None  # an offload._pace.Pace if threads start adaptively

    @abc.abstractmethod
    def _live_counters(self) -> tuple[list[Counters], int]:
        """The Counters of the live workers, and how many are alive (under ``_lock``)."""

    def _reset(self):
        """Start from nothing: on creation, and in the child after a fork
        (where the workers, and any lock they held, are gone)."""
        self._lock = native.allocate_lock()
        self._queue = native.SimpleQueue()
        self._idle = deque()
        self._workers = []
        self._retired = Counters()
        self._submitted = 0
        self._stopped = Future()

    @property
    def max_workers(self) -> int:
        return self._max_workers

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

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.name!r} workers={len(self._workers)}"
            f"/{self._max_workers}{' shut down' if self._is_shutdown else ''}>"
        )
