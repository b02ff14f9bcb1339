"""The worker threads of a ThreadPool: what each runs, and what it carries.

A worker is a raw OS thread (``offload._core.native``) that serves its
pool's queue with the shared loop of :func:`offload._poolbase.serve`; this
module adds what is particular to threads -- the initializer, a hub of its
own under patching (:mod:`offload._core.hubs`), gevent's monitor, the
adaptive pace, its name (:mod:`offload._core.naming`) -- and the
thread-local that tells a worker's own calls from others.
"""

import warnings
from collections.abc import Callable
from concurrent import futures
from contextvars import Context
from functools import partial
from typing import Any, NamedTuple

import gevent
from gevent._hub_local import get_hub_if_exists

from ._core import exiting, naming, native
from ._core.checks import name_of
from ._core.hubs import callbacks_runner, ensure_hub, forget_parker, idle_get, wake_parked
from ._poolbase import serve


class ThreadWork(NamedTuple):
    """What a ThreadPool queue item carries to its worker."""

    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    context: Context

    @property
    def name(self) -> str:
        """The function's name, for messages about the call."""
        return name_of(self.fn)


# NamedTuple's own __new__ is a Python function: a frame on every call.
_new_work = partial(tuple.__new__, ThreadWork)


class _WorkerLocal(native.local):
    queue = None  # the queue of the ThreadPool whose worker this thread is
    #: The queues of the pools whose workers wait, up the chain of nested
    #: calls, for the call this worker runs (one entry per waiting worker).
    chain: tuple = ()


_tls = _WorkerLocal()


def _work(pool_ref, queue, parked, idle, slots, max_idle, counters, pace, name, init):
    """The body of one worker thread: serve the queue, then retire.

    Each thread runs a copy of this function named after the thread (see
    :mod:`offload._core.naming`).
    """
    _tls.queue = queue
    ensure_hub()  # before anything else here: see offload/_core/hubs.py
    naming.register(name)
    try:
        _serve(pool_ref, queue, parked, idle, slots, max_idle, counters, pace, init)
    finally:
        naming.unregister()


def _initialize(pool_ref, init):
    """Run the pool's initializer here; False (the pool now broken) if it raised."""
    initializer, initargs = init
    try:
        initializer(*initargs)
        return True
    except BaseException:
        futures._base.LOGGER.critical("Exception in initializer:", exc_info=True)
        pool = pool_ref()
        if pool is not None:
            pool._initializer_failed()
        return False


def _serve(pool_ref, queue, parked, idle, slots, max_idle, counters, pace, init):
    if init is not None and not _initialize(pool_ref, init):
        pool = pool_ref()
        if pool is not None:
            pool._retire(counters)
        return
    run_callbacks = callbacks_runner()
    monitored = gevent.config.monitor_thread
    if pace is None and not monitored and run_callbacks is None:
        after_each = None  # the common case: nothing to do between calls
    else:

        def after_each(work, item, run, ended):
            if pace is not None:
                pace.finished(work.fn, run, ended, item.hub_keeps_up())
            if monitored:
                _unmonitor()
            if run_callbacks is not None:
                run_callbacks()

    get = idle_get(queue, parked)
    try:
        serve(queue, idle, max_idle, counters, None, after_each, slots, get)
    finally:
        if get is not None:
            forget_parker(get)
        if run_callbacks is not None:
            run_callbacks()
        exiting.worker_stopped(counters)
        pool = pool_ref()
        if pool is not None:
            pool._retire(counters)


def _in_chain(chain, fn, *args, **kwargs):
    """Run a nested call with its chain of waiting workers known (see ``_nested``)."""
    outer, _tls.chain = _tls.chain, chain
    try:
        return fn(*args, **kwargs)
    finally:
        _tls.chain = outer


def _unmonitor():
    # If the call made a hub in this thread, gevent's monitor must not report
    # this thread as blocking the hub: blocking is its job.
    hub = get_hub_if_exists()
    if hub is not None and hub.periodic_monitoring_thread is not None:
        hub.periodic_monitoring_thread.ignore_current_greenlet_blocking()


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


def _stop_one(queue, parked, _collected=None):
    """Queue a stop marker for one worker, and wake one if one sleeps parked.

    Also the callback of a worker's weak reference to its pool (*_collected*).
    """
    queue.put(None)
    wake_parked(parked)
