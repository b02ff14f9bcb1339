"""ThreadPool(initializer=, initargs=, thread_name_prefix=) as the stdlib has
them, and worker threads that can be told apart (issue 15, point 3)."""

import faulthandler
import glob
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures.thread import BrokenThreadPool

import pytest

import offload
from offload import ProcessPool, ThreadPool
from offload.threadpool import worker_threads


def test_initializer_runs_once_per_thread_before_its_first_call():
    seen = []
    pool = ThreadPool(3, initializer=lambda *a: seen.append((threading.get_ident(), a)), initargs=[1, 2])
    release = threading.Event()
    futures = [pool.submit(release.wait, 5) for _ in range(3)]
    time.sleep(0.2)
    release.set()
    idents = {f.result(5) and None for f in futures}
    assert idents == {None}
    assert len(seen) == 3 and {a for _, a in seen} == {(1, 2)}
    assert len({ident for ident, _ in seen}) == 3
    pool.shutdown()


def test_a_failing_initializer_breaks_the_pool_as_the_stdlibs():
    def boom():
        raise ValueError("no database")

    pool = ThreadPool(1, initializer=boom)
    queued = [pool.submit(time.sleep, 0.01) for _ in range(3)]
    for f in queued:
        with pytest.raises(BrokenThreadPool, match="initializer failed"):
            f.result(timeout=5)
    with pytest.raises(BrokenThreadPool):
        pool.submit(int)
    with pytest.raises(BrokenThreadPool):
        pool.call(int)
    stats = pool.stats()
    assert stats["failed"] == 3 and stats["queued"] == 0 and stats["workers"] == 0


def test_initializer_arguments_are_checked():
    with pytest.raises(TypeError, match="initializer must be callable"):
        ThreadPool(1, initializer=3)
    with pytest.raises(ValueError, match="initargs must be empty without an initializer"):
        ThreadPool(1, initargs=(1,))
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        ThreadPool(1, initializer=print, initargs="nonsense")
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        ThreadPool(1, initializer=print, initargs=5)
    with pytest.raises(TypeError, match="thread_name_prefix must be a str"):
        ThreadPool(1, thread_name_prefix=5)


def _os_names():
    names = {}
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/comm"):
        with open(path) as f:
            names[int(path.split("/")[-2])] = f.read().strip()
    return names


def test_worker_threads_are_named_after_the_pool():
    pool = ThreadPool(2, thread_name_prefix="dbpool")
    release = threading.Event()
    started = threading.Barrier(3)
    futures = [pool.submit(lambda: (started.wait(5), release.wait(5))) for _ in range(2)]
    started.wait(5)
    try:
        names = worker_threads()
        assert sorted(n for n in names.values() if n.startswith("dbpool")) == ["dbpool_0", "dbpool_1"]
        # In stack dumps: the bottom frame of each worker carries its name.
        with tempfile.TemporaryFile("w+") as dump:
            faulthandler.dump_traceback(dump, all_threads=True)
            dump.seek(0)
            text = dump.read()
        assert "in dbpool_0" in text and "in dbpool_1" in text
        import sys

        frames = sys._current_frames()
        for ident, name in names.items():
            if name.startswith("dbpool"):
                frame = frames[ident]
                while frame.f_back is not None:
                    frame = frame.f_back
                assert frame.f_code.co_name == name
        if os.path.exists(f"/proc/{os.getpid()}/task"):
            assert {"dbpool_0", "dbpool_1"} <= set(_os_names().values())
    finally:
        release.set()
    for f in futures:
        f.result(5)
    pool.shutdown()
    assert not any(n.startswith("dbpool") for n in worker_threads().values())


def test_default_thread_names_use_the_pool_name():
    pool = ThreadPool(1, name="orders")
    assert pool.call(lambda: worker_threads()[threading.get_ident()]) == "orders_0"
    pool.shutdown()


# -- ProcessPool initargs: what the stdlib's accept under forkserver/spawn ---

_QUEUE = None


def _keep_queue(queue, lock):
    global _QUEUE
    _QUEUE = queue


def _put(x):
    _QUEUE.put(x)
    return x


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_process_initargs_take_multiprocessing_queues_and_lists(method):
    ctx = multiprocessing.get_context(method)
    queue, lock = ctx.Queue(), ctx.Lock()
    pool = ProcessPool(1, mp_context=ctx, initializer=_keep_queue, initargs=[queue, lock])
    try:
        assert pool.call(_put, 7) == 7
        assert queue.get(timeout=30) == 7
    finally:
        pool.shutdown()
        queue.close()


def test_process_initargs_that_cannot_travel_are_refused_at_once():
    with pytest.raises(TypeError, match="picklable"):
        ProcessPool(1, initializer=_keep_queue, initargs=(threading.Lock(), None))
    with pytest.raises(ValueError, match="initargs must be empty"):
        ProcessPool(1, initargs=(1,))
    assert offload.ThreadPool  # the module's public face is untouched
