"""What the SQLAlchemy tests share: engines on the real servers, named so that
only our own sessions are ever looked at or terminated."""

import time
import uuid
from contextlib import contextmanager

import gevent
import pytest
import services

import offload

sa = pytest.importorskip("sqlalchemy")

PG_URLS = {
    "psycopg2": "postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test",
    "psycopg": "postgresql+offload_psycopg://postgres@127.0.0.1:5432/test",
}
MYSQL_URLS = {
    "pymysql": "mysql+offload_pymysql://root@127.0.0.1:3306/test",
    "mysqldb": "mysql+offload_mysqldb://root@127.0.0.1:3306/test",
}


def unique(prefix="frameworks"):
    """A table or application name no other test or helper uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def pg_engine(driver, **kwargs):
    """An engine of the offload dialect for *driver*, tagged with its own application_name."""
    pytest.importorskip(driver)
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL at 127.0.0.1:5432")
    app = unique("frameworks_sqla")
    connect_args = {"application_name": app, "connect_timeout": 5}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = sa.create_engine(PG_URLS[driver], connect_args=connect_args, **kwargs)
    engine.application_name = app
    return engine


def mysql_engine(driver, **kwargs):
    pytest.importorskip({"pymysql": "pymysql", "mysqldb": "MySQLdb"}[driver])
    if not services.port_open("127.0.0.1", 3306):
        services.unavailable("MariaDB at 127.0.0.1:3306")
    connect_args = {"connect_timeout": 5}
    return sa.create_engine(MYSQL_URLS[driver], connect_args=connect_args, **kwargs)


def pg_admin():
    """A plain psycopg2 connection (autocommit) for looking at and terminating our sessions."""
    psycopg2 = pytest.importorskip("psycopg2")
    conn = psycopg2.connect(services.POSTGRES_DSN, connect_timeout=5)
    conn.autocommit = True
    return conn


def pg_sessions(admin, application_name):
    """The backend pids of the sessions with *application_name*."""
    with admin.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,))
        return sorted(row[0] for row in cur.fetchall())


def wait_until(predicate, timeout=10.0, step=0.05):
    """Poll *predicate* until it is true or *timeout* passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def overlap(engine, sql, n=3):
    """Run *sql* (returning one row, value in column 1) in *n* greenlets at once.

    Returns (values, elapsed seconds, the hub's worst lag).
    """

    def one():
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).one()[1]

    with offload.Heartbeat(0.005) as beat:
        started = time.monotonic()
        glets = [gevent.spawn(one) for _ in range(n)]
        gevent.joinall(glets, raise_error=True)
        elapsed = time.monotonic() - started
    return [g.value for g in glets], elapsed, beat.max_lag


@contextmanager
def scratch_table(engine, columns):
    """A table of *columns* (SQL) with a unique name, dropped afterwards."""
    name = unique()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} ({columns})")
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def orm_get_hops(engine, orm):
    """The thread hops one ORM ``session.get`` costs on *engine* (a pool of one connection)."""
    with scratch_table(engine, "id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL") as table:

        class Base(orm.DeclarativeBase):
            pass

        class Item(Base):
            __tablename__ = table
            id = sa.Column(sa.Integer, primary_key=True)
            name = sa.Column(sa.String(40), nullable=False)

        with orm.Session(engine) as session, session.begin():
            session.add(Item(id=7, name="seven"))
        with engine.connect() as conn:
            lane = conn.connection.dbapi_connection._offload_pool  # the pool's only connection
        before = lane.stats()["submitted"]
        with orm.Session(engine) as session:
            assert session.get(Item, 7).name == "seven"
        return lane.stats()["submitted"] - before
