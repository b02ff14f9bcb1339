"""What offload is for, in five seconds.

A heartbeat greenlet ticks every millisecond and records how late each tick
is: that lateness is how long the hub was frozen.  Then 50 greenlets each run
a blocking call -- a sqlite3 query and the *unpatched* ``time.sleep``, C code
that never yields to gevent, monkey patching or not -- first directly, then
through ``offload.call``.  Directly, every greenlet and the heartbeat wait in
line behind each call; through offload, the calls run on real threads and
the hub keeps ticking.
"""

import sqlite3
import time

import gevent

import offload
from offload._core import native as _native

GREENLETS = 50
QUERY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 25000) SELECT sum(x) FROM c"


def sqlite_query():
    connection = sqlite3.connect(":memory:")
    try:
        return connection.execute(QUERY).fetchone()[0]
    finally:
        connection.close()


def unpatched_sleep():
    _native.sleep(0.02)


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
    pool = offload.ThreadPool(10)
    rows = []
    for label, fn in (("sqlite3 query", sqlite_query), ("time.sleep (unpatched)", unpatched_sleep)):
        fn()  # warm up
        pool.call(fn)
        for how, call in (("direct", direct), ("offload", pool.call)):
            elapsed, hb = run(call, fn)
            rows.append((label, how, GREENLETS / elapsed, elapsed, hb.lag(50), hb.lag(99), hb.max_lag))
    pool.shutdown()

    print(f"{GREENLETS} greenlets each make one blocking call; a 1 ms heartbeat measures hub lag.\n")
    header = ("call", "how", "calls/s", "wall s", "lag p50 ms", "lag p99 ms", "lag max ms")
    print(f"{header[0]:<24}{header[1]:<9}" + "".join(f"{h:>12}" for h in header[2:]))
    for label, how, rate, elapsed, p50, p99, worst in rows:
        print(
            f"{label:<24}{how:<9}{rate:>12.0f}{elapsed:>12.3f}"
            f"{p50 * 1e3:>12.1f}{p99 * 1e3:>12.1f}{worst * 1e3:>12.1f}"
        )
    print(
        "\nDirect calls run one after another on the hub: the heartbeat (and every other"
        "\ngreenlet) waits for each.  Through offload they run on 10 real threads while the"
        "\nhub keeps ticking every millisecond."
    )


if __name__ == "__main__":
    main()
