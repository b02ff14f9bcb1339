"""A hub for each worker thread when ``_thread`` is patched, made one at a time.

After :func:`gevent.monkey.patch_all`, :mod:`importlib`'s module locks are
gevent locks.  A worker thread with no hub that finds one of them taken
(another thread is importing that module) does not block: gevent's lock
sleeps to let "other greenlets" run, which creates the thread's hub, whose
constructor imports again (gevent's config resolves names lazily) and takes
further module locks.  Two hubless threads doing this at once -- two workers
calling a patched ``time.sleep`` or taking a patched lock for the first time
-- each hold a module lock the other waits for: the process hangs (gevent's
own ThreadPool hangs the same way).  A thread that already has a hub waits
on its loop when an import lock is busy, and that too can hang for good:
a worker that found the lock of ``ctypes`` taken by another one starting
at the same moment was never woken (see :func:`offload._core.naming.prepare`).

So before a worker runs any call, :func:`ensure_hub` gives it its hub,
under a real lock so that no two threads build one at the same time, and
the thread starting a worker first resolves gevent's settings
(:func:`prepare`), so that no hub's constructor imports anything, and what
the worker needs to name itself.  Unpatched, it does nothing: no thread
pays for a loop it does not use.  (A call that imports a module for the
first time still takes the lock in its worker: import what calls need
before offloading them, under patching.)

Under gevent's libuv loop, patched in any way, :func:`prepare` also makes
libuv's default loop -- the one the main thread's hub runs -- before the
first worker starts.  gevent's libuv ``loop.__init__`` asks libuv for the
default loop in every thread, even one building a loop of its own (to know
whether it is the default), and libuv builds that loop on the first ask
without a lock (libuv issue #1461, "uv_default_loop is not thread safe").
Two workers building their first hubs at once, while the main thread had
none yet (a patched ``time.sleep`` or socket in each), built it twice over
each other: the main hub then ran on that wreck, its async watcher's
eventfd not polled, and a greenlet waiting for a worker never woke (or
libuv aborted).  Made first, the loop is only looked up afterwards.
"""

import os
import sys
from typing import Any

import gevent
import gevent.monkey
from gevent._hub_local import get_hub_if_exists

from . import native

_get_native_id = gevent.monkey.get_original("_thread", "get_native_id")

__all__ = ["callbacks_runner", "ensure_hub", "idle_get", "prepare"]

#: How often an idle worker with a hub runs its loop's callbacks (seconds).
IDLE_TICK = 0.02

_lock = native.allocate_lock()


def prepare() -> None:
    """Resolve, in the thread starting a worker, the gevent settings a hub's
    constructor reads, so that no hub built later imports anything; under
    libuv, make its default loop now (see the module's docstring).

    Without it a worker building its hub and a hubless main thread building
    its own (its first ``gevent.spawn``) import gevent's settings at the
    same moment, and deadlock as above.  A setting resolves once; later
    calls are attribute reads.
    """
    if gevent.monkey.is_module_patched("_thread"):
        config = gevent.config
        for setting in ("loop", "libev_backend", "format_context", "monitor_thread", "track_greenlet_tree"):
            getattr(config, setting)
    # Unpatched, no worker builds a hub.  Only from the main thread, whose
    # hub runs the default loop: made from another thread (a plain thread
    # starting a pool's first worker), it raced the main thread building
    # its own hub -- the same race, and a crash under patch_socket().
    if gevent.monkey.is_anything_patched() and _in_main_thread():
        global _uv_default_loop
        if _uv_default_loop is False:
            _uv_default_loop = _find_uv_default_loop()
        if _uv_default_loop is not None:
            _uv_default_loop()  # made on the first call, only looked up after


#: libuv's ``uv_default_loop`` (see :func:`prepare`); None under another
#: loop, False: not looked up yet.
_uv_default_loop: Any = False


def _in_main_thread() -> bool:
    # The kernel's thread id: patch_all() makes threading's idents the
    # greenlets'.  On Linux the main thread's is the process id; elsewhere
    # (no way to tell here) the loop is left to gevent, as before.
    return sys.platform.startswith("linux") and _get_native_id() == os.getpid()


def _find_uv_default_loop() -> Any:
    if not getattr(gevent.config.loop, "__module__", "").startswith("gevent.libuv"):
        return None
    try:
        from gevent.libuv import _corecffi  # the cffi module gevent's libuv loop calls through
    except ImportError:  # pragma: no cover - a gevent built without libuv
        return None
    return _corecffi.lib.uv_default_loop


def ensure_hub() -> None:
    """Give the calling worker thread its hub now if ``_thread`` is patched."""
    if get_hub_if_exists() is None and gevent.monkey.is_module_patched("_thread"):
        with _lock:
            gevent.get_hub()


def idle_get(queue):
    """The ``get`` of a worker whose thread has a hub, or None for ``queue.get``.

    A patched lock remembers the hub of the thread that first took it, and a
    release in any other thread is delivered as a callback on that hub's
    loop.  A worker blocked on its queue runs no loop: a thread waiting on
    such a lock would wait until that worker ran another call, for ever if
    none came.  So an idle worker with a hub takes calls with a short
    timeout and runs its loop's pending callbacks between tries.
    """
    hub = get_hub_if_exists()
    if hub is None:
        return None
    sleep = gevent.sleep
    get = queue.get
    Empty = native.Empty
    callbacks = hub.loop._callbacks

    def get_running_callbacks():
        while True:
            try:
                return get(True, IDLE_TICK)
            except Empty:
                # Only a pass with callbacks to run: most ticks find none,
                # and a pass for nothing costs the GIL and a loop iteration.
                if len(callbacks):
                    sleep(0)  # one pass of this thread's loop: its callbacks run

    return get_running_callbacks


def callbacks_runner():
    """For a worker thread with a hub: a function that runs its loop's pending
    callbacks, if it has any; None in a thread without a hub.

    Called after each call and before the thread ends: a patched lock
    released by the call is handed to the next thread waiting for it by a
    callback on this loop, which must run before the worker takes its next
    call (the waiter would starve) or ends (it would wait for ever).
    """
    hub = get_hub_if_exists()
    if hub is None:
        return None
    callbacks = hub.loop._callbacks
    sleep = gevent.sleep

    def run_callbacks():
        if len(callbacks):
            sleep(0)  # one pass of this thread's loop

    return run_callbacks


def _after_fork_in_child():
    global _lock
    _lock = native.allocate_lock()  # a worker may have held it: workers are gone


os.register_at_fork(after_in_child=_after_fork_in_child)
