"""One check per driver: run one slow server-side call directly and through offload.

Each check is described by a :class:`Check` record -- the driver, its
module, the target, the slow call, how to connect -- and measured by
:meth:`Check.measure` into a :class:`Row`.  Every check talks to its server
with a bounded connect timeout and a bounded read timeout, so a server that
accepts but never answers (a mistyped port) is an error within seconds,
never a hang.
"""

import importlib
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from gevent import monkey

from offload import ThreadPool, call, probe

from .redact import redact, scrub

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "SLEEP",
    "THRESHOLD",
    "Check",
    "Row",
    "Unreachable",
    "check_mongo",
    "check_mysql",
    "check_postgres",
    "check_redis",
    "check_sqlite",
    "check_time",
]

SLEEP = 0.25  # seconds each slow call keeps the server busy
THRESHOLD = 0.05  # a heartbeat later than this means the hub was blocked
CONNECT_TIMEOUT = 5  # seconds to connect (and, for MySQL, to get the server's greeting)
READ_TIMEOUT = 5  # seconds past SLEEP a server may take to answer


@dataclass
class Row:
    """One line of the doctor's table."""

    driver: str
    target: str
    patched: bool | None  # does the driver's I/O go through gevent here?
    blocks_directly: bool | None
    max_lag_direct: float | None
    max_lag_offload: float | None
    elapsed_direct: float | None
    elapsed_offload: float | None
    advice: str


class Unreachable(Exception):
    """The doctor could not talk to a server it was pointed at."""


# What each kind of driver is told to do when it blocks the hub.
DBAPI_FIX = "use offload.dbapi.connect() / ConnectionPool"
PSYCOPG2_FIX = f"{DBAPI_FIX} (or psycogreen's wait callback, which makes psycopg2's own calls cooperative)"


def pure_fix(offload_way: str) -> str:
    """The advice for a pure-Python client that blocks only because nothing is patched."""
    return f"patch_all() makes it cooperative, or {offload_way}"


def _require(module: str, message: str) -> Any:
    """*module*, imported; Unreachable(*message*) if it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unreachable(message) from None


def _pure_check(driver: str, target: str, offload_way: str) -> "Check":
    """The Check of a pure-Python client: cooperative exactly when socket is patched."""
    patched, why = socket_why()
    return Check(driver, target, patched, why, pure_fix(offload_way))


def socket_why() -> tuple[bool, str]:
    """Whether a pure-Python driver's sockets are gevent's here, and the reason shown."""
    patched = monkey.is_module_patched("socket")
    return patched, ("pure Python on gevent sockets" if patched else "pure Python, socket not patched")


@dataclass
class Check:
    """What one check needs: who it measures, where, with what slow call and advice.

    ``target`` is as the user gave it and is never shown: rows and messages
    carry ``redact(target)``.  ``module``, ``sql``, ``connect_args``,
    ``connect_kwargs`` and ``setup`` (a statement run first on each
    connection: it proves the target is usable and sets server-side limits)
    are for DB-API drivers.
    """

    driver: str
    target: str
    patched: bool
    why: str
    fix: str
    module: Any = None
    sql: str = ""
    connect_args: tuple = ()
    connect_kwargs: dict = field(default_factory=dict)
    setup: str | None = None

    @property
    def shown(self) -> str:
        return redact(self.target)

    def scrub(self, error: BaseException | str) -> str:
        """A driver's error text, safe to print."""
        return scrub(str(error).strip(), self.target)

    def unreachable(self, error: BaseException | str) -> Unreachable:
        """The error for a server that could not be reached, with a hint when it went silent."""
        text = self.scrub(error)
        if "timed out" in text.lower() or "timeout" in text.lower():
            text += " (no answer within the doctor's timeouts: is it the right host and port?)"
        return Unreachable(f"{self.driver}: could not connect to {self.shown}: {text}")

    def measure(self, direct, via) -> Row:
        """Probe *direct* and *via* (callables doing the slow call) into a Row."""
        d = probe(direct, interval=0.005, threshold=THRESHOLD)
        v = probe(via, interval=0.005, threshold=THRESHOLD)
        return Row(
            self.driver, self.shown, self.patched, d.blocked, d.max_lag, v.max_lag, d.elapsed, v.elapsed,
            advice(d.blocked, v.blocked, self.fix, self.why),
        )

    def refused(self, error: BaseException | str) -> Row:
        """The row of a server that would not run the slow call: nothing measured."""
        return Row(self.driver, self.shown, self.patched, None, None, None, None, None, self.scrub(error))

    def run_dbapi(self) -> Row:
        """Connect directly and through offload.dbapi and probe ``sql`` on each."""
        from .. import dbapi

        module = self.module
        raw = conn = None
        try:
            raw = module.connect(*self.connect_args, **self.connect_kwargs)
            if self.setup is not None:
                raw.cursor().execute(self.setup)
        except module.Error as exc:
            if raw is not None:
                raw.close()
            raise self.unreachable(exc) from None
        try:
            conn = dbapi.connect(module, *self.connect_args, **self.connect_kwargs)
            rc, oc = raw.cursor(), conn.cursor()
            if self.setup is not None:
                oc.execute(self.setup)
            return self.measure(lambda: rc.execute(self.sql), lambda: oc.execute(self.sql))
        except module.Error as exc:
            return self.refused(f"server refused the slow call: {self.scrub(exc)}")
        finally:
            raw.close()
            if conn is not None:
                conn.close()


def advice(direct_blocked: bool, via_blocked: bool, fix: str, why: str) -> str:
    """What to do, from the two measurements."""
    if direct_blocked and not via_blocked:
        return f"blocks the hub ({why}): {fix}"
    if direct_blocked:
        return f"blocks the hub even through offload ({why}): CPU work holding the GIL? use a process pool"
    if via_blocked:
        return "cooperative as patched, but the offloaded call blocked: keep calling it directly"
    return f"cooperative as patched ({why}): offload not needed, and harmless"


def _lane():
    return ThreadPool(1, name="offload-doctor")


def check_time() -> list[Row]:
    """A baseline every run has: stdlib ``time.sleep``."""
    patched = monkey.is_module_patched("time")
    why = "gevent's sleep" if patched else "time is not patched"
    check = Check("time.sleep", "-", patched, why, "use gevent.sleep(), or patch_all()")
    return [check.measure(lambda: time.sleep(SLEEP), lambda: call(time.sleep, SLEEP))]


def check_postgres(dsn: str) -> list[Row]:
    """psycopg2 against a libpq DSN or URI (``SELECT pg_sleep``)."""
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError:
        raise Unreachable("postgres: psycopg2 is not installed (pip install psycopg2-binary)") from None
    # A wait callback (psycogreen's) makes psycopg2 wait through gevent.
    green = psycopg2.extensions.get_wait_callback() is not None
    why = "psycopg2 with a wait callback: waits through gevent" if green else "C driver: libpq waits in C"
    check = Check(
        "psycopg2", dsn, green, why, PSYCOPG2_FIX, module=psycopg2, sql=f"SELECT pg_sleep({SLEEP})",
        connect_args=(dsn,), connect_kwargs={"connect_timeout": CONNECT_TIMEOUT},
        # The server gives up on any statement of ours after this; libpq has no read timeout.
        setup=f"SET statement_timeout = {int((SLEEP + READ_TIMEOUT) * 1000)}",
    )
    return [check.run_dbapi()]


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
            raise Unreachable(f"sqlite3: no database file at {path!r}")
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
        "sqlite3", path, False, "C library: the query runs in C", DBAPI_FIX, module=sqlite3,
        sql=_sqlite_query(n), connect_args=args, connect_kwargs=kwargs,
        setup="SELECT count(*) FROM sqlite_master",  # "file is not a database" here, not later
    )
    return [check.run_dbapi()]


def check_redis(url: str) -> list[Row]:
    """redis-py against *url* (``BLPOP`` on a key nobody uses, for SLEEP seconds)."""
    redis = _require("redis", "redis: redis-py is not installed (pip install redis)")
    check = _pure_check("redis-py", url, "run its calls through offload.Proxy")
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
        check, client, lambda: redis.Redis.from_url(url, **options), lambda c: c.blpop([key], timeout=SLEEP),
        redis.ResponseError, lambda exc: f"server refused the slow call: {check.scrub(exc)}",
    )


def _measure_clients(check: Check, client: Any, make, slow, refused: type[Exception], describe) -> list[Row]:
    """Probe *slow* on *client* (direct) and on a client *make* builds in a lane's thread.

    The offloaded client lives in the lane's thread, so its sockets do too.
    A *refused* error from the server becomes a row saying *describe(error)*.
    """
    lane = _lane()
    remote = None
    try:
        remote = lane.call(make)
        return [check.measure(lambda: slow(client), lambda: lane.call(slow, remote))]
    except refused as exc:
        return [check.refused(describe(exc))]
    finally:
        client.close()
        if remote is not None:
            lane.call(remote.close)
        lane.shutdown()


# A server-side sleep that reads and writes nothing: one generated document
# whose field is computed by JavaScript that sleeps (MongoDB 5.1+).
_MONGO_SLEEP = [
    {"$documents": [{"n": 1}]},
    {"$addFields": {"slept": {"$function": {
        "body": "function(ms) { sleep(ms); return ms; }", "args": [int(SLEEP * 1000)], "lang": "js",
    }}}},
]


def check_mongo(uri: str) -> list[Row]:
    """PyMongo against *uri* (an aggregation whose JavaScript sleeps SLEEP seconds)."""
    errors = _require("pymongo.errors", "mongo: PyMongo is not installed (pip install 'offload[mongo]')")
    import pymongo

    OperationFailure, PyMongoError = errors.OperationFailure, errors.PyMongoError
    check = _pure_check("PyMongo", uri, "use offload.mongo.MongoClient")
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
        raise check.unreachable(reason) from None

    def not_measured(exc):
        errmsg = (exc.details or {}).get("errmsg", exc)
        return (
            "not measured: the server has no server-side sleep the doctor can use "
            "($documents + $function JavaScript, MongoDB 5.1+; nx-27017 and servers without "
            f"JavaScript have none): {check.scrub(errmsg)}. "
            f"PyMongo is {check.why}: {'cooperative' if check.patched else 'it blocks the hub; ' + check.fix}"
        )

    return _measure_clients(
        check, client, lambda: pymongo.MongoClient(uri, **options),
        lambda c: list(c.get_database("admin").aggregate(_MONGO_SLEEP)), OperationFailure, not_measured,
    )
