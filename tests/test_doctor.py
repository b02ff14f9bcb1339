"""``python -m offload doctor`` end to end, in subprocesses, against real servers."""

import hashlib
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys

import modes
import pytest
import services
from mongo_server import mongo_server_info, mongo_uri  # noqa: F401

SECRET = "d0ctorS3cretXyz"


def doctor(*args, timeout=90):
    env = dict(os.environ, PYTHONPATH=modes.ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "offload", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=modes.ROOT,
    )
    assert SECRET not in proc.stdout and SECRET not in proc.stderr, "a credential was printed"
    return proc


def _require(postgres=False, redis=False, mysql=False):
    if postgres and not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL on 127.0.0.1:5432")
    if redis and not services.port_open("127.0.0.1", 6379):
        services.unavailable("Redis on 127.0.0.1:6379")
    if mysql and not services.port_open("127.0.0.1", 3306):
        services.unavailable("MariaDB on 127.0.0.1:3306")


MYSQL_URL = "mysql://{user}@{host}:{port}/{database}".format(**services.MYSQL)

# What the doctor advises when nothing is patched: one fix per kind of driver,
# the same kind of advice for the pure-Python ones.
UNPATCHED_ADVICE = {
    "time.sleep": "blocks the hub (time is not patched): use gevent.sleep(), or patch_all()",
    "psycopg2": "blocks the hub (C driver: libpq waits in C): use offload.dbapi.connect() / ConnectionPool "
    "(or psycogreen's wait callback, which makes psycopg2's own calls cooperative)",
    "psycopg": "blocks the hub (psycopg 3 waits with wait_c, in C): import psycopg after patch_all() "
    "(it then waits through gevent), or use offload.dbapi.connect() / ConnectionPool",
    "sqlite3": "blocks the hub (C library: the query runs in C): "
    "use offload.dbapi.connect() / ConnectionPool",
    "PyMySQL": "blocks the hub (pure Python, socket not patched): patch_all() makes it cooperative, "
    "or use offload.dbapi.connect() / ConnectionPool",
    "redis-py": "blocks the hub (pure Python, socket not patched): patch_all() makes it cooperative, "
    "or run its calls through offload.Proxy",
}
# mysqlclient builds only where libmariadb's headers are; the doctor checks it when it is installed.
if importlib.util.find_spec("MySQLdb") is not None:
    UNPATCHED_ADVICE["mysqlclient"] = (
        "blocks the hub (C driver: libmariadb waits in C): use offload.dbapi.connect() / ConnectionPool"
    )


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(report):
    return {row["driver"]: row for row in report["rows"]}


def test_unpatched_end_to_end(sqlite_file):
    _require(postgres=True, redis=True, mysql=True)
    before = _digest(sqlite_file)
    dsn = f"{services.POSTGRES_DSN} password={SECRET}"  # trust auth: the password is not needed
    wrong = []
    # On a loaded machine even an offloaded call's heartbeat can be late (the
    # advice then changes): the advice must be exactly right in one of three runs.
    for _attempt in range(3):
        proc = doctor(
            "--patch",
            "none",
            "--json",
            "--postgres",
            dsn,
            "--sqlite",
            str(sqlite_file),
            "--redis",
            services.REDIS_URL,
            "--mysql",
            MYSQL_URL,
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["patching"]["patched"] == "none"
        assert report["patching"]["select_epoll"] is True
        rows = _rows(report)
        assert set(rows) == set(UNPATCHED_ADVICE)
        for row in rows.values():
            assert row["patched"] is False
            assert row["blocks_directly"] is True, row
            assert row["max_lag_direct"] > 0.1, row
            assert row["max_lag_offload"] < 0.1, row
        wrong = [(d, rows[d]["advice"]) for d, want in UNPATCHED_ADVICE.items() if rows[d]["advice"] != want]
        if not wrong:
            break
    assert not wrong
    assert "password=***" in rows["psycopg2"]["target"]
    assert _digest(sqlite_file) == before  # opened read-only


def test_patch_all_text_table(sqlite_file):
    _require(postgres=True, redis=True)
    proc = doctor(
        "--postgres", services.POSTGRES_DSN, "--sqlite", str(sqlite_file), "--redis", services.REDIS_URL
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "monkey patching: all" in out
    assert "select.epoll: removed by gevent" in out
    assert "blocks hub directly?" in out and "max lag via offload" in out
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    # A C driver blocks whatever is patched; a pure-Python one is cooperative.
    assert table["psycopg2"][1:3] == ["no", "yes"], out
    assert table["psycopg"][1:3] == ["yes", "no"], out  # psycopg 3 imported after patching: cooperative
    assert table["sqlite3"][1:3] == ["no", "yes"], out
    assert table["redis-py"][1:3] == ["yes", "no"], out
    assert table["time.sleep"][1:3] == ["yes", "no"], out


def test_patch_all_json_says_what_is_patched():
    _require(postgres=True)
    proc = doctor("--json", "--patch", "all", "--postgres", services.POSTGRES_DSN)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    patching = report["patching"]
    assert patching["patched"] == "all" and patching["threads_are_greenlets"] is True
    assert {"socket", "threading", "time", "select"} <= set(patching["modules"])
    assert patching["select_epoll"] is False
    row = _rows(report)["psycopg2"]
    assert row["blocks_directly"] is True and row["max_lag_offload"] < 0.1


def test_unreachable_server_is_a_clear_failure():
    port = services.free_port()
    proc = doctor("--patch", "none", "--postgres", f"postgresql://app:{SECRET}@127.0.0.1:{port}/app")
    assert proc.returncode == 1
    assert "psycopg2: could not connect to postgresql://app:***@127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "time.sleep" in proc.stdout  # what could run, ran


def test_missing_sqlite_file_and_bad_mysql_url(tmp_path):
    proc = doctor(
        "--patch", "none", "--sqlite", str(tmp_path / "none.db"), "--mysql", f"pg://u:{SECRET}@h/db"
    )
    assert proc.returncode == 1
    assert "no database file" in proc.stderr
    assert "must be a mysql:// or mariadb:// URL" in proc.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    proc = doctor("--patch", "none", "--sqlite", str(path))
    assert proc.returncode == 1
    assert "file is not a database" in proc.stderr
    assert path.read_text() == "not a database, " * 100


def test_bad_arguments_are_usage_errors():
    proc = doctor("--patch", "some")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_mysql_with_pymysql():
    if not services.port_open("127.0.0.1", 3306):
        services.unavailable("MariaDB on 127.0.0.1:3306")
    proc = doctor("--json", "--mysql", MYSQL_URL)
    assert proc.returncode == 0, proc.stderr
    row = _rows(json.loads(proc.stdout))["PyMySQL"]
    assert row["patched"] is True and row["blocks_directly"] is False  # patch_all makes it cooperative


def test_no_targets_gives_a_hint_and_the_environment():
    proc = doctor("--patch", "none")
    assert proc.returncode == 0, proc.stderr
    assert "no database given: point the doctor at yours with --postgres DSN, --mysql URL" in proc.stdout
    assert "environment (this interpreter; call offload.doctor.environment() inside your app):" in proc.stdout
    assert "[ok] free-threading: CPython with the GIL" in proc.stdout
    report = json.loads(doctor("--patch", "none", "--json").stdout)
    assert report["targets_given"] is False
    assert [f["check"] for f in report["environment"]] == [
        "psycopg3",
        "psycogreen",
        "uwsgi-threads",
        "uwsgi-fork",
        "uwsgi-loop",
        "fork",
        "free-threading",
        "gevent-2213",
        "gevent-threadpool",
    ]


def test_patch_nothread():
    report = json.loads(doctor("--patch", "nothread", "--json").stdout)
    assert report["patching"]["patched"] == "partial"
    assert report["patching"]["threads_are_greenlets"] is False
    assert _rows(report)["time.sleep"]["patched"] is True


def test_command_line_usage_and_version():
    env = dict(os.environ, PYTHONPATH=modes.ROOT)

    def cli(*args):
        argv = [sys.executable, "-m", "offload", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    bare = cli()
    assert bare.returncode == 2
    assert bare.stderr == (
        "usage: python -m offload [--version] COMMAND [ARGS...]\n"
        "python -m offload: error: name a command: doctor (try --help)\n"
    )
    from offload import __version__

    for args in (["--version"], ["doctor", "--version"]):
        proc = cli(*args)
        assert (proc.returncode, proc.stdout) == (0, f"offload {__version__}\n")
    unknown = cli("doctr")
    assert unknown.returncode == 2 and "unknown command 'doctr': the commands are doctor" in unknown.stderr


def test_mongo_against_nx_27017_gives_a_row_that_says_why_nothing_was_measured(mongo_uri):  # noqa: F811
    proc = doctor("--json", "--mongo", mongo_uri)
    assert proc.returncode == 0, proc.stderr
    row = _rows(json.loads(proc.stdout))["PyMongo"]
    assert row["patched"] is True and row["blocks_directly"] is None
    assert row["advice"].startswith("not measured: the server has no server-side sleep the doctor can use")
    assert row["advice"].endswith("PyMongo is pure Python on gevent sockets: cooperative")


def test_a_cooperative_call_on_a_busy_hub_is_not_judged_blocking():
    # A CI run once saw patched PyMySQL judged blocking: on a loaded machine
    # a heartbeat came more than 50 ms late during its 250 ms call.  Here the
    # hub is held 75 ms once (CPU work in another greenlet) while the checked
    # call waits cooperatively; a call that blocks for all its time still counts.
    import gevent

    from offload._core import native
    from offload.doctor.checks import SLEEP, THRESHOLD, Check

    def busy_hub():
        gevent.sleep(0.05)
        native.sleep(0.075)  # holds the hub, as other requests' CPU work would

    def cooperative():
        hog = gevent.spawn(busy_hub)
        gevent.sleep(SLEEP)
        hog.join()

    row = Check("demo", "demo", True, "why", "fix").measure(lambda: native.sleep(SLEEP), cooperative)
    assert row.blocks_directly is True and row.max_lag_direct >= SLEEP * 0.8
    assert THRESHOLD + 0.02 < row.max_lag_offload < SLEEP / 2  # past the old fixed line, short of the new
    assert row.advice == "blocks the hub (why): fix"
