"""Calls the driver answers from memory skip the lane (offload.dbapi.quiet).

``cursor()``, the close of a client-side cursor and a rollback or commit with
no transaction open run in the caller's thread: fewer hops, the driver's own
results and errors, and never ahead of a call of the same connection that
is queued or still running in the lane.  Hops are counted with the lane's
``submitted`` statistic.
"""

import sqlite3
import time

import gevent
import pytest
import services

import offload
import offload.dbapi as db
from offload import unwrap

psycopg2 = pytest.importorskip("psycopg2")
from psycopg2.extensions import STATUS_BEGIN, STATUS_READY  # noqa: E402


def _hops(conn):
    return conn._offload_pool.stats()["submitted"]


def _pg(**kwargs):
    try:
        dsn = services.POSTGRES_DSN + " application_name=dbapi_quiet"
        return db.connect(psycopg2, dsn, connect_timeout=3, **kwargs)
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")


@pytest.fixture
def pg():
    conn = _pg()
    yield conn
    conn.close()


def _closed_outcomes(conn, cursor):
    """What a closed connection's cursor(), rollback(), commit() and its cursor's close() give."""
    return [_outcome(conn.cursor), _outcome(conn.rollback), _outcome(conn.commit), _outcome(cursor.close)]


def _outcome(fn, *args, **kwargs):
    """What calling *fn* gives: ("ok", value) or (exception class, message)."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:
        return type(exc), str(exc)


# -- how many hops ------------------------------------------------------------


def _select_one(conn, rows):
    """cursor, SELECT 1, fetchall, close, rollback: one statement's round; its cursor."""
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == rows
    cur.close()
    conn.rollback()
    return cur


def test_psycopg2_statement_costs_two_hops(pg):
    before = _hops(pg)
    cur = _select_one(pg, [(1,)])
    assert _hops(pg) - before == 2  # execute and rollback; before: cursor and close hopped too
    assert cur.closed and pg.status == STATUS_READY
    pg.rollback()  # no transaction open: psycopg2 sends nothing, and neither hops
    pg.commit()
    assert _hops(pg) - before == 2
    with pg.cursor() as cur:
        cur.execute("SELECT 1")
    pg.commit()  # a transaction open: COMMIT goes to the server, in the lane
    assert _hops(pg) - before == 4 and pg.status == STATUS_READY


def test_a_forgotten_cursor_is_closed_without_a_hop_where_close_does_no_io(pg):
    # An ORM drops the result of an execute whose rows nobody read: the
    # cursor proxy's __del__ closes it.  Queued on the lane, that close made
    # the connection's next cursor() hop behind it.
    cur = pg.cursor()
    cur.execute("SELECT 1")
    raw = unwrap(cur)
    before = _hops(pg)
    del cur
    assert raw.closed and _hops(pg) == before
    pg.cursor().close()  # and the next cursor is made inline
    assert _hops(pg) == before
    pg.rollback()
    lite = db.connect(sqlite3, ":memory:")  # sqlite3 closes in the connection's thread
    try:
        cur = lite.cursor()
        before = _hops(lite)
        del cur
        lite.commit()  # behind the queued close
        assert _hops(lite) - before == 2
    finally:
        lite.close()


def test_psycopg2_named_cursor_close_still_hops(pg):
    cur = pg.cursor(name="dbapi_quiet")
    cur.execute("SELECT generate_series(1, 3)")
    before = _hops(pg)
    cur.close()  # CLOSE dbapi_quiet: the server must hear it
    assert _hops(pg) - before == 1 and cur.closed
    pg.rollback()


def test_psycopg3_statement_costs_two_hops():
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = db.connect(psycopg, services.POSTGRES_DSN, connect_timeout=3)
    except psycopg.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")
    try:
        before = _hops(conn)
        cur = _select_one(conn, [(1,)])
        conn.rollback()
        conn.commit()
        assert _hops(conn) - before == 2
        assert cur.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        named = conn.cursor("dbapi_quiet")
        named.execute("SELECT generate_series(1, 3)")
        before = _hops(conn)
        named.close()  # a ServerCursor sends CLOSE
        assert _hops(conn) - before == 1
        conn.rollback()
    finally:
        conn.close()


def test_pymysql_close_hops_only_when_a_result_set_follows():
    pymysql = pytest.importorskip("pymysql")
    from pymysql.constants import CLIENT

    try:
        conn = db.connect(pymysql, connect_timeout=3, client_flag=CLIENT.MULTI_STATEMENTS, **services.MYSQL)
    except pymysql.err.OperationalError as exc:
        services.unavailable(f"MariaDB: {exc}")
    try:
        before = _hops(conn)
        _select_one(conn, ((1,),))  # PyMySQL always sends ROLLBACK
        assert _hops(conn) - before == 2
        cur = conn.cursor()
        cur.execute("SELECT 1; SELECT 2")
        before = _hops(conn)
        cur.close()  # reads the second result set: in the lane
        assert _hops(conn) - before == 1
        unbuffered = conn.cursor(pymysql.cursors.SSCursor)
        unbuffered.execute("SELECT 3")
        before = _hops(conn)
        unbuffered.close()  # drains its unread rows
        assert _hops(conn) - before == 1
        with conn.cursor() as cur:  # and the connection is in step with the server
            cur.execute("SELECT 4")
            assert cur.fetchall() == ((4,),)
    finally:
        conn.close()


def test_mysqlclient_cursor_is_made_here_and_close_hops():
    MySQLdb = pytest.importorskip("MySQLdb")  # mysqlclient: needs libmariadb-dev to build
    try:
        conn = db.connect(MySQLdb, connect_timeout=3, **services.MYSQL)
    except MySQLdb.OperationalError as exc:
        services.unavailable(f"MariaDB: {exc}")
    try:
        before = _hops(conn)
        cur = conn.cursor()  # BaseCursor.__init__: fields only
        assert _hops(conn) == before
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)
        assert _hops(conn) - before == 1  # the rows came back with the execute
        cur.close()  # asks the C library for further results: in the lane
        conn.rollback()  # mysql_rollback always sends
        assert _hops(conn) - before == 3
        dict_cursor = conn.cursor(MySQLdb.cursors.DictCursor)  # a driver class: made here too
        assert _hops(conn) - before == 3
        dict_cursor.execute("SELECT 2 AS two")
        assert dict_cursor.fetchall() == ({"two": 2},)
        dict_cursor.close()
    finally:
        conn.close()


def test_sqlite3_calls_all_hop():
    conn = db.connect(sqlite3, ":memory:")  # its objects refuse any other thread
    try:
        before = _hops(conn)
        _select_one(conn, [(1,)])
        conn.commit()
        assert _hops(conn) - before == 6
    finally:
        conn.close()


# -- the driver's errors --------------------------------------------------------


def test_psycopg2_errors_are_the_drivers_own():
    raw = psycopg2.connect(services.POSTGRES_DSN, connect_timeout=3)
    bad_calls = [((), {"cursor_factory": int}), (("a", None, False, None, "x"), {}), ((), {"nope": 1})]
    expected = [_outcome(raw.cursor, *args, **kwargs) for args, kwargs in bad_calls]
    raw_cursor = raw.cursor()
    raw.close()
    expected_closed = _closed_outcomes(raw, raw_cursor)
    assert expected_closed[0] == (psycopg2.InterfaceError, "connection already closed")

    shared = offload.ThreadPool(1)  # a lane the connection does not own: close() leaves calls to the driver
    conn = _pg(pool=shared)
    try:
        assert [_outcome(conn.cursor, *args, **kwargs) for args, kwargs in bad_calls] == expected
        cursor = conn.cursor()
        conn.close()
        before = _hops(conn)
        assert _closed_outcomes(conn, cursor) == expected_closed
        assert _hops(conn) - before == 2  # rollback and commit of a closed connection: in the lane
    finally:
        shared.shutdown()
    owned = _pg()
    owned.close()
    assert _outcome(owned.cursor) == expected_closed[0]  # offload's own check, in the driver's words


def test_a_shut_down_lane_refuses_calls_as_before():
    shared = offload.ThreadPool(1)
    conn = _pg(pool=shared)
    shared.shutdown()
    try:
        for call in (conn.cursor, conn.rollback, conn.commit):
            with pytest.raises(RuntimeError):
                call()
    finally:
        conn._offload_obj.close()  # no lane left to close it in


def test_psycopg3_errors_are_the_drivers_own():
    psycopg = pytest.importorskip("psycopg")
    try:
        raw = psycopg.connect(services.POSTGRES_DSN, connect_timeout=3)
    except psycopg.OperationalError as exc:
        services.unavailable(f"PostgreSQL: {exc}")
    raw_cursor = raw.cursor()
    raw.close()
    expected = _closed_outcomes(raw, raw_cursor)
    shared = offload.ThreadPool(1)
    conn = db.connect(psycopg, services.POSTGRES_DSN, connect_timeout=3, pool=shared)
    try:
        cursor = conn.cursor()
        conn.close()
        assert _closed_outcomes(conn, cursor) == expected
    finally:
        shared.shutdown()


# -- never ahead of a call made before ---------------------------------------


def test_rollback_does_not_overtake_a_queued_call(pg):
    def begin_later(raw):
        time.sleep(0.1)
        raw.cursor().execute("SELECT 1")  # opens a transaction

    queued = db.submit(pg, begin_later)
    assert pg.status == STATUS_READY  # nothing open yet: a rollback made here would be a no-op
    pg.rollback()  # so it waits its turn behind the queued call
    queued.result()
    assert db.call(pg, lambda raw: raw.status) == STATUS_READY


def test_cursor_close_does_not_overtake_a_queued_call(pg):
    cur = pg.cursor()
    queued = db.submit(cur, lambda raw: (time.sleep(0.1), raw.execute("SELECT 1")))
    cur.close()
    queued.result()  # the execute ran first: no "cursor already closed"
    assert cur.closed
    pg.rollback()


def test_cursor_does_not_overtake_a_queued_close(pg):
    db.submit(pg, lambda raw: (time.sleep(0.1), raw.close()))
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        pg.cursor()


def test_calls_hop_while_the_lane_runs_a_call_of_the_connection(pg):
    sleeper = pg.cursor()  # kept: a cursor collected meanwhile would queue its close
    busy = gevent.spawn(sleeper.execute, "SELECT pg_sleep(0.3)")
    gevent.sleep(0.1)
    assert pg.status == STATUS_BEGIN
    before, started = _hops(pg), time.monotonic()
    cur = pg.cursor()  # queued behind the sleep
    assert _hops(pg) - before == 1 and time.monotonic() - started > 0.1
    busy.join()
    before = _hops(pg)
    cur.close()
    pg.rollback()
    pg.cursor().close()
    assert _hops(pg) - before == 1  # the rollback; the lane idle again, the rest stay here


def test_calls_hop_while_an_abandoned_call_still_runs():
    conn = _pg(cancel_on_abandon=False)  # the abandoned statement runs to its end
    try:
        conn.autocommit = True  # no transaction: only the running call makes rollback hop
        sleeper = conn.cursor()
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
            sleeper.execute("SELECT pg_sleep(0.3)")
        assert conn._offload_session.busy()
        before, started = _hops(conn), time.monotonic()
        conn.rollback()
        assert _hops(conn) - before == 1 and time.monotonic() - started > 0.1
        before = _hops(conn)
        conn.rollback()
        assert _hops(conn) == before
    finally:
        conn.close()


def test_close_and_rollback_from_the_hub_are_still_queued(pg):
    cur = pg.cursor()
    before = _hops(pg)
    hub = gevent.get_hub()
    hub.loop.run_callback(cur.close)
    hub.loop.run_callback(pg.rollback)
    gevent.sleep(0.05)
    assert _hops(pg) - before == 2 and db.stats(pg)["hub_deferred"] == 2
    assert cur.closed


def test_every_way_a_call_ends_leaves_the_lane_idle():
    """After each, cursor() needs no hop again: no call is left counted as pending."""
    conn = _pg()

    def idle():
        before = _hops(conn)
        conn.cursor().close()
        return _hops(conn) == before

    try:
        db.call(conn, lambda raw: None)  # ran
        assert idle()
        with pytest.raises(ZeroDivisionError):
            db.call(conn, lambda raw: 1 / 0)  # failed
        assert idle()
        sleeping = db.submit(conn, lambda raw: time.sleep(0.2))
        queued = gevent.spawn(db.call, conn, lambda raw: None)
        gevent.sleep(0.05)
        queued.kill()  # given up while queued: never runs
        never = db.submit(conn, lambda raw: None)
        assert never.cancel()  # cancelled while queued
        sleeping.result()
        assert idle()
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
            db.call(conn, lambda raw: time.sleep(0.2))  # abandoned while it ran
        time.sleep(0.3)
        assert idle()
        gevent.get_hub().loop.run_callback(conn.rollback)  # deferred from the hub
        gevent.sleep(0.1)
        assert idle()
    finally:
        conn.close()
