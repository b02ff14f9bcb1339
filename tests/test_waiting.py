"""Waiting on many futures: the stdlib's wait/as_completed and offload's own.

``concurrent.futures.wait`` and ``as_completed`` on offload futures, with no
timeout, in every patching mode, from a greenlet and from a real thread
(patched, they used to raise ``LoopExit``: gevent's event, set from a worker
thread, held no reference on the loop).  ``offload.wait`` and
``offload.as_completed`` do the same for any future, and never block the hub.
"""

import concurrent.futures as cf
import threading
import time

import modes
import pytest

import offload

WAITS = r"""
import concurrent.futures as cf, time
import gevent
import offload
from offload._core import native

def waits(f1, f2):
    # No timeout anywhere: the hub has nothing else to do while these wait.
    return {
        "cf_wait": lambda: len(cf.wait([f1, f2]).done),
        "cf_first": lambda: len(cf.wait([f1, f2], return_when=cf.FIRST_COMPLETED).done),
        "cf_as_completed": lambda: len(list(cf.as_completed([f1, f2]))),
        "off_wait": lambda: len(offload.wait([f1, f2]).done),
        "off_as_completed": lambda: len(list(offload.as_completed([f1, f2]))),
    }

def in_real_thread(fn):
    box, done = [], native.allocate_lock()
    done.acquire()
    def run():
        try:
            box.append(fn())
        except BaseException as e:
            box.append(repr(e))
        done.release()
    native.start_new_thread(run, ())
    done.acquire()  # the main thread blocks: nothing keeps its hub busy either
    return box[0]

for kind in ("thread", "process"):
    pool = offload.ThreadPool(2) if kind == "thread" else offload.ProcessPool(2)
    for name in waits(None, None):
        def one():
            f1, f2 = pool.submit(time.sleep, 0.2), pool.submit(time.sleep, 0.05)
            return waits(f1, f2)[name]()
        print(f"{kind}_{name}_main=", one())
        print(f"{kind}_{name}_greenlet=", gevent.spawn(one).get())
        print(f"{kind}_{name}_thread=", in_real_thread(one))
    pool.shutdown()
"""


@pytest.mark.parametrize("mode", modes.ALL_MODES)
def test_stdlib_and_offload_waits_without_timeout(mode):
    out = modes.lines(modes.run(mode, WAITS, timeout=150))
    assert len(out) == 2 * 5 * 3
    for key, value in out.items():
        expected = "1" if "_first_" in key else "2"
        if "_first_" in key:
            assert value in ("1", "2"), (key, value)  # both may be done by the time it looks
        else:
            assert value == expected, (key, value)


HEARTBEAT = r"""
import concurrent.futures as cf, time
import gevent
import offload
from offload._core import native

pool = offload.ThreadPool(2)
stdlib = cf.ThreadPoolExecutor(2)
for name, make, wait in (
    ("off_wait", pool.submit, lambda fs: offload.wait(fs)),
    ("off_as_completed", pool.submit, lambda fs: list(offload.as_completed(fs))),
    ("cf_wait", pool.submit, lambda fs: cf.wait(fs)),
    ("off_wait_stdlib_future", stdlib.submit, lambda fs: offload.wait(fs)),
    ("off_as_completed_stdlib_future", stdlib.submit, lambda fs: list(offload.as_completed(fs))),
):
    fs = [make(native.sleep, 0.4), make(native.sleep, 0.2)]
    with offload.Heartbeat(0.005) as hb:
        gevent.spawn(wait, fs).join()
    print(f"{name}_ticks=", len(hb.lags))
    print(f"{name}_done=", all(f.done() for f in fs))
"""


@pytest.mark.parametrize("mode", ["none", "socket"])  # threading and queue unpatched: stdlib executors work
def test_offload_waits_keep_the_hub_running_unpatched(mode):
    # Unpatched, the stdlib's wait on a stdlib future blocks the hub thread on
    # a real lock; offload.wait/as_completed (and cf.wait on offload futures)
    # park only the greenlet.  A 5 ms heartbeat over a 0.4 s wait: dozens of
    # ticks if the hub ran, one or two if it was frozen.
    out = modes.lines(modes.run(mode, HEARTBEAT))
    for key, value in out.items():
        if key.endswith("_ticks"):
            assert int(value) >= 20, (key, value)
        else:
            assert value == "True", (key, value)


def test_wait_checks_its_arguments():
    pool = offload.ThreadPool(1)
    f = pool.submit(int, 1)
    with pytest.raises(ValueError, match="timeout"):
        offload.wait([f], timeout=float("nan"))
    with pytest.raises(ValueError, match="return_when"):
        offload.wait([f], return_when="SOMETIMES")
    with pytest.raises(TypeError, match="fs must be an iterable"):
        offload.wait(f)
    with pytest.raises(TypeError, match="fs must hold"):
        offload.wait([f, 3])
    with pytest.raises(ValueError, match="timeout"):
        offload.as_completed([f], timeout=-1)  # at the call, not at next()
    with pytest.raises(TypeError, match="fs must hold"):
        offload.as_completed(["x"])
    pool.shutdown()


def test_wait_semantics_are_the_stdlibs():
    pool = offload.ThreadPool(2)
    release = threading.Event()
    slow = pool.submit(release.wait, 5)
    bad = pool.submit(int, "x")
    fast = pool.submit(int, 1)
    done, not_done = offload.wait([slow, bad, fast], return_when=offload.FIRST_EXCEPTION)
    assert bad in done and slow in not_done
    done, not_done = offload.wait([slow], timeout=0.05)
    assert not done and not_done == {slow}
    with pytest.raises(TimeoutError):
        list(offload.as_completed([slow], timeout=0.05))
    release.set()
    assert [f.result() for f in offload.as_completed([slow, slow])] == [True]
    pool.shutdown()


def test_as_completed_counts_its_timeout_from_the_call():
    pool = offload.ThreadPool(1)
    f = pool.submit(time.sleep, 1)
    it = offload.as_completed([f], timeout=0.2)
    time.sleep(0.3)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        next(it)
    assert time.monotonic() - t < 0.15
    pool.shutdown()


def test_stdlib_future_adopted_keeps_working_with_the_stdlib():
    ex = cf.ThreadPoolExecutor(1)
    f = ex.submit(time.sleep, 0.05)
    assert offload.wait([f]).done == {f}
    g = ex.submit(time.sleep, 0.05)
    offload.wait([g], timeout=0)  # adopts g
    assert cf.wait([g]).done == {g}  # the stdlib's own wait still works on it
    ex.shutdown()
