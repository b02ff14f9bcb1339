"""A drop-in PyMongo client for gevent programs that do not patch threading.

``offload.mongo.MongoClient`` takes PyMongo's arguments and hands back the
same objects -- databases, collections, cursors, sessions, change streams,
GridFS -- wrapped in proxies.  Whatever talks to the server runs in a
:class:`~offload.ThreadPool` while only the calling greenlet waits; whatever
does not (``client.db``, ``db["coll"]``, ``coll.find(...)``, cursor chaining)
runs inline with no thread hop.  A cursor fetches one server batch per hop
and hands out its documents from the local buffer in the greenlet, the way
Motor does for asyncio.

Two facts of PyMongo shape the module:

* Under ``patch_all()`` PyMongo is cooperative already, and its locks and
  background "threads" are greenlets that a real thread must not touch.  A
  client built while ``threading`` is patched therefore runs every call
  inline in the calling greenlet: the proxies stay, the pool is not used.
* With ``patch_socket()`` but real threads, PyMongo's sockets would be gevent
  sockets, each bound to the hub of the thread that made it, while PyMongo
  shares pooled connections between threads; a send that blocks in another
  thread fails with "Cannot switch to a different thread".  So the
  connections PyMongo opens outside the main thread (in this pool's workers
  and PyMongo's own monitor threads) get real, unpatched sockets: see
  :func:`_use_real_sockets`.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable
from time import perf_counter as _monotonic
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gevent
import gridfs
import pymongo
from gevent.monkey import get_original, is_module_patched
from pymongo.change_stream import ChangeStream as _ChangeStream
from pymongo.client_session import ClientSession as _ClientSession
from pymongo.collection import Collection as _Collection
from pymongo.command_cursor import CommandCursor as _CommandCursor
from pymongo.command_cursor import RawBatchCommandCursor as _RawBatchCommandCursor
from pymongo.cursor import Cursor as _Cursor
from pymongo.cursor import RawBatchCursor as _RawBatchCursor
from pymongo.database import Database as _Database
from pymongo.driver_info import DriverInfo

from ._core import native
from ._version import __version__
from .defaults import check_pool, resolve_pool
from .proxy import Proxy, unwrap
from .proxy import unwrap_args as _unwrap_args
from .threadpool import ThreadPool, in_worker_thread

__all__ = [
    "ChangeStream",
    "ClientSession",
    "Collection",
    "CommandCursor",
    "Cursor",
    "DEFAULT_BATCH_SIZE",
    "Database",
    "GridFS",
    "GridFSBucket",
    "MongoClient",
    "unwrap",
]

_setattr = object.__setattr__
_getattribute = object.__getattribute__
_MISSING = object()

# Threads for a client whose maxPoolSize is unbounded (None or 0).
_UNBOUNDED_THREADS = 100

# An empty change-stream getMore that returns faster than this means the
# server ignores maxAwaitTimeMS; polling then backs off instead of spinning.
_QUICK_EMPTY_POLL = 0.005
_MAX_POLL_BACKOFF = 0.1


# -- real sockets for PyMongo's threads --------------------------------------

_REAL_NAMES = ("socket", "getaddrinfo")
_REAL_SOCKET = dict(zip(_REAL_NAMES, get_original("socket", list(_REAL_NAMES)), strict=True))


def _use_real_sockets():
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
    :func:`_use_real_sockets` says so.
    """

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        if name in _REAL_SOCKET and _use_real_sockets():
            return _REAL_SOCKET[name]
        return getattr(self._module, name)


def _install_socket_module():
    """Give PyMongo's connection factory the thread-aware socket module.

    Returns False if this PyMongo keeps ``_create_connection`` somewhere
    unknown; :class:`MongoClient` then refuses the one mode that needs it.
    """
    for name in ("pymongo.pool_shared", "pymongo.synchronous.pool", "pymongo.pool"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name, fromlist=["_create_connection"])
            except ImportError:
                continue
        if hasattr(module, "_create_connection") and hasattr(module, "socket"):
            if not isinstance(module.socket, _SocketModule):
                module.socket = _SocketModule(module.socket)
            return True
    return False


_REAL_SOCKETS_INSTALLED = _install_socket_module()


def _check_tls(client):
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


# -- running calls -----------------------------------------------------------


class _Runner:
    """Where one client's calls run: its pool, or inline.

    Every proxy made from a client shares its runner, so closing the client
    (which shuts a dedicated pool down) is seen by all of them.
    """

    __slots__ = ("pool", "owned", "inline")

    def __init__(self, pool, owned, inline):
        self.pool = pool
        self.owned = owned
        self.inline = inline

    def call(self, fn, args, kwargs):
        if self.inline:
            return fn(*args, **kwargs)
        return self.pool._call(fn, args, kwargs, None)

    def closed(self):
        # A closed PyMongo client raises InvalidOperation before any I/O, so
        # later calls run inline and raise just that.
        if self.owned and not self.inline:
            self.pool.shutdown(wait=False)
        self.inline = True


_wrappers: dict = {}  # PyMongo type -> proxy class, filled by _register
_wrapper_cache: dict = {}


def _register(proxy_cls, *types):
    for t in types:
        _wrappers[t] = proxy_cls
    _wrapper_cache.clear()


def _wrapper_for(t):
    """The proxy class for instances of *t*, or None (cached per type)."""
    try:
        return _wrapper_cache[t]
    except KeyError:
        pass
    found = None
    for base in t.__mro__:
        found = _wrappers.get(base)
        if found is not None:
            break
    _wrapper_cache[t] = found
    return found


def _runner_of(proxy):
    return _getattribute(proxy, "_offload_runner")


# -- the proxies -------------------------------------------------------------


class _MongoProxy(Proxy):
    """A :class:`~offload.Proxy` that knows which PyMongo calls do I/O.

    ``_offload_inline`` names methods that do none: they run in the greenlet.
    ``_offload_pooled`` names properties that do: they are read in the pool.
    Any other method runs in the pool; any other attribute is read inline.
    Results that are PyMongo objects come back wrapped.
    """

    __slots__ = ("_offload_runner",)

    _offload_inline: frozenset = frozenset()
    _offload_pooled: frozenset = frozenset()

    def __init__(self, obj, runner):
        _setattr(self, "_offload_obj", obj)
        _setattr(self, "_offload_autowrap", ())
        _setattr(self, "_offload_names", frozenset())
        _setattr(self, "_offload_pool", runner.pool)
        _setattr(self, "_offload_runner", runner)

    @classmethod
    def _offload_adopt(cls, obj, runner):
        self = object.__new__(cls)
        _MongoProxy.__init__(self, obj, runner)
        return self

    def _offload_call(self, fn, args=(), kwargs=None):
        args, kwargs = _unwrap_args(args, kwargs or {})
        return self._offload_runner.call(fn, args, kwargs)

    def _offload_wrap(self, value, name=None):
        if value is self._offload_obj:
            return self
        cls = _wrapper_for(type(value))
        if cls is not None:
            return cls._offload_adopt(value, self._offload_runner)
        if type(value) is list and value and _wrapper_for(type(value[0])) is not None:
            return [self._offload_wrap(v) for v in value]
        return value

    def __getattr__(self, name):
        obj = self._offload_obj
        if name in self._offload_pooled:
            return self._offload_wrap(self._offload_call(getattr, (obj, name)))
        attr = getattr(obj, name)
        cls = _wrapper_for(type(attr))
        if cls is not None:
            # Databases and collections are callable (they raise a helpful
            # TypeError) but are values here: wrap them, do not call them.
            return cls._offload_adopt(attr, self._offload_runner)
        if not callable(attr):
            return attr
        if name in self._offload_inline:

            def method(*args, **kwargs):
                args, kwargs = _unwrap_args(args, kwargs)
                return self._offload_wrap(attr(*args, **kwargs))

        else:

            def method(*args, **kwargs):
                return self._offload_wrap(self._offload_call(attr, args, kwargs))

        method.__name__ = name
        method.__qualname__ = f"{type(obj).__qualname__}.{name}"
        method.__doc__ = getattr(attr, "__doc__", None)
        return method


class _EnterInline:
    """``with`` returns the proxy at once (PyMongo's ``__enter__`` returns
    self and does no I/O); the real ``__exit__`` -- closing, ending,
    committing -- runs in the pool."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._offload_call(type(self._offload_obj).__exit__, (self._offload_obj, exc_type, exc, tb))


class _ItemsInline:
    """``x[name]`` builds a database or collection: no I/O, no hop."""

    __slots__ = ()

    def __getitem__(self, key):
        return self._offload_wrap(self._offload_obj[key])


class _TransactionProxy(_EnterInline, _MongoProxy):
    """``with session.start_transaction():`` -- commit or abort at the end, in the pool."""

    __slots__ = ()


class MongoClient(_ItemsInline, _MongoProxy):
    """:class:`pymongo.MongoClient` whose blocking calls run in a thread pool.

    Takes exactly PyMongo's arguments, plus *pool*: ``None`` (an adaptive pool
    for this client alone, with up to as many threads as ``maxPoolSize``), a
    pool name, or an :class:`offload.ThreadPool`.  The real client is built with
    ``connect=False``, so nothing here blocks; unless ``connect=False`` was
    asked for, it starts connecting in the pool at once, as PyMongo would.
    A :class:`~pymongo.driver_info.DriverInfo` naming offload is added.

    When ``threading`` is monkey-patched (``patch_all()``), PyMongo is
    cooperative by itself and its internals must stay in the hub's thread:
    every call then runs inline and *pool* is not used.  TLS through a
    patched ``ssl`` with real threads raises :exc:`RuntimeError` at once.
    """

    __slots__ = ()

    _offload_inline = frozenset({"get_database", "get_default_database", "with_options"})
    _offload_pooled = frozenset(
        {"address", "primary", "secondaries", "arbiters", "is_primary", "is_mongos", "nodes"}
    )

    def __init__(self, *args: Any, pool: Any = None, **kwargs: Any) -> None:
        check_pool(pool)
        inline = is_module_patched("threading")
        if not inline and is_module_patched("socket") and not _REAL_SOCKETS_INSTALLED:
            raise RuntimeError(
                f"offload.mongo cannot give PyMongo {pymongo.version} real sockets under patch_socket(); "
                "patch threading too, or do not patch socket"
            )
        bound = _bind_client_args(args, kwargs)
        theirs = _add_driver_info(bound)
        connect = bound.arguments.get("connect")
        if connect is None:
            connect = _uri_connect_option(bound.arguments.get("host"))
        if not inline:
            bound.arguments["connect"] = False
        real = pymongo.MongoClient(*bound.args, **bound.kwargs)
        if not inline:
            try:
                _check_tls(real)
            except RuntimeError:
                real.close()
                raise
        if theirs and hasattr(real, "append_metadata"):
            real.append_metadata(DriverInfo("offload", __version__))
        owned = pool is None and not inline
        if owned:
            size = int(real.options.pool_options.max_pool_size or _UNBOUNDED_THREADS)
            pool = ThreadPool(size, name="offload.mongo", adaptive=True)
        elif not inline:
            pool = resolve_pool(pool)
            if not isinstance(pool, ThreadPool):
                # PyMongo objects cannot leave the process, nor be shared
                # with anything but threads.
                raise TypeError(f"pool must be an offload ThreadPool, not {type(pool).__name__}")
        runner = _Runner(pool, owned, inline)
        _MongoProxy.__init__(self, real, runner)
        if not inline and connect is not False and hasattr(real, "_get_topology"):
            # PyMongo's connect=True: open the topology (monitor threads, SRV
            # lookup) now, off the hub.  Errors surface on first use, as there.
            pool.submit(real._get_topology)

    def close(self) -> None:
        """Close the client in the pool; a dedicated pool is then shut down."""
        runner = self._offload_runner
        try:
            self._offload_call(self._offload_obj.close)
        finally:
            runner.closed()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()


def _bind_client_args(args, kwargs):
    try:
        return inspect.signature(pymongo.MongoClient).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"MongoClient(): {exc}") from None


def _uri_connect_option(host):
    """The ``connect=`` option of a ``mongodb://`` URI as a bool, or None.

    Read from the query string only: parsing the URI with PyMongo could
    mean a DNS lookup (``mongodb+srv://``), which is what this avoids.
    """
    if not isinstance(host, str) or "?" not in host:
        return None
    for key, values in parse_qs(urlsplit(host).query).items():
        if key.lower() == "connect" and values:
            return values[-1].lower() not in ("false", "0", "no", "off")
    return None


def _add_driver_info(bound):
    """Name offload in the handshake; True if the caller passed a driver of
    their own (offload is then appended to it)."""
    extra = bound.arguments.setdefault("kwargs", {})
    if extra.get("driver") is not None:
        return True
    extra["driver"] = DriverInfo("offload", __version__)
    return False


class Database(_ItemsInline, _MongoProxy):
    """A proxy for :class:`pymongo.database.Database`."""

    __slots__ = ()

    _offload_inline = frozenset({"get_collection", "with_options"})


class Collection(_ItemsInline, _MongoProxy):
    """A proxy for :class:`pymongo.collection.Collection`.

    ``find`` and ``find_raw_batches`` only build a cursor, inline; the query
    runs when the cursor is first iterated.
    """

    __slots__ = ()

    _offload_inline = frozenset({"with_options", "find", "find_raw_batches"})


def _buffer(cursor):
    """The documents a PyMongo cursor already holds (empty if unknown)."""
    try:
        return cursor._data
    except AttributeError:
        return ()


_plain_next_cache: dict = {}

#: The batch size a proxy gives a cursor that has none (server default).
#: A worker decodes a whole batch while holding the GIL, so a server-sized
#: batch (up to 16 MB) would freeze the hub for as long as it takes; a
#: thousand documents keep that to a few milliseconds for small documents
#: and cost one extra round trip per thousand.  Set ``batch_size`` on a
#: cursor to choose otherwise.
DEFAULT_BATCH_SIZE = 1000


def _bound_batches(cursor):
    if getattr(cursor, "_batch_size", None) != 0 or _is_raw(type(cursor)):
        return
    if isinstance(cursor, _Cursor):
        if cursor._id is not None or cursor.retrieved:
            return  # started: PyMongo refuses to change it now
    cursor.batch_size(DEFAULT_BATCH_SIZE)


def _is_raw(t):
    # Raw-batch cursors hand out undecoded batches: nothing to bound, and
    # the caller sees the batching.
    return issubclass(t, (_RawBatchCursor, _RawBatchCommandCursor))


def _plain_next(t):
    """True if ``next()`` of cursor type *t* only pops its buffer when it
    has documents; then the proxy pops it directly."""
    try:
        return _plain_next_cache[t]
    except KeyError:
        plain = _plain_next_cache[t] = getattr(t, "next", None) in (_Cursor.next, _CommandCursor.next)
        return plain


class _CursorBase(_MongoProxy):
    __slots__ = ()

    @classmethod
    def _offload_adopt(cls, obj, runner):
        _bound_batches(obj)
        return super()._offload_adopt(obj, runner)

    def __iter__(self):
        return self

    def __next__(self):
        cursor = self._offload_obj
        data = _buffer(cursor)
        if data:
            if _plain_next(type(cursor)):
                return data.popleft()
            return self._offload_wrap(cursor.next())
        return self._offload_wrap(self._offload_runner.call(cursor.next, (), {}))

    next = __next__

    def to_list(self, length: int | None = None) -> list:
        """The remaining documents (at most *length*), in one hop at most."""
        cursor = self._offload_obj
        data = _buffer(cursor)
        if data and (getattr(cursor, "_killed", False) or (length is not None and 0 < length <= len(data))):
            return self._offload_wrap(cursor.to_list(length))
        return self._offload_wrap(self._offload_call(cursor.to_list, (length,)))

    def close(self) -> None:
        """Close the cursor; in the pool only if a server cursor is open."""
        cursor = self._offload_obj
        if getattr(cursor, "_id", True) or getattr(cursor, "_sock_mgr", True):
            self._offload_call(cursor.close)
        else:
            cursor.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()


class Cursor(_CursorBase):
    """A proxy for :class:`pymongo.cursor.Cursor` (and raw-batch and GridFS cursors).

    Chaining (``sort``, ``skip``, ``limit``, ``batch_size``, ...) runs
    inline.  Iteration runs one ``find``/``getMore`` per hop and yields the
    batch from the buffer in the greenlet.
    """

    __slots__ = ()

    _offload_inline = frozenset(
        {
            "add_option",
            "allow_disk_use",
            "batch_size",
            "clone",
            "collation",
            "comment",
            "hint",
            "limit",
            "max",
            "max_await_time_ms",
            "max_scan",
            "max_time_ms",
            "min",
            "remove_option",
            "skip",
            "sort",
            "where",
        }
    )

    def __getitem__(self, index):
        """A slice makes a new cursor inline; an index runs a query in the pool."""
        cursor = self._offload_obj
        if isinstance(index, slice):
            return self._offload_wrap(cursor[index])
        return self._offload_wrap(self._offload_call(_getitem, (cursor, index)))


def _getitem(obj, key):
    return obj[key]


class CommandCursor(_CursorBase):
    """A proxy for :class:`pymongo.command_cursor.CommandCursor`
    (``aggregate``, ``list_indexes``, ...), batched like :class:`Cursor`."""

    __slots__ = ()

    _offload_inline = frozenset({"batch_size"})

    def try_next(self) -> Any:
        """The next document, or None after one ``getMore`` that found none."""
        cursor = self._offload_obj
        if _buffer(cursor):
            return cursor.try_next()
        return self._offload_call(cursor.try_next)


class ChangeStream(_EnterInline, _MongoProxy):
    """A proxy for a :class:`pymongo.change_stream.ChangeStream`.

    :meth:`try_next` runs at most one ``getMore`` in the pool.  Iteration
    polls with it, so a quiet stream holds a worker only for one
    ``maxAwaitTimeMS`` at a time instead of for ever.
    """

    __slots__ = ()

    def try_next(self) -> Any:
        """The next change, or None after one ``getMore`` that found none."""
        stream = self._offload_obj
        if _buffer(getattr(stream, "_cursor", None)):
            return stream.try_next()
        return self._offload_call(stream.try_next)

    def __iter__(self):
        return self

    def __next__(self):
        stream = self._offload_obj
        backoff = 0.0
        while stream.alive:
            started = _monotonic()
            change = self.try_next()
            if change is not None:
                return change
            if _monotonic() - started < _QUICK_EMPTY_POLL:
                # The server answered an empty getMore without awaiting.
                backoff = min(max(backoff * 2, 0.001), _MAX_POLL_BACKOFF)
                gevent.sleep(backoff)
            else:
                backoff = 0.0
        raise StopIteration

    next = __next__


class ClientSession(_EnterInline, _MongoProxy):
    """A proxy for :class:`pymongo.client_session.ClientSession`.

    ``with client.start_session() as s:`` and ``with s.start_transaction():``
    work as in PyMongo; commit and abort run in the pool.
    :meth:`with_transaction` runs in one worker, retries included, and calls
    *callback* there with this proxy: proxies used inside it run inline in
    that worker.
    """

    __slots__ = ()

    def start_transaction(self, *args, **kwargs):
        ctx = self._offload_call(self._offload_obj.start_transaction, args, kwargs)
        return _TransactionProxy._offload_adopt(ctx, self._offload_runner)

    def with_transaction(self, callback: Callable[[ClientSession], Any], *args, **kwargs):
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")

        def run(session):
            return callback(self)

        return self._offload_call(self._offload_obj.with_transaction, (run, *args), kwargs)


class _GridFSProxy(_MongoProxy):
    __slots__ = ()

    _offload_inline = frozenset({"find"})


class _GridInProxy(_EnterInline, _MongoProxy):
    """Writes and attribute updates of an upload may touch the server."""

    __slots__ = ()

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, value))


class _GridOutProxy(_EnterInline, _MongoProxy):
    """A download: its metadata is fetched on first use, so attribute reads
    go to the pool until it is; iteration (by line) costs a hop per line --
    prefer ``read()`` or ``readchunk()``."""

    __slots__ = ()

    def __getattr__(self, name):
        obj = self._offload_obj
        if not _getattribute(obj, "_file"):
            # Metadata properties, and names GridOut looks up in the file
            # document, load that document first: I/O.  Methods do not.
            static = inspect.getattr_static(type(obj), name, _MISSING)
            if static is _MISSING or isinstance(static, property):
                return self._offload_wrap(self._offload_call(getattr, (obj, name)))
        return _MongoProxy.__getattr__(self, name)

    def __iter__(self):
        return self

    def __next__(self):
        return self._offload_call(next, (self._offload_obj,))


def _database_runner(db, what):
    if not isinstance(db, Database):
        raise TypeError(f"{what}() needs a Database from offload.mongo.MongoClient, not {type(db).__name__}")
    return _runner_of(db)


def GridFS(database: Database, collection: str = "fs") -> Any:  # named like the class it returns
    """:class:`gridfs.GridFS` on an offload *database*, wrapped: its methods
    run in the client's pool, ``find`` builds a cursor inline."""
    runner = _database_runner(database, "GridFS")
    return _GridFSProxy(gridfs.GridFS(unwrap(database), collection), runner)


def GridFSBucket(database: Database, *args: Any, **kwargs: Any) -> Any:  # named like the class it returns
    """:class:`gridfs.GridFSBucket` on an offload *database*, wrapped like :func:`GridFS`."""
    runner = _database_runner(database, "GridFSBucket")
    args, kwargs = _unwrap_args(args, kwargs)
    return _GridFSProxy(gridfs.GridFSBucket(unwrap(database), *args, **kwargs), runner)


_register(MongoClient, pymongo.MongoClient)
_register(Database, _Database)
_register(Collection, _Collection)
_register(Cursor, _Cursor)
_register(CommandCursor, _CommandCursor)
_register(ChangeStream, _ChangeStream)
_register(ClientSession, _ClientSession)
_register(_GridFSProxy, gridfs.GridFS, gridfs.GridFSBucket)
_register(_GridInProxy, gridfs.GridIn)
_register(_GridOutProxy, gridfs.GridOut)
