"""Where the test services are, and what to do when one is missing.

A test that needs a service calls :func:`unavailable`: outside CI it skips
with the reason; under ``CI=true`` it fails, because CI's machine has every
service and a skip there would hide a broken set-up.
"""

import importlib.util
import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

POSTGRES_DSN = os.environ.get(
    "OFFLOAD_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)
MYSQL = dict(host="127.0.0.1", port=3306, user="root", password="", database="test")
#: The MySQL driver the doctor checks first, and reports when the server cannot be reached.
MYSQL_DRIVER = "mysqlclient" if importlib.util.find_spec("MySQLdb") is not None else "PyMySQL"
REDIS_URL = os.environ.get("OFFLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason):
    """Skip (or, under CI, fail) the current test because *reason*."""
    if IN_CI:
        pytest.fail(f"required service missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gevent_worker_or_skip():
    """Skip unless gunicorn's gevent worker accepts the installed gevent.

    gunicorn's own ``workers/ggevent.py`` refuses gevent before 24.10.1 at
    import; the matrix's floor cells install 24.2.1 on Python 3.10-3.12.
    That is gunicorn's requirement, not a missing service: it skips in CI too.
    """
    try:
        import gunicorn.workers.ggevent  # noqa: F401
    except RuntimeError as exc:
        pytest.skip(f"gunicorn's gevent worker: {exc}")
