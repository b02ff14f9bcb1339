"""eventlet's ``tpool`` API on offload, for gevent programs: a port is an import change.

``from eventlet import tpool`` becomes ``from offload import tpool``:
:func:`execute`, :class:`Proxy` (with ``autowrap`` and ``autowrap_names``),
:func:`killall`, :func:`set_num_threads`, :func:`setup` and the
``EVENTLET_THREADPOOL_SIZE`` variable (default 20 threads) mean what they
mean in eventlet.  The calls run in an :class:`offload.ThreadPool`, so only
the calling greenlet waits.

Where eventlet's behaviour is a known bug, this module does what offload
does instead (``docs/migrating.rst`` lists each difference): exceptions keep
the worker's frames and their locals; a ``BaseException`` raised in the
worker reaches the caller instead of killing the thread and hanging the
caller; children of a proxy keep its ``autowrap`` settings; a forked child
gets working threads; :func:`set_num_threads` takes effect even after the
pool started.
"""

import _imp
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._core import native
from ._core.checks import check_count, env_count
from .proxy import Proxy as _OffloadProxy
from .proxy import unwrap_args
from .threadpool import ThreadPool

__all__ = ["execute", "Proxy", "killall", "set_num_threads", "setup"]

_T = TypeVar("_T")
_DEFAULT_THREADS = 20  # eventlet's default
_lock = native.allocate_lock()
_pool: ThreadPool | None = None
_nthreads: int | None = None  # None: read EVENTLET_THREADPOOL_SIZE at setup()


def _threads_from_env() -> int:
    value = os.environ.get("EVENTLET_THREADPOOL_SIZE", "")
    if value.strip() == "0":  # eventlet accepts 0: run every call inline
        return 0
    return env_count("EVENTLET_THREADPOOL_SIZE", _DEFAULT_THREADS)


def setup() -> ThreadPool | None:
    """Start the thread pool if it is not running; return it (None with zero threads).

    :func:`execute` calls it, so calling it yourself is optional, as in eventlet.
    """
    global _pool, _nthreads
    pool = _pool
    if pool is not None:
        return pool
    with _lock:
        if _nthreads is None:
            _nthreads = _threads_from_env()
        if _nthreads == 0:
            warnings.warn(
                "Zero threads in tpool: every tpool.execute call runs in the calling thread "
                "(check EVENTLET_THREADPOOL_SIZE)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        if _pool is None:
            _pool = ThreadPool(_nthreads, name="offload.tpool")
        return _pool


def execute(meth: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Run ``meth(*args, **kwargs)`` in a native thread; only the calling greenlet waits.

    As in eventlet, the call runs right here when made from one of the
    pool's own threads, with zero threads, or while the import lock is held
    (a worker importing a module would wait for it forever).  Exceptions,
    BaseExceptions included, are raised here with the worker's frames.
    """
    pool = setup()
    if pool is None or _imp.lock_held():
        return meth(*args, **kwargs)
    return pool.call(meth, *args, **kwargs)


def set_num_threads(nthreads: int) -> None:
    """Use *nthreads* threads from now on (0: run every call inline).

    eventlet only reads it before the pool starts; here a running pool is
    replaced, and the old one finishes the calls it has.
    """
    global _nthreads, _pool
    check_count("nthreads", nthreads, 0)
    with _lock:
        _nthreads = nthreads
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)


def killall() -> None:
    """Stop the threads, waiting for the calls they run; the next :func:`execute` starts afresh."""
    global _pool
    with _lock:
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=True)


class Proxy(_OffloadProxy):
    """eventlet's ``tpool.Proxy``: every method of *obj* runs through :func:`execute`.

    ``Proxy(obj, autowrap=(), autowrap_names=())``, positional as in
    eventlet.  *autowrap* is a collection of types whose instances come back
    wrapped; *autowrap_names* names methods or attributes whose results come
    back wrapped, ``"__call__"`` for calling the proxy itself.  A method
    called with ``nonblocking=True`` runs inline (the keyword is removed),
    for methods that do not block but return objects that should be
    wrapped.  Wrapped results keep both settings (eventlet drops them).
    """

    __slots__ = ()

    def __init__(
        self, obj: Any, autowrap: type | Iterable[type] = (), autowrap_names: Iterable[str] = ()
    ) -> None:
        super().__init__(obj, autowrap=autowrap, autowrap_names=autowrap_names)

    def _offload_call(self, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> Any:
        args, kwargs = unwrap_args(args, dict(kwargs or {}))
        if kwargs.pop("nonblocking", False):
            return fn(*args, **kwargs)
        return execute(fn, *args, **kwargs)

    def _offload_child(self, value: Any) -> "Proxy":
        return type(self)(value, self._offload_autowrap, self._offload_names)
