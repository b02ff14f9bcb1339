"""A gevent HTTP load client for the server tests: ``python load_client.py URL N CONCURRENCY``.

Runs under ``patch_all()`` and prints one JSON line: how many responses were
200, how many failed, the bodies' distinct values of interest, and the time
taken.  Every request has a timeout, and the run stops by itself.
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402


def fetch(url, timeout=30):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def main(url, total, concurrency):
    ok, failed, bodies, latencies = 0, [], [], []
    ping_url = url.split("/query")[0] + "/ping"
    pings = []

    def one(_):
        nonlocal ok
        started = time.monotonic()
        try:
            status, body = fetch(url)
        except Exception as exc:  # a refused or timed-out request is a failure to count
            failed.append(repr(exc))
            return
        latencies.append(time.monotonic() - started)
        if status == 200:
            ok += 1
            bodies.append(json.loads(body))
        else:
            failed.append(status)

    def pinger():
        while True:
            started = time.monotonic()
            try:
                fetch(ping_url, timeout=5)
                pings.append(time.monotonic() - started)
            except Exception:
                pings.append(5.0)
            gevent.sleep(0.02)

    watcher = gevent.spawn(pinger)
    started = time.monotonic()
    Pool(concurrency).map(one, range(total))
    elapsed = time.monotonic() - started
    watcher.kill()
    latencies.sort()
    pings.sort()
    print(
        json.dumps(
            {
                "ok": ok,
                "failed": failed[:10],
                "n_failed": len(failed),
                "elapsed": elapsed,
                "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
                "ping_p99": pings[int(len(pings) * 0.99) - 1] if pings else None,
                "bodies": bodies,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
