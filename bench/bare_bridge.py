"""The ceiling of a compiled hot path: offload's round trip against a bridge with no features.

The *bare* bridge is the least a greenlet-to-thread round trip can do in
Python: one worker thread blocked on a native ``SimpleQueue``, one async
watcher, a deque of finished calls and a greenlet switch -- no claim token
(so no cancellation of queued calls), no contextvars, no counters, no
exceptions carried back, no fork handling.  Whatever a compiled accelerator
for offload's own frames could save, it cannot make the round trip cheaper
than this, because what remains here (the worker's wake-up, the GIL
changing hands twice, the loop's eventfd, the switch) is CPython's and the
kernel's, and a C module pays it too.

Awake round trips (one greenlet, ``CALLS`` sequential no-op calls), rounds
alternating in one process, the order rotating; prints medians, ranges and
the per-round ratios.  No patching.

    PYTHONPATH=. python bench/bare_bridge.py [calls] [rounds]

Not one of make bench's sections (its name has no bench_ prefix): a tool for one question.
"""

import statistics
import sys
import time
from collections import deque

import gevent
from gevent.monkey import get_original
from gevent.threadpool import ThreadPool as GeventThreadPool
from greenlet import getcurrent

import offload

start_new_thread = get_original("_thread", "start_new_thread")
SimpleQueue = get_original("_queue", "SimpleQueue")


def bare_bridge():
    """A ``call(fn)`` through the bare bridge described above."""
    hub = gevent.get_hub()
    queue = SimpleQueue()
    ready: deque = deque()

    def drain():
        while ready:
            glet, value = ready.popleft()
            glet.switch(value)

    watcher = hub.loop.async_()
    watcher.start(drain)  # and referenced: the loop waits on it while a call is out

    def worker():
        get, append, send = queue.get, ready.append, watcher.send
        while True:
            glet, fn = get()
            append((glet, fn()))
            send()

    start_new_thread(worker, ())

    def call(fn):
        queue.put((getcurrent(), fn))
        return hub.switch()

    return call


def _noop():
    return None


def main(calls=3000, rounds=9):
    implementations = {
        "bare bridge": bare_bridge(),
        "offload.ThreadPool(1).call": offload.ThreadPool(1).call,
        "gevent ThreadPool(1).apply": GeventThreadPool(1).apply,
    }
    for call in implementations.values():  # warm up: every thread started
        for _ in range(500):
            call(_noop)
    names = list(implementations)
    times: dict = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = implementations[name]
            started = time.perf_counter()
            for _ in range(calls):
                call(_noop)
            times[name].append((time.perf_counter() - started) / calls * 1e6)
    for name in names:
        t = times[name]
        print(f"{name}: median {statistics.median(t):.1f} µs per round trip ({min(t):.1f}-{max(t):.1f})")
    bare, ours, theirs = (times[name] for name in names)
    pairs = (
        ("offload / bare", ours, bare),
        ("bare / gevent", bare, theirs),
        ("offload / gevent", ours, theirs),
    )
    for label, a, b in pairs:
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(f"{label}: {statistics.median(ratios):.2f}x per round ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
