"""What a large ProcessPool result costs the caller's hub: lag, memory, time.

Prints one Markdown section.  For results of 10, 50 and 200 MB (``bytes``)
it runs, in a fresh interpreter per size (so that peak RSS is that size's),
ROUNDS calls of ``ProcessPool(1).call(blob, size)`` while a greenlet ticks
every millisecond, and reports the hub lag the ticks saw (p50, p99, max of
all ticks during the calls), the parent's peak RSS growth, and the call's
time (median and range over the rounds).

``--before REF`` measures the same with offload as it was at git REF
(extracted with ``git archive`` into a temporary directory), in the same run,
interleaved size by size: the old codec against the new.  Run with
``python bench/bench_bigresult.py --before b511496``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES_MB = (10, 50, 200)
ROUNDS = 5


def blob(size):
    """*size* bytes, made in the worker process; a negative size: sleep that
    many milliseconds and return nothing (the baseline: the machine's own lag)."""
    if size < 0:
        import time

        time.sleep(-size / 1000)
        return b""
    return b"x" * size


MEASURE = r"""
import json, resource, sys, time
import gevent, offload
from bench_bigresult import blob

size, rounds = int(sys.argv[1]), int(sys.argv[2])
pool = offload.ProcessPool(1)
pool.call(blob, 1)
lags, times = [], []
ticking = [False]
def heartbeat():
    while True:
        started = time.monotonic()
        gevent.sleep(0.001)
        if ticking[0]:
            lags.append(time.monotonic() - started - 0.001)
beat = gevent.spawn(heartbeat)
gevent.sleep(0.01)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(rounds):
    ticking[0] = True
    started = time.monotonic()
    value = pool.call(blob, size)
    times.append(time.monotonic() - started)
    ticking[0] = False
    assert len(value) == max(size, 0)
    del value
    gevent.sleep(0.05)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
beat.kill()
pool.shutdown()
print(json.dumps({"lags": lags, "times": times, "peak_kb": peak}))
"""


def _measure(tree, size_mb, size=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((tree, HERE)))
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(size_mb << 20 if size is None else size), str(ROUNDS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _quantile(values, q):
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _row(label, size_mb, got):
    lags = [lag * 1000 for lag in got["lags"]] or [0.0]
    times = [t * 1000 for t in got["times"]]
    return (
        f"| {label} | {size_mb} | {_quantile(lags, 0.5):.2f} | {_quantile(lags, 0.99):.1f} | "
        f"{max(lags):.1f} | {got['peak_kb'] / 1024:.0f} | "
        f"{statistics.median(times):.0f} ({min(times):.0f}-{max(times):.0f}) |"
    )


def _extract(ref, into):
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "offload"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git ref of offload to measure alongside this tree")
    options = parser.parse_args()
    trees = [("this tree", ROOT)]
    with tempfile.TemporaryDirectory() as old:
        if options.before:
            _extract(options.before, old)
            trees.insert(0, (f"before ({options.before})", old))
        rows = []
        for i, size_mb in enumerate(SIZES_MB):
            order = trees if i % 2 == 0 else trees[::-1]  # neither always runs first
            results = {label: _measure(tree, size_mb) for label, tree in order}
            rows += [_row(label, size_mb, results[label]) for label, _ in trees]
        rows.append(_row("baseline: 300 ms sleep, no payload", 0, _measure(ROOT, 0, size=-300)))
    print("## Processes: large results and the caller's hub\n")
    print(
        f"`ProcessPool(1).call(blob, size)` returning `bytes`, {ROUNDS} rounds per size, each size in "
        "a fresh interpreter; a greenlet ticks every 1 ms meanwhile.  Lag: how late its ticks were "
        "during the calls (ms); peak: the parent's max RSS growth (MB); time: median (range) of the "
        "call (ms).  The baseline row is a call of no payload: the lag this loaded machine adds by "
        "itself.\n"
    )
    print("| codec | MB | lag p50 | lag p99 | lag max | peak MB | time ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
