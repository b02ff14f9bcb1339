"""A pool of worker processes that greenlets can wait on cooperatively.

Threads do not help pure-Python CPU work: the GIL runs one thread at a time,
and a busy worker thread delays every hub wake-up by a switch interval.
:class:`ProcessPool` runs such calls in child processes instead, without the
traps of :mod:`multiprocessing` under gevent:

* Children start with ``forkserver`` (or ``spawn``), never by forking a
  patched, threaded parent.
* Each child is looked after by one real OS thread of the parent (from
  :mod:`offload._native`).  That thread sends the child one call at a time on
  a pipe, waits with the unpatched :func:`select.poll` for the answer or the
  child's death, and hands the outcome to the caller through the hub bridge.
  Nothing in this machinery is a patched primitive.
* Because a child only ever holds the one call it is running, a child that
  dies fails exactly that call with :exc:`WorkerCrashed`; its thread starts a
  replacement and goes on.  Queued calls stay in the parent, where a waiter
  that gives up can still cancel them.
* Calls are pickled in the caller, so an unpicklable function or argument
  raises there at once.

What crosses the pipe, and the loop a child runs, are in
:mod:`offload._wire`; the thread that looks after one child is in
:mod:`offload._procworker`.  This module holds the pool itself.
"""

import atexit
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from typing import Any

from . import _wire
from ._bridge import current_bridge, locked
from ._calls import HubCall, Task, ThreadCall
from ._core import native
from ._poolbase import PoolBase, check_callable, check_count, check_timeout, name_of, run_inline
from ._procworker import Worker, WorkerCrashed
from ._wire import RemoteTraceback
from .future import Future

__all__ = [
    "ProcessPool",
    "RemoteTraceback",
    "WorkerCrashed",
    "default_process_count",
    "get_default_process_pool",
]

_pools: "weakref.WeakSet[ProcessPool]" = weakref.WeakSet()


def default_process_count():
    """The number of processes a pool gets when none is asked for.

    ``OFFLOAD_PROCESSES`` from the environment if set, else the number of
    CPUs this process may run on.
    """
    value = os.environ.get("OFFLOAD_PROCESSES")
    if value is not None and value.strip():
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"OFFLOAD_PROCESSES must be an integer, not {value!r}") from None
        if count <= 0:
            raise ValueError(f"OFFLOAD_PROCESSES must be greater than 0, not {count}")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


# -- the pool ---------------------------------------------------------------


def _context_for(mp_context):
    import multiprocessing

    if mp_context is None:
        return multiprocessing.get_context("forkserver")
    if isinstance(mp_context, str):
        if mp_context not in ("forkserver", "spawn"):
            raise ValueError(
                f"mp_context must be 'forkserver' or 'spawn', not {mp_context!r}: forking a process "
                "that runs gevent and threads copies their state half-way"
            )
        return multiprocessing.get_context(mp_context)
    method = getattr(mp_context, "get_start_method", None)
    if method is None or not callable(getattr(mp_context, "Process", None)):
        raise TypeError(
            f"mp_context must be None, 'forkserver', 'spawn' or a multiprocessing context, "
            f"not {type(mp_context).__name__}"
        )
    if method() not in ("forkserver", "spawn"):
        raise ValueError(f"mp_context must use the 'forkserver' or 'spawn' start method, not {method()!r}")
    return mp_context


class ProcessPool(PoolBase):
    """A :class:`concurrent.futures.Executor` of worker processes for gevent.

    :param max_workers: the most processes it runs at once; ``None`` means
        :func:`default_process_count` (``OFFLOAD_PROCESSES``, else the CPUs
        available).
    :param mp_context: ``None`` (``forkserver``), ``"forkserver"``,
        ``"spawn"``, or a :mod:`multiprocessing` context using one of them.
        ``fork`` is refused: it copies a patched, threaded parent half-way.
    :param max_tasks_per_child: replace a process after it has run this many
        calls (``None``: never).
    :param initializer: called as ``initializer(*initargs)`` in each new
        process before its first call; it must be picklable.  If it raises,
        the call that was to run there fails with a RuntimeError from it.
    :param kill_on_timeout: when the waiter of a *running* call gives up
        (a ``timeout``, a :class:`gevent.Timeout`, a kill), kill the process
        running it with SIGKILL instead of letting the call finish; the pool
        starts a replacement.  Off by default: the call loses its work and
        any state of that process.  Calls still queued are always cancelled.
    :param name: a label for :func:`repr`, :meth:`stats` and process names.

    Waiting on it -- :meth:`call`, or ``submit(...).result()`` -- blocks only
    the calling greenlet; in a plain thread it blocks that thread.  Processes
    start on demand and live until :meth:`shutdown`, or the end of the
    interpreter, which terminates them.  Inside a worker process, calls to
    any ProcessPool run inline: a worker never starts processes of its own.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: Any = None,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        kill_on_timeout: bool = False,
        name: str | None = None,
    ):
        if max_workers is None:
            max_workers = default_process_count()
        check_count("max_workers", max_workers, 1)
        if max_tasks_per_child is not None:
            check_count("max_tasks_per_child", max_tasks_per_child, 1)
        if initializer is not None:
            if not callable(initializer):
                raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
            if not isinstance(initargs, tuple):
                raise TypeError(f"initargs must be a tuple, not {type(initargs).__name__}")
            try:
                _wire.dumps((initializer, initargs))
            except Exception as exc:
                raise TypeError(f"initializer and initargs must be picklable: {exc}") from exc
        if not isinstance(kill_on_timeout, bool):
            raise TypeError(f"kill_on_timeout must be a bool, not {type(kill_on_timeout).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self._kill_on_timeout = kill_on_timeout
        self._context = _context_for(mp_context)
        self._max_workers = max_workers
        self._max_tasks_per_child = max_tasks_per_child
        self._initializer = initializer
        self._initargs = initargs
        self.name = name or f"ProcessPool-{id(self):x}"
        self._is_shutdown = False
        self._reset()
        _pools.add(self)
        _register_atexit()

    # -- submitting -------------------------------------------------------

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

        Only the calling greenlet waits.  *fn*, the arguments and the result
        cross a pipe, pickled: an unpicklable one raises
        :exc:`pickle.PicklingError` at once.  An exception raised in the
        child is re-raised here with its own type, and the child's traceback
        as its ``__cause__``.  If the process dies, :exc:`WorkerCrashed`.
        If the caller is killed, or a :class:`gevent.Timeout` fires, while
        the call is still queued, it is cancelled and never runs; a call
        already running finishes in its process and its result is dropped
        (or, with ``kill_on_timeout``, its process is killed).
        """
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout):
        check_callable(fn)
        if _wire.in_worker:
            return fn(*args, **kwargs)
        name = name_of(fn)
        work = (_wire.pack_call(fn, args, kwargs), name)
        bridge = current_bridge()
        item = (ThreadCall if bridge is None else HubCall)(work, bridge)
        work = None
        if self._put(item) and bridge is not None:
            bridge.gather()
        return item.settle(timeout, name, self._give_up)

    def _give_up(self, item):
        """The waiter gave up: cancel *item* if queued, else kill its process
        if asked to.  Returns what the call did not do in time."""
        if item.start():
            return "start"
        if self._kill_on_timeout and not item.done:
            with self._lock:
                workers = list(self._workers)
            if any(worker.kill_running(item) for worker in workers):
                return "finish (its worker process was killed)"
        return "finish"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` in a process; return a :class:`~offload.Future`.

        Pickling errors raise here, at once, as in :meth:`call`.
        """
        check_callable(fn)
        if _wire.in_worker:
            return run_inline(fn, args, kwargs)
        future: Future[Any] = Future()
        self._put(Task(future, (_wire.pack_call(fn, args, kwargs), name_of(fn))))
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Like :func:`map`, with calls run in the processes, results in order.

        :param chunksize: how many calls travel to a process together.  Large
            chunks save round trips for many small calls; an exception fails
            its whole chunk.
        :param timeout: seconds from this call until the iterator raises
            :exc:`TimeoutError` for a result not yet ready.

        Every call is submitted (and pickled) before this returns; leaving the
        iterator early cancels the calls that have not started.
        """
        check_callable(fn)
        check_timeout(timeout)
        check_count("chunksize", chunksize, 1)
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        chunks = _wire.chunks(iterables, chunksize)
        results = super().map(partial(_wire.run_chunk, fn), chunks, timeout=timeout)
        return chain.from_iterable(results)

    def _put(self, item):
        # Under the lock, so that no call can land behind the stop markers
        # that shutdown() queues.
        with self._lock:
            if self._is_shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._submitted += 1
            self._queue.put(item)
        return self._wake_or_spawn()

    # -- workers ----------------------------------------------------------

    def _spawn(self):
        with self._lock:
            if len(self._workers) >= self._max_workers or self._is_shutdown:
                return
            worker = Worker(self)
            self._workers.append(worker)
        try:
            native.start_new_thread(worker.run, ())
        except BaseException:
            with self._lock:
                self._workers.remove(worker)
            raise

    def _retire(self, worker):
        with self._lock:
            self._workers.remove(worker)
            self._retired.add(worker.counters)
            last = not self._workers and self._is_shutdown
        if last:
            self._stopped.set_result(None)

    # -- lifecycle --------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; each process exits once the queue is done.

        :param wait: wait (cooperatively, in a greenlet) until every process
            has exited.
        :param cancel_futures: cancel the calls that have not started.
        """
        drained = self._close(cancel_futures)
        for item in drained:
            if item.cancel():
                with self._lock:
                    self._retired.cancelled += 1
        with self._lock:
            running = bool(self._workers)
        if wait and running:
            self._stopped.result()

    def _close(self, cancel_futures):
        drained = []
        with self._lock:
            self._is_shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except native.Empty:
                        break
                    if item is not None:
                        drained.append(item)
                self._retired.taken += len(drained)
            for _ in self._workers:
                self._queue.put(None)
        return drained

    def _terminate(self, timeout):
        """Shut down now: cancel queued calls, kill running ones, reap all.

        What the interpreter's exit does to every pool still running.
        """
        for item in self._close(cancel_futures=True):
            item.cancel()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.stopping = True
            proc = worker.proc
            if proc is not None:
                try:
                    proc.terminate()
                except OSError:
                    pass
        if workers:
            done = locked()
            self._stopped.add_done_callback(lambda _: done.release())
            done.acquire(True, timeout)

    def _after_fork(self):
        # Only the forking thread exists in the child: the worker threads are
        # gone, and the processes are the parent's to look after.  Close the
        # copies of their pipes, or they would outlive the parent's.
        for worker in self._workers:
            for fd in (worker.tasks_fd, worker.results_fd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self._reset()

    def _live_counters(self):
        alive = sum(1 for worker in self._workers if worker.proc is not None)
        return [worker.counters for worker in self._workers], alive

    def pids(self) -> list:
        """The process ids of the worker processes alive now."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.proc is not None]


_default_pool = None
_default_lock = native.allocate_lock()


def get_default_process_pool() -> ProcessPool:
    """The process-wide :class:`ProcessPool`, created on first use.

    ``pool="process"`` means this pool.  Its size is
    :func:`default_process_count`.
    """
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _default_lock:
            if _default_pool is None:
                _default_pool = ProcessPool(name="offload-process")
            pool = _default_pool
    return pool


_atexit_registered = False


def _register_atexit():
    # Registered when the first pool is made, after multiprocessing is
    # imported, so it runs before multiprocessing's own exit handler (atexit
    # runs last-registered first): the children are gone when that one looks.
    global _atexit_registered
    if not _atexit_registered:
        import multiprocessing.util  # noqa: F401 - registers its exit handler first

        _atexit_registered = True
        atexit.register(_terminate_all)


def _terminate_all():
    for pool in list(_pools):
        pool._terminate(timeout=5.0)


def _after_fork_in_child():
    for pool in list(_pools):
        pool._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
