"""``python -m offload doctor``: measure whether your drivers block the hub.

"After monkey patching, will my driver still block?" is answered here by
measuring instead of guessing.  The doctor reports what gevent patched, then
for each driver it was pointed at runs one slow server-side call (the server
waits; the client only waits for the answer) twice under :func:`offload.probe`:
directly, as the application would, and through offload.  A driver that
freezes the hub directly shows the whole wait as heartbeat lag.

Patching is process-wide and must come before anything else is imported, so
``--patch all`` (the default) and ``--patch socket`` run the doctor in a fresh
interpreter that patches first thing.  Credentials in DSNs and URIs are never
printed: targets are shown with passwords replaced by ``***``, and passwords
are scrubbed from driver error messages too.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import gevent
from gevent import monkey

from ._version import __version__
from .defaults import call
from .heartbeat import probe
from .threadpool import ThreadPool

__all__ = ["main", "patch_state", "redact", "Row"]

SLEEP = 0.25  # seconds each slow call keeps the server busy
THRESHOLD = 0.05  # a heartbeat later than this means the hub was blocked
CONNECT_TIMEOUT = 5
PATCHES = {
    "none": "",
    "socket": "from gevent import monkey; monkey.patch_socket()",
    "all": "from gevent import monkey; monkey.patch_all()",
}
_SECRET_KEYS = ("password", "passwd", "pass", "secret", "token", "apikey", "api_key", "sslpassword")


# -- credentials --------------------------------------------------------------


def redact(target: str) -> str:
    """*target* (a URI or a libpq ``key=value`` DSN) with every password as ``***``."""
    if "://" in target:
        parts = urlsplit(target)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, sep, _ = userinfo.partition(":")
            netloc = f"{user}:***@{hosts}" if sep else f"{user}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if _is_secret(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _DSN_SECRET.sub(lambda m: f"{m.group(1)}=***", target)


_DSN_SECRET = re.compile(r"\b(" + "|".join(_SECRET_KEYS) + r")\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _is_secret(key):
    return key.lower() in _SECRET_KEYS


def _secrets(target):
    """The passwords in *target*, to scrub from error messages."""
    found = []
    if "://" in target:
        parts = urlsplit(target)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if _is_secret(k)]
    else:
        for match in _DSN_SECRET.finditer(target):
            value = match.group(2)
            found += [value, value.strip("'")]
    return [s for s in found if s]


def _scrub(message, target):
    for secret in sorted(_secrets(target), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


# -- what is patched --------------------------------------------------------


def patch_state() -> dict:
    """What gevent has patched in this process, and what that did to ``select``."""
    import select
    import selectors

    modules = sorted(name for name in monkey.saved if not name.startswith("_gevent"))
    if monkey.is_module_patched("threading") and monkey.is_module_patched("socket"):
        kind = "all"
    elif modules:
        kind = "partial"
    else:
        kind = "none"
    return {
        "patched": kind,
        "modules": modules,
        "select_epoll": hasattr(select, "epoll"),
        "default_selector": selectors.DefaultSelector.__name__,
        "threads_are_greenlets": monkey.is_module_patched("threading"),
    }


# -- measuring --------------------------------------------------------------


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


def _measure(driver, target, patched, direct, via, fix, why):
    """Probe *direct* and *via* (callables doing the slow call) into a Row."""
    d = probe(direct, interval=0.005, threshold=THRESHOLD)
    v = probe(via, interval=0.005, threshold=THRESHOLD)
    return Row(
        driver=driver,
        target=target,
        patched=patched,
        blocks_directly=d.blocked,
        max_lag_direct=d.max_lag,
        max_lag_offload=v.max_lag,
        elapsed_direct=d.elapsed,
        elapsed_offload=v.elapsed,
        advice=_advice(d.blocked, v.blocked, fix, why),
    )


_DBAPI_FIX = "use offload.dbapi.connect() / ConnectionPool"
_PURE_FIX = "patch_all() makes it cooperative, or run its calls through offload.Proxy"


def _advice(direct_blocked, via_blocked, fix, why):
    if direct_blocked and not via_blocked:
        return f"blocks the hub ({why}): {fix}"
    if direct_blocked:
        return f"blocks the hub even through offload ({why}): CPU work holding the GIL? use a process pool"
    if via_blocked:
        return "cooperative as patched, but the offloaded call blocked: keep calling it directly"
    return f"cooperative as patched ({why}): offload not needed, and harmless"


def _rejected(driver, target, patched, error):
    advice = f"server refused the slow call: {error}"
    return Row(driver, target, patched, None, None, None, None, None, advice)


def _lane():
    return ThreadPool(1, name="offload-doctor")


def check_time():
    """A baseline every run has: stdlib ``time.sleep``."""
    patched = monkey.is_module_patched("time")
    why = "gevent's sleep" if patched else "time is not patched"
    return [
        _measure(
            "time.sleep",
            "-",
            patched,
            lambda: time.sleep(SLEEP),
            lambda: call(time.sleep, SLEEP),
            fix="use gevent.sleep(), or patch_all()",
            why=why,
        )
    ]


def _dbapi_row(driver, module, target, patched, why, sql, connect_args, connect_kwargs, check=None):
    """Connect directly and through offload.dbapi and probe *sql* on each.

    *check*, a query run first on the direct connection, proves the target
    is usable (connecting alone does not for sqlite3).
    """
    from . import dbapi

    shown = redact(target)
    raw = None
    try:
        raw = module.connect(*connect_args, **connect_kwargs)
        if check is not None:
            raw.cursor().execute(check)
    except module.Error as exc:
        if raw is not None:
            raw.close()
        raise Unreachable(f"{driver}: could not connect to {shown}: {_scrub(str(exc).strip(), target)}")
    conn = None
    try:
        conn = dbapi.connect(module, *connect_args, **connect_kwargs)
        rc, oc = raw.cursor(), conn.cursor()
        direct, via = (lambda: rc.execute(sql)), (lambda: oc.execute(sql))
        row = _measure(driver, shown, patched, direct, via, _DBAPI_FIX, why)
    except module.Error as exc:
        return _rejected(driver, shown, patched, _scrub(str(exc).strip(), target))
    finally:
        raw.close()
        if conn is not None:
            conn.close()
    return row


def check_postgres(dsn):
    try:
        import psycopg2
    except ImportError:
        raise Unreachable("postgres: psycopg2 is not installed (pip install psycopg2-binary)")
    why = "C driver: libpq waits in C"
    sql = f"SELECT pg_sleep({SLEEP})"
    options = {"connect_timeout": CONNECT_TIMEOUT}
    return [_dbapi_row("psycopg2", psycopg2, dsn, False, why, sql, (dsn,), options)]


def _mysql_params(url):
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("mysql", "mariadb"):
        raise Unreachable(f"mysql: --mysql must be a mysql:// or mariadb:// URL, not {redact(url)!r}")
    params = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    database = parts.path.lstrip("/")
    if database:
        params["database"] = unquote(database)
    return params


def check_mysql(url):
    params = _mysql_params(url)
    rows = []
    drivers = []
    try:
        import MySQLdb

        drivers.append(("mysqlclient", MySQLdb, False, "C driver: libmariadb waits in C"))
    except ImportError:
        pass
    try:
        import pymysql

        socket_patched = monkey.is_module_patched("socket")
        why = "pure Python on gevent sockets" if socket_patched else "pure Python, socket not patched"
        drivers.append(("PyMySQL", pymysql, socket_patched, why))
    except ImportError:
        pass
    if not drivers:
        raise Unreachable("mysql: neither mysqlclient nor PyMySQL is installed (pip install PyMySQL)")
    for name, module, patched, why in drivers:
        kwargs = dict(params, connect_timeout=CONNECT_TIMEOUT)
        rows.append(_dbapi_row(name, module, url, patched, why, f"SELECT SLEEP({SLEEP})", (), kwargs))
    return rows


def _sqlite_query(n):
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
        "SELECT count(*) FROM c"
    )


def check_sqlite(path):
    import sqlite3

    if path == ":memory:":
        args, kwargs = (path,), {}
    else:
        if not os.path.exists(path):
            raise Unreachable(f"sqlite3: no database file at {path!r}")
        # Read-only: the doctor must never create or change the user's database.
        args, kwargs = (f"file:{os.path.abspath(path)}?mode=ro",), {"uri": True}
    # Size the query to take about SLEEP seconds on this machine.
    probe_conn = sqlite3.connect(":memory:")
    started = time.perf_counter()
    probe_conn.execute(_sqlite_query(100_000)).fetchall()
    per_row = max((time.perf_counter() - started) / 100_000, 1e-8)
    probe_conn.close()
    n = int(min(max(SLEEP / per_row, 100_000), 50_000_000))
    why = "C library: the query runs in C"
    check = "SELECT count(*) FROM sqlite_master"  # "file is not a database" here, not later
    return [_dbapi_row("sqlite3", sqlite3, path, False, why, _sqlite_query(n), args, kwargs, check=check)]


def check_redis(url):
    try:
        import redis
    except ImportError:
        raise Unreachable("redis: redis-py is not installed (pip install redis)")
    shown = redact(url)
    options = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": 30}
    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise Unreachable(f"redis: could not connect to {shown}: {_scrub(str(exc), url)}")
    patched = monkey.is_module_patched("socket")
    why = "pure Python on gevent sockets" if patched else "pure Python, socket not patched"
    # BLPOP on a key nobody uses: the server waits SLEEP seconds for us alone
    # (DEBUG SLEEP would freeze the whole server, and is usually disabled).
    key = f"offload:doctor:{uuid.uuid4().hex}"
    lane = _lane()
    try:
        # The offloaded client lives in the lane's thread, so its sockets do too.
        remote = lane.call(redis.Redis.from_url, url, **options)
        try:
            return [
                _measure(
                    "redis-py",
                    shown,
                    patched,
                    lambda: client.blpop([key], timeout=SLEEP),
                    lambda: lane.call(remote.blpop, [key], timeout=SLEEP),
                    _PURE_FIX,
                    why,
                )
            ]
        except redis.ResponseError as exc:
            return [_rejected("redis-py", shown, patched, _scrub(str(exc), url))]
        finally:
            lane.call(remote.close)
    finally:
        client.close()
        lane.shutdown()


def check_mongo(uri):
    try:
        import pymongo
        from pymongo.errors import OperationFailure, PyMongoError
    except ImportError:
        raise Unreachable("mongo: PyMongo is not installed (pip install 'offload[mongo]')")
    shown = redact(uri)
    options = {"serverSelectionTimeoutMS": CONNECT_TIMEOUT * 1000, "connectTimeoutMS": CONNECT_TIMEOUT * 1000}
    client = pymongo.MongoClient(uri, **options)
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        reason = str(exc).split(", Timeout:")[0]  # the topology dump after it says no more
        raise Unreachable(f"mongo: could not connect to {shown}: {_scrub(reason, uri)}")
    patched = monkey.is_module_patched("socket")
    why = "pure Python on gevent sockets" if patched else "pure Python, socket not patched"
    # A server-side sleep that reads and writes nothing: one generated
    # document whose field is computed by JavaScript that sleeps.
    pipeline = [
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

    def slow(c):
        return list(c.get_database("admin").aggregate(pipeline))

    lane = _lane()
    remote = None
    try:
        remote = lane.call(pymongo.MongoClient, uri, **options)
        direct, via = (lambda: slow(client)), (lambda: lane.call(slow, remote))
        return [_measure("PyMongo", shown, patched, direct, via, _PURE_FIX, why)]
    except OperationFailure as exc:
        return [_rejected("PyMongo", shown, patched, _scrub(str(exc), uri))]
    finally:
        client.close()
        if remote is not None:
            lane.call(remote.close)
        lane.shutdown()


# -- running and reporting -------------------------------------------------------


def run(args) -> dict:
    """Run every check *args* asks for; the report as a JSON-ready dict."""
    checks: list[tuple[str, Any, Any]] = [("time", check_time, None)]
    for name, fn in (
        ("postgres", check_postgres),
        ("mysql", check_mysql),
        ("sqlite", check_sqlite),
        ("mongo", check_mongo),
        ("redis", check_redis),
    ):
        value = getattr(args, name)
        if value is not None:
            checks.append((name, fn, value))
    rows, errors = [], []
    for name, fn, value in checks:
        try:
            rows += fn() if value is None else fn(value)
        except Unreachable as exc:
            errors.append(str(exc))
        except Exception as exc:  # a driver or server misbehaving: report it, never a traceback
            message = _scrub(str(exc), value or "")
            errors.append(f"{name}: the check failed with {type(exc).__name__}: {message}")
    return {
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "offload": __version__,
        "requested_patch": args.patch,
        "patching": patch_state(),
        "rows": [asdict(r) for r in rows],
        "errors": errors,
    }


def _ms(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _yes(flag):
    return "-" if flag is None else ("yes" if flag else "no")


def render(report) -> str:
    """The report as text: patching state, then the table."""
    p = report["patching"]
    epoll = "present" if p["select_epoll"] else "removed by gevent"
    lines = [
        f"offload doctor: Python {report['python']}, gevent {report['gevent']}, offload {report['offload']}",
        f"monkey patching: {p['patched']} (asked for --patch {report['requested_patch']})",
        f"  patched modules: {', '.join(p['modules']) or 'none'}",
        f"  select.epoll: {epoll}; selectors.DefaultSelector is {p['default_selector']}",
        f"  threads are greenlets: {_yes(p['threads_are_greenlets'])}",
        "",
    ]
    header = ("driver", "patched?", "blocks hub directly?", "max lag direct", "max lag via offload", "advice")
    table = [header]
    for r in report["rows"]:
        table.append(
            (
                r["driver"],
                _yes(r["patched"]),
                _yes(r["blocks_directly"]),
                _ms(r["max_lag_direct"]),
                _ms(r["max_lag_offload"]),
                r["advice"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    targets = [f"  {r['driver']}: {r['target']}" for r in report["rows"] if r["target"] != "-"]
    if targets:
        lines += ["", "targets:"] + targets
    lines += ["", f"a call blocks the hub when a {THRESHOLD * 1000:.0f} ms heartbeat is later than that;"]
    lines.append(f"each slow call keeps the server busy {SLEEP * 1000:.0f} ms.")
    return "\n".join(lines)


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure whether database drivers block the gevent hub, directly and through offload.",
    )
    add = parser.add_argument
    add("--postgres", metavar="DSN", help="libpq DSN or postgresql:// URI (psycopg2)")
    add("--mysql", metavar="URL", help="mysql://user:password@host:port/db (mysqlclient, PyMySQL)")
    add("--sqlite", metavar="PATH", help="an existing sqlite3 database file, opened read-only")
    parser.add_argument("--mongo", metavar="URI", help="mongodb:// URI (PyMongo)")
    parser.add_argument("--redis", metavar="URL", help="redis:// URL (redis-py)")
    parser.add_argument(
        "--patch",
        choices=tuple(PATCHES),
        default="all",
        help="monkey patching to apply before anything else: none, patch_socket() or patch_all() (default)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv=None, *, prog="python -m offload doctor", _patched=False) -> int:
    """Run the doctor; the process exit code (0: it ran; 1: a check could not run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(prog).parse_args(argv)
    if args.patch != "none" and not _patched:
        # Patching must come first: run again in an interpreter that patches
        # before importing anything else.
        code = (
            f"{PATCHES[args.patch]}\n"
            "import sys\n"
            "from offload.doctor import main\n"
            f"sys.exit(main(sys.argv[1:], prog={prog!r}, _patched=True))\n"
        )
        return subprocess.call([sys.executable, "-c", code, *argv])
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        print(render(report), flush=True)
    for error in report["errors"]:
        print(f"offload doctor: {error}", file=sys.stderr)
    return 1 if report["errors"] else 0
