"""offload.dbapi with sqlite3: thread affinity, proxies, lanes and ConnectionPool.

sqlite3 is the strictest driver about threads (``check_same_thread``), and
needs no server, so the driver-independent behaviour is tested with it.
"""

import _thread
import gc
import sqlite3
import threading
import time

import gevent
import pytest

import offload
import offload.dbapi as db


def _wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.01)
    return True


HEAVY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) SELECT count(*) FROM c"
)


def _tid(conn):
    """The OS thread that runs *conn*'s calls, asked through SQL."""
    return conn.execute("SELECT tid()").fetchone()[0]


@pytest.fixture
def conn():
    c = db.connect(sqlite3, ":memory:")
    c.create_function("tid", 0, _thread.get_ident)
    yield c
    c.close()


def test_hundred_greenlets_share_one_connection_on_one_thread(conn):
    conn.execute("CREATE TABLE t (g INTEGER, i INTEGER, tid INTEGER)")

    def worker(g):
        cur = conn.cursor()
        for i in range(5):
            cur.execute("INSERT INTO t VALUES (?, ?, tid())", (g, i))
            gevent.sleep(0)
        cur.execute("SELECT count(*) FROM t WHERE g = ?", (g,))
        return cur.fetchone()[0]

    greenlets = [gevent.spawn(worker, g) for g in range(100)]
    gevent.joinall(greenlets, raise_error=True)
    assert [g.value for g in greenlets] == [5] * 100
    rows = conn.execute("SELECT count(*), count(DISTINCT tid) FROM t").fetchone()
    assert rows == (500, 1)
    tid = conn.execute("SELECT tid FROM t LIMIT 1").fetchone()[0]
    assert tid != _thread.get_ident()


def test_raw_sqlite_connection_refuses_other_threads():
    # Why affinity matters: the same calls on a pool of several threads fail.
    raw = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.ProgrammingError):
        offload.call(raw.execute, "SELECT 1")
    raw.close()


def test_errors_are_the_drivers_own(conn):
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.execute("SELECT * FROM missing")
    cur = conn.cursor()
    with pytest.raises(sqlite3.OperationalError):
        cur.execute("SELEKT 1")
    assert cur.execute("SELECT 2").fetchone() == (2,)


def test_transactions_commit_and_rollback(tmp_path):
    path = str(tmp_path / "t.db")
    writer = db.connect("sqlite3", path)
    reader = db.connect(sqlite3, path)
    try:
        writer.execute("CREATE TABLE t (x)")
        writer.commit()
        writer.execute("INSERT INTO t VALUES (1)")
        writer.rollback()
        writer.execute("INSERT INTO t VALUES (2)")
        assert reader.execute("SELECT x FROM t").fetchall() == []
        writer.commit()
        assert reader.execute("SELECT x FROM t").fetchall() == [(2,)]
        with writer:  # sqlite3's own meaning: commit at the end of the block
            writer.execute("INSERT INTO t VALUES (3)")
        assert reader.execute("SELECT x FROM t ORDER BY x").fetchall() == [(2,), (3,)]
    finally:
        writer.close()
        reader.close()


def test_cursor_api(conn):
    cur = conn.cursor()
    assert isinstance(cur, db.Cursor)
    assert cur.connection is conn
    assert cur.execute("CREATE TABLE t (x)") is cur  # sqlite3 returns the cursor: so does the proxy
    cur.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    assert cur.rowcount == 10
    cur.execute("SELECT x FROM t ORDER BY x")
    assert cur.description[0][0] == "x"
    assert cur.fetchone() == (0,)
    assert cur.fetchmany(2) == [(1,), (2,)]
    assert next(cur) == (3,)
    assert cur.fetchall() == [(i,) for i in range(4, 10)]
    assert cur.fetchone() is None
    assert isinstance(conn.execute("SELECT 1"), db.Cursor)
    assert offload.unwrap(cur).__class__ is sqlite3.Cursor


def test_iteration_fetches_in_batches(conn):
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    cur = conn.cursor()
    cur.execute("SELECT x FROM t ORDER BY x")
    lane = conn._offload_pool
    before = lane.stats()["submitted"]
    assert [row[0] for row in cur] == list(range(1000))
    assert lane.stats()["submitted"] - before <= 11  # 100 rows a round trip


def test_cursor_context_manager_closes_it(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        cur.execute("SELECT 1")


def test_attribute_writes_run_on_the_connection_thread(conn):
    conn.isolation_level = None
    assert conn.isolation_level is None
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    assert conn.in_transaction
    conn.execute("COMMIT")


def test_call_hands_the_raw_object_over_on_its_thread(conn):
    def work(raw, n):
        assert isinstance(raw, sqlite3.Connection)
        return raw.execute("SELECT ?", (n,)).fetchone()[0], _thread.get_ident()

    value, tid = db.call(conn, work, 7)
    assert value == 7 and tid == _tid(conn)
    cur = conn.cursor()
    assert db.call(cur, lambda raw: type(raw)) is sqlite3.Cursor
    with pytest.raises(TypeError, match="target"):
        db.call(offload.unwrap(conn), work, 1)
    with pytest.raises(TypeError, match="fn"):
        db.call(conn, 42)


def test_close_stops_the_lane_and_later_calls_raise_interface_error():
    conn = db.connect(sqlite3, ":memory:")
    lane = conn._offload_pool
    cur = conn.cursor()
    conn.close()
    conn.close()  # harmless
    assert _wait_until(lambda: lane.stats()["workers"] == 0)
    with pytest.raises(sqlite3.InterfaceError):
        conn.cursor()
    with pytest.raises(sqlite3.InterfaceError):
        cur.execute("SELECT 1")


def test_forgotten_connection_releases_its_thread():
    conn = db.connect(sqlite3, ":memory:")
    conn.execute("SELECT 1")
    lane = conn._offload_pool
    assert lane.stats()["workers"] == 1
    del conn
    gc.collect()
    assert _wait_until(lambda: lane.stats()["workers"] == 0)


def test_pinned_to_a_one_thread_pool():
    lane = offload.ThreadPool(1, name="sqlite-lane")
    try:
        a = db.connect(sqlite3, ":memory:", pool=lane)
        b = db.connect(sqlite3, ":memory:", pool=lane)
        for c in (a, b):
            c.create_function("tid", 0, _thread.get_ident)
        assert _tid(a) == _tid(b)
        a.close()
        assert lane.call(_thread.get_ident) == _tid(b)  # the pool outlives a
        b.close()
    finally:
        lane.shutdown()


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="max_workers=1"):
        db.connect(sqlite3, ":memory:", pool=offload.ThreadPool(2))
    with pytest.raises(TypeError, match="pool must be"):
        db.connect(sqlite3, ":memory:", pool="thread")
    with pytest.raises(TypeError, match="DB-API 2.0 module"):
        db.connect(42)
    with pytest.raises(ModuleNotFoundError):
        db.connect("no_such_driver_module")


def test_a_queued_call_of_a_killed_greenlet_never_runs(conn):
    conn.execute("CREATE TABLE t (x)")
    busy = gevent.spawn(db.call, conn, lambda raw: time.sleep(0.3))
    gevent.sleep(0.05)  # the lane is now busy
    doomed = gevent.spawn(conn.execute, "INSERT INTO t VALUES (1)")
    gevent.sleep(0.05)
    doomed.kill()
    busy.join()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_hub_keeps_running_during_a_heavy_query(conn):
    cur = conn.cursor()
    result = offload.probe(cur.execute, HEAVY)
    # Had it run on the hub: one late tick as long as the whole query.
    assert result.ticks >= 10 and result.max_lag < result.elapsed / 2, result
    assert cur.fetchone() == (600000,)


def test_plain_thread_callers(conn):
    conn.execute("CREATE TABLE t (x)")
    errors = []

    def worker(i):
        try:
            conn.execute("INSERT INTO t VALUES (?)", (i,))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (8,)


# -- ConnectionPool ---------------------------------------------------------


@pytest.fixture
def pool(tmp_path):
    path = str(tmp_path / "pool.db")
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (x)")
    setup.commit()
    setup.close()
    p = db.ConnectionPool(sqlite3, path, minconn=1, maxconn=2)
    yield p
    p.close()


def test_pool_lends_at_most_maxconn_and_others_wait(pool):
    in_use = []
    peak = []

    def borrower():
        with pool.connection() as conn:
            in_use.append(conn)
            peak.append(len(in_use))
            db.call(conn, lambda raw: time.sleep(0.2))
            in_use.remove(conn)

    with offload.Heartbeat(0.005) as hb:
        gevent.joinall([gevent.spawn(borrower) for _ in range(6)], raise_error=True)
    assert max(peak) == 2
    assert hb.max_lag < 0.1  # waiting borrowers and working lanes never froze the hub
    stats = pool.stats()
    assert {k: stats[k] for k in ("size", "idle", "in_use", "maxconn", "opened", "discarded")} == {
        "size": 2,
        "idle": 2,
        "in_use": 0,
        "maxconn": 2,
        "opened": 2,
        "discarded": 0,
    }


def test_pool_timeout(pool):
    with pool.connection(), pool.connection():
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="maxconn=2"):
            with pool.connection(timeout=0.1):
                pass
        assert time.monotonic() - started < 2
    with pool.connection(timeout=0.1) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pool_rolls_back_what_was_not_committed(pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pool.connection() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.commit()
    with pytest.raises(ZeroDivisionError):
        with pool.connection() as conn:
            conn.execute("INSERT INTO t VALUES (3)")
            raise ZeroDivisionError
    with pool.connection() as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]
    assert pool.stats()["discarded"] == 0


def test_pool_discards_connections_closed_or_given_back_for_discard(pool):
    with pool.connection() as conn:
        conn.close()
    assert pool.stats()["discarded"] == 1
    conn = pool.getconn()
    pool.putconn(conn, discard=True)
    assert pool.stats()["discarded"] == 2
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pool_close(pool):
    conn = pool.getconn()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.getconn()
    pool.putconn(conn)  # closed on return
    assert pool.stats()["size"] == 0
    with pytest.raises(sqlite3.InterfaceError):
        conn.execute("SELECT 1")


def test_pool_bad_arguments(tmp_path):
    path = str(tmp_path / "x.db")
    with pytest.raises(ValueError, match="minconn"):
        db.ConnectionPool(sqlite3, path, minconn=3, maxconn=2)
    with pytest.raises(ValueError, match="maxconn"):
        db.ConnectionPool(sqlite3, path, minconn=0, maxconn=0)
    with pytest.raises(TypeError, match="maxconn"):
        db.ConnectionPool(sqlite3, path, maxconn=True)
    with pytest.raises(TypeError, match="pool="):
        db.ConnectionPool(sqlite3, path, pool=None)
    with db.ConnectionPool(sqlite3, path, minconn=0) as p:
        assert p.stats()["size"] == 0
        with pytest.raises(TypeError, match="timeout"):
            p.getconn("1")
        with pytest.raises(ValueError, match="timeout"):
            p.getconn(-1)
        stranger = sqlite3.connect(":memory:")
        try:
            with pytest.raises(TypeError, match="conn"):
                p.putconn(stranger)
        finally:
            stranger.close()  # or 3.13 warns of an unclosed database in a later test


def test_pool_open_failure_is_the_drivers_error(tmp_path):
    missing = str(tmp_path / "no" / "such" / "dir.db")
    with pytest.raises(sqlite3.OperationalError):
        db.ConnectionPool(sqlite3, missing)


PATCHED_SNIPPET = """
import _thread, sqlite3, time
import gevent, offload, offload.dbapi as db
from gevent.monkey import get_original
real_ident = get_original("_thread", "get_ident")
conn = db.connect(sqlite3, ":memory:")
conn.create_function("tid", 0, real_ident)
conn.execute("CREATE TABLE t (g, tid)")
def worker(g):
    for _ in range(3):
        conn.execute("INSERT INTO t VALUES (?, tid())", (g,))
gevent.joinall([gevent.spawn(worker, g) for g in range(100)], raise_error=True)
count, tids = conn.execute("SELECT count(*), count(DISTINCT tid) FROM t").fetchone()
print("count=%d" % count)
print("tids=%d" % tids)
print("other_thread=%s" % (conn.execute("SELECT tid()").fetchone()[0] != real_ident()))
r = offload.probe(conn.execute, {heavy!r})
print("hub_ran=%s" % (r.ticks >= 10 and r.max_lag < r.elapsed / 2))
with db.ConnectionPool(sqlite3, ":memory:", maxconn=3) as pool:
    def borrow():
        with pool.connection() as c:
            return c.execute("SELECT 1").fetchone()[0]
    gs = [gevent.spawn(borrow) for _ in range(20)]
    gevent.joinall(gs, raise_error=True)
    print("pooled=%d" % sum(g.value for g in gs))
conn.close()
"""


@pytest.mark.parametrize("mode", ["all", "socket"])
def test_affinity_holds_when_patched(mode):
    from modes import lines, run

    out = lines(run(mode, PATCHED_SNIPPET.replace("{heavy!r}", repr(HEAVY))))
    assert out == {"count": "300", "tids": "1", "other_thread": "True", "hub_ran": "True", "pooled": "20"}


def test_timeout_abandons_the_wait_and_the_connection_stays_usable(conn):
    conn.execute("CREATE TABLE t (x)")
    started = time.monotonic()
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            db.call(conn, lambda raw: (time.sleep(0.3), raw.execute("INSERT INTO t VALUES (1)")))
    assert time.monotonic() - started < 0.25  # only the wait was abandoned...
    # ...the running call finishes first: calls on a connection stay in order.
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_pool_slot_is_not_lost_by_a_killed_waiter_or_borrower():
    small = db.ConnectionPool(sqlite3, ":memory:", minconn=1, maxconn=1)
    try:
        held = small.getconn()
        waiter = gevent.spawn(small.getconn)
        gevent.sleep(0.05)
        waiter.kill()
        small.putconn(held)

        def borrower():
            with small.connection() as conn:
                db.call(conn, lambda raw: time.sleep(0.2))

        g = gevent.spawn(borrower)
        gevent.sleep(0.05)
        g.kill()  # while its call runs in the lane
        with small.connection(timeout=2) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        stats = small.stats()
        assert stats["in_use"] == 0 and stats["size"] + stats["discarded"] == stats["opened"]
    finally:
        small.close()
