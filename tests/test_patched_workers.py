"""Patched primitives used inside worker threads (issue 15, point 5).

After ``patch_all()``, a worker thread's first patched ``time.sleep`` or lock
wait builds that thread's hub, and two threads doing it at once deadlocked on
the (patched) import locks; a patched lock released in one worker was handed
to the next through a callback on a loop nobody ran.  Each scenario runs in a
fresh patched interpreter with a hard time limit: a hang fails.
"""

import modes
import pytest

LOCKED_MAP = r"""
import threading, time
import offload
lock = threading.Lock()  # patched: a gevent lock, shared by real worker threads
def f(i):
    with lock:
        time.sleep(0.01)  # patched too
    return i
t = time.monotonic()
print("ok=", list(offload.ThreadPool(5).map(f, range(20))) == list(range(20)))
print("elapsed=", time.monotonic() - t)
pool = offload.ThreadPool(8)
print("sleeps=", sum(pool.map(lambda i: time.sleep(0.01) or 1, range(64))))
"""


@pytest.mark.parametrize("mode", ["all", "nothread", "none"])
def test_patched_lock_and_sleep_in_workers(mode):
    out = modes.lines(modes.run(mode, LOCKED_MAP, timeout=60))
    assert out["ok"] == "True"
    assert out["sleeps"] == "64"
    assert float(out["elapsed"]) < 20


FIRST_HUBS = r"""
import time
import offload
from offload._core import native
# Eight workers start at once, each building its hub before its first call.
pool = offload.ThreadPool(8)
fs = [pool.submit(time.sleep, 0.05) for _ in range(8)]
print("done=", len(offload.wait(fs).done))
print("threads=", pool.stats()["workers"])
"""


def test_eight_first_hubs_at_once():
    for _ in range(3):
        out = modes.lines(modes.run("all", FIRST_HUBS, timeout=60))
        assert out["done"] == "8"


MAIN_AND_WORKER_HUBS = r"""
import gevent
import offload
from offload._core import native
# The main thread has no hub yet: its first gevent.spawn builds one while
# the worker started by submit() builds its own (this deadlocked 1 run in ~10).
offload.submit(native.sleep, 0.01)
gevent.joinall([gevent.spawn(offload.call, native.sleep, 0.01) for _ in range(20)])
print("ok=", True)
"""


def test_main_hub_and_a_worker_hub_built_at_once():
    for _ in range(8):
        assert modes.lines(modes.run("all", MAIN_AND_WORKER_HUBS, timeout=30))["ok"] == "True"


IDLE_CALLBACK = r"""
import time
import gevent
import offload
from offload._core import native
pool = offload.ThreadPool(1)
hub = pool.call(gevent.get_hub)  # the worker's own hub (patched: it has one)
ran = native.allocate_lock()
ran.acquire()
time.sleep(0.1)  # the worker is idle, blocked on its queue
# What a patched lock released in another thread does to the hub that owns
# it: a callback on that loop, which only its (idle) worker can run.
started = time.monotonic()
hub.loop.run_callback_threadsafe(ran.release)
print("ran=", ran.acquire(True, 5))
print("after=", time.monotonic() - started)
"""


def test_an_idle_worker_runs_callbacks_sent_to_its_loop():
    out = modes.lines(modes.run("all", IDLE_CALLBACK, timeout=60))
    assert out["ran"] == "True"
    assert float(out["after"]) < 1  # one idle tick (20 ms), with room for a loaded machine
