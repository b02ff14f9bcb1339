"""PyMongo in a gevent program that does not monkey-patch anything.

    python examples/mongo_without_patching.py [MONGODB_URI]

Without a URI it starts nx-27017 (a MongoDB wire-protocol server from PyPI,
installed by offload's ``test`` extra) on a free port and stops it at the
end.  A heartbeat greenlet ticks every millisecond and records how late
each tick is -- how long the hub was frozen.  Then 50 greenlets each insert
and read back documents and one greenlet scans the whole collection, first
with plain PyMongo (every call freezes the hub: nothing is patched), then
with ``offload.mongo.MongoClient`` (the calls run on real threads, the scan
fetches one batch per thread hop, and the hub keeps ticking).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import gevent
import pymongo

import offload
from offload.mongo import MongoClient

GREENLETS = 50
DOCS_EACH = 20
SCAN_DOCS = 5000


def workload(client, name):
    """50 writers/readers and one big scan, all sharing *client*."""
    coll = client.offload_demo[f"{name}_{os.getpid()}"]  # several runs may share a server
    coll.drop()
    coll.insert_many([{"k": -1, "i": i, "pad": "x" * 100} for i in range(SCAN_DOCS)])

    def writer(k):
        coll.insert_many([{"k": k, "i": i} for i in range(DOCS_EACH)])
        return sum(1 for _ in coll.find({"k": k}))

    def scan():
        return sum(1 for _ in coll.find({"k": -1}))

    with offload.Heartbeat(0.001) as heartbeat:
        started = time.perf_counter()
        jobs = [gevent.spawn(writer, k) for k in range(GREENLETS)] + [gevent.spawn(scan)]
        gevent.joinall(jobs, raise_error=True)
        elapsed = time.perf_counter() - started
    assert [j.value for j in jobs] == [DOCS_EACH] * GREENLETS + [SCAN_DOCS]
    coll.drop()
    return elapsed, heartbeat


class NX27017:
    """One nx-27017 process with an in-memory database on a free loopback port.

    The tests and the benchmarks start their server with this class too.
    """

    START_TIMEOUT = 30.0

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.TemporaryDirectory(prefix="offload-nx-")
        self.proc = None

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @staticmethod
    def script():
        """The nx-27017 console script of this interpreter's environment, or None."""
        path = os.path.join(os.path.dirname(sys.executable), "nx-27017")
        return path if os.access(path, os.X_OK) else None

    def start(self):
        """Start it; return None when it listens, else the reason it does not."""
        script = self.script()
        if script is None:
            return f"nx-27017 is not installed beside {sys.executable}: pip install nx-27017, or pass a URI"
        files = [
            "--log-file",
            os.path.join(self.dir.name, "nx.log"),
            "--pid-file",
            os.path.join(self.dir.name, "nx.pid"),
        ]
        self.proc = subprocess.Popen(
            [script, "--db", "memory", "--host", "127.0.0.1", "-p", str(self.port), *files],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                return f"nx-27017 exited with {self.proc.returncode}: {err}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return None
            except OSError:
                time.sleep(0.05)
        self.stop()
        return f"nx-27017 did not listen on port {self.port} within {self.START_TIMEOUT:.0f}s"

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


def main(argv):
    server = None
    if len(argv) > 1:
        uri = argv[1]
    else:
        server = NX27017()
        problem = server.start()
        if problem:
            sys.exit(problem)
        uri = server.uri
    try:
        rows = []
        plain = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
        rows.append(("plain PyMongo",) + workload(plain, "plain"))
        plain.close()
        with MongoClient(uri, serverSelectionTimeoutMS=10000) as client:
            rows.append(("offload.mongo",) + workload(client, "offload"))
    finally:
        if server is not None:
            server.stop()

    print(f"{GREENLETS} greenlets insert and read {DOCS_EACH} documents each while one scans {SCAN_DOCS};")
    print("nothing is monkey-patched; a 1 ms heartbeat measures how long the hub freezes.\n")
    print(f"{'client':<15} {'elapsed':>9} {'hub lag p50':>12} {'p99':>9} {'max':>9}")
    for label, elapsed, hb in rows:
        print(
            f"{label:<15} {elapsed:>8.2f}s {hb.lag(50) * 1e3:>10.1f}ms "
            f"{hb.lag(99) * 1e3:>7.1f}ms {hb.max_lag * 1e3:>7.1f}ms"
        )
    print("\nplain PyMongo blocks the hub on every call; offload.mongo keeps it ticking.")


if __name__ == "__main__":
    main(sys.argv)
