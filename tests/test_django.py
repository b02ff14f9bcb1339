"""offload.django backends on the real PostgreSQL, MariaDB and sqlite, with the
example project in examples/djangoproject (each run in its own interpreter:
Django's settings are process-wide)."""

import os
import subprocess
import sys
import uuid

import modes
import pytest
import services

pytest.importorskip("django")

PROJECT = os.path.join(modes.ROOT, "examples", "djangoproject")
ENV = {"PYTHONPATH": os.pathsep.join([modes.ROOT, PROJECT])}


@pytest.fixture(params=["postgresql", "mysql", "sqlite3"])
def database(request, tmp_path):
    """(engine, env) with a database of our own, dropped afterwards."""
    engine = request.param
    name = f"frameworks_dj_{uuid.uuid4().hex[:10]}"
    env = dict(ENV, FW_ENGINE=engine, FW_TEST_DB_NAME=f"test_{name}")
    if engine == "sqlite3":
        yield engine, dict(env, FW_DB_NAME=str(tmp_path / "db.sqlite3"))
        return
    if engine == "postgresql":
        psycopg2 = pytest.importorskip("psycopg2")
        try:
            admin = psycopg2.connect(services.POSTGRES_DSN, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            services.unavailable(f"PostgreSQL: {exc}")
        admin.autocommit = True
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    else:
        pytest.importorskip("MySQLdb")
        pymysql = pytest.importorskip("pymysql")
        try:
            admin = pymysql.connect(connect_timeout=5, autocommit=True, **services.MYSQL)
        except pymysql.err.OperationalError as exc:
            services.unavailable(f"MariaDB: {exc}")
        drop = f"DROP DATABASE IF EXISTS {name}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield engine, dict(env, FW_DB_NAME=name)
    finally:
        admin.cursor().execute(drop)
        admin.close()


SNIPPET = """
import os, time, gevent, offload
os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
import django
django.setup()
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from fwapp.models import Item
from offload import dbapi

call_command("migrate", verbosity=0)
assert isinstance(connection.connection, dbapi.Connection)
Item.objects.create(tag="x", data={{"a": [1, 2]}})
assert Item.objects.get(tag="x").data == {{"a": [1, 2]}}
try:
    with transaction.atomic():
        Item.objects.create(tag="x")
except IntegrityError:
    print("integrity=ok")
try:
    with transaction.atomic():
        Item.objects.create(tag="rolled")
        raise RuntimeError
except RuntimeError:
    pass
print("rolled_back=%s" % (not Item.objects.filter(tag="rolled").exists()))

SLEEP = {sleep!r}
def work():
    with connection.cursor() as cursor:
        cursor.execute(SLEEP)
        return cursor.fetchone()[1]

if SLEEP:
    with offload.Heartbeat(0.005) as beat:
        started = time.monotonic()
        glets = [gevent.spawn(work) for _ in range(4)]
        gevent.joinall(glets, raise_error=True)
        elapsed = time.monotonic() - started
    print("elapsed=%.3f" % elapsed)
    print("lag=%.3f" % beat.max_lag)
    print("sessions=%d" % len(set(g.value for g in glets)))

from django.core.signals import request_finished, request_started
kept = []  # sqlite has no session id: keep each connection alive so that ids are not reused
def request():
    request_started.send(sender=None)
    if SLEEP:
        session = work()
    else:
        connection.ensure_connection()
        kept.append(connection.connection)
        session = id(connection.connection)
    request_finished.send(sender=None)
    return session
for age in (0, 60):
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = age
    print("reused_%d=%s" % (age, request() == request()))
connection.close()
"""

SLEEPS = {
    "postgresql": "SELECT pg_sleep(0.3), pg_backend_pid()",
    "mysql": "SELECT SLEEP(0.3), CONNECTION_ID()",
    "sqlite3": "",
}


@pytest.mark.timing
@pytest.mark.parametrize("mode", ["all", "none"])
def test_orm_atomic_and_concurrency(database, mode):
    engine, env = database
    out = modes.lines(modes.run(mode, SNIPPET.format(sleep=SLEEPS[engine]), env=env, timeout=120))
    assert out["integrity"] == "ok" and out["rolled_back"] == "True", out
    assert out["reused_0"] == "False" and out["reused_60"] == "True", out  # CONN_MAX_AGE
    if engine == "sqlite3":
        return
    assert float(out["lag"]) < 0.15, out  # the hub kept running either way
    if mode == "all":  # one connection per greenlet: the sleeps overlap
        assert out["sessions"] == "4" and float(out["elapsed"]) < 1.0, out
    else:  # one connection per thread: the greenlets take turns on it
        assert out["sessions"] == "1" and float(out["elapsed"]) > 1.1, out


def test_djangos_test_runner(database):
    engine, env = database
    proc = subprocess.run(
        [sys.executable, "manage.py", "test", "fwapp", "--noinput", "-v", "1"],
        cwd=PROJECT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ran 3 tests" in proc.stderr and "OK" in proc.stderr, proc.stderr
