"""SQLAlchemy dialects whose DB-API calls never block the gevent hub.

After ``pip install offload[sqlalchemy]`` these URLs work with plain
:func:`sqlalchemy.create_engine` (registered through the
``sqlalchemy.dialects`` entry point)::

    postgresql+offload_psycopg2://user@host/db
    postgresql+offload_psycopg://user@host/db      # psycopg 3
    mysql+offload_pymysql://user@host/db
    mysql+offload_mysqldb://user@host/db           # mysqlclient
    sqlite+offload_pysqlite:///path/to/file.db

Each is SQLAlchemy's own dialect for the driver with the driver's
connection opened by :func:`offload.dbapi.connect`: every statement, fetch,
commit and rollback runs in the connection's own thread while only the
calling greenlet waits.  Their default pool, :class:`CooperativeQueuePool`,
waits for a free connection without freezing the hub, patched or not, and
forgets the parent's connections in a forked child.  See
``docs/frameworks.rst``.
"""

from .dialect import OffloadDialect, must_not_wait
from .inherit import forget
from .pool import CooperativeQueue, CooperativeQueuePool

__all__ = [
    "CooperativeQueue",
    "CooperativeQueuePool",
    "OffloadDialect",
    "forget",
    "must_not_wait",
]
