"""offload.sqlalchemy against the real PostgreSQL: psycopg2 and psycopg 3, Core and ORM.

Runs unpatched in the pytest process: that is where the stock drivers block
the hub and SQLAlchemy's own pool freezes it, so it is where the dialects
must show they do neither.  Patched modes run in subprocesses
(test_sqlalchemy_pool.py).
"""

import time

import gevent
import pytest
from sqla_helpers import (
    orm_get_hops,
    overlap,
    pg_admin,
    pg_engine,
    pg_sessions,
    sa,
    scratch_table,
    wait_until,
)

import offload
from offload import dbapi
from offload.sqlalchemy import CooperativeQueuePool

orm = pytest.importorskip("sqlalchemy.orm")

DRIVERS = ["psycopg2", "psycopg"]


@pytest.fixture(params=DRIVERS)
def driver(request):
    return request.param


@pytest.fixture
def engine(driver):
    engine = pg_engine(driver, pool_size=3, max_overflow=0, pool_timeout=10)
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine):
    with scratch_table(engine, "id serial PRIMARY KEY, tag text UNIQUE, n integer") as name:
        yield name


def test_url_gives_offload_dialect_and_cooperative_pool(engine, driver):
    assert engine.dialect.driver == f"offload_{driver}"
    assert isinstance(engine.pool, CooperativeQueuePool)
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, dbapi.Connection)
        row = conn.execute(sa.text("SELECT 1 AS one, gen_random_uuid() AS u")).one()
    assert row.one == 1
    assert row.u.version == 4  # a uuid.UUID: psycopg2's register_uuid ran on the real connection


@pytest.mark.timing
def test_queries_overlap_and_hub_runs(engine):
    values, elapsed, lag = overlap(engine, "SELECT pg_sleep(0.3), 7")
    assert values == [7, 7, 7]
    assert elapsed < 0.8, elapsed  # serial would be 0.9 s
    assert lag < 0.1, lag


@pytest.mark.timing
def test_stock_pool_freezes_the_hub_and_ours_does_not(driver):
    """The control: SQLAlchemy's QueuePool waits on a real Condition."""

    def exhaust(poolclass):
        engine = pg_engine(driver, poolclass=poolclass, pool_size=1, max_overflow=0, pool_timeout=0.5)

        def holder():
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_sleep(0.3)"))

        def waiter():
            try:
                with engine.connect() as conn:
                    return conn.execute(sa.text("SELECT 1")).scalar()
            except sa.exc.TimeoutError:
                return "timeout"

        try:
            with offload.Heartbeat(0.005) as beat:
                first = gevent.spawn(holder)
                gevent.sleep(0.05)
                second = gevent.spawn(waiter)
                gevent.joinall([first, second])
            return second.value, beat.max_lag
        finally:
            engine.dispose()

    value, lag = exhaust(sa.pool.QueuePool)
    assert value == "timeout" and lag > 0.4, (value, lag)  # the hub froze for the whole pool_timeout
    value, lag = exhaust(CooperativeQueuePool)
    assert value == 1 and lag < 0.1, (value, lag)


@pytest.mark.timing
def test_pool_timeout_raises_sqlalchemy_timeout_error(driver):
    engine = pg_engine(driver, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        with engine.connect():
            with offload.Heartbeat(0.005) as beat:
                started = time.monotonic()
                glet = gevent.spawn(engine.connect)
                glet.join(5)
                waited = time.monotonic() - started
        assert isinstance(glet.exception, sa.exc.TimeoutError), glet.exception
        assert 0.15 < waited < 2, waited
        assert beat.max_lag < 0.1, beat.max_lag
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


def test_orm_session_transactions_and_integrity_error(engine, table, driver):
    class Base(orm.DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        tag: orm.Mapped[str] = orm.mapped_column(unique=True)
        n: orm.Mapped[int | None]

    with orm.Session(engine) as session, session.begin():
        session.add_all([Item(tag=f"t{i}", n=i) for i in range(200)])  # executemany / insertmanyvalues
    with orm.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Item)) == 200
        session.add(Item(tag="t5", n=-1))
        with pytest.raises(sa.exc.IntegrityError) as info:
            session.commit()
        session.rollback()
        assert session.scalar(sa.select(Item.n).where(Item.tag == "t5")) == 5
    errors = pytest.importorskip(driver).errors
    assert isinstance(info.value.orig, errors.UniqueViolation)

    with orm.Session(engine) as session:  # a rolled-back transaction leaves nothing behind
        with session.begin():
            session.add(Item(tag="gone", n=0))
            session.flush()
            session.rollback()
        assert session.scalar(sa.select(sa.func.count()).where(Item.tag == "gone")) == 0


def test_orm_get_costs_two_hops(driver):
    engine = pg_engine(driver, pool_size=1, max_overflow=0)
    try:
        # The execute (rows included) and SQLAlchemy's rollback; the cursor, its
        # close and the pool's reset-on-return rollback (no transaction left)
        # need no I/O, and so no hop: five before.
        assert orm_get_hops(engine, orm) == 2
    finally:
        engine.dispose()


def test_operational_error_carries_the_driver_exception(engine, driver):
    with engine.connect() as conn:
        conn.exec_driver_sql("SET statement_timeout = 50")
        with pytest.raises(sa.exc.OperationalError) as info:
            conn.execute(sa.text("SELECT pg_sleep(2)"))
    assert isinstance(info.value.orig, pytest.importorskip(driver).errors.QueryCanceled)
    assert not info.value.connection_invalidated


def test_killed_backend_invalidates_and_next_checkout_works(engine):
    admin = pg_admin()
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))  # our own session only
            wait_until(lambda: pid not in pg_sessions(admin, engine.application_name))
            with pytest.raises(sa.exc.OperationalError) as info:
                conn.execute(sa.text("SELECT 1"))
            assert info.value.connection_invalidated
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        admin.close()


def test_pre_ping_replaces_a_dead_connection_silently(driver):
    engine = pg_engine(driver, pool_size=1, max_overflow=0, pool_pre_ping=True)
    admin = pg_admin()
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: pid not in pg_sessions(admin, engine.application_name))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        admin.close()
        engine.dispose()


def test_server_side_cursor_streams_in_batches(engine, table):
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (tag, n) SELECT 'r' || g, g FROM generate_series(1, 2500) g")
        )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=500).execute(
            sa.text(f"SELECT n FROM {table} ORDER BY n")
        )
        raw = offload.unwrap(result.cursor)
        assert raw.name, "stream_results must use a named (server-side) cursor"
        total = sum(row.n for row in result)
    assert total == 2500 * 2501 // 2


def test_orm_yield_per(engine, table):
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (tag, n) SELECT 'y' || g, g FROM generate_series(1, 300) g")
        )
    with orm.Session(engine) as session:
        rows = session.execute(sa.text(f"SELECT n FROM {table}").execution_options(yield_per=50))
        assert sum(n for (n,) in rows) == 300 * 301 // 2


def test_dispose_closes_every_connection(engine):
    admin = pg_admin()
    try:
        conns = [engine.connect() for _ in range(3)]
        for conn in conns:
            conn.execute(sa.text("SELECT 1"))
        for conn in conns:
            conn.close()
        assert len(pg_sessions(admin, engine.application_name)) == 3
        engine.dispose()
        assert wait_until(lambda: not pg_sessions(admin, engine.application_name)), (
            "dispose left sessions open"
        )
    finally:
        admin.close()
