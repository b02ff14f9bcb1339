"""offload.dbapi with MariaDB through PyMySQL.

mysqlclient (MySQLdb) needs libmariadb-dev and a compiler to install and has
no Linux wheels, so a fresh machine cannot get it from pip alone; PyMySQL is
pure Python and installs anywhere.  Being pure Python it is cooperative under
``patch_all()`` and blocking without it -- through offload.dbapi it never
blocks, and its ``threadsafety = 1`` is what the one-thread lane respects.
"""

import time
import uuid

import gevent
import modes
import pytest
import services

import offload.dbapi as db

pymysql = pytest.importorskip("pymysql")

MYSQL = services.MYSQL


@pytest.fixture(scope="module")
def params():
    try:
        pymysql.connect(connect_timeout=3, **MYSQL).close()
    except pymysql.err.OperationalError as exc:
        services.unavailable(f"MariaDB at {MYSQL['host']}:{MYSQL['port']}: {exc}")
    return MYSQL


@pytest.fixture
def table(params):
    name = f"offload_t_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(autocommit=True, **params)
    admin.cursor().execute(f"CREATE TABLE {name} (x INTEGER) ENGINE=InnoDB")
    yield name
    admin.cursor().execute(f"DROP TABLE IF EXISTS {name}")
    admin.close()


PROBE_SNIPPET = """
import pymysql, offload, offload.dbapi as db
params = {params!r}
raw = pymysql.connect(**params)
# Blocked means ~0.2 s of lag, cooperative ~1 ms: 0.12 s keeps wide margins
# both ways on a loaded machine.
direct = offload.probe(raw.cursor().execute, "SELECT SLEEP(0.2)", threshold=0.12)
conn = db.connect(pymysql, **params)
via = offload.probe(conn.cursor().execute, "SELECT SLEEP(0.2)")
print("direct_blocked=%s" % direct.blocked)
print("direct_lag=%.3f" % direct.max_lag)
print("via_lag=%.3f" % via.max_lag)
"""


@pytest.mark.parametrize("mode, blocks_directly", [("none", "True"), ("all", "False")])
def test_probe_sleep(params, mode, blocks_directly):
    out = modes.lines(modes.run(mode, PROBE_SNIPPET.format(params=params)))
    assert out["direct_blocked"] == blocks_directly, out
    assert float(out["via_lag"]) < 0.1, out  # 0.2 had it blocked


def test_pool_sleeps_overlap(params):
    with db.ConnectionPool(pymysql, minconn=5, maxconn=5, **params) as pool:

        def sleeper():
            with pool.connection() as conn:
                cur = conn.cursor()
                cur.execute("SELECT SLEEP(0.2)")
                return cur.fetchone()

        started = time.perf_counter()
        greenlets = [gevent.spawn(sleeper) for _ in range(5)]
        gevent.joinall(greenlets, raise_error=True)
        elapsed = time.perf_counter() - started
    assert [g.value for g in greenlets] == [(0,)] * 5
    assert elapsed < 0.7, elapsed  # one after another: 1 s


def test_transactions_and_errors(params, table):
    conn = db.connect(pymysql, **params)
    other = db.connect(pymysql, autocommit=True, **params)
    try:
        cur = conn.cursor()
        assert cur.execute(f"INSERT INTO {table} VALUES (1)") == 1  # PyMySQL returns the row count
        conn.rollback()
        cur.execute(f"INSERT INTO {table} VALUES (2)")
        ocur = other.cursor()
        ocur.execute(f"SELECT x FROM {table}")
        assert ocur.fetchall() == ()
        conn.commit()
        ocur.execute(f"SELECT x FROM {table}")
        assert ocur.fetchall() == ((2,),)
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM no_such_table_here")
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()
        other.close()


def test_shared_connection_under_load(params):
    conn = db.connect(pymysql, **params)
    try:

        def worker(i):
            cur = conn.cursor()
            cur.execute("SELECT %s, CONNECTION_ID()", (i,))
            return cur.fetchone()

        greenlets = [gevent.spawn(worker, i) for i in range(30)]
        gevent.joinall(greenlets, raise_error=True)
        assert [g.value[0] for g in greenlets] == list(range(30))
        assert len({g.value[1] for g in greenlets}) == 1
    finally:
        conn.close()
