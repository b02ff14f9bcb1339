"""A Celery app whose tasks query PostgreSQL through offload, for the gevent pool.

    celery -A celery_app worker -P gevent -c 50 --chdir examples   # or cd examples first

Broker and results on Redis (``CELERY_BROKER``, default
``redis://127.0.0.1:6379/0``), queue ``CELERY_QUEUE``.  ``sleep_query``
waits in ``pg_sleep`` through offload's SQLAlchemy dialect: the gevent pool
runs 50 of them at once, and a ``time_limit`` interrupts one stuck in the
database (Celery's gevent pool cannot interrupt a blocking driver call; here
the greenlet only waits on offload, and that wait is interruptible).
"""

import os

import sqlalchemy as sa
from celery import Celery

BROKER = os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CELERY_QUEUE", "offload-example")

app = Celery("celery_app", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)

engine = sa.create_engine(
    os.environ.get("DATABASE_URL", "postgresql+offload_psycopg2://postgres@127.0.0.1:5432/test"),
    pool_size=int(os.environ.get("POOL_SIZE", "50")),
    max_overflow=0,
    connect_args={"application_name": os.environ.get("APP_NAME", "offload_celery_example")},
)


@app.task
def sleep_query(seconds: float) -> int:
    """``pg_sleep(seconds)``; returns the database session that ran it."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_sleep(:s), pg_backend_pid()"), {"s": seconds}).one()[1]
