"""Calls made from the hub itself: the rule, and the counters that show it.

A loop callback, a timer, or a ``__del__``/weakref finalizer that the
garbage collector runs while the hub greenlet is current cannot park: a
call it makes would block the hub's thread, and with it every greenlet,
until the database answers.  The rule:

- calls nobody can wait for in the hub -- ``close()`` (of a connection or a
  cursor), ``rollback()``, a
  connection given back to a :class:`~offload.dbapi.ConnectionPool` -- are
  *deferred*: queued on the connection's lane (which keeps them before any
  later call on it) and the hub goes on at once;
- any other call blocks as before (its caller wants the result), but is
  counted in ``stats()`` and warned about once per call site, with the
  caller's file and line, as a :class:`RuntimeWarning`.
"""

import os
import sys
import warnings
from types import FrameType

from gevent._hub_local import get_hub_if_exists
from greenlet import getcurrent

from .._core import native

__all__ = ["in_hub", "warn_blocking"]

_OFFLOAD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_warned: set = set()
_warned_lock = native.allocate_lock()


def in_hub() -> bool:
    """Whether the calling code runs in the hub greenlet of this thread's hub."""
    hub = get_hub_if_exists()
    return hub is not None and getcurrent() is hub


def warn_blocking(name: str) -> None:
    """Warn, once per call site outside offload, that call *name* blocks the hub."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_OFFLOAD_DIR):
        frame = frame.f_back
    filename, lineno = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("?", 0)
    with _warned_lock:
        if (filename, lineno) in _warned:
            return
        _warned.add((filename, lineno))
    warnings.warn_explicit(
        f"offload.dbapi: {name}() called from the gevent hub (a loop callback, timer or finalizer) "
        f"at {filename}:{lineno} blocks every greenlet until the database answers; make the call "
        "from a greenlet (gevent.spawn) instead",
        RuntimeWarning,
        filename,
        lineno,
    )
