"""A gevent WSGI app on PostgreSQL under load: direct psycopg2, offload.dbapi, psycogreen.

Each server variant runs ``examples/psycopg2_app.py``'s WSGI app in its own
subprocess:

- ``direct``: psycopg2 called in the request greenlet, no patching -- every
  query freezes the hub, so requests are served one query at a time;
- ``offload``: the example as shipped, through ``offload.dbapi.ConnectionPool``;
- ``psycogreen``: ``patch_all()`` plus psycogreen's wait callback, the
  patch-based alternative.

All three hold 10 connections.  A gevent load generator in this process keeps
CONCURRENCY keep-alive HTTP clients busy for a few seconds per measurement
(``wrk`` is not needed); the variants take turns, round after round, and the
table shows medians over the rounds.  Prints one Markdown section.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DSN = os.environ.get("OFFLOAD_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
VARIANTS = ("direct", "offload", "psycogreen")
SCENARIOS = (("fast query", "/"), ("10 ms query", "/sleep?ms=10"))
CONCURRENCY = 20
CONNECTIONS = 10
SECONDS = 2.0
ROUNDS = 3


# -- the servers (each in its own process) --------------------------------------


def serve(variant, port):
    if variant == "psycogreen":
        from gevent import monkey

        monkey.patch_all()
        import psycogreen.gevent

        psycogreen.gevent.patch_psycopg()
    import psycopg2
    from gevent.pywsgi import WSGIServer

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from psycopg2_app import make_app

    if variant == "offload":
        import offload.dbapi

        pool = offload.dbapi.ConnectionPool(psycopg2, DSN, minconn=CONNECTIONS, maxconn=CONNECTIONS)
    else:
        pool = _PlainPool(psycopg2, DSN, CONNECTIONS)
    from gevent import socket

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: no Nagle delay between headers and body.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    server = WSGIServer(listener, make_app(pool), log=None)
    print("ready", flush=True)
    server.serve_forever()


class _PlainPool:
    """psycopg2 connections lent to greenlets, used in the greenlet itself."""

    def __init__(self, psycopg2, dsn, size):
        from gevent.queue import Queue

        self._idle = Queue()
        for _ in range(size):
            self._idle.put(psycopg2.connect(dsn))

    def connection(self):
        pool = self

        class _Lend:
            def __enter__(self):
                self.conn = pool._idle.get()
                return self.conn

            def __exit__(self, *exc_info):
                self.conn.rollback()
                pool._idle.put(self.conn)

        return _Lend()


# -- the load generator -------------------------------------------------------------

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def _client(port, path, stop_at, latencies, errors):
    from time import perf_counter

    from gevent import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    buf = b""
    try:
        while perf_counter() < stop_at:
            started = perf_counter()
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(_LENGTH.search(head).group(1))
            while len(buf) < length:
                buf += sock.recv(65536)
            buf = buf[length:]
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0])
            latencies.append(perf_counter() - started)
    finally:
        sock.close()


def load(port, path, seconds):
    """(requests per second, p99 latency in seconds, errors) for *seconds* of load."""
    import gevent

    from offload.heartbeat import percentile

    latencies, errors = [], []
    started = time.perf_counter()
    stop_at = started + seconds
    clients = [gevent.spawn(_client, port, path, stop_at, latencies, errors) for _ in range(CONCURRENCY)]
    gevent.joinall(clients, raise_error=True)
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 99), len(errors)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(variant):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, str(port)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the {variant} server did not start (is PostgreSQL at {DSN!r} up?)")
    return proc, port


def per_query(n=2000):
    """Microseconds per sequential ``SELECT 1`` (execute + fetchone), direct vs offload."""
    import psycopg2

    import offload.dbapi

    raw = psycopg2.connect(DSN)
    conn = offload.dbapi.connect(psycopg2, DSN)

    def timed(cur):
        started = time.perf_counter()
        for _ in range(n):
            cur.execute("SELECT 1")
            cur.fetchone()
        return (time.perf_counter() - started) / n * 1e6

    direct, via = [], []
    try:
        rc, oc = raw.cursor(), conn.cursor()
        timed(rc), timed(oc)  # warm up
        for _ in range(ROUNDS):
            direct.append(timed(rc))
            via.append(timed(oc))
    finally:
        raw.close()
        conn.close()
    return _median(direct), _median(via)


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main():
    import shutil
    from contextlib import ExitStack

    from delayline import DelayLine, rtt_from_env

    global DSN
    distance = ExitStack()
    rtt = rtt_from_env()
    if rtt is not None:
        params = dict(item.split("=", 1) for item in DSN.split())
        host, port = distance.enter_context(
            DelayLine((params.get("host", "127.0.0.1"), int(params.get("port", 5432))), rtt)
        )
        params.update(host=host, port=str(port))
        DSN = " ".join(f"{k}={v}" for k, v in params.items())
        os.environ["OFFLOAD_TEST_POSTGRES_DSN"] = DSN  # the server subprocesses read it
    with distance:
        _main(shutil)


def _distance():
    from delayline import rtt_from_env

    rtt = rtt_from_env()
    return f", the server {rtt * 1e3:g} ms away (bench/delayline.py)" if rtt is not None else ""


def _main(shutil):
    direct_us, offload_us = per_query()
    servers = {v: start_server(v) for v in VARIANTS}
    results = {(s, v): [] for s, _ in SCENARIOS for v in VARIANTS}
    failures = 0
    try:
        for _, port in servers.values():
            for _, path in SCENARIOS:
                load(port, path, 0.3)  # warm up
        for _ in range(ROUNDS):
            for scenario, path in SCENARIOS:
                for variant in VARIANTS:
                    rps, p99, errors = load(servers[variant][1], path, SECONDS)
                    failures += errors
                    results[scenario, variant].append((rps, p99))
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()

    def med(scenario, variant, i):
        return _median([r[i] for r in results[scenario, variant]])

    lines = [
        "## offload.dbapi: a gevent WSGI app on PostgreSQL" + _distance(),
        "",
        f"`examples/psycopg2_app.py` served by gevent.pywsgi, {CONNECTIONS} PostgreSQL connections per "
        f"variant, {CONCURRENCY} keep-alive clients from a gevent load generator"
        f"{' (wrk is installed but not used, for one tool across runs)' if shutil.which('wrk') else ''}; "
        f"medians of {ROUNDS} rounds of {SECONDS:.0f} s per cell, variants interleaved. "
        "*direct*: psycopg2 in the request greenlet, unpatched; *offload*: `offload.dbapi.ConnectionPool`; "
        "*psycogreen*: `patch_all()` + psycogreen's wait callback. The fast query is "
        "`SELECT now(), pg_backend_pid()`; the 10 ms query adds `pg_sleep(0.01)`.",
        "",
        "| query | variant | requests/s | p99 latency | req/s vs direct | req/s vs psycogreen |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario, _ in SCENARIOS:
        base = med(scenario, "direct", 0)
        green = med(scenario, "psycogreen", 0)
        for variant in VARIANTS:
            rps, p99 = med(scenario, variant, 0), med(scenario, variant, 1)
            lines.append(
                f"| {scenario} | {variant} | {rps:,.0f} | {p99 * 1000:.1f} ms | "
                f"{rps / base:.2f}x | {rps / green:.2f}x |"
            )
    slow = SCENARIOS[1][0]
    fast = SCENARIOS[0][0]
    targets = [
        (
            "10 ms query: offload serves >= 5x the requests/s of direct psycopg2",
            med(slow, "offload", 0) / med(slow, "direct", 0),
            5.0,
        ),
        (
            "10 ms query: offload p99 latency <= 1/4 of direct's",
            med(slow, "direct", 1) / med(slow, "offload", 1),
            4.0,
        ),
        (
            "10 ms query: offload >= 0.8x psycogreen's requests/s",
            med(slow, "offload", 0) / med(slow, "psycogreen", 0),
            0.8,
        ),
        (
            "fast query: offload >= 0.5x direct's requests/s (the thread hop's cost)",
            med(fast, "offload", 0) / med(fast, "direct", 0),
            0.5,
        ),
    ]
    added = offload_us - direct_us
    lines += [
        "",
        "One connection, one greenlet, sequential `SELECT 1` + `fetchone()` (one thread hop through "
        "offload: the row comes back with the execute), medians of the same rounds:",
        "",
        "| variant | µs per query | vs direct |",
        "| --- | ---: | ---: |",
        f"| direct psycopg2 | {direct_us:.0f} | 1.00x |",
        f"| offload.dbapi | {offload_us:.0f} | {offload_us / direct_us:.2f}x |",
    ]
    lines += ["", "| target | measured | met? |", "| --- | ---: | --- |"]
    for text, value, goal in targets:
        lines.append(f"| {text} | {value:.2f}x | {'yes' if value >= goal else 'no'} |")
    met = "yes" if added <= 120 else "no"
    lines.append(f"| per query, offload adds <= 120 µs (one hop) | {added:.0f} µs | {met} |")
    if failures:
        lines += ["", f"{failures} requests did not answer 200 OK."]
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
