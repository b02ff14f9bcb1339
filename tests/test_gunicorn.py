"""A real gunicorn ``-k gevent`` serving examples/gunicorn_app.py on PostgreSQL
through offload's SQLAlchemy dialect, under load from a real gevent client."""

import collections
import json
import os
import signal
import subprocess
import sys
import time

import modes
import pytest
import services
from sqla_helpers import unique

pytest.importorskip("gunicorn")
pytest.importorskip("sqlalchemy")

pytestmark = [pytest.mark.slow, pytest.mark.timing]

EXAMPLES = os.path.join(modes.ROOT, "examples")
CLIENT = os.path.join(modes.ROOT, "tests", "load_client.py")
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def start_gunicorn(*extra, pool_size=20, app="gunicorn_app:app", chdir=EXAMPLES, env=None):
    services.gevent_worker_or_skip()
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL at 127.0.0.1:5432")
    port = services.free_port()
    env = dict(
        os.environ,
        PYTHONPATH=modes.ROOT,
        POOL_SIZE=str(pool_size),
        APP_NAME=unique("frameworks_gunicorn"),
        DATABASE_URL="postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test",
    ) | (env or {})
    proc = subprocess.Popen(
        [GUNICORN, "-k", "gevent", "-b", f"127.0.0.1:{port}", "--chdir", chdir, "--timeout", "30", *extra]
        + [app],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not services.port_open("127.0.0.1", port, timeout=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gunicorn did not start:\n{proc.communicate()[0]}")
        time.sleep(0.1)
    return proc, port


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def load(port, total, concurrency, sleep):
    url = f"http://127.0.0.1:{port}/query?sleep={sleep}"
    proc = subprocess.run(
        [sys.executable, CLIENT, url, str(total), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=modes.ROOT),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_one_gevent_worker_under_load():
    proc, port = start_gunicorn("-w", "1", pool_size=20)
    try:
        result = load(port, total=400, concurrency=50, sleep=0.05)
    finally:
        log = stop(proc)
    assert result["n_failed"] == 0 and result["ok"] == 400, (result["failed"], log[-2000:])
    # 20 connections x 50 ms: 400 req/s at best; a hub blocked by psycopg2 would give ~20 req/s.
    assert 400 / result["elapsed"] > 100, result["elapsed"]
    assert result["ping_p99"] < 1.0, result["ping_p99"]  # the worker kept answering /ping meanwhile
    assert len({b["session"] for b in result["bodies"]}) <= 20


def test_preload_two_workers_each_have_their_own_sessions():
    proc, port = start_gunicorn("-w", "2", "--preload", pool_size=4)
    try:
        result = load(port, total=300, concurrency=20, sleep=0.02)
    finally:
        log = stop(proc)
    assert result["n_failed"] == 0 and result["ok"] == 300, (result["failed"], log[-2000:])
    sessions = collections.defaultdict(set)
    for body in result["bodies"]:
        sessions[body["worker"]].add(body["session"])
    preload = {body["preload"] for body in result["bodies"]}
    assert len(sessions) == 2, sessions  # both workers served
    first, second = sessions.values()
    assert not first & second, sessions  # no session shared between workers
    assert not preload & (first | second), (preload, sessions)  # nor with the master's


def test_django_under_gunicorn_has_a_connection_per_greenlet():
    pytest.importorskip("django")
    project = os.path.join(EXAMPLES, "djangoproject")
    env = {"PYTHONPATH": os.pathsep.join([modes.ROOT, project]), "FW_ENGINE": "postgresql"}
    proc, port = start_gunicorn("-w", "1", app="wsgi:application", chdir=project, env=env)
    try:
        result = load(port, total=200, concurrency=20, sleep=0.1)
    finally:
        log = stop(proc)
    assert result["n_failed"] == 0 and result["ok"] == 200, (result["failed"], log[-2000:])
    sessions = len({b["session"] for b in result["bodies"]})
    print(f"django: 200 x pg_sleep(0.1) at 20 concurrent in {result['elapsed']:.2f} s on {sessions} sessions")
    # 20 concurrent requests of 0.1 s: ~1 s when each greenlet has its own session, 20 s if shared.
    assert result["elapsed"] < 8, result["elapsed"]
    assert sessions > 5, sessions
