"""The ways a caller waits for a worker: parked on its hub, or blocked on a lock.

A greenlet on a hub parks (:class:`HubWaiting`) so that only it waits while
the hub runs every other greenlet; anything else -- a plain thread, or the
hub greenlet itself, which cannot park -- blocks its thread on a real lock
(:class:`ThreadWaiting`).  :func:`waiter` picks the kind for the place it is
called from, and :class:`CrossThreadSemaphore` and :class:`CrossThreadEvent`
are built on it.
"""

from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from . import native
from .bridge import LAG_BUDGET, Bridge, current_bridge
from .checks import check_timeout

_TIMEOUT_MAX = native.TIMEOUT_MAX


class HubWaiting:
    """Parks the greenlet ``self.glet`` until :meth:`wake` (from any thread).

    A mixin: the concrete class declares the slots ``glet``, ``bridge`` and
    ``woken`` (:data:`HUB_SLOTS`), and :meth:`_init_wait` fills them.
    """

    if TYPE_CHECKING:  # the fields the concrete class's slots hold
        glet: Any
        bridge: Bridge
        woken: bool
    else:
        __slots__ = ()

    def _init_wait(self, bridge=None):
        # glet: None once woken or abandoned (whoever clears it owns the
        # wake-up); set by the waiting greenlet, cleared by the hub.
        self.glet = getcurrent()
        self.bridge = bridge
        self.woken = False

    def wake(self, busy=False):
        """Wake the greenlet; call at most once, from any thread.

        *busy*: the pool that ran the call still has calls queued, so its
        workers do not wait for this caller.  If the hub is gathering, the
        wake-up then waits for the hub's next pass (see ``Bridge.gather``).
        """
        if self.glet is not None:
            bridge = self.bridge
            bridge.ready.append(self)
            # A gathering hub's timer sends soon (see Bridge._flush).
            if not (busy and bridge.gathering):
                bridge.watcher.send()

    def hub_keeps_up(self):
        """Whether the caller's hub is within ``LAG_BUDGET`` (see
        ``Bridge.late``)."""
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
        timer: list[Any] | None = None
        try:
            if timeout is not None:
                timer = [None]  # the running timer: _expire may replace it
                self._arm(timer, monotonic() + timeout, timeout)
            while self.glet is not None:
                switch()
        except BaseException:
            if self.glet is not None:
                self.glet = None
                bridge.release()
            raise
        finally:
            if timer is not None and timer[0] is not None:
                timer[0].close()
        return self.woken

    def _arm(self, timer, deadline, seconds):
        timer[0] = self.bridge.hub.loop.timer(seconds)
        # update: the loop's cached "now" is as old as its last pass,
        # and a hub idle longer than *timeout* would fire it at once.
        timer[0].start(self._expire, timer, deadline, update=True)

    def _expire(self, timer, deadline):
        glet = self.glet
        if glet is None:
            return
        left = deadline - monotonic()
        if left > 0:
            # libuv's clock counts whole milliseconds, so its timer can fire up
            # to 1 ms early: a wait with a timeout never ends before it.
            timer[0].close()
            self._arm(timer, deadline, left)
            return
        self.glet = None
        self.bridge.release()
        glet.switch()


class ThreadWaiting:
    """Blocks an OS thread on the real lock ``self.lock`` until :meth:`wake`.

    A mixin: the concrete class declares the slot ``lock``
    (:data:`THREAD_SLOTS`), and :meth:`_init_wait` fills it.
    """

    if TYPE_CHECKING:  # the field the concrete class's slot holds
        lock: Any
    else:
        __slots__ = ()

    def _init_wait(self, bridge=None):
        self.lock = locked()

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


#: The slots a class mixing in :class:`HubWaiting` / :class:`ThreadWaiting` declares.
HUB_SLOTS = ("glet", "bridge", "woken")
THREAD_SLOTS = ("lock",)


class _HubWaiter(HubWaiting):
    __slots__ = HUB_SLOTS

    def __init__(self, bridge):
        self._init_wait(bridge)


class _ThreadWaiter(ThreadWaiting):
    __slots__ = THREAD_SLOTS

    def __init__(self):
        self._init_wait()


def waiter():
    """A one-shot waiter for the calling context: ``wait(timeout)`` here,
    ``wake()`` from anywhere.  A greenlet on a hub parks so that only it
    waits; anything else blocks its thread."""
    bridge = current_bridge()
    if bridge is None:
        return _ThreadWaiter()
    return _HubWaiter(bridge)


class CrossThreadSemaphore:
    """A counting semaphore released from any thread, awaited cooperatively.

    Neither :class:`threading.Semaphore` (it blocks the hub) nor
    :class:`gevent.lock.Semaphore` (one thread's hub only): a third kind.

    A greenlet that must wait for a unit parks through the bridge; a plain
    thread blocks.  A unit released while someone waits is handed straight
    to the first waiter, so none is lost to a waiter that gave up.
    """

    def __init__(self, value: int) -> None:
        self._value = value
        self._lock = native.allocate_lock()
        self._waiters: deque[Any] = deque()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a unit, waiting up to *timeout* seconds; False if none came."""
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

    def release(self) -> None:
        """Give a unit back, to the first waiter if there is one (from any thread)."""
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


class CrossThreadEvent:
    """A :class:`threading.Event` set from any thread, awaited cooperatively.

    What :func:`concurrent.futures.wait` and
    :func:`~concurrent.futures.as_completed` wait on once offload has made
    their waiter cooperative (see :mod:`offload.future`): a greenlet parks
    through its hub's bridge, which holds a reference on the loop while it
    waits (a patched :class:`threading.Event` set from a worker thread holds
    none, and its hub exits with ``LoopExit``); a plain thread blocks on a
    real lock.
    """

    __slots__ = ("_flag", "_lock", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._lock = native.allocate_lock()
        self._waiters: list[Any] = []

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter (from any thread)."""
        with self._lock:
            self._flag = True
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.wake()

    def clear(self) -> None:
        """Reset the flag."""
        with self._lock:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or *timeout* seconds pass; the flag."""
        timeout = check_timeout(timeout)
        with self._lock:
            if self._flag:
                return True
            w = waiter()
            self._waiters.append(w)
        try:
            w.wait(timeout)
        finally:
            with self._lock:
                try:
                    self._waiters.remove(w)
                except ValueError:  # set() took it, and wakes it (or did)
                    pass
        return self._flag
