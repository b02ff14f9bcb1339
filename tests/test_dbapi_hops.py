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


def _mysqlclient_session(MySQLdb, connect, table):
    """One sequence of calls on a mysqlclient connection; everything the caller saw."""
    conn = connect()
    seen = []
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, x INT)")
        seen.append(cur.execute(f"INSERT INTO {table} (x) VALUES (10), (20), (30)"))
        seen += [cur.lastrowid, cur.rowcount]
        seen.append(cur.execute(f"SELECT x FROM {table} ORDER BY id"))
        seen += [cur.rowcount, [d[0] for d in cur.description], cur.rownumber]
        seen += [cur.fetchone(), cur.rownumber, cur.fetchmany(1), cur.rownumber]
        cur.scroll(-2)  # relative to what the caller has seen
        seen += [cur.fetchall(), cur.fetchall(), cur.fetchone(), cur.rownumber]
        cur.scroll(1, "absolute")
        seen.append(cur.fetchone())
        seen.append(cur.execute(f"UPDATE {table} SET x = x + 1"))
        seen += [cur.description, cur.fetchall()]  # no result set: MySQLdb gives ()
        dicts = conn.cursor(MySQLdb.cursors.DictCursor)
        dicts.execute(f"SELECT id, x FROM {table} WHERE id = 2")
        seen += [dicts.fetchall(), list(dicts)]
        try:
            cur.execute("SELECT * FROM no_such_table_for_dbapi_hops")
        except MySQLdb.ProgrammingError as exc:
            seen.append(exc.args[0])
        conn.rollback()
    finally:
        conn.close()
    return seen


def test_mysqlclient_execute_brings_the_rows_and_behaves_as_the_driver():
    MySQLdb = pytest.importorskip("MySQLdb")  # mysqlclient: needs libmariadb-dev to build
    args = services.MYSQL
    table = f"dbapi_hops_{uuid.uuid4().hex[:8]}"
    try:
        direct = _mysqlclient_session(MySQLdb, lambda: MySQLdb.connect(connect_timeout=3, **args), table)
    except MySQLdb.OperationalError as exc:
        services.unavailable(f"MariaDB: {exc}")
    proxied = _mysqlclient_session(MySQLdb, lambda: db.connect(MySQLdb, connect_timeout=3, **args), table)
    assert proxied == direct
    conn = db.connect(MySQLdb, connect_timeout=3, **args)
    try:
        cur = conn.cursor()
        before = _hops(conn)
        cur.execute("SELECT 1 UNION SELECT 2 UNION SELECT 3")
        assert cur.fetchone() == (1,) and cur.fetchall() == ((2,), (3,))
        assert _hops(conn) - before == 1  # the execute; before: three
        unbuffered = conn.cursor(MySQLdb.cursors.SSCursor)
        unbuffered.execute("SELECT 4 UNION SELECT 5")
        before = _hops(conn)
        assert [row[0] for row in unbuffered] == [4, 5]  # fetched from the server as before
        assert _hops(conn) - before == 2  # in the lane: the rows, then the end
        unbuffered.close()
    finally:
        conn.close()
