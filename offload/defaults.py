"""The process-wide default pools, ``pool=`` resolution, and :func:`call`/:func:`submit`.

Anything that takes a ``pool=`` argument in offload accepts ``None`` (the
default thread pool), a name (``"thread"``, ``"process"``), or a pool object:
anything that keeps the :class:`Pool` protocol (offload's pools, and any
:class:`concurrent.futures.Executor` once wrapped by
:func:`~offload.wrap_executor`).
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._core.checks import check_callable
from ._core.lifecycle import LazyDefault
from .future import Future
from .threadpool import ThreadPool

__all__ = ["Pool", "PoolArg", "call", "check_pool", "get_default_pool", "resolve_pool", "submit"]

_T = TypeVar("_T")


@runtime_checkable
class Pool(Protocol):
    """What ``pool=`` accepts besides None and a name: one of offload's pools."""

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout: float | None) -> Any:
        """Run ``fn(*args, **kwargs)``, waiting cooperatively up to *timeout* seconds."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        """Schedule ``fn(*args, **kwargs)``; return a future."""


#: What a ``pool=`` argument accepts: None (the default thread pool), a pool
#: name, or a pool object.
PoolArg = str | futures.Executor | Pool | None

_default = LazyDefault(lambda: ThreadPool(name="offload"))


def get_default_pool() -> ThreadPool:
    """The process-wide :class:`~offload.ThreadPool`, created on first use.

    Its size is :func:`offload.threadpool.default_size`.  After a fork the
    child's copy starts afresh, like every pool.
    """
    return _default.get()


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
    if isinstance(pool, type):
        raise TypeError(
            f"pool must be a pool object, not the class {pool.__name__}: make one, e.g. {pool.__name__}()"
        )
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
    if pool is None:  # the default pool, without resolve_pool's two frames
        return (_default._value or _default.get())._call(fn, args, kwargs, None)
    return resolve_pool(pool)._call(fn, args, kwargs, None)


def submit(fn: Callable[..., _T], /, *args: Any, pool: PoolArg = None, **kwargs: Any) -> Future[_T]:
    """Schedule ``fn(*args, **kwargs)`` in a pool; return a :class:`Future`.

    *pool* as for :func:`call`.
    """
    check_callable(fn)
    return resolve_pool(pool).submit(fn, *args, **kwargs)
