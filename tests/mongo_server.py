"""A MongoDB wire-protocol server for the tests: nx-27017, or a real one.

``OFFLOAD_TEST_MONGODB_URI`` (a real mongod, Atlas, ...) is used as it is
when set.  Otherwise the session-scoped :func:`mongo_uri` fixture starts the
``nx-27017`` console script installed beside this Python (``--db memory`` on
a free loopback port), waits until it listens, and stops it at the end.
Import the fixture into a test module with
``from mongo_server import mongo_server_info, mongo_uri  # noqa: F401``.
"""

import os
import subprocess
import sys
import tempfile
import time

import pytest
import services

URI = os.environ.get("OFFLOAD_TEST_MONGODB_URI")
START_TIMEOUT = 30.0


def nx_27017_path():
    """The nx-27017 console script of this interpreter's environment, or None."""
    path = os.path.join(os.path.dirname(sys.executable), "nx-27017")
    return path if os.access(path, os.X_OK) else None


class NX27017:
    """One nx-27017 process with an in-memory database on a free port."""

    def __init__(self):
        self.port = services.free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="offload-nx-")
        self.proc = None

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self):
        """Start it; return None when it listens, else the reason it does not."""
        script = nx_27017_path()
        if script is None:
            return f"nx-27017 is not installed beside {sys.executable} (the test extra installs it)"
        log = os.path.join(self.dir.name, "nx.log")
        self.proc = subprocess.Popen(
            [script, "--db", "memory", "-p", str(self.port), "--host", "127.0.0.1",
             "--log-file", log, "--pid-file", os.path.join(self.dir.name, "nx.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                return f"nx-27017 exited with {self.proc.returncode}: {err}"
            if services.port_open("127.0.0.1", self.port, timeout=0.2):
                return None
            time.sleep(0.05)
        self.stop()
        return f"nx-27017 did not listen on port {self.port} within {START_TIMEOUT:.0f}s"

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # nx-27017 sometimes ignores SIGTERM: then kill it
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            proc.stderr.close()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def mongo_server_info():
    if URI:
        yield URI, None
        return
    server = NX27017()
    reason = server.start()
    try:
        yield server.uri, reason
    finally:
        server.stop()


@pytest.fixture
def mongo_uri(mongo_server_info):
    """The server's URI; the test is skipped (failed under CI) without one."""
    uri, reason = mongo_server_info
    if reason is not None:
        services.unavailable(reason)
    return uri


def is_nx_27017():
    """True when the tests run against nx-27017 rather than a real server."""
    return not URI
