"""A :class:`concurrent.futures.Future` that is safe under gevent.

The standard Future waits on a :class:`threading.Condition`.  Built after
monkey patching, that condition is made of gevent locks, which a worker
thread cannot release; built before, it blocks the whole hub when a greenlet
waits on it.  :class:`Future` keeps every method of the standard class and
swaps only the condition: a real lock, with waiters that park just the
calling greenlet (or block a plain thread) until the result is set.
"""

import sys
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

from ._core import native
from ._core.checks import check_timeout
from ._core.waiters import waiter

__all__ = ["Future"]

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
        self._waiters = []
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
