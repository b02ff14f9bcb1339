"""A call on its way to a worker and back: the queue items of both pools.

A pool puts an item on its queue; a worker takes it, claims it with
:meth:`start`, runs its ``work`` and hands back the value or the error with
:meth:`finish`.  What ``work`` holds is the pool's business (a function and
its arguments for threads, a pickled payload for processes).  The caller
waits either on the item itself (:class:`HubCall` / :class:`ThreadCall`, for
``call``) or on a :class:`~offload.Future` (:class:`FutureCall`, for ``submit``).
:class:`QueueItem` is what every item offers a worker.

Every item carries a claim token that exactly one party takes: the worker,
to run it, or the caller, to cancel it -- so a call whose waiter gave up
while it was still queued never runs.
"""

from concurrent import futures
from logging import DEBUG
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

from greenlet import getcurrent

from .observe import logger
from .waiters import HUB_SLOTS, THREAD_SLOTS, HubWaiting, ThreadWaiting


class QueueItem(Protocol):
    """What a pool's worker needs of the items on its queue."""

    work: Any  # the pool's payload; dropped once the call has run
    queued_at: float  # time.monotonic() when it was queued

    def start(self) -> bool:
        """Claim the item to run it; False if its caller already gave up."""

    def finish(self, value: Any, error: BaseException | None, busy: bool = False) -> None:
        """Hand back the outcome and wake the caller."""

    def cancel(self) -> bool:
        """Cancel the item if no worker claimed it; True if cancelled."""

    def hub_keeps_up(self) -> bool:
        """Whether the caller's hub is within its lag budget (adaptive pools)."""

    def abandon(self, error: BaseException) -> None:
        """Fail the call with *error*, queued or running, unless it has finished."""


class Call:
    """A call whose caller waits on the item itself.

    The concrete classes add the waiting: :class:`HubCall` parks a greenlet,
    :class:`ThreadCall` blocks a thread.  Pick one with the caller's
    :func:`~offload._core.bridge.current_bridge` (None: a thread).
    """

    if TYPE_CHECKING:  # what the concrete classes' slots and mixins provide
        work: Any
        queued_at: float
        claim: list
        value: Any
        error: BaseException | None
        done: bool

        def _init_wait(self, bridge: Any = None) -> None: ...
        def wake(self, busy: bool = False) -> None: ...
        def wait(self, timeout: float | None = None) -> bool: ...
    else:
        __slots__ = ()

    def __init__(self, work, bridge):
        self.work = work
        self.queued_at = monotonic()
        # list.pop is atomic: whoever pops the token owns the call.
        self.claim = [True]
        self.error = None
        self.done = False
        self._init_wait(bridge)

    def start(self):
        """Claim the call; False if someone else already has."""
        try:
            return self.claim.pop()
        except IndexError:
            return False

    def finish(self, value, error, busy=False):
        """Hand back the outcome and wake the caller (*busy*: see ``wake``)."""
        self.work = None  # the arguments may be large: do not keep them for the caller
        self.value = value
        self.error = error
        self.done = True
        self.wake(busy)

    def cancel(self):
        """Cancel the call if no worker has taken it; True if cancelled."""
        if self.start():
            self.finish(None, futures.CancelledError())
            return True
        return False

    def abandon(self, error):
        """Fail the call with *error* unless it has finished (after a fork)."""
        if not self.done:
            self.claim.clear()  # nobody may start it any more
            self.finish(None, error)

    def give_up(self):
        """The waiter stopped waiting: cancel the call if it is still queued.

        Returns what the call did not do in time, for the error message.
        """
        return "start" if self.start() else "finish"

    def settle(self, timeout, name, give_up=None):
        """Wait here for the outcome: return the value or raise the error.

        If the wait is interrupted (kill, ``gevent.Timeout``) or *timeout*
        passes, *give_up* (default :meth:`give_up`) is called with the item,
        and a timeout raises :exc:`TimeoutError` naming *name*.
        """
        try:
            self.wait(timeout)
        except BaseException as exc:
            if (give_up or Call.give_up)(self) == "start" and logger.isEnabledFor(DEBUG):
                logger.debug("a queued call was cancelled: its caller got %s", type(exc).__name__)
            raise
        if not self.done:
            raise TimeoutError(f"{name} did not {(give_up or Call.give_up)(self)} within {timeout} seconds")
        error = self.error
        if error is None:
            return self.value
        # Neither the item nor this frame may keep the exception: its
        # traceback holds the caller's frames, a cycle the GC must break.
        self.error = None
        try:
            raise error
        finally:
            error = None


_SLOTS = ("work", "queued_at", "claim", "value", "error", "done")


class HubCall(Call, HubWaiting):
    """A call whose caller is a greenlet parked on its hub."""

    __slots__ = _SLOTS + HUB_SLOTS

    # __init__ and finish spell out what Call's and HubWaiting's would do
    # through _init_wait and wake: every offloaded call from a greenlet makes
    # one HubCall, and the two frames saved are ~6% of its instructions.
    def __init__(self, work, bridge, glet=None):
        self.work = work
        self.queued_at = monotonic()
        self.claim = [True]
        self.error = None
        self.done = False
        self.glet = getcurrent() if glet is None else glet  # the waiting greenlet
        self.bridge = bridge
        self.woken = False

    def finish(self, value, error, busy=False):
        self.work = None
        self.value = value
        self.error = error
        self.done = True
        if self.glet is not None:
            bridge = self.bridge
            bridge.ready.append(self)
            if not (busy and bridge.gathering):
                bridge.watcher.send()


class ThreadCall(Call, ThreadWaiting):
    """A call whose caller is a thread blocked on a lock."""

    __slots__ = _SLOTS + THREAD_SLOTS


class FutureCall:
    """A call whose outcome goes to a :class:`~offload.Future` (``submit``)."""

    __slots__ = ("work", "queued_at", "future")

    def __init__(self, future, work):
        self.work = work
        self.queued_at = monotonic()
        self.future = future

    def start(self):
        return self.future.set_running_or_notify_cancel()

    def hub_keeps_up(self):
        return True  # a future's waiter is not known here

    def finish(self, value, error, busy=False):
        self.work = None  # as Call.finish
        if error is None:
            self.future.set_result(value)
        else:
            self.future.set_exception(error)

    def cancel(self):
        self.future.cancel()
        return not self.start()

    def abandon(self, error):
        """Fail the future with *error* unless it is done (after a fork)."""
        if not self.future.done():
            self.work = None
            self.future.set_exception(error)
