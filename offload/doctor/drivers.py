"""The checks: ``time.sleep``, and one slow server-side call per database driver.

Every check talks to its server with a bounded connect timeout and a
bounded read timeout, so a server that accepts but never answers (a
mistyped port) is an error within seconds, never a hang.
"""

import importlib
import os
import time
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from gevent import monkey

from offload import call

from .checks import (
    CONNECT_TIMEOUT,
    DBAPI_FIX,
    PSYCOPG2_FIX,
    READ_TIMEOUT,
    SLEEP,
    Check,
    Row,
    Unreachable,
    lane,
    pure_check,
    pure_fix,
    require,
    socket_why,
)
from .redact import redact

__all__ = ["check_time", "check_mongo", "check_mysql", "check_postgres", "check_redis", "check_sqlite"]


def check_time() -> list[Row]:
    """A baseline every run has: stdlib ``time.sleep``."""
    patched = monkey.is_module_patched("time")
    why = "gevent's sleep" if patched else "time is not patched"
    check = Check("time.sleep", "-", patched, why, "use gevent.sleep(), or patch_all()")
    return [check.measure(lambda: time.sleep(SLEEP), lambda: call(time.sleep, SLEEP))]


def check_postgres(dsn: str) -> list[Row]:
    """psycopg2, and psycopg 3 when installed, against a libpq DSN or URI (``SELECT pg_sleep``)."""
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError:
        raise Unreachable("postgres: psycopg2 is not installed (pip install psycopg2-binary)") from None
    # A wait callback (psycogreen's) makes psycopg2 wait through gevent.
    green = psycopg2.extensions.get_wait_callback() is not None
    why = "psycopg2 with a wait callback: waits through gevent" if green else "C driver: libpq waits in C"
    checks = [Check("psycopg2", dsn, green, why, PSYCOPG2_FIX, module=psycopg2)]
    psycopg: Any
    try:
        psycopg = importlib.import_module("psycopg")
        importlib.import_module("psycopg.waiting")
    except ImportError:
        psycopg = None
    if psycopg is not None:
        # psycopg 3 chose its wait function at import: C's wait_c unless select was patched.
        wait = getattr(psycopg.waiting.wait, "__name__", "?")
        green3 = wait != "wait_c"
        why3 = f"psycopg 3 waits with {wait}" + (" on gevent's select" if green3 else ", in C")
        fix3 = f"import psycopg after patch_all() (it then waits through gevent), or {DBAPI_FIX}"
        checks.append(Check("psycopg", dsn, green3, why3, fix3, module=psycopg))
    for check in checks:
        check.sql = f"SELECT pg_sleep({SLEEP})"
        check.connect_args = (dsn,)
        check.connect_kwargs = {"connect_timeout": CONNECT_TIMEOUT}
        # The server gives up on any statement of ours after this; libpq has no read timeout.
        check.setup = f"SET statement_timeout = {int((SLEEP + READ_TIMEOUT) * 1000)}"
    return [check.run_dbapi() for check in checks]


def _mysql_params(url: str) -> dict:
    """PyMySQL/mysqlclient connect arguments from a ``mysql://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0].lower() not in ("mysql", "mariadb"):
        raise Unreachable(f"mysql: --mysql must be a mysql:// or mariadb:// URL, not {redact(url)!r}")
    # The userinfo ends at the last "@": a password may hold "/", "?", "#" or "@".
    userinfo, at, hostpart = rest.rpartition("@")
    hostport, _, path = hostpart.partition("/")
    try:
        parts = urlsplit(f"mysql://{hostport}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise Unreachable(f"mysql: cannot read a host and port in {redact(url)!r}") from None
    params: dict[str, Any] = {"host": host or "127.0.0.1", "port": port or 3306}
    user, colon, password = userinfo.partition(":")
    if user:
        params["user"] = unquote(user)
    if colon:
        params["password"] = unquote(password)
    database = path.partition("?")[0]
    if database:
        params["database"] = unquote(database)
    return params


def check_mysql(url: str) -> list[Row]:
    """Every installed MySQL driver (mysqlclient, PyMySQL) against *url* (``SELECT SLEEP``)."""
    params = _mysql_params(url)
    timeouts = {
        "connect_timeout": CONNECT_TIMEOUT,
        # Bounds the greeting and every answer: a port that accepts but
        # never speaks MySQL (PostgreSQL's, say) fails here instead of hanging.
        "read_timeout": int(SLEEP + READ_TIMEOUT),
        "write_timeout": READ_TIMEOUT,
    }
    checks = []
    try:
        import MySQLdb

        checks.append(Check("mysqlclient", url, False, "C driver: libmariadb waits in C", DBAPI_FIX, MySQLdb))
    except ImportError:
        pass
    try:
        import pymysql

        patched, why = socket_why()
        checks.append(Check("PyMySQL", url, patched, why, pure_fix(DBAPI_FIX), pymysql))
    except ImportError:
        pass
    if not checks:
        raise Unreachable("mysql: neither mysqlclient nor PyMySQL is installed (pip install PyMySQL)")
    rows = []
    for check in checks:
        check.sql = f"SELECT SLEEP({SLEEP})"
        check.connect_kwargs = dict(params, **timeouts)
        rows.append(check.run_dbapi())
    return rows


def _sqlite_query(n: int) -> str:
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
        "SELECT count(*) FROM c"
    )


def check_sqlite(path: str) -> list[Row]:
    """sqlite3 on an existing database file, read-only (a recursive query sized to SLEEP)."""
    import sqlite3

    if path == ":memory:":
        args: tuple = (path,)
        kwargs: dict = {}
    else:
        if not os.path.exists(path):
            raise Unreachable(f"sqlite3: no database file at {redact(path)!r}")
        # Read-only: the doctor must never create or change the user's database.
        args, kwargs = (f"file:{os.path.abspath(path)}?mode=ro",), {"uri": True}
    # Size the query to take about SLEEP seconds on this machine.
    sizing = sqlite3.connect(":memory:")
    started = time.perf_counter()
    sizing.execute(_sqlite_query(100_000)).fetchall()
    per_row = max((time.perf_counter() - started) / 100_000, 1e-8)
    sizing.close()
    n = int(min(max(SLEEP / per_row, 100_000), 50_000_000))
    check = Check(
        "sqlite3",
        path,
        False,
        "C library: the query runs in C",
        DBAPI_FIX,
        module=sqlite3,
        sql=_sqlite_query(n),
        connect_args=args,
        connect_kwargs=kwargs,
        setup="SELECT count(*) FROM sqlite_master",  # "file is not a database" here, not later
    )
    return [check.run_dbapi()]


def check_redis(url: str) -> list[Row]:
    """redis-py against *url* (``BLPOP`` on a key nobody uses, for SLEEP seconds)."""
    redis = require("redis", "redis: redis-py is not installed (pip install redis)")
    check = pure_check("redis-py", url, "run its calls through offload.Proxy")
    options = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SLEEP + READ_TIMEOUT}
    try:
        client = redis.Redis.from_url(url, **options)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise check.unreachable(exc) from None
    # BLPOP on a key nobody uses: the server waits SLEEP seconds for us alone
    # (DEBUG SLEEP would freeze the whole server, and is usually disabled).
    key = f"offload:doctor:{uuid.uuid4().hex}"
    return _measure_clients(
        check,
        client,
        lambda: redis.Redis.from_url(url, **options),
        lambda c: c.blpop([key], timeout=SLEEP),
        redis.ResponseError,
        lambda exc: f"server refused the slow call: {check.scrub(exc)}",
    )


def _measure_clients(check: Check, client: Any, make, slow, refused: type[Exception], describe) -> list[Row]:
    """Probe *slow* on *client* (direct) and on a client *make* builds in a lane's thread.

    The offloaded client lives in the lane's thread, so its sockets do too.
    A *refused* error from the server becomes a row saying *describe(error)*.
    """
    thread = lane()
    remote = None
    try:
        remote = thread.call(make)
        return [check.measure(lambda: slow(client), lambda: thread.call(slow, remote))]
    except refused as exc:
        return [check.refused(describe(exc))]
    finally:
        client.close()
        if remote is not None:
            thread.call(remote.close)
        thread.shutdown()


# A server-side sleep that reads and writes nothing: one generated document
# whose field is computed by JavaScript that sleeps (MongoDB 5.1+).
_MONGO_SLEEP = [
    {"$documents": [{"n": 1}]},
    {
        "$addFields": {
            "slept": {
                "$function": {
                    "body": "function(ms) { sleep(ms); return ms; }",
                    "args": [int(SLEEP * 1000)],
                    "lang": "js",
                }
            }
        }
    },
]


def check_mongo(uri: str) -> list[Row]:
    """PyMongo against *uri* (an aggregation whose JavaScript sleeps SLEEP seconds)."""
    errors = require("pymongo.errors", "mongo: PyMongo is not installed (pip install 'offload[mongo]')")
    import pymongo

    OperationFailure, PyMongoError = errors.OperationFailure, errors.PyMongoError
    check = pure_check("PyMongo", uri, "use offload.mongo.MongoClient")
    ms = CONNECT_TIMEOUT * 1000
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": ms,
        "connectTimeoutMS": ms,
        "socketTimeoutMS": int((SLEEP + READ_TIMEOUT) * 1000),
    }
    try:
        client: Any = pymongo.MongoClient(uri, **options)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise check.unreachable(exc) from None
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        reason = str(exc).split(", Timeout:")[0]  # the topology dump after it says no more
        # Cut so, "No servers found yet" (no check had finished) no longer says it timed out.
        raise check.unreachable(reason, isinstance(exc, errors.ServerSelectionTimeoutError)) from None

    def not_measured(exc):
        errmsg = (exc.details or {}).get("errmsg", exc)
        return (
            "not measured: the server has no server-side sleep the doctor can use "
            "($documents + $function JavaScript, MongoDB 5.1+; nx-27017 and servers without "
            f"JavaScript have none): {check.scrub(errmsg)}. "
            f"PyMongo is {check.why}: {'cooperative' if check.patched else 'it blocks the hub; ' + check.fix}"
        )

    return _measure_clients(
        check,
        client,
        lambda: pymongo.MongoClient(uri, **options),
        lambda c: list(c.get_database("admin").aggregate(_MONGO_SLEEP)),
        OperationFailure,
        not_measured,
    )
