"""The bridge that carries a finished call from a worker back to its caller.

A worker thread must never touch a hub: the only entry into a gevent loop
that is safe from another thread is an async watcher's ``send()``.  So each
hub gets one :class:`_Bridge` holding one async watcher, started once and
kept, and a deque of waiters to wake.  A worker appends its waiter to the
deque and calls ``send()`` (the loop coalesces repeated sends into one
wake-up); the watcher's callback then switches to every waiter in the deque
in a single pass.  The watcher holds a reference on the loop only while a
greenlet of that hub is waiting, so ``hub.join()`` returns as soon as nothing
is in flight.

When a pool's workers are all busy, a caller that queues a call turns on
*gathering* (:meth:`_Bridge.gather`): for up to ``GATHER_FOR`` seconds a
worker that finishes a call while more are queued appends its waiter without
``send()``, and a hub timer drains them all in one pass.  Under load the hub
then wakes about once per millisecond rather than once per call, which halves
the context switches per call.  The wait it adds is bounded, only callers of
a pool with a backlog see it, and a worker that finds the queue empty sends
at once, so that no worker idles for want of callers.  The gathering timer
doubles as a probe: how late it fires, smoothed in :attr:`_Bridge.late`, is
how long the hub waits for the GIL and its other work under that load, and
an adaptive pool starts no more threads for callers whose hub is later than
``LAG_BUDGET``.

A caller that is not a greenlet on a hub -- a plain thread, or the hub
greenlet itself -- waits on a real lock instead.  :func:`waiter` picks the
right kind for the place it is called from.
"""

import os
from collections import deque
from time import monotonic

import gevent
import gevent.monkey
from gevent._hub_local import get_hub_if_exists
from greenlet import getcurrent

from ._core import native

_TIMEOUT_MAX = native.TIMEOUT_MAX
GATHER_FOR = 0.001  # seconds the hub may hold back the wake-ups of a busy pool
#: How late, smoothed, a hub may fire its gathering timer (seconds) for an
#: adaptive pool to start more threads for its callers.  Beyond it, threads
#: running Python (a pure-Python driver) already keep the hub waiting for
#: the GIL: another would add lag, not throughput.
LAG_BUDGET = 0.0005


class _Bridge:
    """One hub's async watcher and the waiters it has yet to wake."""

    __slots__ = ("hub", "ready", "pending", "watcher", "gathering", "timer", "due", "late")

    def __init__(self, hub):
        self.hub = hub
        self.ready = deque()
        self.pending = 0  # greenlets of this hub parked on a waiter
        watcher = hub.loop.async_()
        watcher.start(self._drain)
        watcher.ref = False
        self.watcher = watcher
        self.gathering = False
        self.timer = None
        self.due = 0.0  # when the gathering timer should fire
        self.late = 0.0  # how late it fired, smoothed (seconds)

    def gather(self):
        """Hold back wake-ups for up to ``GATHER_FOR`` seconds (hub thread only).

        For a pool whose workers are all busy: its callers are woken in one
        pass of the hub instead of one pass each.
        """
        if not self.gathering:
            self.gathering = True
            # A new timer each time: gevent's libev timers fire at once when
            # started again after they fired.
            if self.timer is not None:
                self.timer.close()
            self.timer = self.hub.loop.timer(GATHER_FOR, ref=False)
            self.due = monotonic() + GATHER_FOR
            self.timer.start(self._flush, update=True)

    def _flush(self):
        # Gathering off first: a worker that still saw it on has appended
        # already.  The drain runs from the watcher, not here, so that the
        # greenlets it wakes, which call gather() again, never close this
        # timer from inside its own callback.
        self.gathering = False
        self.late += (monotonic() - self.due - self.late) / 8
        if self.ready:
            self.watcher.send()

    def release(self):
        self.pending -= 1
        if not self.pending:
            self.watcher.ref = False

    def close(self):
        self.ready.clear()
        self.watcher.close()
        if self.timer is not None:
            self.timer.close()

    def _drain(self):
        ready = self.ready
        try:
            while ready:
                waiter = ready.popleft()
                glet = waiter.glet
                if glet is not None:
                    waiter.glet = None
                    waiter.woken = True
                    self.pending -= 1
                    if not self.pending:
                        self.watcher.ref = False
                    glet.switch()
        finally:
            # Only reached with waiters left if a switch raised into the hub.
            if ready:
                self.watcher.send()


def current_bridge():
    """The bridge of the calling greenlet's hub, or None where a greenlet
    cannot park: in a thread with no hub, or in the hub greenlet itself."""
    hub = get_hub_if_exists()
    if hub is None or getcurrent() is hub:
        return None
    try:
        return hub._offload_bridge
    except AttributeError:
        bridge = hub._offload_bridge = _Bridge(hub)
        return bridge


class HubWaiting:
    """Parks the greenlet ``self.glet`` until :meth:`wake` (from any thread).

    A mixin: the concrete class declares the slots ``glet``, ``bridge`` and
    ``woken`` and sets them to the current greenlet, its
    :func:`current_bridge` and False.
    """

    __slots__ = ()

    def wake(self, busy=False):
        """Wake the greenlet; call at most once, from any thread.

        *busy*: the pool that ran the call still has calls queued, so its
        workers do not wait for this caller.  If the hub is gathering, the
        wake-up then waits for the hub's next pass (see :meth:`_Bridge.gather`).
        """
        if self.glet is not None:
            bridge = self.bridge
            bridge.ready.append(self)
            # A gathering hub's timer sends soon (see _Bridge._flush).
            if not (busy and bridge.gathering):
                bridge.watcher.send()

    def hub_keeps_up(self):
        """Whether the caller's hub is within ``LAG_BUDGET`` (see
        :attr:`_Bridge.late`)."""
        return self.bridge.late < LAG_BUDGET

    def wait(self, timeout=None):
        """Switch to the hub until woken; False if *timeout* passed first.

        An exception thrown into the greenlet meanwhile (kill, a
        ``gevent.Timeout``) abandons the wait: a later :meth:`wake` does
        nothing, and the loop is no longer held for this waiter.
        """
        bridge = self.bridge
        if timeout is not None and timeout <= 0:
            self.glet = None
            return self.woken
        bridge.pending += 1
        if bridge.pending == 1:
            bridge.watcher.ref = True
        switch = bridge.hub.switch
        timer = None
        try:
            if timeout is not None:
                timer = bridge.hub.loop.timer(timeout)
                timer.start(self._expire)
            while self.glet is not None:
                switch()
        except BaseException:
            if self.glet is not None:
                self.glet = None
                bridge.release()
            raise
        finally:
            if timer is not None:
                timer.close()
        return self.woken

    def _expire(self):
        glet = self.glet
        if glet is not None:
            self.glet = None
            self.bridge.release()
            glet.switch()


class ThreadWaiting:
    """Blocks an OS thread on the real lock ``self.lock`` until :meth:`wake`.

    A mixin: the concrete class declares the slot ``lock`` and sets it to
    :func:`locked`.
    """

    __slots__ = ()

    def wake(self, busy=False):
        """Wake the thread; call at most once, from any thread."""
        self.lock.release()

    def hub_keeps_up(self):
        return True  # no hub waits on this caller

    def wait(self, timeout=None):
        if timeout is None:
            return self.lock.acquire()
        if timeout <= 0:
            return self.lock.acquire(False)
        return self.lock.acquire(True, min(timeout, _TIMEOUT_MAX))


def locked():
    """A new real lock, already acquired: what a :class:`ThreadWaiting` waits on."""
    lock = native.allocate_lock()
    lock.acquire()
    return lock


class _HubWaiter(HubWaiting):
    __slots__ = ("glet", "bridge", "woken")

    def __init__(self, bridge):
        self.glet = getcurrent()
        self.bridge = bridge
        self.woken = False


class _ThreadWaiter(ThreadWaiting):
    __slots__ = ("lock",)

    def __init__(self):
        self.lock = locked()


def waiter():
    """A one-shot waiter for the calling context: ``wait(timeout)`` here,
    ``wake()`` from anywhere.  A greenlet on a hub parks so that only it
    waits; anything else blocks its thread."""
    bridge = current_bridge()
    if bridge is None:
        return _ThreadWaiter()
    return _HubWaiter(bridge)


class Semaphore:
    """A counting semaphore released from any thread, awaited cooperatively.

    A greenlet that must wait for a unit parks through the bridge; a plain
    thread blocks.  A unit released while someone waits is handed straight
    to the first waiter, so none is lost to a waiter that gave up.
    """

    def __init__(self, value):
        self._value = value
        self._lock = native.allocate_lock()
        self._waiters = deque()

    def acquire(self, timeout=None):
        with self._lock:
            if self._value and not self._waiters:
                self._value -= 1
                return True
            w = waiter()
            self._waiters.append(w)
        try:
            if w.wait(timeout):
                return True
        except BaseException:
            if not self._withdraw(w):
                self.release()
            raise
        return not self._withdraw(w)

    def release(self):
        with self._lock:
            if not self._waiters:
                self._value += 1
                return
            w = self._waiters.popleft()
        w.wake()

    def _withdraw(self, w):
        """Take *w* off the queue; False if it was already handed a unit."""
        with self._lock:
            try:
                self._waiters.remove(w)
            except ValueError:
                return False
            return True


def _after_fork_in_child():
    hub = get_hub_if_exists()
    if hub is None:
        return
    if not gevent.monkey.is_module_patched("os"):
        # gevent prepares its loop for the child only in its own fork (the
        # patched os.fork); a bridge needs a working loop, and libuv's does
        # not survive a plain fork.  gevent.reinit is idempotent.
        gevent.reinit()
    # The bridge refers to the parent's waiters and may hold a ref on the
    # loop for them; nobody will wake those.
    bridge = getattr(hub, "_offload_bridge", None)
    if bridge is not None:
        del hub._offload_bridge
        bridge.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
