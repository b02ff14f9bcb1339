"""A gevent WSGI app that queries PostgreSQL through offload.dbapi.ConnectionPool.

psycopg2 waits for PostgreSQL inside libpq, so in a plain gevent server one
slow query stops every other request.  Here each query runs on its
connection's own thread and only the request that made it waits::

    python examples/psycopg2_app.py --dsn "host=127.0.0.1 dbname=test user=postgres"
    curl localhost:8000/             # {"now": "...", "backend": 1234}
    curl 'localhost:8000/sleep?ms=500'   # other requests keep being served meanwhile

No monkey patching is needed (``gevent.pywsgi`` is cooperative on its own);
with ``patch_all()`` it works the same.
"""

import argparse
import json
import os
from urllib.parse import parse_qs

import psycopg2
from gevent.pywsgi import WSGIServer

import offload.dbapi

DEFAULT_DSN = os.environ.get("DATABASE_URL", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def make_app(pool):
    """The WSGI application, querying through *pool* (anything with ``connection()``)."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/":
            sql, params = "SELECT now()::text, pg_backend_pid()", ()
        elif path == "/sleep":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                ms = int(query.get("ms", ["10"])[0])
            except ValueError:
                return _reply(start_response, "400 Bad Request", {"error": "ms must be an integer"})
            ms = min(max(ms, 0), 10_000)
            sql, params = "SELECT now()::text, pg_backend_pid(), pg_sleep(%s)", (ms / 1000,)
        else:
            return _reply(start_response, "404 Not Found", {"error": f"no route {path}"})
        try:
            with pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(sql, params)
                row = cur.fetchone()
                cur.close()
        except psycopg2.OperationalError as exc:
            # The pool has discarded the broken connection; the next request gets a fresh one.
            return _reply(start_response, "503 Service Unavailable", {"error": str(exc).strip()})
        return _reply(start_response, "200 OK", {"now": row[0], "backend": row[1]})

    return app


def _reply(start_response, status, payload):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="libpq DSN (default: $DATABASE_URL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--maxconn", type=int, default=10, help="connections, and so threads, at most")
    args = parser.parse_args(argv)
    pool = offload.dbapi.ConnectionPool(psycopg2, args.dsn, minconn=args.maxconn, maxconn=args.maxconn)
    server = WSGIServer((args.host, args.port), make_app(pool), log=None)
    print(f"serving on http://{args.host}:{server.address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        pool.close()


if __name__ == "__main__":
    main()
