"""Randomized stress of the paths where races live: claims, wake-ups, kills."""

import random
import threading

import gevent
import pytest

import offload
from offload import ThreadPool
from offload._core import native as _native


def test_mixed_kills_timeouts_and_thread_callers_lose_nothing():
    rng = random.Random(20261122)
    pool = ThreadPool(3, max_queue=8)
    outcomes = {"ok": 0, "error": 0, "timeout": 0, "killed": 0, "cancelled": 0}

    def work(kind, delay):
        _native.sleep(delay)
        if kind == "error":
            raise ValueError(kind)
        return kind

    def greenlet_ops(seed):
        local = random.Random(seed)
        for _ in range(15):
            kind = local.choice(["ok", "error"])
            delay = local.choice([0, 0, 0.001, 0.003])
            how = local.choice(["call", "timeout", "future", "future-timeout"])
            try:
                if how == "call":
                    assert pool.call(work, kind, delay) == kind
                elif how == "timeout":
                    with gevent.Timeout(local.choice([0.0005, 0.002, 0.01])):
                        assert pool.call(work, kind, delay) == kind
                elif how == "future":
                    assert pool.submit(work, kind, delay).result() == kind
                else:
                    assert pool.submit(work, kind, delay).result(timeout=0.002) == kind
                outcomes["ok"] += 1
            except ValueError:
                outcomes["error"] += 1
            except (gevent.Timeout, TimeoutError):
                outcomes["timeout"] += 1

    def thread_ops(seed):
        local = random.Random(seed)
        for _ in range(40):
            kind = local.choice(["ok", "error"])
            try:
                assert pool.call(work, kind, local.choice([0, 0.001])) == kind
            except ValueError:
                pass

    threads = [threading.Thread(target=thread_ops, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    greenlets = [gevent.spawn(greenlet_ops, rng.random()) for _ in range(150)]
    for _ in range(60):  # kill greenlets at random moments, wherever they are
        gevent.sleep(rng.choice([0, 0.001, 0.003]))
        victim = rng.choice(greenlets)
        if not victim.dead:
            victim.kill(block=False)
            outcomes["killed"] += 1
    done = gevent.joinall(greenlets, timeout=60)
    assert len(done) == len(greenlets), "a greenlet hung"
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a thread caller hung"
    pool.shutdown(wait=True)

    stats = pool.stats()
    assert stats["queued"] == 0 and stats["active"] == 0 and stats["workers"] == 0
    # Every call submitted was run exactly once or cancelled, never lost.
    assert stats["submitted"] == stats["completed"] + stats["failed"] + stats["cancelled"]
    assert outcomes["ok"] > 100 and outcomes["timeout"] > 10 and outcomes["killed"] > 10
    # The hub holds no reference for abandoned waiters: it can go idle.
    bridge = gevent.get_hub()._offload_bridge
    assert bridge.pending == 0 and not bridge.ready
    assert gevent.get_hub().join(timeout=5) is True


@pytest.mark.parametrize("workers", [1, 4])
def test_calls_from_many_hubs_at_once(workers):
    pool = ThreadPool(workers)
    results = []

    def thread_with_its_own_hub(n):
        greenlets = [gevent.spawn(pool.call, lambda i=i: (n, i)) for i in range(50)]
        gevent.joinall(greenlets)
        results.extend(g.value for g in greenlets)

    threads = [threading.Thread(target=thread_with_its_own_hub, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    main = [gevent.spawn(offload.call, len, "x") for _ in range(50)]
    gevent.joinall(main)
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted((n, i) for n in range(4) for i in range(50))
    assert [g.value for g in main] == [1] * 50
    pool.shutdown()


@pytest.mark.parametrize("mode", ["all", "socket"])
def test_stress_when_patched(mode):
    import modes

    out = modes.run(
        mode,
        """
        import test_stress
        test_stress.test_mixed_kills_timeouts_and_thread_callers_lose_nothing()
        print("stress=", "ok")
        """,
    )
    assert modes.lines(out)["stress"] == "ok"
