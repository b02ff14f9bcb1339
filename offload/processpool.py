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

What crosses the pipe is in :mod:`offload._process.wire`, the loop a child
runs in :mod:`offload._process.child`, and the thread that looks after one
child in :mod:`offload._process.keeper`.  This module holds the pool itself.
"""

import atexit
import contextvars
import os
import sys
from collections.abc import Callable, Iterable
from functools import partial
from itertools import chain
from typing import Any, NamedTuple, TypeVar

from ._core import checks, exiting, native
from ._core.bridge import current_bridge
from ._core.calls import HubCall, ThreadCall
from ._core.lifecycle import ForkRegistry, LazyDefault
from ._poolbase import PoolBase
from ._process import child, wire
from ._process.keeper import ChildKeeper, ChildSpec, WorkerCrashed
from ._process.wire import RemoteTraceback

_T = TypeVar("_T")

__all__ = [
    "ProcessPool",
    "RemoteTraceback",
    "WorkerCrashed",
    "default_process_count",
    "get_default_process_pool",
]

_pools: "ForkRegistry[ProcessPool]" = ForkRegistry()

#: Seconds a worker process has, after SIGTERM at exit, before SIGKILL.
TERMINATE_GRACE = 1.0
#: Seconds the exit then waits for the killed processes to be reaped.
KILL_WAIT = 2.0


class ProcessWork(NamedTuple):
    """What a ProcessPool queue item carries to its keeper thread."""

    message: tuple  # the pickled call, framed: its parts (see offload._process.wire)
    name: str  # the function's name, for error messages


def default_process_count() -> int:
    """The number of processes a pool gets when none is asked for.

    ``OFFLOAD_PROCESSES`` from the environment if set, else the number of
    CPUs this process may run on.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return checks.env_count("OFFLOAD_PROCESSES", cpus)


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


def _check_picklable(initializer, initargs):
    """Refuse, at once, an initializer or initargs that cannot reach a child."""
    try:
        wire.dumps((initializer, initargs))
    except RuntimeError as exc:
        # multiprocessing's queues, locks, Values and Arrays refuse pickling
        # except while a process is being started, which is exactly how
        # initargs travel (as the standard library's pools send them).
        if "inheritance" not in str(exc):
            raise TypeError(f"initializer and initargs must be picklable: {exc}") from exc
    except Exception as exc:
        raise TypeError(f"initializer and initargs must be picklable: {exc}") from exc


class ProcessPool(PoolBase):
    """A :class:`concurrent.futures.Executor` of worker processes for gevent.

    :param max_workers: the most processes it runs at once; ``None`` means
        :func:`~offload.processpool.default_process_count` (``OFFLOAD_PROCESSES``, else the CPUs
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
    the calling greenlet; in a plain thread it blocks that thread.  Calls are
    pickled in the caller, so pickling errors raise at once.  Processes
    start on demand and live until :meth:`shutdown`, or the end of the
    interpreter, which first lets queued and running calls finish (up to
    ``OFFLOAD_EXIT_TIMEOUT`` seconds), then stops the processes, SIGKILL
    after SIGTERM if need be.  Inside a worker process, calls to
    any ProcessPool run inline: a worker never starts processes of its own.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: Any = None,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        kill_on_timeout: bool = False,
        name: str | None = None,
    ):
        if max_workers is None:
            max_workers = default_process_count()
        checks.check_count("max_workers", max_workers, 1)
        if max_tasks_per_child is not None:
            checks.check_count("max_tasks_per_child", max_tasks_per_child, 1)
        initargs = checks.check_initializer(initializer, initargs)
        if initializer is not None:
            _check_picklable(initializer, initargs)
        checks.check_bool("kill_on_timeout", kill_on_timeout)
        checks.check_name("name", name)
        self._kill_on_timeout = kill_on_timeout
        self.name = name or f"ProcessPool-{id(self):x}"
        self._spec = ChildSpec(
            context=_context_for(mp_context),
            initializer=initializer,
            initargs=initargs,
            name=self.name,
            max_tasks_per_child=max_tasks_per_child,
            main_path=getattr(sys.modules.get("__main__"), "__file__", None),
        )
        self._max_workers = max_workers
        self._is_shutdown = False
        self._reset()
        _pools.add(self)
        _register_atexit()
        exiting.add(self)

    # -- submitting -------------------------------------------------------

    def call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
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
        checks.check_callable(fn)
        if child.IN_CHILD:
            return fn(*args, **kwargs)
        work = self._pack(fn, args, kwargs)
        bridge = current_bridge()
        item: HubCall | ThreadCall = (ThreadCall if bridge is None else HubCall)(work, bridge)
        name = work.name
        del work  # the message may be large: only the item keeps it
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

    def _in_own_worker(self):
        return child.IN_CHILD

    def _pack(self, fn, args, kwargs):
        # Pickled here, in the caller, so that an unpicklable call raises at once.
        return ProcessWork(wire.pack_call(fn, args, kwargs, contextvars.copy_context()), checks.name_of(fn))

    def _map(self, fn, iterables, timeout, chunksize):
        if chunksize == 1:
            return super()._map(fn, iterables, timeout, chunksize)
        # No chunk can hold more than sys.maxsize calls (islice refuses more).
        chunks = wire.chunks(iterables, min(chunksize, sys.maxsize))
        results = super()._map(partial(child.run_chunk, fn), (chunks,), timeout, 1)
        return chain.from_iterable(results)

    def _put(self, item):
        # Under the lock, so that no call can land behind the stop markers
        # that shutdown() queues.
        with self._lock:
            if self._is_shutdown:
                raise RuntimeError(exiting.refusal())
            self._submitted += 1
            self._queue.put(item)
        busy = self._wake_or_spawn()
        if self._is_shutdown and not self._workers:
            # shutdown() landed between the put and the start of a worker,
            # which it then refused: no worker will ever take the call.
            self._cancel(self._drain())
        return busy

    # -- workers ----------------------------------------------------------

    def _spawn(self):
        with self._lock:
            if len(self._workers) >= self._max_workers or self._is_shutdown:
                return
            worker = ChildKeeper(
                self._spec, self._queue, self._idle, self._max_workers, self._closing, self._retire
            )
            self._workers.append(worker)
        try:
            native.start_new_thread(worker.run, ())
        except BaseException:
            with self._lock:
                self._workers.remove(worker)
            raise

    def _closing(self):
        return self._is_shutdown

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
        self._cancel(self._close(cancel_futures))
        with self._lock:
            running = bool(self._workers)
        if wait and running:
            self._stopped.result()

    def _close(self, cancel_futures):
        with self._lock:
            self._is_shutdown = True
            workers = len(self._workers)
        # Drained before the stop markers go in, so that none is drained.
        drained = self._drain() if cancel_futures else []
        for _ in range(workers):
            self._queue.put(None)
        return drained

    def _terminate(self, grace=TERMINATE_GRACE):
        """Shut down now: cancel queued calls, stop running ones, reap all.

        Each process gets SIGTERM; one still alive *grace* seconds later
        gets SIGKILL, which cannot be ignored, so no process outlives the
        program.  What the interpreter's exit does to a pool whose calls
        did not finish within ``OFFLOAD_EXIT_TIMEOUT``.
        """
        self._cancel(self._close(cancel_futures=True))
        for kill in (False, True):
            with self._lock:
                workers = list(self._workers)
            if not workers:
                return
            for worker in workers:
                worker.stopping = True
                worker.signal(kill)
            if exiting.wait_stopped(self, grace if not kill else KILL_WAIT):
                return

    def _abandon_at_exit(self):
        abandoned = super()._abandon_at_exit()
        self._terminate()
        return abandoned

    def _forget_workers(self):
        # Only the forking thread exists in the child: the worker threads are
        # gone, and the processes are the parent's to look after.  Close the
        # copies of their pipes, or they would outlive the parent's.
        for worker in self._workers:
            worker.forget()

    def _live_counters(self):
        alive = sum(1 for worker in self._workers if worker.proc is not None)
        return [worker.counters for worker in self._workers], alive

    def pids(self) -> list[int]:
        """The process ids of the worker processes alive now."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.proc is not None]


_default = LazyDefault(lambda: ProcessPool(name="offload-process"))


def get_default_process_pool() -> ProcessPool:
    """The process-wide :class:`ProcessPool`, created on first use.

    ``pool="process"`` means this pool.  Its size is
    :func:`~offload.processpool.default_process_count`.
    """
    return _default.get()


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
    # Normally every pool has stopped by now (offload._core.exiting waited
    # for them); this catches a pool the exit hook did not see.
    for pool in _pools:
        pool._terminate()
