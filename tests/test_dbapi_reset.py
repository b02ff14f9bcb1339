"""ConnectionPool hands every borrower a clean session (issue 15 #16), per driver."""

import sqlite3
import uuid

import pytest
import services

import offload.dbapi as db


def test_sqlite3_settings_are_restored(tmp_path):
    path = str(tmp_path / "reset.db")
    with db.ConnectionPool(sqlite3, path, minconn=1, maxconn=1) as pool:
        with pool.connection() as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
            conn.isolation_level = None  # autocommit, for sqlite3
            conn.row_factory = sqlite3.Row
        with pool.connection() as conn:
            assert conn.isolation_level == "" and conn.row_factory is None
            conn.execute("INSERT INTO t VALUES (1)")  # not committed: rolled back at the end
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert pool.stats()["discarded"] == 0


def test_a_reset_of_your_own(tmp_path):
    calls = []
    with db.ConnectionPool(sqlite3, str(tmp_path / "own.db"), maxconn=1, reset=calls.append) as pool:
        with pool.connection() as conn:
            conn.isolation_level = None
        with pool.connection() as conn:
            assert conn.isolation_level is None  # "reset=" replaces offload's restore
    assert len(calls) == 2 and all(isinstance(c, sqlite3.Connection) for c in calls)
    with pytest.raises(ValueError, match="reset must be"):
        db.ConnectionPool(sqlite3, ":memory:", reset="everything")


psycopg2 = pytest.importorskip("psycopg2")


@pytest.fixture
def pg_table():
    dsn = services.POSTGRES_DSN + " application_name=dbapi_reset"
    try:
        admin = psycopg2.connect(dsn, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")
    admin.autocommit = True
    name = f"dbapi_reset_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f"CREATE TABLE {name} (x int)")
    yield dsn, name, admin
    admin.cursor().execute(f"DROP TABLE {name}")
    admin.close()


def _one(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()[0]


def test_psycopg2_session_is_reset(pg_table):
    dsn, table, admin = pg_table
    with db.ConnectionPool(psycopg2, dsn, minconn=1, maxconn=1) as pool:
        with pool.connection() as conn:
            pid = _one(conn, "SELECT pg_backend_pid()")
            conn.rollback()  # psycopg2 refuses session changes inside a transaction
            conn.autocommit = True
            conn.isolation_level = psycopg2.extensions.ISOLATION_LEVEL_SERIALIZABLE
            cur = conn.cursor()
            cur.execute("SET search_path TO dbapi_elsewhere, public")
            cur.execute("CREATE TEMP TABLE dbapi_tmp (y int)")
            cur.execute("PREPARE dbapi_stmt AS SELECT 1")
        with pool.connection() as conn:
            assert _one(conn, "SELECT pg_backend_pid()") == pid  # the same session, reset
            assert conn.autocommit is False and conn.isolation_level is None
            assert _one(conn, "SHOW search_path") == '"$user", public'
            assert _one(conn, "SHOW transaction_isolation") == "read committed"
            assert _one(conn, "SELECT to_regclass('pg_temp.dbapi_tmp') IS NULL") is True
            assert _one(conn, "SELECT count(*) FROM pg_prepared_statements") == 0
            conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")  # never committed
    cur = admin.cursor()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone()[0] == 0  # before the reset: committed by the leaked autocommit


pymysql = pytest.importorskip("pymysql")


@pytest.fixture
def my_table():
    try:
        admin = pymysql.connect(connect_timeout=3, autocommit=True, **services.MYSQL)
    except pymysql.err.OperationalError as exc:
        services.unavailable(f"MariaDB: {exc}")
    name = f"dbapi_reset_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f"CREATE TABLE {name} (x int) ENGINE=InnoDB")
    yield name, admin
    admin.cursor().execute(f"DROP TABLE {name}")
    admin.close()


def test_pymysql_session_is_reset(my_table):
    table, admin = my_table
    with db.ConnectionPool(pymysql, minconn=1, maxconn=1, **services.MYSQL) as pool:
        with pool.connection() as conn:
            cid = _one(conn, "SELECT CONNECTION_ID()")
            sql_mode = _one(conn, "SELECT @@SESSION.sql_mode")
            conn.autocommit(True)
            cur = conn.cursor()
            cur.execute("SET @dbapi_x = 5")
            cur.execute("SET SESSION sql_mode = 'ANSI'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            cur.execute("CREATE TEMPORARY TABLE dbapi_tmp (y int)")
        with pool.connection() as conn:
            assert _one(conn, "SELECT CONNECTION_ID()") == cid
            assert _one(conn, "SELECT @dbapi_x") is None
            assert _one(conn, "SELECT @@SESSION.sql_mode") == sql_mode
            assert _one(conn, "SELECT @@SESSION.autocommit") == 0
            assert _one(conn, "SELECT @@SESSION.tx_isolation") == "REPEATABLE-READ"
            assert _one(conn, "SELECT @@character_set_client") == "utf8mb4"
            with pytest.raises(pymysql.err.ProgrammingError):
                conn.cursor().execute("SELECT * FROM dbapi_tmp")
            conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")  # never committed
    cur = admin.cursor()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone()[0] == 0
