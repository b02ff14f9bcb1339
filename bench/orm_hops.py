"""Thread hops, requests/s and CPU per ORM ``session.get`` through ``postgresql+offload_psycopg2://``.

Under ``gevent.monkey.patch_all()``, 50 greenlets each run 40
``with orm.Session(engine) as s: s.get(Item, 7)`` on a pool of 50
connections (no gunicorn, no HTTP: only what the ORM and offload cost).
Prints one line per run: requests/s, lane hops per request (the lanes'
``stats()["submitted"]``), and process CPU (user + system) per request.
``--ab`` alternates, in one process, runs where every call hops (as before
offload.dbapi.quiet) with runs as shipped: on a shared, noisy machine that
compares the two under the same conditions.  ``BENCH_GREENLETS`` and
``BENCH_EACH`` change the 50 x 40.

    PYTHONPATH=. python bench/orm_hops.py [runs] [--ab]

Not one of make bench's sections (its name has no bench_ prefix): a tool for one question.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy import orm  # noqa: E402

from offload.dbapi import lane  # noqa: E402

URL = os.environ.get("BENCH_URL", "postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test")
GREENLETS = int(os.environ.get("BENCH_GREENLETS", "50"))
EACH = int(os.environ.get("BENCH_EACH", "40"))
TABLE = "frameworks_bench_item"  # bench_frameworks.py's table


class Base(orm.DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = TABLE
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Text, nullable=False)


def hops() -> int:
    return sum(session.lane.stats()["submitted"] for session in lane._sessions)


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def one_run(engine) -> tuple[float, float, float]:
    def worker():
        for _ in range(EACH):
            with orm.Session(engine) as s:
                s.get(Item, 7)

    requests = GREENLETS * EACH
    hops0, cpu0, t0 = hops(), cpu(), time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(GREENLETS)], raise_error=True)
    wall = time.perf_counter() - t0
    return requests / wall, (hops() - hops0) / requests, (cpu() - cpu0) / requests * 1e6


def always_hop(session, deferrable=False):
    """``Session.here`` as if no call could skip the lane."""
    session.check()
    return False


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != "--ab"]
    runs = int(args[0]) if args else 3
    shipped = getattr(lane.Session, "here", None)  # None: an offload from before it (every call hops)
    variants = [("every call hops", always_hop), ("as shipped", shipped)]
    if "--ab" not in sys.argv:
        variants = variants[1:]
    engine = sa.create_engine(URL, pool_size=GREENLETS, max_overflow=0, pool_timeout=60)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int primary key, name text not null)"))
        if not conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar():
            conn.execute(
                sa.text(f"INSERT INTO {TABLE} SELECT i, 'item ' || i FROM generate_series(1, 100) AS i")
            )

    # Warm up: open every pooled connection, so that no run pays for connects.
    def warm():
        with orm.Session(engine) as s:
            s.get(Item, 7)
            gevent.sleep(0.1)  # hold the connection while the others open theirs

    gevent.joinall([gevent.spawn(warm) for _ in range(GREENLETS)], raise_error=True)
    for n in range(runs):
        for label, here in variants:
            if here is not None:
                lane.Session.here = here  # type: ignore[method-assign]
            rps, per, cpu_us = one_run(engine)
            print(
                f"run {n + 1} ({label}): {rps:,.0f} requests/s, {per:.2f} hops/request, "
                f"{cpu_us:.0f} us CPU/request"
            )
    engine.dispose()


if __name__ == "__main__":
    main()
