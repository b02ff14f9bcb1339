"""The client objects: MongoClient (and how its arguments are bound), Database, Collection, ClientSession."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pymongo
from gevent.monkey import is_module_patched
from pymongo.client_session import ClientSession as _ClientSession
from pymongo.collection import Collection as _Collection
from pymongo.database import Database as _Database
from pymongo.driver_info import DriverInfo

from .._core.checks import check_callable
from .._version import __version__
from ..defaults import check_pool, resolve_pool
from ..threadpool import ThreadPool
from . import _pymongo
from ._proxy import EnterInline, ItemsInline, Runner, register

__all__ = ["ClientSession", "Collection", "Database", "MongoClient"]

# Threads for a client whose maxPoolSize is unbounded (None or 0).
_UNBOUNDED_THREADS = 100


class MongoClient(ItemsInline):
    """:class:`pymongo.MongoClient` whose blocking calls run in a thread pool.

    Takes exactly PyMongo's arguments, plus *pool*: ``None`` (an adaptive pool
    for this client alone, with up to as many threads as ``maxPoolSize``), a
    pool name, or an :class:`offload.ThreadPool`.  The real client is built with
    ``connect=False``, so nothing here blocks; unless ``connect=False`` was
    asked for, it starts connecting in the pool at once, as PyMongo would.
    A :class:`~pymongo.driver_info.DriverInfo` naming offload is added.

    A deadline -- ``timeoutMS``, or ``pymongo.timeout()`` around a call --
    goes with each call to its worker (PyMongo sends it to the server as
    ``maxTimeMS``) and also bounds the caller's wait for a free thread.

    When ``threading`` is monkey-patched (``patch_all()``), PyMongo is
    cooperative by itself and its internals must stay in the hub's thread:
    every call then runs inline and *pool* is not used.  TLS through a
    patched ``ssl`` with real threads raises :exc:`RuntimeError` at once.
    The first client installs offload's real-socket shim in PyMongo
    (:func:`offload.mongo.install_real_sockets`).
    """

    __slots__ = ()

    _offload_inline = frozenset({"get_database", "get_default_database", "with_options"})
    _offload_pooled = frozenset(
        {"address", "primary", "secondaries", "arbiters", "is_primary", "is_mongos", "nodes"}
    )

    def __init__(self, *args: Any, pool: Any = None, **kwargs: Any) -> None:
        check_pool(pool)
        inline = is_module_patched("threading")
        if not _pymongo.install() and not inline and is_module_patched("socket"):
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
                _pymongo.check_tls(real)
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
        # timeoutMS=0 means no timeout, as in PyMongo.
        runner = Runner(None if inline else pool, owned, inline, real.options.timeout or None)
        super().__init__(real, runner)
        if not inline and connect is not False:
            # PyMongo's connect=True: open the topology (monitor threads, SRV
            # lookup) now, off the hub.  Errors surface on first use, as there.
            runner.submit(_pymongo.open_topology, real)

    def close(self) -> None:
        """Close the client in the pool; a dedicated pool is then shut down."""
        try:
            self._offload_call(self._offload_obj.close)
        finally:
            self._offload_runner.closed()

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


class Database(ItemsInline):
    """A proxy for :class:`pymongo.database.Database`."""

    __slots__ = ()

    _offload_inline = frozenset({"get_collection", "with_options"})


class Collection(ItemsInline):
    """A proxy for :class:`pymongo.collection.Collection`.

    ``find`` and ``find_raw_batches`` only build a cursor, inline; the query
    runs when the cursor is first iterated.
    """

    __slots__ = ()

    _offload_inline = frozenset({"with_options", "find", "find_raw_batches"})


class _TransactionProxy(EnterInline):
    """``with session.start_transaction():`` -- commit or abort at the end, in the pool."""

    __slots__ = ()


class ClientSession(EnterInline):
    """A proxy for :class:`pymongo.client_session.ClientSession`.

    ``with client.start_session() as s:`` and ``with s.start_transaction():``
    work as in PyMongo; commit and abort run in the pool.
    """

    __slots__ = ()

    def start_transaction(self, *args: Any, **kwargs: Any) -> Any:
        """Start a transaction in the pool; ``with`` it to commit or abort at the end."""
        ctx = self._offload_call(self._offload_obj.start_transaction, args, kwargs)
        return _TransactionProxy._wrap_existing(ctx, self._offload_runner)

    def with_transaction(self, callback: Callable[[ClientSession], Any], *args: Any, **kwargs: Any) -> Any:
        """Run *callback* in a transaction, PyMongo's retries included, in one worker.

        *callback* is called there with this proxy, and the proxies it uses
        run inline in that worker.  Other arguments are PyMongo's.
        """
        check_callable(callback, "callback")

        def run(session):
            return callback(self)

        return self._offload_call(self._offload_obj.with_transaction, (run, *args), kwargs)


register(MongoClient, pymongo.MongoClient)
register(Database, _Database)
register(Collection, _Collection)
register(ClientSession, _ClientSession)
