"""One hop per statement (issue 13): a result the driver buffers on execute
comes back with the execute; the fetches then need no hop, and behave
exactly as the driver's."""

import uuid

import pytest
import services

import offload.dbapi as db

psycopg2 = pytest.importorskip("psycopg2")


def _hops(conn):
    return conn._offload_pool.stats()["submitted"]


@pytest.fixture
def pg():
    try:
        c = db.connect(psycopg2, services.POSTGRES_DSN + " application_name=dbapi_hops", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")
    yield c
    c.close()


def test_psycopg2_execute_brings_the_rows(pg):
    cur = pg.cursor()
    before = _hops(pg)
    cur.execute("SELECT generate_series(1, 5)")
    assert cur.rowcount == 5 and cur.description[0][0] == "generate_series"
    assert cur.fetchone() == (1,)
    assert cur.rownumber == 1
    assert cur.fetchmany(2) == [(2,), (3,)]
    assert cur.fetchall() == [(4,), (5,)]
    assert cur.fetchone() is None and cur.fetchall() == [] and cur.fetchmany() == []
    assert _hops(pg) - before == 1  # the execute; before: six more
    cur.execute("SELECT generate_series(1, 5)")
    cur.fetchone()
    cur.scroll(1)  # relative to what the caller has seen, as the driver's own
    assert cur.fetchone() == (3,)
    cur.scroll(0, "absolute")
    assert cur.fetchall() == [(i,) for i in range(1, 6)]
    pg.rollback()


def test_psycopg2_errors_stay_the_drivers(pg):
    cur = pg.cursor()
    cur.execute("SELECT 1 WHERE false")
    assert cur.fetchall() == [] and cur.rowcount == 0
    cur.execute("SET search_path TO public")  # no result
    with pytest.raises(psycopg2.ProgrammingError, match="no results to fetch"):
        cur.fetchone()
    pg.rollback()


def test_psycopg2_named_cursor_fetches_a_batch_per_hop(pg):
    cur = pg.cursor(name="dbapi_hops")
    cur.itersize = 3
    cur.execute("SELECT generate_series(1, 7)")
    before = _hops(pg)
    rows = []
    while (row := cur.fetchone()) is not None:
        rows.append(row[0])
    assert rows == list(range(1, 8))
    assert _hops(pg) - before == 4  # 3 + 3 + 1 rows, then the end; before: 8
    cur.close()
    pg.rollback()


pymysql = pytest.importorskip("pymysql")


def test_pymysql_execute_brings_the_rows():
    try:
        conn = db.connect(pymysql, connect_timeout=3, **services.MYSQL)
    except pymysql.err.OperationalError as exc:
        services.unavailable(f"MariaDB: {exc}")
    table = f"dbapi_hops_{uuid.uuid4().hex[:8]}"
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, x INT)")
        assert cur.execute(f"INSERT INTO {table} (x) VALUES (10), (20), (30)") == 3
        assert cur.lastrowid == 1 and cur.rowcount == 3
        before = _hops(conn)
        assert cur.execute(f"SELECT x FROM {table} ORDER BY id") == 3  # PyMySQL's row count
        assert cur.fetchone() == (10,) and cur.rownumber == 1
        assert cur.fetchall() == ((20,), (30,))  # PyMySQL's tuples
        assert cur.fetchall() == () and cur.fetchone() is None
        assert _hops(conn) - before == 1
        unbuffered = conn.cursor(pymysql.cursors.SSCursor)
        unbuffered.execute(f"SELECT x FROM {table} ORDER BY id")
        assert [row[0] for row in unbuffered] == [10, 20, 30]  # fetched from the server as before
        unbuffered.close()
    finally:
        conn.close()
