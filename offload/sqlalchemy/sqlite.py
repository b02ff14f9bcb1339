"""The SQLite dialect: ``sqlite+offload_pysqlite://``."""

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from .dialect import OffloadDialect

__all__ = ["OffloadPySQLiteDialect"]


class OffloadPySQLiteDialect(OffloadDialect, SQLiteDialect_pysqlite):
    """SQLAlchemy's sqlite3 dialect with every call run in the connection's lane.

    sqlite3 runs queries in C on the calling thread, so a long query or a
    wait for a lock freezes the hub; here each connection keeps one thread,
    which is also what sqlite3's ``check_same_thread`` asks for.  File
    databases get :class:`~offload.sqlalchemy.CooperativeQueuePool`;
    ``:memory:`` keeps SQLAlchemy's ``SingletonThreadPool`` (one database
    per thread -- per greenlet when ``threading`` is patched).
    """

    driver = "offload_pysqlite"
    supports_statement_cache = True
