"""The core's promises, checked in every monkey-patching mode.

Each scenario runs in a fresh interpreter (tests/modes.py): patching is global
and cannot be undone.  Blocking is done with the *unpatched* ``time.sleep``
(``offload._core.native.sleep``), a C-level call that never yields to gevent.
"""

import modes
import pytest

BEHAVIOUR = r"""
import contextvars, sys, time, traceback
import gevent
import offload
from offload import ThreadPool
from offload._core import native as _native

pool = ThreadPool(4)
main = _native.get_ident()

# 1. real OS threads, never the hub's
idents = {g.value for g in gevent.joinall([gevent.spawn(pool.call, _native.get_ident) for _ in range(8)])}
print("real_threads=", main not in idents and len(idents) >= 1)

# 2. only the caller waits: 4 x 0.2 s of C-level blocking overlap, hub ticks
with offload.Heartbeat(0.005) as hb:
    t = time.perf_counter()
    gevent.joinall([gevent.spawn(pool.call, _native.sleep, 0.2) for _ in range(4)])
    elapsed = time.perf_counter() - t
print("overlap_elapsed=", elapsed)
print("ticks=", len(hb.lags))
print("max_lag=", hb.max_lag)
# hub.join returns when idle, and waits while a call is in flight
t = time.perf_counter(); gevent.get_hub().join(); print("join_idle=", time.perf_counter() - t)
g = gevent.spawn(pool.call, _native.sleep, 0.2)
gevent.sleep(0.01)
t = time.perf_counter(); gevent.get_hub().join(); print("join_busy=", time.perf_counter() - t, g.dead)

# 3. a plain OS thread, a greenlet on another thread's hub, a nested call
def in_thread(fn):
    box, done = [], _native.allocate_lock()
    done.acquire()
    def run():
        try:
            box.append(fn())
        except BaseException as e:
            box.append(repr(e))
        done.release()
    _native.start_new_thread(run, ())
    while not done.acquire(False):
        gevent.sleep(0.005)
    return box[0]
print("plain_thread=", in_thread(lambda: pool.call(lambda: "ok")))
def other_hub():
    return gevent.spawn(pool.call, lambda: "ok").get()
print("other_hub=", in_thread(other_hub))
one = ThreadPool(1)
print("inline=", one.call(lambda: one.call(lambda: one.submit(lambda: "ok").result())))

# 4. killed or timed-out waiter: a queued call never runs, pool stays usable
ran = []
blocker = gevent.spawn(one.call, _native.sleep, 0.2)
gevent.sleep(0.02)
victim = gevent.spawn(one.call, ran.append, "killed")
gevent.sleep(0.02)
victim.kill()
with gevent.Timeout(0.02, False):
    one.call(ran.append, "timed out")
blocker.join()
with gevent.Timeout(0.05, False):
    one.call(_native.sleep, 0.2)           # running: finishes, result dropped
print("cancelled_ran=", ran)
print("usable_after=", one.call(lambda: "ok"))

# 5. exceptions keep type and worker frames; BaseExceptions delivered
def failing_in_worker():
    raise KeyError("boom")
try:
    pool.call(failing_in_worker)
except KeyError:
    tb = traceback.format_exc()
print("worker_frame=", "failing_in_worker" in tb)
for exc in (SystemExit(3), KeyboardInterrupt(), gevent.Timeout()):
    def raiser(exc=exc):
        raise exc
    try:
        pool.call(raiser)
    except BaseException as got:
        print("base_" + type(exc).__name__ + "=", got is exc)
    if isinstance(exc, gevent.Timeout):
        exc.close()

# 6. contextvars reach the worker
var = contextvars.ContextVar("var")
var.set("caller")
print("contextvar=", pool.call(var.get))

# 7. max_queue: submit waits cooperatively, nothing is dropped
small = ThreadPool(1, max_queue=2)
with offload.Heartbeat(0.005) as hb:
    futures = [small.submit(_native.sleep, 0.02) for _ in range(8)]
    results = [f.result() for f in futures]
print("backpressure_done=", len(results), small.stats()["completed"])
print("backpressure_ticks=", len(hb.lags))
sys.stdout.flush()
"""


# The default loop (libev) in every mode; libuv too, unpatched and patch_all.
LOOPS = [(mode, None) for mode in modes.ALL_MODES] + [("none", "libuv-cffi"), ("all", "libuv-cffi")]


def _loop_env(loop):
    return {"GEVENT_LOOP": loop} if loop else None


def _observed(got, key, expected):
    """What was printed for *key*; for a range ``"low <= x < high"``, the range
    itself when the (first) number printed lies inside it."""
    printed = got.get(key)
    if " <= x < " not in expected:
        return printed
    low, high = (float(bound) for bound in expected.split(" <= x < "))
    try:
        value = float(printed.split()[0])
    except (AttributeError, IndexError, ValueError):
        return printed
    return expected if low <= value < high else printed


# What test_core_behaviour expects to see, one entry per printed guarantee.
EXPECTED = {
    "real_threads": "True",  # 1. real OS threads, never the hub's
    "overlap_elapsed": "0 <= x < 0.6",  # 2. four 0.2 s calls overlap (serial: 0.8 s) ...
    "ticks": "10 <= x < inf",  # ... while the hub keeps ticking
    "max_lag": "0 <= x < 0.15",
    "join_idle": "0 <= x < 0.1",  # hub.join() returns at once when idle ...
    "join_busy": "0.1 <= x < 2",  # ... and waits for a call in flight,
    "join_busy_dead": "True",  # which has ended by then
    "plain_thread": "ok",  # 3. callers on a plain thread, another hub, a worker
    "other_hub": "ok",
    "inline": "ok",
    "cancelled_ran": "[]",  # 4. a queued call whose waiter gave up never runs
    "usable_after": "ok",
    "worker_frame": "True",  # 5. exceptions keep the worker's frames; BaseExceptions arrive
    "base_SystemExit": "True",
    "base_KeyboardInterrupt": "True",
    "base_Timeout": "True",
    "contextvar": "caller",  # 6. contextvars reach the worker
    "backpressure_done": "8 8",  # 7. max_queue drops nothing ...
    "backpressure_ticks": "5 <= x < inf",  # ... and submit waits cooperatively
    "stderr": "",  # failures delivered to callers are never printed by the hub (gevent#617)
}


@pytest.mark.parametrize("mode, loop", LOOPS)
def test_core_behaviour(mode, loop):
    out, err = modes.run_full(mode, BEHAVIOUR, env=_loop_env(loop))
    got = modes.lines(out)
    got["join_busy_dead"] = got.get("join_busy", "").partition(" ")[2]
    got["stderr"] = err[-2000:]
    seen = {key: _observed(got, key, expected) for key, expected in EXPECTED.items()}
    # One comparison: a failure lists every broken guarantee, not the first.
    assert seen == EXPECTED


FORK = r"""
import os, sys, tempfile, time
import gevent
import offload
from offload._core import native as _native

offload.call(_native.sleep, 0.01)
gevent.joinall([gevent.spawn(offload.call, _native.sleep, 0.01) for _ in range(5)])
report = tempfile.mktemp()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        with gevent.Timeout(10):
            calls = gevent.joinall([gevent.spawn(offload.call, os.getpid) for _ in range(5)])
            pids = {g.value for g in calls}
            stats = offload.get_default_pool().stats()
        with open(report, "w") as f:
            f.write(f"{pids == {os.getpid()}} {stats['submitted']} {stats['workers'] > 0}")
        code = 0
    finally:
        os._exit(code)
deadline = time.monotonic() + 20
while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
    gevent.sleep(0.01)
with open(report) as f:
    print("child=", f.read())
os.unlink(report)
print("parent=", offload.call(os.getpid) == os.getpid(), offload.get_default_pool().stats()["submitted"])
"""


@pytest.mark.parametrize("mode, loop", LOOPS)
def test_fork_gives_child_a_fresh_pool(mode, loop):
    got = modes.lines(modes.run(mode, FORK, timeout=60, env=_loop_env(loop)))
    assert got["child"] == "True 5 True"
    assert got["parent"] == "True 7"


EXIT = r"""
import gevent
import offload
from offload._core import native as _native

offload.submit(_native.sleep, 60)       # still running at exit: given up on after the limit
gevent.joinall([gevent.spawn(offload.call, _native.sleep, 0.01) for _ in range(20)])
print("done=", offload.get_default_pool().stats()["workers"])
"""


@pytest.mark.parametrize("mode", modes.ALL_MODES)
def test_interpreter_exits_promptly(mode):
    import time

    started = time.monotonic()
    out, err = modes.run_full(mode, EXIT, timeout=30, env={"OFFLOAD_EXIT_TIMEOUT": "1"})
    got = modes.lines(out)
    assert int(got["done"]) >= 2
    # A hung call holds the exit only up to OFFLOAD_EXIT_TIMEOUT; idle workers not at all.
    assert time.monotonic() - started < 10
    assert "1 running (sleep)" in err
