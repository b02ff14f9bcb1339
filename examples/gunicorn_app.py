"""A plain WSGI app on PostgreSQL through offload's SQLAlchemy dialect, for gunicorn's gevent worker.

    DATABASE_URL=postgresql+offload_psycopg2://postgres@127.0.0.1/test \\
        gunicorn -k gevent -w 2 --preload -b 127.0.0.1:8000 --chdir examples gunicorn_app:app

``GET /query?sleep=0.05`` runs ``pg_sleep`` and answers with the database
session (backend pid) and the worker's pid; ``GET /ping`` answers at once.
The engine is made -- and used -- at import, so with ``--preload`` the
master opens a connection before forking: the workers must not share it,
and they do not (the dialect's pool forgets inherited connections).
"""

import json
import os
from urllib.parse import parse_qs

import sqlalchemy as sa

URL = os.environ.get("DATABASE_URL", "postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test")
engine = sa.create_engine(
    URL,
    pool_size=int(os.environ.get("POOL_SIZE", "20")),
    max_overflow=0,
    pool_timeout=30,
    connect_args={"application_name": os.environ.get("APP_NAME", "offload_gunicorn_example")},
)
QUERY = sa.text("SELECT pg_sleep(:s), pg_backend_pid()")

with engine.connect() as _conn:  # the master's own session, opened before any fork
    PRELOAD_SESSION = _conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/ping":
        body = b"pong"
    elif path == "/query":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0])
        with engine.connect() as conn:
            session = conn.execute(QUERY, {"s": seconds}).one()[1]
        body = json.dumps({"session": session, "worker": os.getpid(), "preload": PRELOAD_SESSION}).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
