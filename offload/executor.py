"""The process-wide default pool, and :func:`call`/:func:`submit` on it.

Anything that takes a ``pool=`` argument in offload accepts ``None`` (the
default thread pool), a name (``"thread"``, ``"process"``), or a pool object;
a pool is anything with offload's ``_call(fn, args, kwargs, timeout)`` and
``submit``.  Any other :class:`concurrent.futures.Executor` becomes one
through :func:`wrap_executor`.
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

from ._core import native
from ._poolbase import check_callable, name_of
from .future import Future
from .threadpool import ThreadPool

__all__ = ["get_default_pool", "call", "submit", "wrap_executor", "PoolArg"]

_T = TypeVar("_T")

#: What a ``pool=`` argument accepts: None (the default thread pool), a pool
#: name, or a pool object.
PoolArg = str | futures.Executor | None

_default_pool = None
_lock = native.allocate_lock()


def get_default_pool() -> ThreadPool:
    """The process-wide :class:`ThreadPool`, created on first use.

    Its size is :func:`offload.threadpool.default_size`.  After a fork the
    child's copy starts afresh, like every pool.
    """
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _lock:
            if _default_pool is None:
                _default_pool = ThreadPool(name="offload")
            pool = _default_pool
    return pool


def _default_process_pool():
    # Imported here so that ``import offload`` does not import multiprocessing.
    from .processpool import get_default_process_pool

    return get_default_process_pool()


_named_pools = {"thread": get_default_pool, "process": _default_process_pool}


def resolve_pool(pool: PoolArg) -> Any:
    """Turn a ``pool=`` argument into a pool object, or raise early.

    Named pools are looked up each time, so a name always means the current
    default (which may be replaced, e.g. after shutdown).
    """
    if pool is None:
        return get_default_pool()
    if isinstance(pool, str):
        try:
            factory = _named_pools[pool]
        except KeyError:
            names = ", ".join(repr(n) for n in sorted(_named_pools))
            raise ValueError(f"pool must be one of {names} or a pool object, not {pool!r}") from None
        return factory()
    if callable(getattr(pool, "_call", None)):
        return pool
    if isinstance(pool, futures.Executor):
        raise TypeError(
            f"pool must be None, a pool name or an offload pool, not {type(pool).__name__}: "
            "wrap a concurrent.futures.Executor with offload.wrap_executor(executor) first"
        )
    raise TypeError(f"pool must be None, a pool name or an offload pool, not {type(pool).__name__}")


def check_pool(pool: PoolArg) -> None:
    """Validate a ``pool=`` argument without creating a default pool."""
    if pool is None:
        return
    if isinstance(pool, str):
        if pool not in _named_pools:
            resolve_pool(pool)
        return
    resolve_pool(pool)


def call(fn: Callable[..., _T], /, *args: Any, pool: PoolArg = None, **kwargs: Any) -> _T:
    """Run ``fn(*args, **kwargs)`` in a pool and return its result.

    Only the calling greenlet waits; see :meth:`ThreadPool.call`.  *pool* is
    taken by ``call`` itself (``None``: the default thread pool); to pass a
    keyword named ``pool`` to *fn*, use :func:`functools.partial` or the
    pool's own :meth:`~ThreadPool.call`.
    """
    return resolve_pool(pool)._call(fn, args, kwargs, None)


def submit(fn: Callable[..., _T], /, *args: Any, pool: PoolArg = None, **kwargs: Any) -> Future[_T]:
    """Schedule ``fn(*args, **kwargs)`` in a pool; return a :class:`Future`.

    *pool* as for :func:`call`.
    """
    check_callable(fn)
    return resolve_pool(pool).submit(fn, *args, **kwargs)


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


class _ExecutorFacade(futures.Executor):
    """A gevent-friendly view of a foreign executor; see :func:`wrap_executor`."""

    def __init__(self, executor):
        self.executor = executor
        self._lock = native.allocate_lock()
        self._pending = set()

    def submit(self, fn, /, *args, **kwargs):
        """Submit to the wrapped executor; return a cooperative :class:`~offload.Future`."""
        check_callable(fn)
        outer = _WrappedFuture(self.executor.submit(fn, *args, **kwargs))
        with self._lock:
            self._pending.add(outer)
        outer.add_done_callback(self._forget)
        outer._inner.add_done_callback(lambda inner: _mirror(outer, inner))
        return outer

    def _forget(self, future):
        with self._lock:
            self._pending.discard(future)

    def call(self, fn, /, *args, **kwargs):
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

    def shutdown(self, wait=True, *, cancel_futures=False):
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


def wrap_executor(executor: futures.Executor) -> futures.Executor:
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

    :func:`resolve_pool` does not wrap executors silently: passing an
    unwrapped executor as ``pool=`` raises a TypeError that names this
    function.
    """
    if isinstance(executor, _ExecutorFacade) or callable(getattr(executor, "_call", None)):
        return executor
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}")
    return _ExecutorFacade(executor)
