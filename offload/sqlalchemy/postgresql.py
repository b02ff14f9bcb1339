"""PostgreSQL dialects: ``postgresql+offload_psycopg2://`` and ``postgresql+offload_psycopg://``."""

from typing import Any

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

from .dialect import OffloadDialect, in_lane

__all__ = ["OffloadPsycopg2Dialect", "OffloadPsycopgDialect"]


class OffloadPsycopg2Dialect(OffloadDialect, PGDialect_psycopg2):
    """SQLAlchemy's psycopg2 dialect with every DB-API call run in the connection's lane."""

    driver = "offload_psycopg2"
    supports_statement_cache = True


class OffloadPsycopgDialect(OffloadDialect, PGDialect_psycopg):
    """SQLAlchemy's psycopg (3) dialect with every DB-API call run in the connection's lane.

    psycopg 3 cooperates with gevent by itself only when imported after
    patching and without its C wait function; through offload it never
    blocks the hub, patched or not.
    """

    driver = "offload_psycopg"
    supports_statement_cache = True

    def _type_info_fetch(self, connection: Any, name: str) -> Any:
        from psycopg.types import TypeInfo

        # TypeInfo.fetch checks the connection's type: give it the real one, in its lane.
        return in_lane(connection.connection.dbapi_connection, TypeInfo.fetch, name)
