"""A :class:`concurrent.futures.Future` that is safe under gevent.

The standard Future waits on a :class:`threading.Condition`.  Built after
monkey patching, that condition is made of gevent locks, which a worker
thread cannot release; built before, it blocks the whole hub when a greenlet
waits on it.  :class:`Future` keeps every method of the standard class and
swaps only the condition: a real lock, with waiters that park just the
calling greenlet (or block a plain thread) until the result is set.

:func:`concurrent.futures.wait` and :func:`~concurrent.futures.as_completed`
install a waiter of their own on each future, whose :class:`threading.Event`
the thread completing the future sets.  Patched, that event is gevent's, set
from a worker thread through a watcher that holds no reference on the loop:
with nothing else to do, the waiting hub exits with ``LoopExit`` (gevent
#2124).  Unpatched, it is a real one, and waiting on it blocks the hub.  So
a Future's waiter list swaps each such waiter's event (and lock) for offload's
cross-thread ones as it is installed, while every future's lock is held and
nothing can have set it yet: the stdlib functions then wait cooperatively.
"""

import sys
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

from ._core import native
from ._core.checks import check_timeout
from ._core.waiters import CrossThreadEvent, waiter

__all__ = ["Future", "adopt"]

_T = TypeVar("_T")


class _Condition:
    """The part of :class:`threading.Condition` that Future uses.

    The lock is a real one and is never held across a greenlet switch:
    :meth:`wait` releases it before it parks.
    """

    __slots__ = ("_lock", "_waiters", "acquire", "release")

    def __init__(self):
        self._lock = lock = native.RLock()
        self.acquire = lock.acquire
        self.release = lock.release
        self._waiters = []

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def wait(self, timeout=None):
        w = waiter()
        self._waiters.append(w)
        saved = self._lock._release_save()
        try:
            return w.wait(timeout)
        finally:
            self._lock._acquire_restore(saved)
            try:
                self._waiters.remove(w)
            except ValueError:
                pass

    def notify_all(self):
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.wake()


def _cooperate(stdlib_waiter):
    """Make a :mod:`concurrent.futures` waiter wait through offload's event.

    Called as the waiter is installed, under the locks of all its futures:
    no future can complete, so no one can have set (or be setting) the
    event being replaced.
    """
    if isinstance(stdlib_waiter, futures._base._Waiter) and not isinstance(
        stdlib_waiter.event, CrossThreadEvent
    ):
        old = stdlib_waiter.event
        stdlib_waiter.event = event = CrossThreadEvent()  # type: ignore[assignment]
        if old.is_set():  # never, by the locks held; cheap insurance
            event.set()
        if hasattr(stdlib_waiter, "lock"):
            # A patched threading.Lock, taken by the completing worker thread
            # and by the waiting greenlet: a real one instead.
            stdlib_waiter.lock = native.allocate_lock()


class _Waiters(list):
    """A future's ``_waiters``: makes each stdlib waiter cooperative as it is added."""

    __slots__ = ()

    def append(self, stdlib_waiter):
        _cooperate(stdlib_waiter)
        super().append(stdlib_waiter)


def adopt(future: futures.Future) -> None:
    """Make the stdlib's waits on any *future* cooperative, as on a :class:`Future`.

    Swaps the waiter list of a :class:`concurrent.futures.Future` (from any
    executor) for offload's, keeping what it holds; what
    :func:`offload.wait` and :func:`offload.as_completed` do before they
    wait.  A future without the stdlib's fields is left alone.
    """
    if type(getattr(future, "_waiters", None)) is list:
        with future._condition:  # type: ignore[attr-defined]
            waiters = future._waiters  # type: ignore[attr-defined]
            if type(waiters) is list:  # not adopted meanwhile
                future._waiters = _Waiters(waiters)  # type: ignore[attr-defined]


class Future(futures.Future[_T]):
    """A :class:`concurrent.futures.Future` whose waits are cooperative.

    :meth:`result` and :meth:`exception` called in a greenlet block only that
    greenlet; in a plain thread they block the thread.  A timeout raises the
    builtin :exc:`TimeoutError`.  Everything else, including
    :func:`concurrent.futures.wait` and :func:`~concurrent.futures.as_completed`,
    behaves as the standard library documents -- so callbacks added with
    :meth:`~concurrent.futures.Future.add_done_callback` run in the thread that completes the future (a
    worker), where they must not touch another thread's gevent objects; to
    continue in a greenlet, wait on the future there.
    """

    def __init__(self) -> None:
        # The fields of the standard __init__, which would also build a
        # threading.Condition only to throw it away.
        self._condition = _Condition()  # type: ignore[assignment]
        self._state = futures._base.PENDING
        self._result = None
        self._exception = None
        self._waiters = _Waiters()
        self._done_callbacks: list[Callable[[futures.Future[_T]], object]] = []

    def result(self, timeout: float | None = None) -> _T:
        """The call's value, waiting up to *timeout* seconds (None: for ever).

        Raises the call's exception, :exc:`concurrent.futures.CancelledError`
        if it was cancelled, or :exc:`TimeoutError` if *timeout* passed.
        """
        timeout = check_timeout(timeout)
        if sys.version_info >= (3, 11):
            return super().result(timeout)
        try:  # pragma: no cover - before 3.11 futures.TimeoutError was its own class
            return super().result(timeout)
        except futures.TimeoutError:
            raise TimeoutError() from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception (None if it returned), waiting as :meth:`result` does."""
        timeout = check_timeout(timeout)
        if sys.version_info >= (3, 11):
            return super().exception(timeout)
        try:  # pragma: no cover - as in result()
            return super().exception(timeout)
        except futures.TimeoutError:
            raise TimeoutError() from None
