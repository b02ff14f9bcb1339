"""``@offload``: make a function run in a pool whenever it is called."""

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from ._core.checks import check_callable, check_timeout
from .defaults import PoolArg, check_pool, resolve_pool

__all__ = ["offload"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@overload
def offload(fn: Callable[_P, _T], /) -> Callable[_P, _T]: ...


@overload
def offload(
    fn: None = None, /, *, pool: PoolArg = None, timeout: float | None = None
) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]: ...


@overload
def offload(
    fn: Callable[_P, _T], /, *, pool: PoolArg = None, timeout: float | None = None
) -> Callable[_P, _T]: ...


def offload(fn: Any = None, /, *, pool: PoolArg = None, timeout: float | None = None) -> Any:
    """Decorate *fn* so that every call runs in a pool and waits cooperatively.

    Usable bare (``@offload``) or with options::

        @offload(pool=my_pool, timeout=5.0)
        def query(sql): ...

    :param pool: ``None`` for the default thread pool, a pool name, or a pool.
    :param timeout: seconds to wait before raising :exc:`TimeoutError`; a call
        still queued then is cancelled, a running one is left to finish and
        its result dropped.

    The wrapper keeps *fn*'s ``__name__``, ``__doc__`` and ``__wrapped__``, and
    works on functions, methods, staticmethods and classmethods.
    """
    check_pool(pool)
    timeout = check_timeout(timeout)
    if fn is None:
        return functools.partial(offload, pool=pool, timeout=timeout)
    if isinstance(fn, (staticmethod, classmethod)):
        return type(fn)(offload(fn.__func__, pool=pool, timeout=timeout))
    check_callable(fn)

    @functools.wraps(fn)
    def offloaded(*args, **kwargs):
        return resolve_pool(pool)._call(fn, args, kwargs, timeout)

    return offloaded
