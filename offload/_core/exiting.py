"""Interpreter exit: what was handed to a pool runs before the interpreter goes.

The standard library's executors run every submitted call before the
interpreter exits.  offload's workers are raw threads, which the interpreter
neither waits for nor knows of, so this module does it: a hook registered
with ``threading._register_atexit`` (what :mod:`concurrent.futures` uses; it
runs in ``threading._shutdown``, after the main greenlet has finished and
before non-daemon threads are joined and ``atexit`` handlers run) shuts every
live pool down without cancelling anything, then waits -- on a real lock,
never the hub: it neither creates a hub nor switches greenlets, which
greenlet >= 3.5.1 forbids late in the interpreter's life -- until their
workers have run what was queued and stopped.

The wait is bounded by ``OFFLOAD_EXIT_TIMEOUT`` (seconds, default
:data:`DEFAULT_EXIT_TIMEOUT`; ``0`` does not wait, ``inf`` waits as long as
the calls take).  Past it, calls still queued are cancelled, worker processes
are stopped (SIGTERM, then SIGKILL), and one :class:`RuntimeWarning` names
the calls given up on.  Once the hook has begun, every pool refuses new
calls with :exc:`RuntimeError`, as the standard library's do.
"""

import os
import threading
import warnings
import weakref
from collections import Counter
from time import monotonic
from typing import Any

from . import native
from .checks import env_timeout
from .waiters import locked

__all__ = [
    "DEFAULT_EXIT_TIMEOUT",
    "abandon",
    "add",
    "exit_timeout",
    "refusal",
    "started",
    "wait_stopped",
    "worker_started",
    "worker_stopped",
]

#: Seconds the interpreter's exit waits for submitted calls by default: as
#: long as ``docker stop`` waits before it kills a process.
DEFAULT_EXIT_TIMEOUT = 10.0
_VARIABLE = "OFFLOAD_EXIT_TIMEOUT"

_pools: "weakref.WeakSet[Any]" = weakref.WeakSet()
_registered = False
_started = False

# Every live ThreadPool worker thread: id(counters) -> (counters, queue).  A
# pool dropped without shutdown() is collected while its workers still run
# what it had queued (they hold it weakly); the exit finds those here.
_workers: dict[int, tuple[Any, Any]] = {}
_workers_lock = native.allocate_lock()
_workers_gone: Any = None  # at exit: released when the last stray worker stops
_strays: set[int] = set()


def worker_started(counters: Any, queue: Any) -> None:
    """A ThreadPool worker thread began serving *queue*."""
    with _workers_lock:
        _workers[id(counters)] = (counters, queue)


def worker_stopped(counters: Any) -> None:
    """That worker thread stops."""
    with _workers_lock:
        _workers.pop(id(counters), None)
        _strays.discard(id(counters))
        if _workers_gone is not None and not _strays:
            _workers_gone.release()


def exit_timeout() -> float | None:
    """Seconds the interpreter's exit waits for calls (None: no limit).

    ``OFFLOAD_EXIT_TIMEOUT`` from the environment if set, else
    :data:`DEFAULT_EXIT_TIMEOUT`.  Raises ValueError naming the variable for
    a value that is not a number of seconds >= 0.
    """
    return env_timeout(_VARIABLE, DEFAULT_EXIT_TIMEOUT)


def started() -> bool:
    """Whether the interpreter's exit has begun (pools refuse calls from then on)."""
    return _started


def refusal() -> str:
    """The message of the RuntimeError a shut-down pool raises for a new call."""
    if _started:
        return "cannot schedule new futures after interpreter shutdown"
    return "cannot schedule new futures after shutdown"


def add(pool: Any) -> None:
    """Have the interpreter's exit wait for *pool* (held weakly).

    The first pool registers the exit hook, and checks
    ``OFFLOAD_EXIT_TIMEOUT`` so that a bad value fails here, early.  A pool
    made once the exit has begun is shut down at once.
    """
    global _registered
    if not _registered:
        exit_timeout()
        try:
            threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
        except RuntimeError:  # the interpreter is already shutting down
            pool._is_shutdown = True
            return
        _registered = True
    if _started:
        pool._is_shutdown = True
        return
    _pools.add(pool)


def _at_exit() -> None:
    global _started
    _started = True
    pools = list(_pools)
    if not pools and not _workers:
        return
    try:
        timeout = exit_timeout()
    except ValueError as exc:
        _warn(f"{exc}; waiting {DEFAULT_EXIT_TIMEOUT} seconds")
        timeout = DEFAULT_EXIT_TIMEOUT
    deadline = None if timeout is None else monotonic() + timeout
    for pool in pools:
        pool.shutdown(wait=False)  # queued calls stay queued and run
    late = []
    for pool in pools:
        if not wait_stopped(pool, _left(deadline)):
            late.append(pool)
    abandoned: list[tuple[str, str, str]] = []
    for pool in late:
        abandoned += pool._abandon_at_exit()
    abandoned += _wait_for_strays({id(pool._queue) for pool in pools}, deadline)
    if abandoned:
        _warn(_describe(abandoned, timeout))


def wait_stopped(pool: Any, timeout: float | None) -> bool:
    """After ``pool.shutdown(wait=False)``: block this thread until its
    workers have run what was queued and stopped, up to *timeout* seconds
    (None: no limit); True if they did.  On a real lock, never the hub."""
    with pool._lock:
        if not pool._workers:
            return pool._queue.qsize() == 0  # calls and no worker: they will not run
    done = locked()
    pool._stopped.add_done_callback(lambda _: done.release())
    if timeout is None:
        return done.acquire()
    return done.acquire(True, min(timeout, native.TIMEOUT_MAX))


def abandon(pool: Any) -> list[tuple[str, str, str]]:
    """The exit's wait for *pool* ran out: cancel what is still queued, and
    name it and what is still running, as (pool, function, state)."""
    queued = pool._drain()
    with pool._lock:
        running = [counters.current for counters in pool._live_counters()[0]]
    label = f"{type(pool).__name__} {pool.name!r}"
    abandoned = []
    for items, state in ((running, "running"), (queued, "queued")):
        for item in items:
            work = item.work if item is not None else None
            if work is not None:  # None: no call, or it has just finished
                abandoned.append((label, work.name, state))
    pool._cancel(queued)
    return abandoned


def _left(deadline):
    return None if deadline is None else max(deadline - monotonic(), 0.0)


def _wait_for_strays(queues: set[int], deadline: float | None) -> list[tuple[str, str, str]]:
    """Wait for the workers of collected pools (whose queues are not in
    *queues*) to finish what was queued; name what they did not finish."""
    global _workers_gone
    with _workers_lock:
        strays = {key: entry for key, entry in _workers.items() if id(entry[1]) not in queues}
        if not strays:
            return []
        _strays.update(strays)
        _workers_gone = gone = locked()
    left = _left(deadline)
    if gone.acquire(*((True, min(left, native.TIMEOUT_MAX)) if left is not None else ())):
        return []
    label = "a ThreadPool collected without shutdown()"
    abandoned = []
    seen_queues = set()
    for counters, queue in strays.values():
        item = counters.current
        work = item.work if item is not None else None
        if work is not None:
            abandoned.append((label, work.name, "running"))
        if id(queue) in seen_queues:
            continue
        seen_queues.add(id(queue))
        for item in native.take_all(queue):
            name = item.work.name if item.work is not None else "a call"
            if item.cancel():
                abandoned.append((label, name, "queued"))
    return abandoned


def _describe(abandoned: list[tuple[str, str, str]], timeout: float | None) -> str:
    """One line per pool: "ThreadPool 'x': 1 running (f), 2 queued (g x2)"."""
    by_pool: dict[str, dict[str, Counter]] = {}
    for pool, name, state in abandoned:
        by_pool.setdefault(pool, {}).setdefault(state, Counter())[name] += 1
    lines = []
    for pool, states in by_pool.items():
        parts = []
        for state in ("running", "queued"):
            names = states.get(state)
            if names:
                listed = ", ".join(name + (f" x{n}" if n > 1 else "") for name, n in names.items())
                parts.append(f"{sum(names.values())} {state} ({listed})")
        lines.append(f"{pool}: " + ", ".join(parts))
    return (
        f"the interpreter's exit gave up on {len(abandoned)} offload call(s) after {timeout} "
        f"seconds ({_VARIABLE}); running ones were left to finish or die with the process "
        "(threads) or stopped (processes), queued ones never ran: " + "; ".join(lines)
    )


def _warn(message: str) -> None:
    # Explicit: at exit there is no caller's line to point at.
    warnings.warn_explicit(message, RuntimeWarning, "offload", 0, module="offload")


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist here; the exit must not wait for them.
    global _workers_lock
    _workers_lock = native.allocate_lock()
    _workers.clear()
    _strays.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
