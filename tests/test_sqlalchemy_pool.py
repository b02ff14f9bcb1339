"""CooperativeQueuePool and the dialects' edges: finalizers in the hub, killed
greenlets, fork, and every patching mode (in subprocesses)."""

import time

import gevent
import modes
import pytest
from sqla_helpers import PG_URLS, pg_admin, pg_engine, pg_sessions, sa, scratch_table, unique, wait_until

import offload
import offload.sqlalchemy.dialect as offload_dialect
from offload import dbapi


@pytest.fixture
def counter_table():
    engine = pg_engine("psycopg2")
    with scratch_table(engine, "tag text") as name:
        yield name
    engine.dispose()


def _count(engine, table, tag):
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE tag = :t"), {"t": tag}).scalar()


def _finalize_in_hub(engine, table):
    """Drop a checked-out connection inside a hub callback while its lane is busy.

    Returns the heartbeat's worst lag and the pid of the connection.
    """
    fairy = engine.raw_connection()
    cursor = fairy.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    cursor.execute(f"INSERT INTO {table} VALUES ('uncommitted')")
    cursor.close()
    dbapi.submit(fairy.dbapi_connection, lambda raw: raw.cursor().execute("SELECT pg_sleep(0.4)"))
    holder = [fairy]
    del fairy, cursor
    with offload.Heartbeat(0.005) as beat:
        gevent.get_hub().loop.run_callback(holder.clear)  # the GC finalizer runs in the hub
        gevent.sleep(0.6)
    return beat.max_lag, pid


@pytest.mark.timing
def test_finalizer_in_the_hub_queues_the_rollback(counter_table):
    engine = pg_engine("psycopg2", pool_size=1, max_overflow=0)
    try:
        lag, pid = _finalize_in_hub(engine, counter_table)
        assert lag < 0.2, lag
        assert engine.pool.checkedin() == 1 and engine.pool.checkedout() == 0
        with engine.connect() as conn:  # the same connection, rolled back before we got it
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid
            assert conn.execute(sa.text("SELECT txid_current_if_assigned()")).scalar() is None
        assert _count(engine, counter_table, "uncommitted") == 0
    finally:
        engine.dispose()


@pytest.mark.timing
def test_finalizer_in_the_hub_would_freeze_it_if_it_waited(counter_table, monkeypatch):
    """The control: the same finalizer, told it may wait, blocks the hub behind the lane.

    Both layers defer a rollback asked for in the hub (the dialect, and
    offload.dbapi's own rule for calls from the hub): both are told not to.
    """
    monkeypatch.setattr(offload_dialect, "must_not_wait", lambda: False)
    monkeypatch.setattr("offload.dbapi.lane.in_hub", lambda: False)
    engine = pg_engine("psycopg2", pool_size=1, max_overflow=0)
    try:
        lag, _ = _finalize_in_hub(engine, counter_table)
        assert lag > 0.2, lag
    finally:
        engine.dispose()


@pytest.mark.timing
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_interrupted_greenlet_ends_now_and_leaves_nothing_behind(driver, how, counter_table):
    engine = pg_engine(driver, pool_size=1, max_overflow=0)
    admin = pg_admin()
    pids = []

    def victim():
        with engine.begin() as conn:
            pids.append(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
            conn.execute(sa.text(f"INSERT INTO {counter_table} VALUES ('{how}')"))
            if how == "timeout":
                with gevent.Timeout(0.3):
                    conn.execute(sa.text("SELECT pg_sleep(2)"))
            else:
                conn.execute(sa.text("SELECT pg_sleep(2)"))

    try:
        started = time.monotonic()
        glet = gevent.spawn(victim)
        if how == "kill":
            gevent.sleep(0.3)
            glet.kill(block=True, timeout=5)
        else:
            glet.join(5)
            assert isinstance(glet.exception, gevent.Timeout)
        assert glet.dead
        ended = time.monotonic() - started
        assert ended < 1.2, ended  # not held until the 2 s query finished
        assert engine.pool.checkedout() == 0
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pids[0]
        assert time.monotonic() - started < 1.8  # a fresh connection, not one queued behind the sleep
        assert _count(engine, counter_table, how) == 0
        # The interrupted connection is closed once its lane finishes the query.
        assert wait_until(lambda: pids[0] not in pg_sessions(admin, engine.application_name), timeout=10)
    finally:
        admin.close()
        engine.dispose()


FORK_SNIPPET = """
import gc, os, sys
import sqlalchemy as sa
engine = sa.create_engine({url!r}, pool_size=2, connect_args={{"application_name": {app!r}}})
PID = sa.text("SELECT pg_backend_pid()")
with engine.connect() as conn:
    parent = conn.execute(PID).scalar()
r, w = os.pipe()
child = os.fork()
if child == 0:
    with engine.connect() as conn:
        mine = conn.execute(PID).scalar()
    os.write(w, str(mine).encode())
    engine.dispose()
    gc.collect()
    sys.exit(0)  # a normal exit: finalizers run, and must not reach the parent's session
os.waitpid(child, 0)
print("parent=%d" % parent)
print("child=%s" % os.read(r, 64).decode())
with engine.connect() as conn:
    print("again=%d" % conn.execute(PID).scalar())
"""


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
@pytest.mark.parametrize("mode", ["none", "all"])
def test_forked_child_gets_its_own_sessions_and_spares_the_parents(driver, mode):
    engine = pg_engine(driver)  # skips without the server or the driver
    engine.dispose()
    out = modes.lines(
        modes.run(mode, FORK_SNIPPET.format(url=PG_URLS[driver], app=unique("frameworks_fork")))
    )
    assert out["child"] != out["parent"], out
    assert out["again"] == out["parent"], out  # the parent's connection survived the child's exit


MODES_SNIPPET = """
import time, gevent, offload
import sqlalchemy as sa
for driver, url in {urls!r}.items():
    engine = sa.create_engine(url, pool_size=2, max_overflow=0, pool_timeout=10)
    def work():
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT pg_sleep(0.2), 1")).one()[1]
    with engine.connect() as conn:  # the first connect (initialize) is not what is measured
        conn.execute(sa.text("SELECT 1"))
    with offload.Heartbeat(0.005) as beat:
        started = time.monotonic()
        glets = [gevent.spawn(work) for _ in range(6)]
        gevent.joinall(glets, raise_error=True)
        elapsed = time.monotonic() - started
    assert [g.value for g in glets] == [1] * 6
    print("%s_elapsed=%.3f" % (driver, elapsed))
    print("%s_lag=%.3f" % (driver, beat.max_lag))
    engine.dispose()
"""


@pytest.mark.timing
@pytest.mark.parametrize("mode", modes.ALL_MODES)
def test_exhausted_pool_waits_cooperatively_in_every_mode(mode):
    pg_engine("psycopg2").dispose()  # skips without the server
    out = modes.lines(modes.run(mode, MODES_SNIPPET.format(urls=PG_URLS)))
    for driver in PG_URLS:
        # 6 checkouts of 0.2 s on 2 connections: 0.6 s when the waiters park.
        assert 0.55 < float(out[f"{driver}_elapsed"]) < 2.0, out
        assert float(out[f"{driver}_lag"]) < 0.15, out  # a blocked hub: >= 0.2 s
