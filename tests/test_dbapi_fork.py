"""offload.dbapi across os.fork() (issue 15 #7): the child never uses nor
ends the parent's sessions, and a pool in the child opens its own."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import modes
import pytest
import services
from test_dbapi_cancel import postgres_for

psycopg2 = pytest.importorskip("psycopg2")


@pytest.fixture(scope="module")
def dsn():
    return postgres_for("dbapi_fork")[0]


def _alive(dsn, pids):
    """Which of the backend *pids* the server still has."""
    admin = psycopg2.connect(dsn)
    try:
        cur = admin.cursor()
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),))
        return {row[0] for row in cur.fetchall()}
    finally:
        admin.close()


FORK_SNIPPET = """
import gc, json, os, sys
import psycopg2, offload.dbapi as db

def pid(conn):
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    (value,) = cur.fetchone()
    conn.rollback()
    return value

pool = db.ConnectionPool(psycopg2, {dsn!r}, minconn=2, maxconn=2)
lent = [pool.getconn(), pool.getconn()]
pooled = sorted(pid(c) for c in lent)
pool.putconn(lent.pop())  # one idle, one lent at fork time
direct = db.connect(psycopg2, {dsn!r})
direct_pid = pid(direct)
read, write = os.pipe()
child = os.fork()
if child == 0:
    out = {{}}
    try:
        pid(direct)
    except psycopg2.InterfaceError as exc:
        out["direct_error"] = str(exc)
    direct.close()  # harmless: only marked closed
    pool.putconn(lent.pop())  # the parent's: dropped, not counted
    out["child_pids"] = sorted({{pid(pool.getconn()) for _ in range(2)}})
    out["child_stats"] = pool.stats()
    os.write(write, json.dumps(out).encode())
    del direct, pool
    gc.collect()
    sys.exit(0)  # a normal exit: every finalizer runs
os.close(write)
_, status = os.waitpid(child, 0)
with os.fdopen(read) as f:
    out = json.loads(f.read())
out["status"] = status
out["pooled"] = pooled
out["direct_pid"] = direct_pid
out["direct_after"] = pid(direct)  # the parent's connection works after the child exited
with pool.connection() as c:
    out["pooled_after"] = pid(c)
print("json=" + json.dumps(out))
pool.close()
direct.close()
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_fork_child_gets_its_own_sessions_and_the_parent_keeps_its(dsn, mode):
    out = json.loads(modes.lines(modes.run(mode, FORK_SNIPPET.format(dsn=dsn)))["json"])
    assert out["status"] == 0
    assert "before os.fork()" in out["direct_error"] and "open a new connection" in out["direct_error"]
    parent = set(out["pooled"]) | {out["direct_pid"]}
    assert len(out["child_pids"]) == 2 and not parent & set(out["child_pids"])
    assert out["child_stats"]["opened"] == 2 and out["child_stats"]["size"] == 2
    assert out["direct_after"] == out["direct_pid"]
    assert out["pooled_after"] in out["pooled"]


GUNICORN_APP = """
import os
import psycopg2
import offload.dbapi as db

pool = db.ConnectionPool(psycopg2, os.environ["DBAPI_DSN"], minconn=2, maxconn=4)

def _pid(conn):
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    return cur.fetchone()[0]

_held = [pool.getconn(), pool.getconn()]
MASTER = sorted(_pid(c) for c in _held)  # opened in the master, before the fork
for c in _held:
    pool.putconn(c)

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/master":
        body = " ".join(map(str, MASTER))
    else:
        with pool.connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid(), %s", (path,))
            backend, echo = cur.fetchone()
        body = f"{os.getpid()} {backend} {echo}"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"""


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read().decode()


@pytest.mark.slow
def test_gunicorn_preload_two_gevent_workers_under_load(dsn, tmp_path):
    services.gevent_worker_or_skip()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(gunicorn):
        pytest.skip("gunicorn is not installed (pip install -e '.[test]')")
    (tmp_path / "dbapi_fork_app.py").write_text(GUNICORN_APP)
    port = services.free_port()
    env = dict(os.environ, DBAPI_DSN=dsn, PYTHONPATH=modes.ROOT + os.pathsep + str(tmp_path))
    proc = subprocess.Popen(
        [gunicorn, "--preload", "-w", "2", "-k", "gevent", "-b", f"127.0.0.1:{port}", "dbapi_fork_app:app"],
        env=env,
        cwd=str(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, master = _get(port, "/master")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(
                        f"gunicorn did not start: {proc.stderr.read().decode() if proc.poll() else ''}"
                    )
                time.sleep(0.2)
        master_pids = {int(p) for p in master.split()}
        results, failures = [], []

        def client(n):
            for i in range(60):
                path = f"/c{n}-{i}"
                try:
                    status, body = _get(port, path)
                    worker, backend, echo = body.split()
                    if status != 200 or echo != path:
                        failures.append((path, status, body))
                    results.append((int(worker), int(backend)))
                except Exception as exc:  # any failed response fails the test below
                    failures.append((path, repr(exc)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failures == [] and len(results) == 16 * 60
        owners: dict[int, set] = {}
        for worker, backend in results:
            owners.setdefault(backend, set()).add(worker)
        assert len({w for w, _ in results}) == 2  # both workers served
        assert all(len(ws) == 1 for ws in owners.values()), owners  # no backend shared by two workers
        assert not master_pids & set(owners)  # no worker used the master's sessions
        assert _alive(dsn, master_pids) == master_pids  # nor ended them
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stderr.close()
