"""A gevent-friendly façade over any :class:`concurrent.futures.Executor`.

A foreign executor (loky, Dask, the standard library's) completes its
futures from its own threads, and waiting on them blocks a hub.  The façade
mirrors each of its futures into an :class:`offload.Future`, completed from
whatever thread the executor uses and woken through the hub bridge, so that
waiting blocks only the calling greenlet.
"""

from collections.abc import Callable
from concurrent import futures
from concurrent.futures._base import PENDING
from time import monotonic
from typing import Any, Generic, TypeVar

from ._core import native, observe
from ._core.checks import check_callable, check_name, name_of
from ._core.lifecycle import ForkRegistry
from ._core.observe import BOUNDS
from ._poolbase import CheckedMap, Counters
from .defaults import get_default_pool
from .future import Future

__all__ = ["ExecutorFacade", "wrap_executor"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=futures.Executor)

#: Every live façade, for :func:`offload.metrics.pools` (and a fresh lock in a forked child).
_facades: "ForkRegistry[ExecutorFacade[Any]]" = ForkRegistry()


class _WrappedFuture(Future):
    """An :class:`offload.Future` that mirrors a future of a foreign executor.

    The foreign future's done-callback copies its outcome here from whatever
    thread completes it, ``running()`` turns True when the foreign executor
    starts the call, and cancelling this one cancels that one.  The façade
    also watches the foreign executor take the call (:meth:`_watch`), for
    its wait and run times.
    """

    def __init__(self, inner, facade, submitted):
        super().__init__()
        self._inner = inner
        self._facade = facade
        self._submitted_at = submitted
        self._started_at: float | None = None  # when the foreign executor started the call
        self._watched = False  # whether the foreign executor tells us it took the call

    def cancel(self):
        if not self._inner.cancel():
            return False
        return super().cancel() or self.cancelled()

    def _watch(self):
        """Shadow the foreign future's ``set_running_or_notify_cancel``.

        Every executor of :mod:`concurrent.futures` (and loky) calls it as it
        takes a call: True, the call starts now; False, it was cancelled and
        is passed over.  The shadow goes on once ``submit`` returned: a call
        the executor took before (a ThreadPoolExecutor's new thread takes it
        while ``submit`` starts the thread, and may finish it) is timed as
        if it started as ``submit`` was called -- off by no more than
        ``submit`` took.
        """
        inner = self._inner
        try:
            self._start_inner = inner.set_running_or_notify_cancel
            inner.set_running_or_notify_cancel = self._taken
        except AttributeError:  # a future with __slots__: it tells nothing
            return
        self._watched = True
        if self._started_at is None and (inner.running() or inner.done()):
            self._started_at = self._submitted_at
            self._mark_running()

    def _taken(self):
        started = self._start_inner()
        if started:
            self._started_at = monotonic()
            self._mark_running()
        else:
            self._facade._passed_over(self)
        return started

    def _mark_running(self):
        """The foreign executor started the call: ``running()`` says so from now on.

        Under the future's (reentrant) lock: the submitter (``_watch``) and
        the executor's thread (``_taken``, ``_settle``) may both get here.
        """
        with self._condition:
            if self._state == PENDING:
                Future.set_running_or_notify_cancel(self)

    def _settle(self, inner):
        """The foreign future's done-callback, in the thread that completed it:
        count the call, then copy its outcome here (waking the waiter)."""
        cancelled = inner.cancelled()
        error = None if cancelled else inner.exception()
        observed = self._facade._count(self, cancelled, error)
        if cancelled:
            Future.cancel(self)
        else:
            # Not cancelled here: this one is cancelled only through the foreign one.
            self._mark_running()
            if error is None:
                self.set_result(inner.result())
            else:
                self.set_exception(error)
        if observed is not None and observe.call_observer is not None:
            observe.call_observer(self._facade.name, *observed)


def _workers_of(executor: Any) -> int | None:
    """The live workers of *executor*, if it says: the threads of a
    ThreadPoolExecutor, the processes of a ProcessPoolExecutor or loky's."""
    threads = getattr(executor, "_threads", None)
    if isinstance(threads, set):
        return sum(thread.is_alive() for thread in list(threads))
    if hasattr(executor, "_processes"):
        processes = executor._processes  # None once a ProcessPoolExecutor is shut down
        return len(processes) if isinstance(processes, dict) else 0
    return None


class ExecutorFacade(CheckedMap, Generic[_E]):
    """A gevent-friendly view of a foreign executor; see :func:`~offload.wrap_executor`.

    ``executor`` is the wrapped executor, ``name`` the façade's label in
    :meth:`stats` and :mod:`offload.metrics`.

    :meth:`stats` and :meth:`histograms` have the keys of
    :meth:`offload.ThreadPool.stats` and :meth:`~offload.ThreadPool.histograms`,
    counted from what the façade sees of each future it hands out -- no hop
    is added, and a call made on the executor directly is not counted:

    * ``submitted`` when ``submit`` returns; ``completed``, ``failed``
      (raised, or the executor broke) when the foreign future is done, just
      before the façade's future is; ``cancelled`` once the executor passed
      the cancelled call over (as a pool's worker does), or at the façade's
      ``shutdown(wait=True)``.
    * ``active`` and ``queued`` are read from the foreign futures at the
      call of ``stats()``: running (or finished, being counted) versus not
      started yet, cancelled ones included until the executor passes them.
      A :class:`~concurrent.futures.ProcessPoolExecutor` marks a call
      running when it hands it to its processes' queue, up to
      ``max_workers + 1`` at once; Dask's futures are never marked running,
      so its unfinished calls all count as queued.
    * ``wait_time`` (from ``submit`` until the executor marked the call
      running) and ``run_time`` (from then until it was done), their means
      and the histograms cover the calls whose start the façade saw: every
      call of the :mod:`concurrent.futures` executors and loky (one the
      executor took before ``submit`` returned counts as starting when
      ``submit`` was called), and of Dask's only those already done when
      ``submit`` returned (timed from ``submit`` to then).
    * ``max_workers`` is the executor's ``_max_workers`` and ``workers`` its
      live threads or processes (the :mod:`concurrent.futures` executors,
      loky); None where the executor does not say (Dask, whose client would
      have to ask its scheduler).
    """

    def __init__(self, executor: _E, name: str | None = None) -> None:
        self.executor = executor
        self.name = check_name("name", name) or f"wrap_executor-{id(self):x}"
        self._lock = native.allocate_lock()
        self._pending: set[_WrappedFuture] = set()  # handed out, not yet counted done
        self._submitted = 0
        self._timed = 0  # the calls in wait_time/run_time: the façade saw them start
        self._counters = Counters(self.name)
        _facades.add(self)

    def _after_fork(self) -> None:
        # A foreign thread may have held the lock at the fork: it is gone.
        self._lock = native.allocate_lock()

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Submit to the wrapped executor; return a cooperative :class:`~offload.Future`."""
        check_callable(fn)
        submitted = monotonic()
        inner = self.executor.submit(fn, *args, **kwargs)
        outer = _WrappedFuture(inner, self, submitted)
        with self._lock:
            self._submitted += 1
            self._pending.add(outer)
        outer._watch()  # after the add: a call passed over leaves _pending
        inner.add_done_callback(outer._settle)
        return outer

    def _count(
        self, outer: _WrappedFuture, cancelled: bool, error: BaseException | None
    ) -> tuple[float, float] | None:
        """Count a finished call; return (wait, run) if it was timed.

        A cancelled one stays pending (queued) until :meth:`_passed_over`,
        if the executor tells.
        """
        started = outer._started_at
        ended = monotonic()
        counters = self._counters
        with self._lock:
            if cancelled:
                # Still in the executor's queue: counted when it passes the
                # call over (_passed_over), as a pool's worker does.
                if not outer._watched:
                    self._pending.discard(outer)
                    counters.cancelled += 1
                return None
            self._pending.discard(outer)
            if error is None:
                counters.completed += 1
            else:
                counters.failed += 1
            if started is None:
                return None
            wait, run = started - outer._submitted_at, ended - started
            self._timed += 1
            counters.wait_time += wait
            counters.run_time += run
            if observe.watched:
                observe.count(counters, wait, run)
        return wait, run

    def _passed_over(self, outer: _WrappedFuture) -> None:
        with self._lock:
            if outer in self._pending:
                self._pending.discard(outer)
                self._counters.cancelled += 1

    @property
    def max_workers(self) -> int | None:
        """The wrapped executor's ``_max_workers``, or None if it has none (Dask)."""
        value = getattr(self.executor, "_max_workers", None)
        return value if isinstance(value, int) else None

    def stats(self) -> dict[str, Any]:
        """A snapshot of the calls made through the façade, as a dict.

        The keys of :meth:`offload.ThreadPool.stats`; how each is measured,
        and where ``workers``/``max_workers`` are None, is told in the
        class's description.
        """
        counters = self._counters
        with self._lock:
            pending = [future._inner for future in self._pending]
            submitted, timed = self._submitted, self._timed
            completed, failed, cancelled = counters.completed, counters.failed, counters.cancelled
            wait_time, run_time = counters.wait_time, counters.run_time
        # Read outside the lock: each foreign future takes its own.
        queued = sum(not inner.running() and (not inner.done() or inner.cancelled()) for inner in pending)
        return {
            "name": self.name,
            "max_workers": self.max_workers,
            "workers": _workers_of(self.executor),
            "active": len(pending) - queued,
            "queued": queued,
            "submitted": submitted,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "wait_time": wait_time,
            "run_time": run_time,
            "mean_wait": wait_time / timed if timed else 0.0,
            "mean_run": run_time / timed if timed else 0.0,
        }

    def histograms(self) -> dict[str, Any]:
        """How long the timed calls waited and ran, as :meth:`offload.ThreadPool.histograms`.

        Counted once :func:`offload.metrics.enable_histograms` (or an
        exporter) turned them on, like a pool's.
        """
        with self._lock:
            counters = self._counters
            return {"bounds": BOUNDS, "wait": list(counters.wait_buckets), "run": list(counters.run_buckets)}

    def call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` on the wrapped executor; only this greenlet waits."""
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout):
        future = self.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise
            state = "start" if future.cancel() else "finish"
            raise TimeoutError(f"{name_of(fn)} did not {state} within {timeout} seconds") from None
        except BaseException:
            future.cancel()  # a kill or gevent.Timeout: withdraw the call if it can be
            raise

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down; waiting (if *wait*) happens in a thread.

        With *cancel_futures*, the calls submitted through this façade that
        have not started are cancelled first, whether or not the wrapped
        executor knows that argument.
        """
        if cancel_futures:
            with self._lock:
                pending = list(self._pending)
            for future in pending:
                future.cancel()
        if wait:
            # An executor's own shutdown blocks its caller's thread: in a
            # greenlet, that would freeze the hub.
            get_default_pool()._call(self.executor.shutdown, (), {"wait": True}, None)
            self._count_left_cancelled()
        else:
            self.executor.shutdown(wait=False)

    def _count_left_cancelled(self) -> None:
        """After the executor's shutdown: count the cancelled calls it did not
        pass over (it will not now), so that none stays queued for ever."""
        with self._lock:
            left = [future for future in self._pending if future._inner.cancelled()]
            self._pending.difference_update(left)
            self._counters.cancelled += len(left)

    def __repr__(self):
        return f"<offload.wrap_executor({self.executor!r})>"


def wrap_executor(executor: _E, *, name: str | None = None) -> "ExecutorFacade[_E]":
    """A gevent-friendly façade over any :class:`concurrent.futures.Executor`.

    ``submit(...).result()`` and ``call(...)`` on the façade block only the
    calling greenlet: the executor's own future is mirrored into an
    :class:`offload.Future`, completed from whatever thread the executor
    uses and woken through the hub bridge.  The façade is a pool, so it can
    be passed as ``pool=`` to :func:`offload.call` and ``@offload``.  Use it
    for ``loky.get_reusable_executor()``, or for
    ``dask.distributed.Client(...).get_executor()`` to run the same code on a
    cluster.  A call's timeout (or the caller's kill) cancels it if the
    executor still can; a running call is left to finish.

    ``pool=`` arguments do not wrap executors silently: passing an
    unwrapped executor raises a TypeError that names this function.  An
    offload pool, or a façade, is returned as it is (then *name* must be
    None: it has its own).

    The façade counts the calls made through it: ``stats()`` and
    ``histograms()`` have the keys of :meth:`offload.ThreadPool.stats` and
    :meth:`~offload.ThreadPool.histograms` (see :class:`~offload.wrap.ExecutorFacade` for
    how each is measured), and :mod:`offload.metrics` exports them with
    ``kind="executor"``, labelled *name* (by default
    ``wrap_executor-<id>``).
    """
    check_name("name", name)
    if isinstance(executor, ExecutorFacade) or callable(getattr(executor, "_call", None)):
        if name is not None:
            raise ValueError(f"{executor!r} is already an offload pool: it has a name of its own")
        return executor  # type: ignore[return-value]
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}")
    return ExecutorFacade(executor, name)
