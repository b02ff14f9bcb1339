"""Names for raw worker threads: in tracebacks, stack dumps and the OS.

offload's workers are raw threads (:mod:`threading` does not know them), so
without help every one is an anonymous ``python`` in ``top -H``, a bare
``Thread 0x7f...`` in a :mod:`faulthandler` dump and ``Dummy-3`` in a log
line.  Each worker is therefore:

* run by a copy of its body function whose code object carries the thread's
  name, so every traceback, :func:`sys._current_frames` walk and faulthandler
  dump shows ``in <name>`` at the bottom of the worker's stack;
* named in the operating system where it allows (Linux: 15 bytes, through
  ``_thread.set_name`` on 3.14+, else ``prctl(PR_SET_NAME)``);
* listed, while it lives, in :func:`worker_threads`.
"""

import _thread
import sys
from collections.abc import Callable
from types import FunctionType
from typing import Any

from . import native

__all__ = ["named", "prepare", "register", "set_os_name", "unregister", "worker_threads"]

_PR_SET_NAME = 15
_threads: dict[int, str] = {}  # ident -> name; dict item writes are atomic
_prctl: Any = None


def named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A copy of the plain function *fn* whose frames are called *name*."""
    code = fn.__code__  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):
        code = code.replace(co_name=name, co_qualname=name)
    else:  # pragma: no cover - 3.10 has no co_qualname
        code = code.replace(co_name=name)
    return FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)  # type: ignore[attr-defined]


def prepare() -> None:
    """Look up ``prctl`` now, in the thread that starts a worker, not in the worker.

    The worker names itself first thing.  Under :func:`gevent.monkey.patch_all`
    an ``import`` in a new worker takes :mod:`importlib`'s module lock, a
    gevent lock there, and two workers starting at once, both importing
    :mod:`ctypes`, left one waiting on that lock for good, hub or no hub
    (1 run in 40 to 70 of the patched stress test under load: the worker
    never took a call, and the pool's ``shutdown(wait=True)`` never
    returned).  Made before the first worker starts, no worker imports.
    """
    global _prctl
    if _prctl is not None or getattr(_thread, "set_name", None) is not None:
        return
    if not sys.platform.startswith("linux"):  # pragma: no cover
        _prctl = False
        return
    import ctypes  # here: most programs never start a worker thread

    try:
        # The process's own symbols, libc's among them (find_library would
        # run ldconfig in a subprocess).
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no prctl to call
        _prctl = False


def set_os_name(name: str) -> None:
    """Name the calling thread in the OS (best effort; truncated to 15 bytes),
    once :func:`prepare` has run in some thread."""
    set_name = getattr(_thread, "set_name", None)
    if set_name is not None:  # pragma: no cover - Python 3.14+
        try:
            set_name(name)
        except (OSError, ValueError):
            pass
        return
    if _prctl:
        _prctl(_PR_SET_NAME, name.encode("utf-8", "replace")[:15], 0, 0, 0)


def register(name: str) -> None:
    """Name the calling thread: in the OS and in :func:`worker_threads`."""
    _threads[native.get_ident()] = name
    try:
        set_os_name(name)
    except Exception:  # pragma: no cover - a name is never worth a worker
        pass


def unregister() -> None:
    """The calling worker thread is ending."""
    _threads.pop(native.get_ident(), None)


def worker_threads() -> dict[int, str]:
    """The live worker threads of offload's pools: ``{thread ident: name}``.

    The idents are those of :func:`threading.get_ident` (unpatched) and of
    :func:`sys._current_frames`, so a stack dump can be labelled with it.
    """
    return dict(_threads)
