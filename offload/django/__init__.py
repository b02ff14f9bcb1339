"""Django database backends whose every database call runs off the gevent hub.

In ``settings.DATABASES`` use ``"ENGINE": "offload.django.postgresql"``,
``"offload.django.mysql"`` or ``"offload.django.sqlite3"`` instead of
Django's own; everything else (``OPTIONS``, ``CONN_MAX_AGE``, migrations,
the test runner) is as for Django's backend.  Each is Django's backend with
its connection opened by :func:`offload.dbapi.connect`: every query, fetch,
commit and rollback runs in that connection's own thread while only the
calling greenlet waits.  Django's own connection set-up (psycopg2's
``register_default_jsonb``, sqlite's functions and PRAGMAs) runs in that
thread on the real connection.

Django keeps one connection per thread.  Patched (gunicorn ``-k gevent``,
Celery ``-P gevent``) a thread is a greenlet, so each greenlet has its own
connection, as Django expects.  Unpatched, all greenlets of a thread share
one connection and take turns on it -- see ``docs/frameworks.rst``.
"""

from .wrapper import OffloadDatabaseWrapper

__all__ = ["OffloadDatabaseWrapper"]
