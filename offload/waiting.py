"""Waiting on many futures at once: :func:`wait` and :func:`as_completed`.

The standard library's :func:`concurrent.futures.wait` and
:func:`~concurrent.futures.as_completed` already wait cooperatively on
offload's own futures (see :mod:`offload.future`).  These two do the same for
any :class:`concurrent.futures.Future` -- from a stdlib executor, a wrapped
one, or offload -- and check their arguments before waiting: they take each
future's waiter list over (:func:`offload.future.adopt`), then hand over to
the standard library's logic, so the semantics are exactly its own.
"""

from collections.abc import Iterable, Iterator
from concurrent import futures
from time import monotonic
from typing import TypeVar

from ._core.checks import check_timeout
from .future import adopt

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "as_completed", "wait"]

ALL_COMPLETED = futures.ALL_COMPLETED
FIRST_COMPLETED = futures.FIRST_COMPLETED
FIRST_EXCEPTION = futures.FIRST_EXCEPTION
_RETURN_WHEN = (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION)

_F = TypeVar("_F", bound=futures.Future)


def _adopted(fs: Iterable[_F]) -> list[_F]:
    if isinstance(fs, (futures.Future, str, bytes)):
        raise TypeError(f"fs must be an iterable of futures, not {type(fs).__name__}")
    fs = list(fs)
    for f in fs:
        if not isinstance(f, futures.Future):
            raise TypeError(f"fs must hold concurrent.futures.Future objects, not {type(f).__name__}")
        adopt(f)
    return fs


def wait(
    fs: Iterable[_F], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> "futures._base.DoneAndNotDoneFutures[_F]":
    """:func:`concurrent.futures.wait`, waiting cooperatively in every mode.

    Only the calling greenlet waits (a plain thread blocks), patched or not,
    whatever executor made the futures.  Returns the named 2-tuple of sets
    ``(done, not_done)``; *timeout* is seconds (None or ``inf``: no limit),
    *return_when* one of :data:`FIRST_COMPLETED`, :data:`FIRST_EXCEPTION`,
    :data:`ALL_COMPLETED`.
    """
    timeout = check_timeout(timeout)
    if return_when not in _RETURN_WHEN:
        names = ", ".join(_RETURN_WHEN)
        raise ValueError(f"return_when must be one of {names}, not {return_when!r}")
    return futures.wait(_adopted(fs), timeout, return_when)


def as_completed(fs: Iterable[_F], timeout: float | None = None) -> Iterator[_F]:
    """:func:`concurrent.futures.as_completed`, waiting cooperatively in every mode.

    Yields each future of *fs* as it finishes (duplicates once); raises
    :exc:`TimeoutError` if they are not all done *timeout* seconds after this
    call (as the standard library documents; its own clock starts at the
    first ``next()``).  The arguments are checked here, at the call.
    """
    timeout = check_timeout(timeout)
    adopted = _adopted(fs)
    deadline = None if timeout is None else monotonic() + timeout
    return _as_completed(adopted, deadline)


def _as_completed(fs, deadline):
    timeout = None if deadline is None else max(deadline - monotonic(), 0.0)
    yield from futures.as_completed(fs, timeout)
