"""A real uWSGI in gevent mode serving examples/gunicorn_app.py (the same WSGI app)."""

import os
import subprocess
import sys
import time

import modes
import pytest
import services
from sqla_helpers import unique
from test_gunicorn import EXAMPLES, load, stop

pytestmark = [pytest.mark.slow, pytest.mark.timing]

UWSGI = os.path.join(os.path.dirname(sys.executable), "uwsgi")


def test_uwsgi_gevent_mode_under_load():
    if not os.path.exists(UWSGI):
        pytest.skip("uWSGI is not installed (pip install uwsgi compiles it)")
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL at 127.0.0.1:5432")
    port = services.free_port()
    env = dict(os.environ, PYTHONPATH=modes.ROOT, POOL_SIZE="20", APP_NAME=unique("frameworks_uwsgi"))
    proc = subprocess.Popen(
        [UWSGI, "--http-socket", f"127.0.0.1:{port}", "--gevent", "100", "--enable-threads"]
        + ["--chdir", EXAMPLES, "--wsgi-file", "gunicorn_app.py", "--callable", "app", "--need-app"]
        + ["--disable-logging", "--die-on-term"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not services.port_open("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("uWSGI did not start")
            time.sleep(0.1)
        result = load(port, total=200, concurrency=50, sleep=0.05)
    finally:
        log = stop(proc)
    assert result["n_failed"] == 0 and result["ok"] == 200, (result["failed"], log[-2000:])
    assert 200 / result["elapsed"] > 60, result["elapsed"]  # blocked: ~20 req/s
    assert result["ping_p99"] < 1.0, result["ping_p99"]
