"""A real Celery worker ``-P gevent -c 50`` on the Redis broker, running
examples/celery_app.py's tasks on PostgreSQL through offload."""

import os
import signal
import subprocess
import sys
import time

import modes
import pytest
import services
from sqla_helpers import unique

celery = pytest.importorskip("celery")
pytest.importorskip("redis")

pytestmark = [pytest.mark.slow, pytest.mark.timing]

EXAMPLES = os.path.join(modes.ROOT, "examples")
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


@pytest.fixture(scope="module")
def worker():
    for port, what in ((6379, "Redis"), (5432, "PostgreSQL")):
        if not services.port_open("127.0.0.1", port):
            services.unavailable(f"{what} at 127.0.0.1:{port}")
    queue = unique("frameworks_celery")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([modes.ROOT, EXAMPLES]), CELERY_QUEUE=queue, POOL_SIZE="50"
    )
    env["CELERY_BROKER"] = services.REDIS_URL
    proc = subprocess.Popen(
        [CELERY, "-A", "celery_app", "worker", "-P", "gevent", "-c", "50", "--without-heartbeat"]
        + ["--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"{queue}@%h"],
        cwd=EXAMPLES,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.environ.update(CELERY_QUEUE=queue, CELERY_BROKER=services.REDIS_URL)
    sys.path.insert(0, EXAMPLES)
    import celery_app

    try:
        deadline = time.monotonic() + 60
        while not celery_app.app.control.ping(timeout=0.5, destination=[f"{queue}@{os.uname().nodename}"]):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"celery worker did not start:\n{proc.communicate()[0]}")
        celery_app.sleep_query.delay(0).get(timeout=30)  # warm up: the first connection
        yield celery_app
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sys.path.remove(EXAMPLES)
        for name in ("CELERY_QUEUE", "CELERY_BROKER"):
            os.environ.pop(name, None)


def test_fifty_sleeps_run_at_once(worker):
    started = time.monotonic()
    results = [worker.sleep_query.delay(0.5) for _ in range(50)]
    sessions = [r.get(timeout=60) for r in results]
    elapsed = time.monotonic() - started
    # Serially 25 s; at once 0.5 s plus the broker's round trips on a loaded machine.
    print(f"50 x pg_sleep(0.5): {elapsed:.2f} s on {len(set(sessions))} sessions")
    assert elapsed < 5.0, elapsed
    assert len(set(sessions)) > 10, len(set(sessions))


def test_time_limit_interrupts_a_task_stuck_in_a_query(worker):
    started = time.monotonic()
    stuck = worker.sleep_query.apply_async((20,), time_limit=1)
    with pytest.raises(Exception) as info:
        stuck.get(timeout=30)
    ended = time.monotonic() - started
    assert "TimeLimitExceeded" in type(info.value).__name__ + repr(info.value), repr(info.value)
    print(f"time_limit=1 ended the 20 s query task after {ended:.2f} s")
    assert ended < 8, ended  # not the 20 s of the query
    assert worker.sleep_query.delay(0).get(timeout=30)  # the worker goes on
