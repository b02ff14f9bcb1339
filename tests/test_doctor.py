"""``python -m offload doctor`` end to end, in subprocesses, against real servers."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import modes
import pytest
import services

from offload.doctor import redact

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


def _require(postgres=False, redis=False):
    if postgres and not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL on 127.0.0.1:5432")
    if redis and not services.port_open("127.0.0.1", 6379):
        services.unavailable("Redis on 127.0.0.1:6379")


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
    _require(postgres=True, redis=True)
    before = _digest(sqlite_file)
    dsn = f"{services.POSTGRES_DSN} password={SECRET}"  # trust auth: the password is not needed
    proc = doctor(
        "--patch", "none", "--json", "--postgres", dsn, "--sqlite", str(sqlite_file),
        "--redis", services.REDIS_URL,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["patching"]["patched"] == "none"
    assert report["patching"]["select_epoll"] is True
    rows = _rows(report)
    for driver in ("psycopg2", "sqlite3", "redis-py", "time.sleep"):
        row = rows[driver]
        assert row["patched"] is False
        assert row["blocks_directly"] is True, row
        assert row["max_lag_direct"] > 0.1, row
        assert row["max_lag_offload"] < 0.1, row
        assert "offload" in row["advice"] or "patch_all" in row["advice"]
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
    proc = doctor("--patch", "none", "--sqlite", str(tmp_path / "none.db"), "--mysql", f"pg://u:{SECRET}@h/db")
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
    m = services.MYSQL
    proc = doctor("--json", "--mysql", f"mysql://{m['user']}@{m['host']}:{m['port']}/{m['database']}")
    assert proc.returncode == 0, proc.stderr
    row = _rows(json.loads(proc.stdout))["PyMySQL"]
    assert row["patched"] is True and row["blocks_directly"] is False  # patch_all makes it cooperative


@pytest.mark.parametrize(
    "target, shown",
    [
        ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 'a b\\'c' port=1", "host=db password=*** port=1"),
        ("postgresql://app:hunter2@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://:hunter2@db:6379/0", "redis://:***@db:6379/0"),
        ("mongodb://app@db/?password=hunter2&w=1", "mongodb://app@db/?password=***&w=1"),
        ("mysql://app@db/x", "mysql://app@db/x"),
        ("/var/lib/app.db", "/var/lib/app.db"),
    ],
)
def test_redact(target, shown):
    assert redact(target) == shown
