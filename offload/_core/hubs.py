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
pays for a loop it does not use.  (Calls still import in their workers:
4 warm workers importing one new module at once, 300 times, never hung;
only the workers' start-up was seen to.)

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
from logging import DEBUG
from typing import Any

import gevent
import gevent.monkey
from gevent._hub_local import get_hub_if_exists

from . import naming, native
from .observe import logger

_get_native_id = gevent.monkey.get_original("_thread", "get_native_id")

__all__ = ["callbacks_runner", "ensure_hub", "forget_parker", "idle_get", "prepare", "wake_parked"]

_lock = native.allocate_lock()


def prepare() -> None:
    """Resolve, in the thread starting a worker, the gevent settings a hub's
    constructor reads, so that no hub built later imports anything; under
    libuv, make its default loop now (see the module's docstring).

    Without it a worker building its hub and a hubless main thread building
    its own (its first ``gevent.spawn``) import gevent's settings at the
    same moment, and deadlock as above.  A setting resolves once; later
    calls are attribute reads.  What the worker needs to name itself is
    looked up here too (:func:`offload._core.naming.prepare`).
    """
    naming.prepare()
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


#: How often idle workers with a hub have their loops looked at for
#: callbacks (seconds), by one thread for all of them (:func:`_watch`).
IDLE_TICK = 0.02
#: After how long asleep with no wake-up a parked worker looks at its queue
#: all the same (seconds): a safety net, not how calls reach it.
RECHECK = 1.0


class _Parker:
    """An idle worker with a hub: the lock it sleeps on, and its loop's callbacks."""

    __slots__ = ("lock", "parked", "callbacks")

    def __init__(self, parked, callbacks):
        self.lock = native.allocate_lock()
        self.lock.acquire()  # held: the worker's next acquire sleeps until a release
        self.parked = parked  # its pool's deque of parked workers
        self.callbacks = callbacks


#: Every worker with a hub, for the watch thread; its own thread adds and removes it.
_parkers: "set[_Parker]" = set()
_watching = False


def idle_get(queue, parked):
    """The ``get`` of a worker whose thread has a hub, or None for ``queue.get``.

    A patched lock remembers the hub of the thread that first took it, and a
    release in any other thread is delivered as a callback on that hub's
    loop.  A worker blocked on its queue runs no loop: a thread waiting on
    such a lock would wait until that worker ran another call, for ever if
    none came.  So an idle worker with a hub sleeps on a lock of its own,
    and leaves itself in *parked*: the next put on the queue pops it and
    releases that lock (:func:`wake_parked`), and so does one watch thread
    that looks at every parked worker's loop each ``IDLE_TICK`` and wakes
    those with callbacks waiting, which they then run.  A worker asleep for
    ``RECHECK`` with no wake-up looks at its queue again all the same.

    Each worker used to take calls with a 20 ms timeout and run its
    callbacks between tries: 50 idle ones took the GIL 2,500 times a second
    (7-9% of a core, 3,300-5,500 context switches); now about 100 (the watch
    thread's 50, and one a second per worker), 0.6-0.8% of a core.
    Waiting in the worker's own loop instead, woken by an async watcher,
    cost each wake-up about 10 µs more than a lock does.
    """
    hub = get_hub_if_exists()
    if hub is None:
        return None
    get_nowait, qsize = queue.get_nowait, queue.qsize
    Empty = native.Empty
    callbacks = hub.loop._callbacks
    sleep = gevent.sleep
    me = _Parker(parked, callbacks)
    sleep_on = me.lock.acquire
    _watch_for(me)

    def get_parked():
        while True:
            try:
                return get_nowait()  # a call is queued: take it without parking
            except Empty:
                pass
            # Parked first, then a look: a put after the look finds this worker
            # parked, one before it left a call to find.
            parked.append(me)
            if not qsize():
                # Until a put or the watch thread pops this worker and releases:
                # whoever pops it releases once, so the lock is released only while held.
                if not sleep_on(True, RECHECK):
                    if not _unpark(me):
                        sleep_on()  # popped as the wait ran out: take the release on its way
                    elif qsize() and logger.isEnabledFor(DEBUG):
                        # A wake-up lost (a bug), or a put whose pop comes right after.
                        logger.debug("a parked worker found calls queued after %s s asleep", RECHECK)
                if len(callbacks):
                    sleep(0)  # one pass of this thread's loop: its callbacks run
                continue
            if not _unpark(me):
                # Popped meanwhile: take the release on its way now, so that two
                # are never due; the call that popped it may need another worker.
                sleep_on()
                if qsize() > 1:
                    wake_parked(parked)
            # Back to the top: the call found, unless another worker took it first.

    get_parked.parker = me  # type: ignore[attr-defined]
    return get_parked


def _unpark(parker) -> bool:
    try:
        parker.parked.remove(parker)
        return True
    except ValueError:  # popped by a putter (or the watch thread), whose release is on its way
        return False


def wake_parked(parked) -> None:
    """Wake one worker parked by :func:`idle_get` (any thread), if one is."""
    try:
        parker = parked.pop()
    except IndexError:
        return
    parker.lock.release()


def forget_parker(get) -> None:
    """The worker that took calls with *get* (from :func:`idle_get`) stops:
    the watch thread no longer looks at it."""
    with _lock:
        _parkers.discard(get.parker)


def _watch_for(parker):
    global _watching
    with _lock:
        _parkers.add(parker)
        if not _watching:
            _watching = True
            native.start_new_thread(naming.named(_watch, "offload-watch"), ())


def _watch():
    """The watch thread: wake the parked workers whose loops have callbacks to run.

    A plain thread with no hub, touching no gevent object: it reads each
    loop's callback queue and releases native locks.  It ends when no
    worker with a hub is left.
    """
    global _watching
    naming.set_os_name("offload-watch")
    while True:
        native.sleep(IDLE_TICK)
        with _lock:
            if not _parkers:
                _watching = False
                return
            parkers = list(_parkers)
        for parker in parkers:
            if len(parker.callbacks) and _unpark(parker):
                parker.lock.release()


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
    global _lock, _watching
    _lock = native.allocate_lock()  # a worker may have held it: workers are gone
    _parkers.clear()  # and so is the watch thread
    _watching = False


os.register_at_fork(after_in_child=_after_fork_in_child)
