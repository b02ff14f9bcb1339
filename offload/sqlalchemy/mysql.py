"""MySQL/MariaDB dialects: ``mysql+offload_pymysql://`` and ``mysql+offload_mysqldb://``."""

from sqlalchemy.dialects.mysql.mysqldb import MySQLDialect_mysqldb
from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

from .dialect import OffloadDialect

__all__ = ["OffloadPyMySQLDialect", "OffloadMySQLdbDialect"]


class OffloadPyMySQLDialect(OffloadDialect, MySQLDialect_pymysql):
    """SQLAlchemy's PyMySQL dialect with every DB-API call run in the connection's lane.

    PyMySQL is pure Python, so patching ``socket`` makes it cooperative by
    itself; offload also keeps its CPU work (row parsing) off the hub and
    works unpatched.
    """

    driver = "offload_pymysql"
    supports_statement_cache = True


class OffloadMySQLdbDialect(OffloadDialect, MySQLDialect_mysqldb):
    """SQLAlchemy's mysqlclient (``MySQLdb``) dialect with every DB-API call run in the connection's lane.

    mysqlclient waits inside libmysqlclient, which no patching reaches:
    without offload one query blocks every greenlet.
    """

    driver = "offload_mysqldb"
    supports_statement_cache = True
