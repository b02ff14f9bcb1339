"""A gevent-friendly façade over any :class:`concurrent.futures.Executor`.

A foreign executor (loky, Dask, the standard library's) completes its
futures from its own threads, and waiting on them blocks a hub.  The façade
mirrors each of its futures into an :class:`offload.Future`, completed from
whatever thread the executor uses and woken through the hub bridge, so that
waiting blocks only the calling greenlet.
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any, Generic, TypeVar

from ._core import native
from ._core.checks import check_callable, name_of
from ._poolbase import CheckedMap
from .defaults import get_default_pool
from .future import Future

__all__ = ["ExecutorFacade", "wrap_executor"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=futures.Executor)


class _WrappedFuture(Future):
    """An :class:`offload.Future` that mirrors a future of a foreign executor.

    The foreign future's done-callback copies its outcome here from whatever
    thread completes it; cancelling this one cancels that one.
    """

    def __init__(self, inner):
        super().__init__()
        self._inner = inner

    def cancel(self):
        if not self._inner.cancel():
            return False
        return super().cancel() or self.cancelled()


def _mirror(outer, inner):
    if inner.cancelled():
        Future.cancel(outer)
        return
    error = inner.exception()
    if outer.set_running_or_notify_cancel():
        if error is None:
            outer.set_result(inner.result())
        else:
            outer.set_exception(error)


class ExecutorFacade(CheckedMap, Generic[_E]):
    """A gevent-friendly view of a foreign executor; see :func:`~offload.wrap_executor`.

    ``executor`` is the wrapped executor.
    """

    def __init__(self, executor: _E) -> None:
        self.executor = executor
        self._lock = native.allocate_lock()
        self._pending: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Submit to the wrapped executor; return a cooperative :class:`~offload.Future`."""
        check_callable(fn)
        outer: Future[_T] = _WrappedFuture(self.executor.submit(fn, *args, **kwargs))
        with self._lock:
            self._pending.add(outer)
        outer.add_done_callback(self._forget)
        outer._inner.add_done_callback(lambda inner: _mirror(outer, inner))  # type: ignore[attr-defined]
        return outer

    def _forget(self, future):
        with self._lock:
            self._pending.discard(future)

    def call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` on the wrapped executor; only this greenlet waits."""
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout):
        future = self.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise
            state = "start" if future.cancel() else "finish"
            raise TimeoutError(f"{name_of(fn)} did not {state} within {timeout} seconds") from None
        except BaseException:
            future.cancel()  # a kill or gevent.Timeout: withdraw the call if it can be
            raise

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down; waiting (if *wait*) happens in a thread.

        With *cancel_futures*, the calls submitted through this façade that
        have not started are cancelled first, whether or not the wrapped
        executor knows that argument.
        """
        if cancel_futures:
            with self._lock:
                pending = list(self._pending)
            for future in pending:
                future.cancel()
        if wait:
            # An executor's own shutdown blocks its caller's thread: in a
            # greenlet, that would freeze the hub.
            get_default_pool()._call(self.executor.shutdown, (), {"wait": True}, None)
        else:
            self.executor.shutdown(wait=False)

    def __repr__(self):
        return f"<offload.wrap_executor({self.executor!r})>"


def wrap_executor(executor: _E) -> "ExecutorFacade[_E]":
    """A gevent-friendly façade over any :class:`concurrent.futures.Executor`.

    ``submit(...).result()`` and ``call(...)`` on the façade block only the
    calling greenlet: the executor's own future is mirrored into an
    :class:`offload.Future`, completed from whatever thread the executor
    uses and woken through the hub bridge.  The façade is a pool, so it can
    be passed as ``pool=`` to :func:`offload.call` and ``@offload``.  Use it
    for ``loky.get_reusable_executor()``, or for
    ``dask.distributed.Client(...).get_executor()`` to run the same code on a
    cluster.  A call's timeout (or the caller's kill) cancels it if the
    executor still can; a running call is left to finish.

    ``pool=`` arguments do not wrap executors silently: passing an
    unwrapped executor raises a TypeError that names this function.  An
    offload pool, or a façade, is returned as it is.
    """
    if isinstance(executor, ExecutorFacade) or callable(getattr(executor, "_call", None)):
        return executor  # type: ignore[return-value]
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}")
    return ExecutorFacade(executor)
