"""Two lifecycles every pool kind shares: a default made on first use, and a
fresh start in the child after ``os.fork()``."""

import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from . import native

__all__ = ["LazyDefault", "ForkRegistry", "fail_orphans", "take_orphans"]

_T = TypeVar("_T")


class LazyDefault(Generic[_T]):
    """A process-wide object made by *factory* the first time it is asked for.

    Double-checked: the common path reads one attribute and takes no lock.
    """

    __slots__ = ("_factory", "_value", "_lock")

    def __init__(self, factory: Callable[[], _T]) -> None:
        self._factory = factory
        self._value: _T | None = None
        self._lock = native.allocate_lock()

    def get(self) -> _T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    def peek(self) -> _T | None:
        """The object if it was made, without making it."""
        return self._value

    def replace(self, value: _T | None) -> None:
        """Set (or, with None, forget) the object; the next :meth:`get` makes one if None."""
        self._value = value


class _ForksAware(Protocol):
    def _after_fork(self) -> None: ...


_F = TypeVar("_F", bound=_ForksAware)


class ForkRegistry(Generic[_F]):
    """A weak set of objects whose ``_after_fork()`` runs in every forked child.

    Only the forking thread exists in the child, so whatever the objects'
    threads held -- locks, queues, processes -- is the parent's; each object
    starts afresh.
    """

    def __init__(self) -> None:
        self._objects: weakref.WeakSet[_F] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def add(self, obj: _F) -> None:
        self._objects.add(obj)

    def __iter__(self) -> Iterator[_F]:
        return iter(list(self._objects))

    def _after_fork_in_child(self) -> None:
        for obj in list(self._objects):
            obj._after_fork()


def take_orphans(queue: Any, live: list[Any]) -> list[tuple[Any, str]]:
    """In a forked child: the calls a pool's parent had in *queue* or running
    in its workers (their Counters, *live*), as (item, "queued"/"running").

    No lock is taken: a thread that held one in the parent is gone.
    """
    orphans = [(item, "queued") for item in native.take_all(queue)]
    orphans += [(counters.current, "running") for counters in live if counters.current is not None]
    return orphans


def fail_orphans(orphans: list[tuple[Any, str]], pool: str) -> None:
    """In a forked child: fail the copies of the parent's calls, at once."""
    parent = os.getppid()
    for item, state in orphans:
        work = item.work
        name = work.name if work is not None else "a call"
        item.abandon(
            RuntimeError(
                f"{name} was {state} in {pool} in the parent process when it forked "
                f"(pid {parent}); its result stays there"
            )
        )
