"""What offload is for, in five seconds.

A heartbeat greenlet ticks every millisecond and records how late each tick
is: that lateness is how long the hub was frozen.  Then 50 greenlets each run
a blocking call -- a sqlite3 query and the *unpatched* ``time.sleep``, C code
that never yields to gevent, monkey patching or not -- first directly, then
through ``offload.call``.  Directly, every greenlet and the heartbeat wait in
line behind each call; through offload, the calls run on real threads and
the hub keeps ticking.  After the table the demo says what each row shows,
with the figures of this run.
"""

import os
import sqlite3
import textwrap
import time

import gevent
from gevent.monkey import get_original

import offload

GREENLETS = 50
THREADS = 10
QUERY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 25000) SELECT sum(x) FROM c"


def sqlite_query():
    connection = sqlite3.connect(":memory:")
    try:
        return connection.execute(QUERY).fetchone()[0]
    finally:
        connection.close()


SLEEP = 0.02
_c_sleep = get_original("time", "sleep")  # the C sleep, even if time is patched


def unpatched_sleep():
    _c_sleep(SLEEP)


def run(call, fn):
    """Run *fn* once in each of GREENLETS greenlets via *call*; measure."""
    with offload.Heartbeat(0.001) as heartbeat:
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(call, fn) for _ in range(GREENLETS)], raise_error=True)
        elapsed = time.perf_counter() - started
    return elapsed, heartbeat


def direct(fn):
    return fn()


def main():
    pool = offload.ThreadPool(THREADS)
    rows = {}
    for label, fn in (("sqlite3 query", sqlite_query), ("time.sleep (unpatched)", unpatched_sleep)):
        fn()  # warm up
        pool.call(fn)
        for how, call in (("direct", direct), ("offload", pool.call)):
            elapsed, hb = run(call, fn)
            rows[label, how] = (GREENLETS / elapsed, elapsed, hb.lag(50), hb.lag(99), hb.max_lag)
    pool.shutdown()

    print(f"{GREENLETS} greenlets each make one blocking call; a 1 ms heartbeat measures hub lag.\n")
    header = ("call", "how", "calls/s", "wall s", "lag p50 ms", "lag p99 ms", "lag max ms")
    print(f"{header[0]:<24}{header[1]:<9}" + "".join(f"{h:>12}" for h in header[2:]))
    for (label, how), (rate, elapsed, p50, p99, worst) in rows.items():
        print(
            f"{label:<24}{how:<9}{rate:>12.0f}{elapsed:>12.3f}"
            f"{p50 * 1e3:>12.1f}{p99 * 1e3:>12.1f}{worst * 1e3:>12.1f}"
        )
    print()
    print(explain(rows))


def explain(rows):
    """What each row of the table shows, with this run's figures."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sleep_direct = rows["time.sleep (unpatched)", "direct"]
    sleep_offload = rows["time.sleep (unpatched)", "offload"]
    sql_direct, sql_offload = rows["sqlite3 query", "direct"], rows["sqlite3 query", "offload"]
    rate, wall, worst = 0, 1, 4  # columns of a row
    ms = 1e3
    if sql_offload[rate] < sql_direct[rate]:
        sql_rate = f"so here offload made fewer calls/s than direct ({sql_offload[rate]:.0f} against "
        sql_rate += f"{sql_direct[rate]:.0f})."
    else:
        sql_rate = (
            f"so offload does not make such calls faster as a rule (here {sql_offload[rate]:.0f} against "
            f"{sql_direct[rate]:.0f} calls/s: sqlite3 lets go of the GIL while a query runs, so on {cpus} "
            "CPUs two queries could overlap)."
        )
    paragraphs = [
        "columns: calls/s and wall s are for all 50 calls; lag p50, p99 and max say how late the "
        "heartbeat's ticks were, that is how long the hub (and every greenlet in it) was frozen.",
        "direct: each call runs on the hub itself, so the 50 run one after another and the heartbeat "
        "-- like every other greenlet -- waits for all of them: its worst tick is about as late as "
        "the whole run is long.",
        f"time.sleep (unpatched): a call that waits without using the CPU ({SLEEP * ms:.0f} ms each). "
        f"Through offload {THREADS} threads wait at once: "
        f"{sleep_offload[rate] / sleep_direct[rate]:.1f}x the calls/s of direct, and the hub's worst "
        f"tick was {sleep_offload[worst] * ms:.1f} ms late instead of {sleep_direct[worst] * ms:.0f} ms.",
        f"sqlite3 query: a short C call that uses the CPU ({sql_direct[wall] / GREENLETS * ms:.1f} ms "
        f"each). More threads cannot make CPU work faster on {cpus} CPU(s), and each call through "
        "offload also pays a hop to a worker thread and back, the threads taking turns at the GIL; "
        f"{sql_rate} Speed is not what offload buys here: the lag column is. Directly the hub froze "
        f"for {sql_direct[worst] * ms:.0f} ms; through offload its worst tick was "
        f"{sql_offload[worst] * ms:.1f} ms late, so every other greenlet (requests, heartbeats, "
        'timeouts) kept running while the queries did. For CPU-heavy pure-Python work, pool="process" '
        "adds CPUs.",
    ]
    wrapped = (textwrap.fill(p, width=84, initial_indent="* ", subsequent_indent="  ") for p in paragraphs)
    return "What the rows show:\n\n" + "\n\n".join(wrapped)


if __name__ == "__main__":
    main()
