"""offload.dbapi keeps the DB-API contract: exception attributes, optional
extensions, rows never lost to a caller that gave up, numbers checked."""

import sqlite3
import time

import gevent
import pytest
import services

import offload.dbapi as db

DBAPI_ERRORS = (
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)


def _slow(x):
    time.sleep(0.2)  # one row every 0.2 s, stepped by sqlite3's fetchone
    return x


def _fetch_with_retries(cur):
    """fetchone() under a 0.1 s timeout, retried until the end: (first columns, timeouts)."""
    delivered, timeouts = [], 0
    while True:
        try:
            with gevent.Timeout(0.1):
                row = cur.fetchone()
        except gevent.Timeout:
            timeouts += 1
            continue
        if row is None:
            break
        delivered.append(row[0])
    return delivered, timeouts


@pytest.fixture
def conn():
    # Without cancels: a fetch whose caller timed out runs to its end (the
    # case where rows used to vanish); with them, see the test further down.
    c = db.connect(sqlite3, ":memory:", cancel_on_abandon=False)
    c.create_function("slow", 1, _slow)
    yield c
    c.close()


def test_exception_attributes_are_the_drivers_classes(conn):
    for name in DBAPI_ERRORS:
        assert getattr(conn, name) is getattr(sqlite3, name), name
    with pytest.raises(sqlite3.OperationalError):
        try:
            conn.execute("SELEKT")
        except conn.ProgrammingError:  # not this one: the except clause itself must work
            pytest.fail("sqlite3 raises OperationalError for a syntax error")
    try:
        conn.execute("SELECT * FROM missing")
    except conn.Error as exc:
        assert isinstance(exc, sqlite3.OperationalError)


def test_optional_extensions_tell_the_truth(conn):
    cur = conn.cursor()
    raw = db.call(cur, lambda raw: raw)
    for name in ("callproc", "nextset", "scroll", "setinputsizes", "lastrowid", "rownumber", "connection"):
        assert hasattr(cur, name) == hasattr(raw, name), name
    assert not hasattr(cur, "callproc")  # sqlite3 has no stored procedures
    assert hasattr(cur, "connection") and cur.connection is conn


def test_classes_and_stored_functions_are_never_wrapped(conn):
    conn.row_factory = sqlite3.Row
    assert conn.row_factory is sqlite3.Row
    assert isinstance(conn.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)

    def as_dict(cursor, row):
        return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}

    conn.row_factory = as_dict
    assert conn.row_factory is as_dict  # the function itself, not a call into the lane
    assert conn.execute("SELECT 2 AS two").fetchone() == {"two": 2}
    assert conn.text_factory is str
    assert conn.isolation_level == ""


def test_rows_of_a_fetch_whose_caller_timed_out_are_kept(conn):
    cur = conn.cursor()
    cur.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT slow(x) FROM c"
    )
    delivered, timeouts = _fetch_with_retries(cur)
    assert delivered == [1, 2, 3, 4, 5], delivered  # before: rows skipped by each retry
    assert timeouts >= 3


def test_a_fetchmany_killed_midway_leaves_its_rows_for_fetchall(conn):
    cur = conn.cursor()
    cur.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4) SELECT slow(x) FROM c"
    )
    g = gevent.spawn(cur.fetchmany, 3)
    gevent.sleep(0.1)
    g.kill()
    assert cur.fetchall() == [(1,), (2,), (3,), (4,)]


def test_a_cancelled_fetch_fails_the_retry_instead_of_ending_the_rows():
    conn = db.connect(sqlite3, ":memory:")  # cancel_on_abandon: the timeout interrupts the query
    conn.create_function("slow", 1, _slow)
    cur = conn.cursor()
    cur.execute("SELECT slow(1) UNION ALL SELECT slow(2) UNION ALL SELECT slow(3)")
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.1):
        cur.fetchall()
    with pytest.raises(sqlite3.InterfaceError, match="caller went away") as info:
        cur.fetchall()  # before: [] -- the remaining rows silently gone
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert conn.execute("SELECT 7").fetchone() == (7,)  # the connection itself is fine
    assert db.stats(conn)["cancels_effective"] == 1
    conn.close()


def test_execute_after_an_abandoned_fetch_starts_clean(conn):
    cur = conn.cursor()
    cur.execute("SELECT slow(1) UNION ALL SELECT slow(2)")
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        cur.fetchall()
    cur.execute("SELECT 42")  # queued behind the abandoned fetch, which finishes first
    assert cur.fetchall() == [(42,)]


def test_pool_timeouts_are_checked(tmp_path):
    with db.ConnectionPool(sqlite3, str(tmp_path / "x.db"), minconn=0, maxconn=1) as pool:
        for bad in (float("nan"), -1):
            with pytest.raises(ValueError, match="timeout"):
                pool.getconn(timeout=bad)
        with pytest.raises(TypeError, match="timeout"):
            pool.getconn(timeout="1")
        held = pool.getconn(timeout=float("inf"))  # inf: no timeout
        with pytest.raises(TimeoutError):
            pool.getconn(timeout=0.05)
        pool.putconn(held)


psycopg2 = pytest.importorskip("psycopg2")


@pytest.fixture
def pg():
    try:
        c = db.connect(
            psycopg2,
            services.POSTGRES_DSN + " application_name=dbapi_contract",
            connect_timeout=3,
            cancel_on_abandon=False,
        )
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")
    yield c
    c.close()


def test_psycopg2_exceptions_and_extensions(pg):
    for name in DBAPI_ERRORS:
        assert getattr(pg, name) is getattr(psycopg2, name), name
    cur = pg.cursor()
    try:
        cur.execute("SELECT * FROM dbapi_no_such_table")
    except pg.ProgrammingError as exc:
        assert isinstance(exc, psycopg2.errors.UndefinedTable)
    pg.rollback()
    assert hasattr(cur, "callproc") and hasattr(cur, "nextset") and hasattr(cur, "scroll")
    cur.callproc("abs", (-3,))
    assert cur.fetchone() == (3,)


def test_server_side_cursor_rows_survive_timeout_and_retry(pg):
    # The reproduction of issue 15 #17: it delivered 0 of 5 rows, no error.
    cur = pg.cursor(name="dbapi_retry")
    cur.itersize = 1
    cur.execute("SELECT x, pg_sleep(0.2) FROM generate_series(1, 5) x")
    delivered, timeouts = _fetch_with_retries(cur)
    assert delivered == [1, 2, 3, 4, 5] and timeouts >= 5
    pg.rollback()
