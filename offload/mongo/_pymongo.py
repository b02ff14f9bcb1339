"""Every PyMongo internal that offload.mongo relies on, in one place.

PyMongo offers no public way to ask a cursor what it holds, or to hand its
connection factory another ``socket`` module, so offload.mongo reads a few
private attributes.  Each is read here only, behind a helper named for the
question it answers, with a safe answer when a PyMongo release renames it:
a new PyMongo then costs a thread hop too many, never a wrong result.

Also here, because it is a patch of PyMongo: the real-socket shim
(:func:`install`), and the TLS check that goes with it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

from gevent.monkey import get_original, is_module_patched
from pymongo import _csot

from .._core import native
from ..threadpool import in_worker_thread

__all__ = [
    "batch_size",
    "buffered_documents",
    "check_tls",
    "csot_active",
    "csot_remaining",
    "cursor_killed",
    "cursor_started",
    "gridout_loaded",
    "install",
    "open_topology",
    "server_cursor_open",
    "stream_documents",
    "use_real_sockets",
]

# -- what a cursor holds -------------------------------------------------------


def buffered_documents(cursor: Any) -> Sequence[Any]:
    """The documents *cursor* has fetched and not handed out (a deque; empty if unknown)."""
    try:
        return cursor._data
    except AttributeError:
        return ()


def stream_documents(stream: Any) -> Sequence[Any]:
    """The changes a change stream's cursor has fetched and not handed out."""
    return buffered_documents(getattr(stream, "_cursor", None))


def batch_size(cursor: Any) -> int | None:
    """The batch size *cursor* asks the server for (0: the server's default), or None if unknown."""
    return getattr(cursor, "_batch_size", None)


def cursor_started(cursor: Any) -> bool:
    """Whether *cursor* has sent its query (PyMongo then refuses new options)."""
    return getattr(cursor, "_id", None) is not None or bool(cursor.retrieved)


def cursor_killed(cursor: Any) -> bool:
    """Whether *cursor* is closed or exhausted, so that nothing more can come from the server."""
    return bool(getattr(cursor, "_killed", False))


def server_cursor_open(cursor: Any) -> bool:
    """Whether closing *cursor* may talk to the server (True when unsure)."""
    return bool(getattr(cursor, "_id", True) or getattr(cursor, "_sock_mgr", True))


def gridout_loaded(grid_out: Any) -> bool:
    """Whether a ``GridOut`` has fetched its file document (its metadata reads are then local)."""
    # Past GridOut.__getattr__, which would fetch the document to answer.
    return bool(object.__getattribute__(grid_out, "_file"))


# -- the client ------------------------------------------------------------------


def open_topology(client: Any) -> None:
    """Start *client*'s monitors and server discovery, as ``connect=True`` does; blocks."""
    getter = getattr(client, "_get_topology", None)
    if getter is not None:  # without it, the client connects on first use anyway
        getter()


def csot_active() -> bool:
    """Whether the caller is inside ``pymongo.timeout()``."""
    return bool(_csot.get_timeout())


def csot_remaining() -> float | None:
    """Seconds left before the caller's ``pymongo.timeout()`` deadline, or None outside one."""
    return _csot.remaining()


# -- real sockets for PyMongo's threads --------------------------------------------

_REAL_NAMES = ("socket", "getaddrinfo")
_REAL_SOCKET = dict(zip(_REAL_NAMES, get_original("socket", list(_REAL_NAMES)), strict=True))
_CONNECTION_MODULES = ("pymongo.pool_shared", "pymongo.synchronous.pool", "pymongo.pool")


def use_real_sockets() -> bool:
    """Whether a connection PyMongo opens here must use a real socket.

    Yes in a worker of an offload pool, and -- while threading is not
    patched -- in any thread but the main one: those connections end up in
    PyMongo's shared pool, used later by other threads, which a gevent
    socket forbids.  The main thread keeps what patching gave it, so plain
    PyMongo under ``patch_all()`` stays cooperative.
    """
    if in_worker_thread():
        return True
    if is_module_patched("threading"):
        return False
    return native.get_ident() != threading.main_thread().ident


class _SocketModule:
    """What PyMongo's connection module sees as ``socket``.

    Every name comes from the real (possibly patched) module, except
    ``socket`` and ``getaddrinfo``, which are the unpatched originals where
    :func:`use_real_sockets` says so.
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        if name in _REAL_SOCKET and use_real_sockets():
            return _REAL_SOCKET[name]
        return getattr(self._module, name)


_install_lock = native.allocate_lock()
_installed: bool | None = None  # None until install() has looked


def install() -> bool:
    """Give PyMongo's connection factory the thread-aware ``socket`` module.

    Idempotent and thread-safe; the first :class:`~offload.mongo.MongoClient`
    calls it.  Wraps one module attribute of PyMongo (``socket`` in the
    module that holds ``_create_connection``), replacing nothing else.
    Returns False if this PyMongo keeps ``_create_connection`` somewhere
    unknown: the client then refuses the one mode that needs the shim.
    """
    global _installed
    if _installed is not None:
        return _installed
    with _install_lock:
        if _installed is None:
            _installed = _wrap_socket_module()
    return _installed


def _wrap_socket_module() -> bool:
    for name in _CONNECTION_MODULES:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name, fromlist=["_create_connection"])
            except ImportError:
                continue
        current = getattr(module, "socket", None)
        if hasattr(module, "_create_connection") and current is not None:
            if not isinstance(current, _SocketModule):
                vars(module)["socket"] = _SocketModule(current)
            return True
    return False


def check_tls(client: Any) -> None:
    """Refuse TLS through a patched ``ssl`` module when threads are real.

    gevent's SSL context wraps even a real socket in a gevent SSL socket,
    which belongs to the hub of the thread that made it, while PyMongo
    shares connections between threads: a large write would fail with
    "Cannot switch to a different thread".  A real ``ssl.SSLSocket`` cannot
    be made instead, because patching rebinds the names inside the ``ssl``
    module that its methods use (and an unpatched ``ssl`` beside a patched
    ``socket`` is broken by itself).
    """
    if not is_module_patched("ssl"):
        return
    from gevent.ssl import SSLContext as _GeventSSLContext

    context = getattr(client.options.pool_options, "_ssl_context", None)
    if isinstance(context, _GeventSSLContext):
        raise RuntimeError(
            "offload.mongo cannot use TLS through gevent's patched ssl module while threads are "
            "real: its SSL sockets belong to one thread's hub. Patch threading too (patch_all()), "
            "or patch neither socket nor ssl"
        )
