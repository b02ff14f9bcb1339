"""gunicorn -k gevent + a SQLAlchemy ORM app on PostgreSQL: offload's dialect vs psycogreen vs plain psycopg2.

Prints one Markdown section.  For each variant and query (a 10 ms
``pg_sleep`` and a fast primary-key lookup), a real gunicorn worker serves
the app below while ``wrk -c 50`` loads it; the app's own heartbeat
greenlet measures the hub's lag.  Several rounds; medians and ranges.

The same file is the app: gunicorn imports it with ``BENCH_VARIANT`` set.

For one question at a time: ``BENCH_ONLY`` (variant names, space-separated)
runs only those, ``BENCH_POOL`` sizes the app's connection pool (default
50, as many as wrk's connections); with either set, only the per-round
lines are printed (stderr), not the section.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VARIANTS = {
    "offload": "postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test",
    "psycogreen": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "psycopg2": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
}
QUERIES = {"10 ms query": "slow", "fast query": "fast"}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = 50
TABLE = "frameworks_bench_item"


def make_app(variant):
    """The WSGI app: ``/slow`` (10 ms on the server), ``/fast`` (a lookup), ``/lag`` (hub lag p99, reset)."""
    if variant == "psycogreen":
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    import gevent
    import sqlalchemy as sa
    from sqlalchemy import orm

    import offload

    pool_size = int(os.environ.get("BENCH_POOL", CONNECTIONS))
    engine = sa.create_engine(VARIANTS[variant], pool_size=pool_size, max_overflow=0, pool_timeout=60)

    class Base(orm.DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = TABLE
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        name: orm.Mapped[str]

    beat = offload.Heartbeat(0.005)
    started = []

    def app(environ, start_response):
        if not started:
            started.append(gevent.spawn(beat.start))
        path = environ["PATH_INFO"]
        with orm.Session(engine) as session:
            if path == "/slow":
                session.execute(sa.text("SELECT pg_sleep(0.01)"))
                body = session.get(Item, 1).name.encode()
            elif path == "/fast":
                body = session.get(Item, 7).name.encode()
            else:
                body = json.dumps({"p99": beat.lag(99)}).encode()
                beat.lags.clear()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


if "BENCH_VARIANT" in os.environ:
    app = make_app(os.environ["BENCH_VARIANT"])


def _prepare():
    import psycopg2

    conn = psycopg2.connect("host=127.0.0.1 dbname=test user=postgres", connect_timeout=5)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cur.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text NOT NULL)")
    cur.execute(f"INSERT INTO {TABLE} SELECT g, 'item ' || g FROM generate_series(1, 100) g")
    return conn


def _port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(variant):
    port = _port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    env = dict(os.environ, BENCH_VARIANT=variant, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [gunicorn, "-k", "gevent", "-w", "1", "--worker-connections", "1000", "--timeout", "120"]
        + ["-b", f"127.0.0.1:{port}", "--chdir", HERE, "bench_frameworks:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/fast", timeout=5).read()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gunicorn ({variant}) did not start")


def _wrk(port, path, seconds=SECONDS):
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency", "--timeout", "5s"]
        + [f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Socket errors:.*timeout (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def _lag(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/lag", timeout=30) as r:
        return json.loads(r.read())["p99"] * 1e3


def _fmt(values, unit=""):
    return f"{statistics.median(values):.0f}{unit} ({min(values):.0f}-{max(values):.0f})"


def main():
    if shutil.which("wrk") is None:
        print(
            "## Frameworks: gunicorn + SQLAlchemy ORM\n\n"
            "Skipped: `wrk` is not installed (`apt-get install wrk`)."
        )
        return
    admin = _prepare()
    results = {}  # (query, variant) -> lists
    try:
        for round_ in range(ROUNDS):
            for variant in os.environ.get("BENCH_ONLY", " ".join(VARIANTS)).split():
                proc, port = _serve(variant)
                try:
                    for label, path in QUERIES.items():
                        _wrk(port, "/" + path, seconds=1)  # warm-up: open the pool's connections
                        _lag(port)
                        rps, p99, timeouts = _wrk(port, "/" + path)
                        lag = _lag(port)
                        row = results.setdefault(
                            (label, variant), {"rps": [], "p99": [], "lag": [], "to": []}
                        )
                        row["rps"].append(rps)
                        row["p99"].append(p99)
                        row["lag"].append(lag)
                        row["to"].append(timeouts)
                        print(
                            f"round {round_} {variant} {label}: {rps:.0f} req/s, "
                            f"p99 {p99:.0f} ms, lag {lag:.1f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    finally:
        admin.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
        admin.close()
    if "BENCH_ONLY" in os.environ or "BENCH_POOL" in os.environ:
        return  # not the section's runs: the lines above are the answer

    lines = [
        "## Frameworks: gunicorn -k gevent + SQLAlchemy ORM on PostgreSQL",
        "",
        f"`bench/bench_frameworks.py`: one gunicorn gevent worker, a 50-connection pool, "
        f"`wrk -t2 -c{CONNECTIONS} -d{SECONDS}s`, {ROUNDS} rounds (median, range). The 10 ms query is "
        "`pg_sleep(0.01)` plus a primary-key `session.get`; the fast one is the `session.get` alone. "
        "Hub lag is the p99 lateness of a 5 ms heartbeat greenlet inside the worker. "
        "wrk's percentiles leave out its timeouts (> 5 s), counted apart.",
        "",
        "| query | variant | req/s | p99 latency (ms) | hub lag p99 (ms) | wrk timeouts "
        "| req/s vs psycogreen |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in QUERIES:
        base = statistics.median(results[(label, "psycogreen")]["rps"])
        for variant in VARIANTS:
            row = results[(label, variant)]
            ratio = statistics.median(row["rps"]) / base
            lines.append(
                f"| {label} | {variant} | {_fmt(row['rps'])} | {_fmt(row['p99'])} | "
                f"{statistics.median(row['lag']):.1f} ({min(row['lag']):.1f}-{max(row['lag']):.1f}) | "
                f"{sum(row['to'])} | {ratio:.2f}x |"
            )
    print("\n".join(lines))


if __name__ == "__main__" and "BENCH_VARIANT" not in os.environ:
    main()
