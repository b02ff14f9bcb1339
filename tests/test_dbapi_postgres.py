"""offload.dbapi with psycopg2 against the real PostgreSQL server.

psycopg2 waits for the server inside libpq, so ``pg_sleep`` freezes the hub
whatever is patched; through offload.dbapi it must not.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import gevent
import modes
import pytest
import services

import offload
import offload.dbapi as db

psycopg2 = pytest.importorskip("psycopg2")

DSN = services.POSTGRES_DSN


@pytest.fixture(scope="module")
def dsn():
    try:
        psycopg2.connect(DSN, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL at {DSN!r}: {exc}")
    return DSN


@pytest.fixture
def conn(dsn):
    c = db.connect(psycopg2, dsn)
    yield c
    c.close()


@pytest.fixture
def table(dsn):
    name = f"offload_t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE TABLE {name} (x integer)")
    yield name
    admin.cursor().execute(f"DROP TABLE IF EXISTS {name}")
    admin.close()


PROBE_SNIPPET = """
import psycopg2, offload, offload.dbapi as db
dsn = {dsn!r}
raw = psycopg2.connect(dsn)
direct = offload.probe(raw.cursor().execute, "SELECT pg_sleep(0.2)")
conn = db.connect(psycopg2, dsn)
via = offload.probe(conn.cursor().execute, "SELECT pg_sleep(0.2)")
print("direct_blocked=%s" % direct.blocked)
print("direct_lag=%.3f" % direct.max_lag)
print("via_blocked=%s" % via.blocked)
print("via_lag=%.3f" % via.max_lag)
from gevent import monkey
print("socket_patched=%s" % monkey.is_module_patched("socket"))
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_probe_pg_sleep_blocks_directly_not_through_offload(dsn, mode):
    out = modes.lines(modes.run(mode, PROBE_SNIPPET.format(dsn=dsn)))
    assert out["socket_patched"] == str(mode == "all")
    assert out["direct_blocked"] == "True", out  # patching does not help a C driver
    assert float(out["direct_lag"]) > 0.15, out  # frozen for about the whole sleep
    assert float(out["via_lag"]) < 0.1, out


def test_ten_greenlets_pg_sleep_overlap(dsn):
    with db.ConnectionPool(psycopg2, dsn, minconn=10, maxconn=10) as pool:

        def sleeper():
            with pool.connection() as conn:
                cur = conn.cursor()
                cur.execute("SELECT pg_sleep(0.2)")

        started = time.perf_counter()
        with offload.Heartbeat(0.005) as hb:
            gevent.joinall([gevent.spawn(sleeper) for _ in range(10)], raise_error=True)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed  # one after another would take 2 s
    assert hb.max_lag < 0.15, hb.max_lag  # each query frozen on the hub would be 0.2


def test_transactions_and_rollback(conn, dsn, table):
    other = db.connect(psycopg2, dsn)
    try:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        conn.rollback()
        cur.execute(f"INSERT INTO {table} VALUES (2)")
        ocur = other.cursor()
        ocur.execute(f"SELECT x FROM {table}")
        assert ocur.fetchall() == []
        conn.commit()
        other.rollback()
        ocur.execute(f"SELECT x FROM {table}")
        assert ocur.fetchall() == [(2,)]
        with conn:  # psycopg2's own meaning: commit on success, roll back on error
            cur.execute(f"INSERT INTO {table} VALUES (3)")
        with pytest.raises(ZeroDivisionError), conn:
            cur.execute(f"INSERT INTO {table} VALUES (4)")
            raise ZeroDivisionError
        other.rollback()
        ocur.execute(f"SELECT x FROM {table} ORDER BY x")
        assert ocur.fetchall() == [(2,), (3,)]
    finally:
        other.close()


def test_errors_are_psycopg2_exceptions_and_the_connection_recovers(conn):
    cur = conn.cursor()
    with pytest.raises(psycopg2.errors.UndefinedTable) as info:
        cur.execute("SELECT * FROM no_such_table_here")
    assert isinstance(info.value, psycopg2.ProgrammingError)
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 1")
    conn.rollback()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)


def test_one_connection_shared_by_fifty_greenlets(conn):
    def worker(i):
        cur = conn.cursor()
        seen = []
        for j in range(4):
            cur.execute("SELECT %s, %s, pg_backend_pid()", (i, j))
            seen.append(cur.fetchone())
            gevent.sleep(0)
        cur.close()
        return seen

    greenlets = [gevent.spawn(worker, i) for i in range(50)]
    gevent.joinall(greenlets, raise_error=True)
    pids = set()
    for i, g in enumerate(greenlets):
        assert [row[:2] for row in g.value] == [(i, j) for j in range(4)]
        pids.update(row[2] for row in g.value)
    assert len(pids) == 1


def test_server_side_cursor_iteration(conn):
    cur = conn.cursor(name="offload_named")
    cur.itersize = 500
    cur.execute("SELECT generate_series(1, 2000)")
    assert sum(row[0] for row in cur) == 2000 * 2001 // 2
    cur.close()
    conn.rollback()


def _pid(conn):
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    return cur.fetchone()[0]


def _terminate(dsn, pids):
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    cur = admin.cursor()
    for pid in pids:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()


def test_pool_discards_a_killed_backend(dsn):
    with db.ConnectionPool(psycopg2, dsn, minconn=1, maxconn=3) as pool:
        with pytest.raises(psycopg2.OperationalError):
            with pool.connection() as conn:
                pid = _pid(conn)
                _terminate(dsn, [pid])
                conn.cursor().execute("SELECT 1")
        assert pool.stats()["discarded"] == 1
        with pool.connection() as conn:
            assert _pid(conn) != pid


def test_pool_survives_a_server_restart(dsn):
    # Every backend of the pool killed while idle, as a restart would: the
    # first block meets it; the idle ones are then checked before reuse.
    with db.ConnectionPool(psycopg2, dsn, minconn=3, maxconn=3) as pool:
        conns = [pool.getconn() for _ in range(3)]
        pids = [_pid(c) for c in conns]
        for c in conns:
            pool.putconn(c)
        _terminate(dsn, pids)
        with pytest.raises(psycopg2.OperationalError):
            with pool.connection() as conn:
                _pid(conn)
        for _ in range(5):
            with pool.connection() as conn:
                assert _pid(conn) not in pids
        assert pool.stats()["discarded"] == 3


def test_example_app_serves_while_a_query_sleeps(dsn):
    port = services.free_port()
    app = os.path.join(modes.ROOT, "examples", "psycopg2_app.py")
    env = dict(os.environ, PYTHONPATH=modes.ROOT)
    proc = subprocess.Popen(
        [sys.executable, app, "--dsn", dsn, "--port", str(port), "--maxconn", "3"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("serving on"), "the example did not start"
        slow = {}

        def get_slow():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sleep?ms=800", timeout=10) as r:
                slow["body"] = json.load(r)
                slow["done"] = time.monotonic()

        t = threading.Thread(target=get_slow)
        t.start()
        time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            fast = json.load(r)
        fast_done = time.monotonic()
        t.join(10)
        assert "backend" in fast and "backend" in slow["body"]
        assert fast_done < slow["done"]  # answered while the other request's query slept
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
