"""Core benchmark: offload's ThreadPool against gevent, eventlet and asyncio.

Measured side by side in one run (eventlet and asyncio each in a subprocess
of their own, so neither's loop disturbs the others):

* round trip: one greenlet calls a no-op in the pool, sequentially, in two
  states of the machine: *awake* (calls back to back, right after the same
  implementation ran, so the CPUs are out of their idle states) and *from
  idle* (each call after a 20 ms pause, so the cores that run it wake first);
* throughput: 50 greenlets share one pool of 10 threads, no-op calls;
* fan-out: 1000 greenlets each offload a 10 ms blocking call onto 100
  threads (ideal wall time 0.1 s), while a 1 ms heartbeat measures hub lag.
  The heartbeat starts before the greenlets are created, so the lag figures
  include the start-up: creating the greenlets and running each one up to
  its call, most of which is gevent's own cost (measured as a baseline with
  greenlets that do nothing).  "Start-up" is the time until the last call is
  submitted; the "after start-up" figures look only at what follows it.

Each figure is the median over ROUNDS rounds.  The order in which the
implementations run rotates from round to round, so none is always measured
right after another's work; round-trip ratios are taken within each round
and reported as their median and range.
"""

import json
import statistics
import subprocess
import sys
import time

ROUNDS = 6
ROUND_TRIPS = 3000
IDLE_TRIPS, IDLE_PAUSE = 100, 0.02
GREENLETS, CALLS_EACH, SMALL_POOL = 50, 400, 10
FAN_OUT, BIG_POOL, BLOCK = 1000, 100, 0.01
IDEAL = FAN_OUT * BLOCK / BIG_POOL


def _blocking():
    from offload._core import native as _native

    _native.sleep(BLOCK)


def _noop():
    return None


def _summary(samples):
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


# -- gevent-based implementations (this process) --------------------------


def _gevent_runs():
    import gevent
    from gevent.threadpool import ThreadPool as GeventThreadPool

    import offload

    def round_trip(call):
        samples = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            call(_noop)
            samples.append(time.perf_counter() - started)
        return samples

    def idle_trip(call):
        samples = []
        for _ in range(IDLE_TRIPS):
            time.sleep(IDLE_PAUSE)  # unpatched: the hub, and the workers, sleep too
            started = time.perf_counter()
            call(_noop)
            samples.append(time.perf_counter() - started)
        return samples

    def throughput(call):
        def one():
            for _ in range(CALLS_EACH):
                call(_noop)

        started = time.perf_counter()
        gevent.joinall([gevent.spawn(one) for _ in range(GREENLETS)])
        return GREENLETS * CALLS_EACH / (time.perf_counter() - started)

    def fan_out(call):
        submitted = [0, 0.0]

        def job():
            submitted[0] += 1
            if submitted[0] == FAN_OUT:
                submitted[1] = time.perf_counter()
            return call(_blocking)

        with offload.Heartbeat(0.001) as hb:
            started = time.perf_counter()
            gevent.joinall([gevent.spawn(job) for _ in range(FAN_OUT)])
            elapsed = time.perf_counter() - started
        return elapsed, submitted[1] - started, hb.lags, [t - started for t in hb.times]

    def start_burst():
        """Wall time to create and first-run FAN_OUT greenlets that do nothing, and
        of the loop that creates them alone (the main greenlet's, with no switch)."""
        started = time.perf_counter()
        glets = [gevent.spawn(_noop) for _ in range(FAN_OUT)]
        spawned = time.perf_counter()
        gevent.joinall(glets)
        return time.perf_counter() - started, spawned - started

    hub_pool = gevent.get_hub().threadpool
    hub_pool.maxsize = SMALL_POOL
    implementations = {
        "offload.ThreadPool.call": (offload.ThreadPool(SMALL_POOL).call, offload.ThreadPool(BIG_POOL).call),
        "gevent ThreadPool.apply": (GeventThreadPool(SMALL_POOL).apply, GeventThreadPool(BIG_POOL).apply),
        "gevent hub.threadpool.apply": (hub_pool.apply, None),
    }
    results = {name: [] for name in implementations}
    bursts = []
    for small, big in implementations.values():  # warm up: start every thread
        throughput(small)
        if big is not None:
            fan_out(big)
    names = list(implementations)
    for r in range(ROUNDS):
        bursts.append(start_burst())
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            small, big = implementations[name]
            rt = round_trip(small)
            idle = idle_trip(small)
            tp = throughput(small)
            fo = fan_out(big) if big is not None else None
            results[name].append((_summary(rt), tp, fo and _fan_figures(*fo), _summary(idle)))
    return results, (statistics.median(b[0] for b in bursts), statistics.median(b[1] for b in bursts))


def _fan_figures(elapsed, startup, lags, times):
    """Wall, start-up, lag p50/p99/max, and lag p99 of the ticks after start-up."""
    from offload.heartbeat import percentile

    after = [lag for lag, at in zip(lags, times, strict=True) if at - lag > startup]
    worst = max(lags, default=0.0)
    return elapsed, startup, percentile(lags, 50), percentile(lags, 99), worst, percentile(after, 99)


# -- eventlet and asyncio (each in its own subprocess) ---------------------

EVENTLET = r"""
import json, os, sys, time
os.environ["EVENTLET_THREADPOOL_SIZE"] = str(BIG_POOL)
import eventlet
from eventlet import tpool
def noop(): return None
def blocking(): time.sleep(BLOCK)
def heartbeat(lags, times, stop):
    due = time.perf_counter() + 0.001
    while not stop:
        eventlet.sleep(0.001)
        now = time.perf_counter(); lags.append(max(0.0, now - due)); times.append(now); due = now + 0.001
def round_trip():
    s = []
    for _ in range(ROUND_TRIPS):
        t = time.perf_counter(); tpool.execute(noop); s.append(time.perf_counter() - t)
    return s
def throughput():
    def one():
        for _ in range(CALLS_EACH): tpool.execute(noop)
    t = time.perf_counter()
    pool = eventlet.GreenPool(GREENLETS)
    for _ in range(GREENLETS): pool.spawn(one)
    pool.waitall()
    return GREENLETS * CALLS_EACH / (time.perf_counter() - t)
def fan_out():
    lags, times, stop, submitted = [], [], [], [0, 0.0]
    def job():
        submitted[0] += 1
        if submitted[0] == FAN_OUT:
            submitted[1] = time.perf_counter()
        return tpool.execute(blocking)
    hb = eventlet.spawn(heartbeat, lags, times, stop)
    eventlet.sleep(0)
    t = time.perf_counter()
    pool = eventlet.GreenPool(FAN_OUT)
    for _ in range(FAN_OUT): pool.spawn(job)
    pool.waitall()
    elapsed = time.perf_counter() - t
    stop.append(1); hb.wait()
    return elapsed, submitted[1] - t, lags, [x - t for x in times]
throughput(); fan_out()
print(json.dumps([[round_trip(), throughput(), fan_out()] for _ in range(ROUNDS)]))
"""

ASYNCIO = r"""
import asyncio, json, time
from concurrent.futures import ThreadPoolExecutor
def noop(): return None
def blocking(): time.sleep(BLOCK)
async def heartbeat(lags, times):
    due = time.perf_counter() + 0.001
    while True:
        await asyncio.sleep(0.001)
        now = time.perf_counter(); lags.append(max(0.0, now - due)); times.append(now); due = now + 0.001
async def main():
    loop = asyncio.get_running_loop()
    small, big = ThreadPoolExecutor(SMALL_POOL), ThreadPoolExecutor(BIG_POOL)
    async def round_trip():
        loop.set_default_executor(small)
        s = []
        for _ in range(ROUND_TRIPS):
            t = time.perf_counter(); await asyncio.to_thread(noop); s.append(time.perf_counter() - t)
        return s
    async def throughput():
        async def one():
            for _ in range(CALLS_EACH): await asyncio.to_thread(noop)
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(GREENLETS)))
        return GREENLETS * CALLS_EACH / (time.perf_counter() - t)
    async def fan_out():
        lags, times = [], []
        hb = asyncio.create_task(heartbeat(lags, times))
        await asyncio.sleep(0)
        t = time.perf_counter()
        calls = [loop.run_in_executor(big, blocking) for _ in range(FAN_OUT)]
        submitted = time.perf_counter()
        await asyncio.gather(*calls)
        elapsed = time.perf_counter() - t
        hb.cancel()
        return elapsed, submitted - t, lags, [x - t for x in times]
    loop.set_default_executor(small)
    await throughput(); await fan_out()
    out = []
    for _ in range(ROUNDS):
        out.append([await round_trip(), await throughput(), await fan_out()])
    print(json.dumps(out))
asyncio.run(main())
"""


def _subprocess_runs(source):
    constants = "\n".join(
        f"{k} = {v!r}" for k, v in globals().items() if k.isupper() and isinstance(v, (int, float))
    )
    proc = subprocess.run(
        [sys.executable, "-c", constants + "\n" + source], capture_output=True, text=True, timeout=600
    )
    if proc.returncode:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
    rounds = [(_summary(rt), tp, _fan_figures(*fo), None) for rt, tp, fo in json.loads(proc.stdout)]
    return rounds, None


def _ratio_range(ours, theirs, pick):
    """Median and range of the per-round ratios ours/theirs of pick(round)."""
    ratios = sorted(pick(a) / pick(b) for a, b in zip(ours, theirs, strict=True))
    return statistics.median(ratios), ratios[0], ratios[-1]


def _medians(rounds):
    rt50 = statistics.median(r[0][0] for r in rounds)
    rt99 = statistics.median(r[0][1] for r in rounds)
    tp = statistics.median(r[1] for r in rounds)
    fan = [r[2] for r in rounds if r[2] is not None]
    if not fan:
        return rt50, rt99, tp, None
    return rt50, rt99, tp, tuple(statistics.median(f[i] for f in fan) for i in range(6))


INSTR_CALLS = 3000
INSTR = r"""
import sys, gevent, offload
from gevent.threadpool import ThreadPool as G
def noop(): return None
call = offload.ThreadPool(10).call if sys.argv[1] == "offload" else G(10).apply
for _ in range(200): call(noop)
for _ in range(int(sys.argv[2])): call(noop)
"""


def _instructions():
    """(offload, gevent) instructions per round trip, or None without valgrind."""
    import re
    import shutil
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("offload", "gevent"):
            for n in (0, INSTR_CALLS):
                proc = subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", sys.executable, "-c",
                     INSTR, which, str(n)],
                    capture_output=True, text=True, timeout=900,
                )  # fmt: skip
                found = re.search(r"Collected : (\d+)", proc.stderr)
                if found is None:
                    return None
                counts[which, n] = int(found.group(1))
    return tuple((counts[w, INSTR_CALLS] - counts[w, 0]) / INSTR_CALLS for w in ("offload", "gevent"))


def main():
    runs, (burst, spawn_loop) = _gevent_runs()
    rows = {name: _medians(rounds) for name, rounds in runs.items()}
    notes = []
    for name, source in (("eventlet tpool.execute", EVENTLET), ("asyncio.to_thread", ASYNCIO)):
        rounds, error = _subprocess_runs(source)
        if rounds is None:
            notes.append(f"{name}: not measured ({error})")
        else:
            rows[name] = _medians(rounds)

    ours, gevent_pool = rows["offload.ThreadPool.call"], rows["gevent ThreadPool.apply"]
    our_rounds, gevent_rounds = runs["offload.ThreadPool.call"], runs["gevent ThreadPool.apply"]
    awake = _ratio_range(our_rounds, gevent_rounds, lambda r: r[0][0])
    idle = _ratio_range(our_rounds, gevent_rounds, lambda r: r[3][0])
    idle_p50 = {name: statistics.median(r[3][0] for r in rounds) for name, rounds in runs.items()}
    tp_ratio = ours[2] / gevent_pool[2]
    fan_ratio = ours[3][0] / IDEAL
    startup, lag_p99, after_p99 = ours[3][1], ours[3][3], ours[3][5]

    print("## Core: round trip, throughput, fan-out\n")
    print(
        f"Medians of {ROUNDS} rounds, the order of implementations rotating. Round trip: one greenlet, "
        f"{ROUND_TRIPS} sequential no-op calls back to back (*awake*), and {IDLE_TRIPS} each after a "
        f"{IDLE_PAUSE * 1e3:.0f} ms pause (*from idle*). "
        f"Throughput: {GREENLETS} greenlets x {CALLS_EACH} no-op calls on a pool of {SMALL_POOL} threads. "
        f"Fan-out: {FAN_OUT} greenlets each offload a {BLOCK * 1e3:.0f} ms C-level sleep onto "
        f"{BIG_POOL} threads (ideal {IDEAL:.2f} s) while a 1 ms heartbeat records hub lag; "
        "*start-up* is the time until the last greenlet has submitted its call, and the last "
        "column looks only at the ticks due after it.\n"
    )
    print(
        "| implementation | round trip p50 µs | p99 µs | from idle p50 µs | calls/s (50 greenlets) | "
        "fan-out wall s | "
        "x ideal | start-up ms | lag p50 ms | lag p99 ms | lag max ms | lag p99 after start-up ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (rt50, rt99, tp, fan) in rows.items():
        if fan is None:
            fan_cells = " | ".join("–" * 7)
        else:
            wall, start, p50, p99, worst, after = fan
            fan_cells = (
                f"{wall:.3f} | {wall / IDEAL:.2f} | {start * 1e3:.1f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | "
                f"{worst * 1e3:.1f} | {after * 1e3:.2f}"
            )
        idle_cell = f"{idle_p50[name] * 1e6:.1f}" if name in idle_p50 else "–"
        print(f"| {name} | {rt50 * 1e6:.1f} | {rt99 * 1e6:.1f} | {idle_cell} | {tp:,.0f} | {fan_cells} |")
    print()

    def verdict(ok):
        return "met" if ok else "**missed**"

    print("| target | measured | |")
    print("|---|---:|---|")
    for state, (mid, low, high) in (("awake", awake), ("from idle", idle)):
        print(
            f"| round trip <= 0.6x gevent ThreadPool.apply, {state} (per-round ratios) | "
            f"{mid:.2f}x ({low:.2f}-{high:.2f}) | {verdict(mid <= 0.6)} |"
        )
    print(f"| 50-greenlet throughput >= 8x gevent's | {tp_ratio:.1f}x | {verdict(tp_ratio >= 8)} |")
    print(f"| 1000 x 10 ms within 1.2x of ideal | {fan_ratio:.2f}x | {verdict(fan_ratio <= 1.2)} |")
    print(f"| heartbeat p99 lag <= 2 ms, fan-out | {lag_p99 * 1e3:.2f} ms | {verdict(lag_p99 <= 2e-3)} |")
    print(f"| the same, after start-up | {after_p99 * 1e3:.2f} ms | {verdict(after_p99 <= 2e-3)} |")
    print(
        f"\nWhere the fan-out time goes: gevent alone needs {burst * 1e3:.1f} ms to create, run and "
        f"join {FAN_OUT} greenlets that do nothing; offload's start-up was {startup * 1e3:.1f} ms, "
        f"the hub running those same greenlets up to their calls. The lag figures over the whole run "
        "include that start-up, during which the hub is busy starting greenlets and the 100 workers it "
        "wakes compete with it for the GIL; the last column shows the hub once every call is submitted. "
        f"The loop that creates the {FAN_OUT} greenlets (`[gevent.spawn(job) for ...]`, in the main "
        f"greenlet, which does not switch while it runs) alone took {spawn_loop * 1e3:.1f} ms: no "
        "heartbeat can fire meanwhile, whatever the pool, so the lag over the whole run cannot be "
        "below it."
    )
    instructions = _instructions()
    if instructions:
        ours_i, gevent_i = instructions
        print(
            f"\nInstructions per round trip (callgrind, {INSTR_CALLS} no-op calls, start-up subtracted; "
            f"repeatable whatever else the machine does): offload {ours_i / 1e3:.1f}k, gevent "
            f"ThreadPool.apply {gevent_i / 1e3:.1f}k ({ours_i / gevent_i:.2f}x). Wall time is mostly "
            "the wake-ups (a futex for the worker, the loop's eventfd for the hub, and the GIL "
            "hand-offs), which both pay alike."
        )
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
