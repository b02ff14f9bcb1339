"""The process-wide default pool, and :func:`call`/:func:`submit` on it.

Anything that takes a ``pool=`` argument in offload accepts ``None`` (the
default thread pool), a name (``"thread"``), or a pool object; a pool is
anything with offload's ``_call(fn, args, kwargs, timeout)`` and ``submit``.
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

from . import _native
from .future import Future
from .threadpool import ThreadPool, check_callable

__all__ = ["get_default_pool", "call", "submit", "PoolArg"]

_T = TypeVar("_T")

#: What a ``pool=`` argument accepts: None (the default thread pool), a pool
#: name, or a pool object.
PoolArg = str | futures.Executor | None

_default_pool = None
_lock = _native.allocate_lock()


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


_named_pools = {"thread": get_default_pool}


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
