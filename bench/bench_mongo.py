"""offload.mongo against plain PyMongo, on one server, in one run.

Starts nx-27017 (``--db memory``) on a free port, or uses
``OFFLOAD_BENCH_MONGODB_URI``.  Every variant runs in its own interpreter,
because monkey patching cannot be undone:

* iterate 20,000 small documents: offload.mongo with no patching, plain
  PyMongo under ``patch_all()``, plain PyMongo with no gevent at all, and
  offload.mongo under ``patch_all()`` (where it runs inline);
* 100 greenlets x 50 ``find_one``: the same variants (the no-gevent one
  makes its 5,000 calls in sequence).

A 1 ms heartbeat greenlet records the hub's lag in every gevent variant.
Prints one Markdown section.
"""

import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DB = "offload_bench"
DOCS = 20_000
GREENLETS = 100
FIND_ONES = 50
ROUNDS = 3

VARIANTS = {
    "proxy": "offload.mongo, no patching",
    "proxy-4": "offload.mongo, no patching, pool of 4 threads",
    "plain-all": "plain PyMongo, patch_all()",
    "plain": "plain PyMongo, no gevent",
    "proxy-all": "offload.mongo, patch_all() (inline)",
}

CHILD = r"""
import json, sys, time
variant, uri = sys.argv[1], sys.argv[2]
if variant.endswith("-all"):
    from gevent import monkey
    monkey.patch_all()
import pymongo

if variant.startswith("proxy"):
    import offload
    from offload.mongo import MongoClient
    client = MongoClient(uri, **({"pool": offload.ThreadPool(4)} if variant == "proxy-4" else {}))
else:
    client = pymongo.MongoClient(uri)
db = client[DB]
db.command("ping")

def iterate():
    n = 0
    for _ in db.docs.find():
        n += 1
    assert n == DOCS, n

def find_ones(k):
    for j in range(FIND_ONES):
        assert db.one.find_one({"_id": (k + j) % 100}) is not None

def measure(fn):
    # -> (seconds, hub lag p99 or None, CPU seconds of this process, all threads)
    cpu = time.process_time()
    if variant == "plain":
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started, None, time.process_time() - cpu
    import offload
    with offload.Heartbeat(0.001) as beat:
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
    return elapsed, beat.lag(99), time.process_time() - cpu

def fan_out(greenlets=GREENLETS):
    if variant == "plain":
        for k in range(greenlets):
            find_ones(k)
        return
    import gevent
    gevent.joinall([gevent.spawn(find_ones, k) for k in range(greenlets)], raise_error=True)

# Warm up: connections, threads, server caches.
sum(1 for _ in db.docs.find().limit(2000))
fan_out(GREENLETS // 10)
out = {"iterate": [], "find_one": []}
for _ in range(1):  # one round per interpreter: the parent interleaves variants
    if variant != "proxy-4":  # only the find_one fan-out depends on the pool size
        out["iterate"].append(measure(iterate))
    out["find_one"].append(measure(fan_out))
client.close()
print(json.dumps(out))
"""


def start_server():
    """Return (uri, the nx-27017 server we started or None).

    The server is the one the tests use (tests/mongo_server.py), unless
    OFFLOAD_BENCH_MONGODB_URI names another.
    """
    uri = os.environ.get("OFFLOAD_BENCH_MONGODB_URI")
    if uri:
        return uri, None
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from mongo_server import NX27017

    server = NX27017()
    problem = server.start()
    if problem:
        raise RuntimeError(problem)
    return server.uri, server


def load(uri):
    import pymongo

    client = pymongo.MongoClient(uri)
    db = client[DB]
    db.docs.drop()
    db.one.drop()
    db.docs.insert_many([{"i": i, "s": "small", "f": i / 7} for i in range(DOCS)])
    db.one.insert_many([{"_id": i, "v": "x" * 20} for i in range(100)])
    client.close()


def run_variant(variant, uri):
    source = f"DB, DOCS, GREENLETS, FIND_ONES, ROUNDS = {DB!r}, {DOCS}, {GREENLETS}, {FIND_ONES}, {ROUNDS}\n"
    proc = subprocess.run(
        [sys.executable, "-c", source + CHILD, variant, uri],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    if proc.returncode:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    uri, server = start_server()
    try:
        load(uri)
        # Round-robin, the order rotating each round, so that a server that
        # drifts over the run does not favour whichever variant runs first.
        results = {v: {"iterate": [], "find_one": []} for v in VARIANTS}
        order = list(VARIANTS)
        for r in range(ROUNDS):
            for v in order[r:] + order[:r]:
                for scenario, runs in run_variant(v, uri).items():
                    results[v][scenario].extend(runs)
    finally:
        if server is not None:
            server.stop()

    def summary(variant, scenario, ops):
        runs = results[variant][scenario]
        seconds = statistics.median(r[0] for r in runs)
        lags = [r[1] for r in runs if r[1] is not None]
        cpu = statistics.median(r[2] for r in runs) / ops
        return seconds, ops / seconds, (statistics.median(lags) if lags else None), cpu

    table = {
        (v, s): summary(v, s, n)
        for v in VARIANTS
        for s, n in (("iterate", DOCS), ("find_one", GREENLETS * FIND_ONES))
        if results[v][s]
    }
    server_name = "nx-27017 (in memory)" if server is not None else "the server at OFFLOAD_BENCH_MONGODB_URI"

    print("## offload.mongo: cursor iteration and find_one\n")
    print(
        f"Against {server_name} on the same machine, each variant in its own interpreter, "
        f"medians of {ROUNDS} runs (each after a warm-up, variants interleaved). Ratios are "
        "throughput relative to the variant named. Hub lag is the p99 lateness of a 1 ms "
        "heartbeat greenlet during the run.\n"
    )
    print(
        "| scenario | variant | median time | throughput | vs plain, patch_all | vs plain, no gevent "
        "| hub lag p99 | client CPU per op |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scenario, label, unit in (
        ("iterate", f"iterate {DOCS:,} small docs", "docs/s"),
        ("find_one", f"{GREENLETS} greenlets x {FIND_ONES} find_one", "calls/s"),
    ):
        for v, name in VARIANTS.items():
            if (v, scenario) not in table:
                continue
            seconds, rate, lag, cpu = table[(v, scenario)]
            vs_all = rate / table[("plain-all", scenario)][1]
            vs_plain = rate / table[("plain", scenario)][1]
            lag_cell = "n/a (no hub)" if lag is None else f"{lag * 1e3:.2f} ms"
            print(
                f"| {label} | {name} | {seconds * 1e3:,.0f} ms | {rate:,.0f} {unit} "
                f"| {vs_all:.2f}x | {vs_plain:.2f}x | {lag_cell} | {cpu * 1e6:.0f} µs |"
            )
    iterate_vs_all = table[("proxy", "iterate")][1] / table[("plain-all", "iterate")][1]
    iterate_vs_plain = table[("proxy", "iterate")][1] / table[("plain", "iterate")][1]
    find_vs_all = table[("proxy", "find_one")][1] / table[("plain-all", "find_one")][1]
    lag_iterate = table[("proxy", "iterate")][2]
    lag_find = table[("proxy", "find_one")][2]
    inline_vs_all = table[("proxy-all", "find_one")][1] / table[("plain-all", "find_one")][1]
    small_pool_lag = table[("proxy-4", "find_one")][2]
    print("\n| target | measured | |")
    print("|---|---:|---|")
    print(
        "| proxy iteration >= 0.9x plain PyMongo (the slower of patch_all / no gevent taken as "
        f"the worse case: min of both ratios) | {min(iterate_vs_all, iterate_vs_plain):.2f}x "
        f"| {verdict(min(iterate_vs_all, iterate_vs_plain) >= 0.9)} |"
    )
    print(
        f"| 100-greenlet find_one via proxy >= 1x plain PyMongo under patch_all | {find_vs_all:.2f}x "
        f"| {verdict(find_vs_all >= 1.0)} |"
    )
    for what, lag in (("iteration", lag_iterate), ("find_one", lag_find)):
        print(f"| hub lag p99 <= 5 ms, proxy {what} | {lag * 1e3:.2f} ms | {verdict(lag <= 5e-3)} |")
    cpu = {v: table[(v, "find_one")][3] * 1e6 for v in ("proxy", "proxy-4", "plain-all")}
    print(
        "\nThe find_one fan-out is CPU-bound on this machine: the client and nx-27017 (one "
        "Python process) share 2 cores and a system call is costly here, so every microsecond "
        "the client spends is taken from the server. The client CPU column shows the price of "
        f"the thread hop: with the default pool (100 threads, maxPoolSize) the proxy spends "
        f"{cpu['proxy']:.0f} µs of client CPU per call, plain PyMongo under patch_all() "
        f"{cpu['plain-all']:.0f} µs, a pool of 4 threads {cpu['proxy-4']:.0f} µs (wake-ups and GIL "
        "hand-offs among 100 threads cost more than among 4, where workers find the next call "
        "already queued). The throughput ratios move with that and with the server's "
        "run-to-run noise (about +-20%; successive runs of this script put the default proxy "
        "at 0.7x-1.3x plain PyMongo under patch_all()). The proxy's hub lag comes from the same "
        "GIL contention; with a pool of 4 threads the p99 is "
        f"{small_pool_lag * 1e3:.2f} ms. Under patch_all() the proxy runs PyMongo inline: its "
        f"find_one throughput there is {inline_vs_all:.2f}x plain PyMongo's. The proxy's cursors "
        "ask for batches of 1,000 documents when none is set (plain PyMongo lets the server fill "
        "up to 16 MB), so that one worker never holds the GIL decoding a huge batch; nx-27017 "
        "also serves batches of 1,000 faster than one huge batch, which helps the proxy's "
        "iteration figures here."
    )


if __name__ == "__main__":
    main()
