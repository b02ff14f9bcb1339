"""ProcessPool in a fresh interpreter, unpatched and after ``patch_all()``.

Each snippet runs the main scenarios -- calls, a crash, 200 greenlets with a
heartbeat, a pickling error, a cancelled queued call, the decorator and the
named pool -- then exits with a call still running and without shutting
down.  The test then checks that every process the snippet started is gone.
"""

import time

import psutil
import pytest
from modes import lines, run

SNIPPET = """
import os, pickle, signal, threading, time
import gevent, psutil
import offload
from children import add, decorated_square, die, getpid, sleep_then, spin, touch

pool = offload.ProcessPool(2)
print("add=", pool.call(add, 1, 2))
try:
    pool.call(die, "sigkill")
except offload.WorkerCrashed as exc:
    print("crash=", exc.exitcode)
print("after_crash=", pool.call(add, 2, 2))

with offload.Heartbeat(0.005) as beat:
    glets = [gevent.spawn(pool.call, spin, 20000 + i) for i in range(200)]
    gevent.joinall(glets, raise_error=True)
print("greenlets=", sum(g.value == spin(20000 + i) for i, g in enumerate(glets)))
print("max_lag=", beat.max_lag)

try:
    pool.call(add, threading.Lock(), 1)
except pickle.PicklingError:
    print("pickling=", "raised")

solo = offload.ProcessPool(1)
busy = solo.submit(sleep_then, 0.5, "busy")
path = os.path.join({tmp!r}, "never")
try:
    with gevent.Timeout(0.1):
        solo.call(touch, path)
except gevent.Timeout:
    pass
print("busy=", busy.result())
print("after_timeout=", solo.call(add, 3, 3))
print("cancelled_ran=", os.path.exists(path))

def defined_in_main():
    return 1

try:
    pool.call(defined_in_main)
except pickle.UnpicklingError as exc:
    print("main_fn=", "cannot load the call" in str(exc))

print("decorated=", decorated_square(3)[0])
print("named=", offload.call(add, 4, 4, pool="process"))

# Exit with a call still running and no shutdown.
gevent.spawn(pool.call, sleep_then, 60)
gevent.sleep(0.3)
family = psutil.Process().children(recursive=True)
print("descendants=", ",".join(str(p.pid) for p in family))
print("workers=", len(pool.pids() + solo.pids() + offload.get_default_process_pool().pids()))
"""


def _gone(pid):
    # After the snippet's interpreter has exited, its orphans are re-parented
    # to init; a zombie there is init's to reap, not ours.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("mode", ["none", "all"])
def test_process_pool_in_mode(mode, tmp_path):
    started = time.monotonic()
    # `import offload` stays light: multiprocessing comes with the first pool.
    assert run(mode, "import sys, offload; print('multiprocessing' in sys.modules)").strip() == "False"
    # The 60 s call is given up on after OFFLOAD_EXIT_TIMEOUT, its process killed.
    out = lines(run(mode, SNIPPET.format(tmp=str(tmp_path)), timeout=90, env={"OFFLOAD_EXIT_TIMEOUT": "1"}))
    exited = time.monotonic() - started
    assert out["add"] == "3"
    assert out["crash"] == "-9"
    assert out["after_crash"] == "4"
    assert out["greenlets"] == "200"
    assert float(out["max_lag"]) < 0.25
    assert out["pickling"] == "raised"
    assert out["busy"] == "busy" and out["after_timeout"] == "6"
    assert out["cancelled_ran"] == "False"
    assert out["decorated"] == "9" and out["named"] == "8"
    assert out["main_fn"] == "True"
    assert int(out["workers"]) >= 4
    assert exited < 60  # the 60 s call did not hold the exit
    descendants = [int(pid) for pid in out["descendants"].split(",")]
    assert len(descendants) >= 4
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in descendants):
        assert time.monotonic() < deadline, [p for p in descendants if not _gone(p)]
        time.sleep(0.05)
