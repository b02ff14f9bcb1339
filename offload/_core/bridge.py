"""One async watcher per hub: the only way back into a hub from a worker.

A worker thread must never touch a hub: the only entry into a gevent loop
that is safe from another thread is an async watcher's ``send()``.  Each hub
gets one :class:`Bridge`, made in that hub's thread on first use and kept:
workers append the waiters they finished to its deque and ``send()``; the
watcher's callback, in the hub, switches to every waiter in one pass.  The
watcher holds a reference on the loop only while a greenlet of that hub is
parked, so ``hub.join()`` returns once nothing is in flight.  How a busy
pool's wake-ups are gathered, and why, is in ``docs/howitworks.rst``.
"""

import os
import weakref
from collections import deque
from time import monotonic
from typing import Any

import gevent
import gevent.monkey
from gevent._hub_local import get_hub_if_exists
from greenlet import getcurrent

GATHER_FOR = 0.001  # seconds the hub may hold back the wake-ups of a busy pool
PASS_FOR = 0.001  # seconds one pass of the watcher may run woken greenlets
#: How late, smoothed, a hub may fire its gathering timer (seconds) for an
#: adaptive pool to start more threads for its callers.  Beyond it, threads
#: running Python (a pure-Python driver) already keep the hub waiting for
#: the GIL: another would add lag, not throughput.
LAG_BUDGET = 0.0005


class Bridge:
    """One hub's async watcher and the waiters it has yet to wake."""

    # ready: appended by workers (any thread), drained by the hub; deque's
    # append and popleft are atomic.  gathering: set and cleared by the hub,
    # read by workers (a stale read only sends one wake-up more or later).
    # pending, watcher, timer, due, late: hub thread only.  __weakref__: the
    # after-fork hook finds every bridge through a WeakSet.
    __slots__ = ("hub", "ready", "pending", "watcher", "gathering", "timer", "due", "late", "__weakref__")

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.ready: deque[Any] = deque()
        self.pending = 0  # greenlets of this hub parked on a waiter
        self.watcher: Any = None
        self._plug()
        self.gathering = False
        self.timer: Any = None  # the gathering timer: a new one per window
        self.due = 0.0  # when the gathering timer should fire
        self.late = 0.0  # how late it fired, smoothed (seconds)

    def gather(self) -> None:
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

    def _flush(self) -> None:
        # Gathering off first: a worker that still saw it on has appended
        # already.  The drain runs from the watcher, not here, so that the
        # greenlets it wakes, which call gather() again, never close this
        # timer from inside its own callback.
        self.gathering = False
        self.late += (monotonic() - self.due - self.late) / 8
        if self.ready:
            self.watcher.send()

    def release(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.watcher.ref = False

    def _plug(self):
        watcher = self.hub.loop.async_()
        watcher.start(self._drain)
        watcher.ref = self.pending > 0
        # Set before anything is drained: a worker appends, then reads this.
        self.watcher = watcher

    def unplug(self, own_hub):
        """In a forked child: stop using the parent's watcher and timer.

        Wake-ups meanwhile only queue up in ``ready``.  *own_hub*: this is
        the forking thread's hub, whose loop the child goes on running, so
        its watcher is closed; another thread's loop is left untouched (the
        thread is gone, and sending on that watcher would poke the parent's
        loop through the file descriptors both processes share).
        """
        if own_hub:
            self.watcher.close()
            if self.timer is not None:
                self.timer.close()
        self.watcher = _UNPLUGGED
        self.timer = None
        self.gathering = False

    def replug(self):
        """In the child's hub, once its loop is rebuilt: a new watcher, and
        wake whoever was woken meanwhile (the calls that failed with the fork,
        and those that had finished in the parent before it)."""
        self._plug()
        if self.ready:
            self.watcher.send()

    def close(self) -> None:
        self.ready.clear()
        self.watcher.close()
        if self.timer is not None:
            self.timer.close()

    def _drain(self) -> None:
        ready = self.ready
        # Only the waiters queued when the pass began: workers keep appending
        # while the woken greenlets run, and a pass that chased them would
        # starve the loop's timers and I/O for as long as the pool is busy.
        # Later ones get the next pass (the send below).
        count = len(ready)
        # And for at most PASS_FOR seconds: the greenlets run inside this
        # callback, and past that the loop's timers and I/O get their turn.
        deadline = monotonic() + PASS_FOR
        try:
            while count:
                count -= 1
                waiter = ready.popleft()
                glet = waiter.glet
                if glet is not None:
                    waiter.glet = None
                    waiter.woken = True
                    self.pending -= 1
                    if not self.pending:
                        self.watcher.ref = False
                    glet.switch()
                    if monotonic() > deadline:
                        break
        finally:
            # Waiters left: appended during the pass, or a switch raised into the hub.
            if ready:
                self.watcher.send()


class _Unplugged:
    """A forked child's stand-in for a parent's watcher: sends go nowhere."""

    ref = False

    def send(self):
        pass

    def close(self):
        pass


_UNPLUGGED = _Unplugged()
_bridges: "weakref.WeakSet[Bridge]" = weakref.WeakSet()  # every hub's, any thread's


def current_bridge() -> "Bridge | None":
    """The bridge of the calling greenlet's hub, or None where a greenlet
    cannot park: in a thread with no hub, or in the hub greenlet itself."""
    hub = get_hub_if_exists()
    if hub is None or getcurrent() is hub:
        return None
    try:
        return hub._offload_bridge  # type: ignore[no-any-return]
    except AttributeError:
        bridge = hub._offload_bridge = Bridge(hub)
        _bridges.add(bridge)
        return bridge


def _after_fork_in_child() -> None:
    """Unplug every bridge; the forking thread's is plugged in again by its hub.

    Runs before the pools' own after-fork code (registered later), which
    fails the calls the parent was running for this process's waiters
    (``Call.abandon``): those wake-ups collect in ``ready`` and are
    delivered when the child's hub next runs, after gevent has rebuilt its
    loop -- a patched ``os.fork`` does that only after these hooks return.
    """
    hub = get_hub_if_exists()
    if hub is not None and not gevent.monkey.is_module_patched("os"):
        # gevent prepares its loop for the child only in its own fork (the
        # patched os.fork); a bridge needs a working loop, and libuv's does
        # not survive a plain fork.  gevent.reinit is idempotent.
        gevent.reinit()
    own = getattr(hub, "_offload_bridge", None) if hub is not None else None
    for bridge in list(_bridges):
        bridge.unplug(bridge is own)
    if own is not None:
        hub.loop.run_callback(own.replug)


os.register_at_fork(after_in_child=_after_fork_in_child)
