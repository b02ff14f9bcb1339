"""The doctor never hangs: a server that accepts but never speaks is an error within seconds.

The silent server is a plain socket listener in this test, on 127.0.0.1: it
accepts every connection and never sends a byte.  A mistyped port that lands
on another server (``--mysql`` at PostgreSQL's 5432, which waits for the
client to speak first) is the same trap.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import modes
import pytest
import services

from offload.doctor import CONNECT_TIMEOUT, READ_TIMEOUT

BOUND = 20.0  # seconds: every case must end well inside this, on a loaded machine


@pytest.fixture
def silent_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # keep it open, say nothing
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def _start(*args):
    env = dict(os.environ, PYTHONPATH=modes.ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "offload", "doctor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=modes.ROOT,
    )


def test_no_check_hangs_on_a_server_that_never_speaks(silent_port):
    port = silent_port

    def case(option, url, driver, patch=("--patch", "none")):
        return [*patch, option, url], f"{driver}: could not connect to {url}: "

    cases = {
        "mysql": case("--mysql", f"mysql://root@127.0.0.1:{port}/test", services.MYSQL_DRIVER),
        "postgres": case("--postgres", f"host=127.0.0.1 port={port} dbname=x user=u", "psycopg2"),
        "redis": case("--redis", f"redis://127.0.0.1:{port}/0", "redis-py"),
        "mongo": case("--mongo", f"mongodb://127.0.0.1:{port}/?directConnection=true", "PyMongo"),
        "mysql, patch_all": case(
            "--mysql", f"mysql://root@127.0.0.1:{port}/test", services.MYSQL_DRIVER, patch=()
        ),
    }
    if services.port_open("127.0.0.1", 5432):
        cases["mysql at PostgreSQL's port"] = (
            ["--patch", "none", "--mysql", "mysql://root@127.0.0.1:5432/test"],
            f"{services.MYSQL_DRIVER}: could not connect to mysql://root@127.0.0.1:5432/test: ",
        )
    else:
        services.unavailable("PostgreSQL on 127.0.0.1:5432")
    started = time.monotonic()
    procs = {name: _start(*args) for name, (args, _) in cases.items()}  # all at once: they mostly wait
    problems = []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(BOUND - (time.monotonic() - started), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            problems.append(f"{name}: still running after {BOUND:.0f} s\n{err}")
            continue
        elapsed = time.monotonic() - started
        expected = cases[name][1]
        lines = [line for line in err.splitlines() if line.strip()]
        if proc.returncode != 1:
            problems.append(f"{name}: exit {proc.returncode}, not 1\n{err}")
        if len(lines) != 1 or expected not in lines[0] or "is it the right host and port?" not in lines[0]:
            problems.append(f"{name}: stderr is not one clear line with {expected!r}:\n{err}")
        if "time.sleep" not in out:
            problems.append(f"{name}: what could run did not run:\n{out}")
        # Each driver gives up on its own timeout, not the doctor's last-resort deadline.
        if elapsed > CONNECT_TIMEOUT + READ_TIMEOUT + 8:
            problems.append(f"{name}: took {elapsed:.1f} s")
    assert not problems, "\n\n".join(problems)


def test_a_check_that_ignores_its_timeouts_still_ends_at_the_deadline():
    # No installed driver ignores its timeouts, so a check that blocks in C
    # (an unpatched sleep holds the hub) stands in for one.
    snippet = """
        import time, sys
        from offload.doctor import report, cli
        report.CHECK_DEADLINE = 1.0
        report.TARGETS["redis"] = lambda url: time.sleep(60)
        sys.exit(cli.main(["--patch", "none", "--redis", "redis://:RdxDeadline@127.0.0.1:1/0"]))
    """
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", __import__("textwrap").dedent(snippet)],
        capture_output=True,
        text=True,
        timeout=BOUND,
        env=dict(os.environ, PYTHONPATH=modes.ROOT),
    )
    assert proc.returncode == 1
    assert time.monotonic() - started < BOUND
    assert proc.stderr.strip() == (
        "offload doctor: redis: no answer from redis://:***@127.0.0.1:1/0 within 1 s; "
        "gave up (is it the right host and port?)"
    )
