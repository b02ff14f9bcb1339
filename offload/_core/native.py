"""The operating system's own thread primitives, as they were before patching.

After :func:`gevent.monkey.patch_all`, the names in :mod:`threading`,
:mod:`_thread` and :mod:`queue` are greenlet-based.  A pool of real threads
must not be built on them, so everything here comes from
:func:`gevent.monkey.get_original`, which returns the unpatched objects whether
or not patching has happened (as :mod:`gevent._threading` does).
"""

from typing import Any

from gevent.monkey import get_original

start_new_thread, allocate_lock, get_ident, RLock, local, TIMEOUT_MAX = get_original(
    "_thread", ["start_new_thread", "allocate_lock", "get_ident", "RLock", "_local", "TIMEOUT_MAX"]
)
SimpleQueue = get_original("_queue", "SimpleQueue")
Empty = get_original("_queue", "Empty")
sleep = get_original("time", "sleep")


def take_all(queue: Any) -> list[Any]:
    """Everything in *queue* now, without blocking, stop markers (None) dropped."""
    items: list[Any] = []
    while True:
        try:
            item = queue.get_nowait()
        except Empty:
            return items
        if item is not None:
            items.append(item)


__all__ = [
    "start_new_thread",
    "allocate_lock",
    "get_ident",
    "RLock",
    "local",
    "TIMEOUT_MAX",
    "SimpleQueue",
    "Empty",
    "sleep",
    "take_all",
]
