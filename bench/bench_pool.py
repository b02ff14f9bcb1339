"""50 greenlets share 10 PostgreSQL connections: offload.dbapi.ConnectionPool vs psycogreen.

Each greenlet runs ``SELECT 1`` (execute + fetchall) FANOUT_QUERIES times,
borrowing a connection for each query:

- ``offload``: no patching; ``offload.dbapi.ConnectionPool(minconn=10, maxconn=10)``;
- ``psycogreen``: ``patch_all()`` plus psycogreen's wait callback, the 10
  connections lent from a ``gevent.queue.Queue`` and rolled back on return
  (what ConnectionPool's reset does for an open transaction).

Every measurement runs in a fresh interpreter (patching is for good), after
a warm-up round; the variants alternate, round after round, and the ratio
is taken within each round.  Prints one Markdown section.

    python bench/bench_pool.py              # the section
    python bench/bench_pool.py --one offload  # one measurement, queries/s
"""

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DSN = os.environ.get("OFFLOAD_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
GREENLETS, QUERIES, CONNECTIONS = 50, 40, 10
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
VARIANTS = ("offload", "psycogreen")


def one(variant):
    """Queries/s of one round of *variant*, after a warm-up round (in this process)."""
    if variant == "psycogreen":
        from gevent import monkey

        monkey.patch_all()
        import psycogreen.gevent

        psycogreen.gevent.patch_psycopg()
    import gevent
    import psycopg2

    if variant == "offload":
        import offload.dbapi

        # BENCH_RESET=rollback: the pool only rolls back, to see the reset's cost apart.
        reset = {"reset": os.environ["BENCH_RESET"]} if os.environ.get("BENCH_RESET") else {}
        pool = offload.dbapi.ConnectionPool(psycopg2, DSN, minconn=CONNECTIONS, maxconn=CONNECTIONS, **reset)
        borrow = pool.connection
    else:
        from contextlib import contextmanager

        from gevent.queue import Queue

        idle = Queue()
        for _ in range(CONNECTIONS):
            idle.put(psycopg2.connect(DSN))

        @contextmanager
        def borrow():
            conn = idle.get()
            try:
                yield conn
            finally:
                conn.rollback()
                idle.put(conn)

    def worker():
        for _ in range(QUERIES):
            with borrow() as conn:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()

    def round_():
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(worker) for _ in range(GREENLETS)], raise_error=True)
        return GREENLETS * QUERIES / (time.perf_counter() - started)

    round_()  # warm up: connections made, code paths hot
    return round_()


def _measure(variant):
    out = subprocess.run(
        [sys.executable, __file__, "--one", variant],
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def main():
    rates = {v: [] for v in VARIANTS}
    for r in range(ROUNDS):
        for variant in VARIANTS[r % 2 :] + VARIANTS[: r % 2]:  # alternate who goes first
            rates[variant].append(_measure(variant))
    ratios = [o / p for o, p in zip(rates["offload"], rates["psycogreen"], strict=True)]
    ratio = statistics.median(ratios)
    lines = [
        "## offload.dbapi.ConnectionPool: 50 greenlets share 10 connections",
        "",
        f"{GREENLETS} greenlets each run `SELECT 1` (execute + fetchall) {QUERIES} times, borrowing one of "
        f"{CONNECTIONS} PostgreSQL connections for each query. *offload*: no patching, "
        "`offload.dbapi.ConnectionPool`; *psycogreen*: `patch_all()` + psycogreen, the connections lent "
        f"from a `gevent.queue.Queue` and rolled back on return. {ROUNDS} rounds, each measurement in a "
        "fresh interpreter after a warm-up round, the variants alternating; the ratio is the median of the "
        "within-round ratios, with its range.",
        "",
        "| variant | queries/s (median) | range |",
        "|---|---:|---:|",
    ]
    for variant in VARIANTS:
        low, mid, high = min(rates[variant]), statistics.median(rates[variant]), max(rates[variant])
        lines.append(f"| {variant} | {mid:,.0f} | {low:,.0f}-{high:,.0f} |")
    met = "met" if ratio >= 0.6 else "**missed**"
    lines += [
        "",
        "| target | measured | |",
        "|---|---:|---|",
        f"| offload >= 0.6x psycogreen's queries/s | {ratio:.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}) | {met} |",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2])))
    else:
        main()
