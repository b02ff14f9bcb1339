"""A drop-in PyMongo client for gevent programs that do not patch threading.

``offload.mongo.MongoClient`` takes PyMongo's arguments and hands back the
same objects -- databases, collections, cursors, sessions, change streams,
GridFS -- wrapped in proxies.  Whatever talks to the server runs in a
:class:`~offload.ThreadPool` while only the calling greenlet waits; whatever
does not (``client.db``, ``db["coll"]``, ``coll.find(...)``, cursor chaining)
runs inline with no thread hop.  A cursor fetches one server batch per hop
and hands out its documents from the local buffer in the greenlet, the way
Motor does for asyncio.

Two facts of PyMongo shape the package:

* Under ``patch_all()`` PyMongo is cooperative already, and its locks and
  background "threads" are greenlets that a real thread must not touch.  A
  client built while ``threading`` is patched therefore runs every call
  inline in the calling greenlet: the proxies stay, the pool is not used.
* With ``patch_socket()`` but real threads, PyMongo's sockets would be gevent
  sockets, each bound to the hub of the thread that made it, while PyMongo
  shares pooled connections between threads; a send that blocks in another
  thread fails with "Cannot switch to a different thread".  So the
  connections PyMongo opens outside the main thread (in offload's workers
  and PyMongo's own monitor threads) get real, unpatched sockets, once
  :func:`install_real_sockets` has run -- the first :class:`MongoClient`
  runs it; importing this package changes nothing in PyMongo.

The rooms: ``_pymongo`` (every PyMongo internal relied on, the socket shim,
the TLS check), ``_proxy`` (the runner, the type registry, the proxy base),
``client``, ``cursors``, ``gridfs``.
"""

from ..proxy import unwrap
from . import _pymongo
from .client import ClientSession, Collection, Database, MongoClient
from .cursors import DEFAULT_BATCH_SIZE, ChangeStream, CommandCursor, Cursor
from .gridfs import GridFS, GridFSBucket

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
    "install_real_sockets",
    "unwrap",
]


def install_real_sockets() -> bool:
    """Make the connections PyMongo opens off the main thread use real sockets.

    Only matters under ``patch_socket()`` (or ``patch_all(thread=False)``)
    with real threads: PyMongo's connection factory then gets an unpatched
    ``socket.socket`` and ``getaddrinfo`` in offload's workers and, while
    threading is not patched, in any thread but the main one.  Idempotent
    and thread-safe; the first :class:`MongoClient` calls it, so call it
    yourself only to hand plain ``pymongo.MongoClient`` calls to offload's
    pools.  Returns False if this PyMongo keeps its connection factory
    somewhere offload does not know.
    """
    return _pymongo.install()
