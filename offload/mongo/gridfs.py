"""GridFS on an offload.mongo database: GridFS, GridFSBucket, and the files they hand out."""

from __future__ import annotations

import inspect
from typing import Any

import gridfs

from ..proxy import unwrap, unwrap_args
from . import _pymongo
from ._proxy import EnterInline, MongoProxy, Runner, register, runner_of
from .client import Database

__all__ = ["GridFS", "GridFSBucket"]

_MISSING = object()


class _GridFSProxy(MongoProxy):
    __slots__ = ()

    _offload_inline = frozenset({"find"})


class _GridInProxy(EnterInline):
    """Writes and attribute updates of an upload may touch the server."""

    __slots__ = ()

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, value))


class _GridOutProxy(EnterInline):
    """A download: its metadata is fetched on first use, so attribute reads
    go to the pool until it is; iteration (by line) costs a hop per line --
    prefer ``read()`` or ``readchunk()``."""

    __slots__ = ()

    def __getattr__(self, name):
        obj = self._offload_obj
        if not _pymongo.gridout_loaded(obj):
            # Metadata properties, and names GridOut looks up in the file
            # document, load that document first: I/O.  Methods do not.
            static = inspect.getattr_static(type(obj), name, _MISSING)
            if static is _MISSING or isinstance(static, property):
                return self._offload_wrap(self._offload_call(getattr, (obj, name)))
        return super().__getattr__(name)

    def __iter__(self):
        return self

    def __next__(self):
        return self._offload_call(next, (self._offload_obj,))


def _database_runner(db: Any, what: str) -> Runner:
    if not isinstance(db, Database):
        raise TypeError(f"{what}() needs a Database from offload.mongo.MongoClient, not {type(db).__name__}")
    return runner_of(db)


def GridFS(database: Database, collection: str = "fs") -> Any:  # noqa: N802  # named like the class it returns
    """:class:`gridfs.GridFS` on an offload *database*, wrapped: its methods
    run in the client's pool, ``find`` builds a cursor inline."""
    runner = _database_runner(database, "GridFS")
    return _GridFSProxy(gridfs.GridFS(unwrap(database), collection), runner)


def GridFSBucket(database: Database, *args: Any, **kwargs: Any) -> Any:  # noqa: N802  # named like the class it returns
    """:class:`gridfs.GridFSBucket` on an offload *database*, wrapped like :func:`GridFS`."""
    runner = _database_runner(database, "GridFSBucket")
    args, kwargs = unwrap_args(args, kwargs)
    return _GridFSProxy(gridfs.GridFSBucket(unwrap(database), *args, **kwargs), runner)


register(_GridFSProxy, gridfs.GridFS, gridfs.GridFSBucket)
register(_GridInProxy, gridfs.GridIn)
register(_GridOutProxy, gridfs.GridOut)
