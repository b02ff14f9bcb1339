"""offload.sqlalchemy against the real MariaDB (PyMySQL and mysqlclient) and sqlite3."""

import pytest
from sqla_helpers import mysql_engine, orm_get_hops, overlap, sa, scratch_table

import offload
from offload.sqlalchemy import CooperativeQueuePool

orm = pytest.importorskip("sqlalchemy.orm")


@pytest.fixture(params=["pymysql", "mysqldb"])
def driver(request):
    return request.param


@pytest.fixture
def engine(driver):
    engine = mysql_engine(driver, pool_size=3, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine):
    with scratch_table(engine, "id INTEGER PRIMARY KEY AUTO_INCREMENT, tag VARCHAR(40) UNIQUE") as name:
        yield name


def test_pymysql_orm_get_costs_three_hops():
    engine = mysql_engine("pymysql", pool_size=1, max_overflow=0)
    try:
        # The execute and both rollbacks (PyMySQL always sends ROLLBACK); the
        # cursor and the close of its buffered result need no hop: five before.
        assert orm_get_hops(engine, orm) == 3
    finally:
        engine.dispose()


@pytest.mark.timing
def test_sleeps_overlap_with_a_live_hub(engine, driver):
    assert engine.dialect.driver == f"offload_{driver}"
    assert isinstance(engine.pool, CooperativeQueuePool)

    values, elapsed, lag = overlap(engine, "SELECT SLEEP(0.3), 5")
    assert values == [5, 5, 5]
    assert elapsed < 0.8, elapsed  # serial would be 0.9 s
    assert lag < 0.1, lag


def test_orm_and_integrity_error(engine, table, driver):
    class Base(orm.DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        tag: orm.Mapped[str] = orm.mapped_column(sa.String(40), unique=True)

    with orm.Session(engine) as session, session.begin():
        session.add_all([Item(tag=f"m{i}") for i in range(50)])
    with orm.Session(engine) as session:
        session.add(Item(tag="m1"))
        with pytest.raises(sa.exc.IntegrityError) as info:
            session.commit()
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Item)) == 50
    module = pytest.importorskip({"pymysql": "pymysql", "mysqldb": "MySQLdb"}[driver])
    assert isinstance(info.value.orig, module.IntegrityError)


def test_killed_connection_invalidates_and_next_checkout_works(engine):
    with engine.connect() as conn:
        victim = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        with engine.connect() as admin:
            admin.exec_driver_sql(f"KILL {int(victim)}")  # our own connection only
        with pytest.raises(sa.exc.OperationalError) as info:
            conn.execute(sa.text("SELECT 1"))
        assert info.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar() != victim


def test_pre_ping_and_server_side_cursor(driver, table):
    engine = mysql_engine(driver, pool_size=1, max_overflow=0, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO {table} (tag) VALUES " + ",".join(f"('s{i}')" for i in range(1000)))
            )
        with engine.connect() as conn:
            victim = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        with mysql_engine(driver).connect() as admin:
            admin.exec_driver_sql(f"KILL {int(victim)}")
        with engine.connect() as conn:  # pre_ping finds it dead and reconnects silently
            assert conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar() != victim
            result = conn.execution_options(stream_results=True).execute(sa.text(f"SELECT id FROM {table}"))
            assert "SSCursor" in type(offload.unwrap(result.cursor)).__name__
            assert len(result.all()) == 1000
    finally:
        engine.dispose()


@pytest.mark.timing
def test_sqlite_file_database_keeps_the_hub_free(tmp_path):
    engine = sa.create_engine(f"sqlite+offload_pysqlite:///{tmp_path / 'frameworks.db'}")
    assert isinstance(engine.pool, CooperativeQueuePool)
    heavy = sa.text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000) "
        "SELECT count(*) FROM c"
    )

    class Base(orm.DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        text: orm.Mapped[str]

    try:
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session, session.begin():
            session.add_all([Note(text=f"n{i}") for i in range(100)])
        with engine.connect() as conn:
            result = offload.probe(conn.execute, heavy)
        assert result.value.scalar() == 4000000
        assert result.elapsed > 0.2, result  # long enough that running it inline would show
        assert result.max_lag < result.elapsed / 3, result  # inline, the hub would stall the whole time
        with orm.Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Note)) == 100
            assert session.scalar(sa.select(Note.text).where(Note.text.regexp_match("^n9[0-9]$")).limit(1))
    finally:
        engine.dispose()


def test_sqlite_memory_database_keeps_singleton_pool():
    engine = sa.create_engine("sqlite+offload_pysqlite://")
    assert isinstance(engine.pool, sa.pool.SingletonThreadPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 40 + 2")).scalar() == 42
    engine.dispose()
