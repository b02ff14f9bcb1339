"""How a pooled connection is handed back clean: per driver, what is reset.

:class:`~offload.dbapi.ConnectionPool` notes each connection's settings when
it opens it (``baseline()``) and, when the connection comes back, restores
them in the connection's lane (``restore()``) before anyone else borrows it:

- **psycopg2**: rollback; ``DISCARD ALL`` (run in autocommit: it ends
  ``SET`` and ``SET ROLE``, temporary tables, prepared statements,
  ``LISTEN``, advisory locks and cursors ``WITH HOLD``); then
  ``autocommit``, ``isolation_level``, ``readonly``, ``deferrable`` and
  ``cursor_factory`` as they were when the pool opened it; ``notices`` and
  ``notifies`` emptied.
- **psycopg (3)**: rollback; ``DISCARD ALL``; ``autocommit``,
  ``isolation_level``, ``read_only``, ``deferrable`` as opened.
- **PyMySQL**: rollback; ``COM_RESET_CONNECTION`` (MariaDB 10.2+, MySQL
  5.7+: session variables and user variables back to the server's defaults,
  temporary tables dropped, locks released, prepared statements closed), then
  what PyMySQL's ``connect()`` set is set again: ``SET NAMES`` (charset,
  collation), ``sql_mode``, ``init_command`` and autocommit.  A server that
  refuses the command gets the connection discarded.
- **sqlite3**: rollback; ``isolation_level`` (and ``autocommit`` on Python
  3.12+), ``row_factory`` and ``text_factory`` as opened.  PRAGMAs, temporary
  tables and attached databases stay: SQLite has no session reset.
- **any other driver**: rollback only.

``ConnectionPool(reset=...)`` changes it: ``"rollback"`` for rollback only, or
a function ``reset(raw)`` of your own, run in the lane after the rollback.
"""

from typing import Any

__all__ = ["baseline", "restore", "kind_of"]

#: The attributes whose values at open a pooled connection gets back, per driver.
_ATTRIBUTES = {
    "psycopg2": ("autocommit", "isolation_level", "readonly", "deferrable", "cursor_factory"),
    "psycopg": ("autocommit", "isolation_level", "read_only", "deferrable"),
    "sqlite3": ("autocommit", "isolation_level", "row_factory", "text_factory"),
    "pymysql": ("autocommit_mode",),  # PyMySQL's own note of it; _reset_pymysql sends it
}

_COM_RESET_CONNECTION = 0x1F  # the MySQL protocol's command byte; PyMySQL has no helper for it


def kind_of(module: Any) -> str:
    """The driver family of a DB-API module: its top-level package name."""
    return getattr(module, "__name__", "").split(".")[0]


def baseline(raw: Any, kind: str) -> dict:
    """The settings of a freshly opened *raw* connection that :func:`restore` puts back."""
    return {name: getattr(raw, name) for name in _ATTRIBUTES.get(kind, ()) if hasattr(raw, name)}


def restore(raw: Any, kind: str, settings: dict, reset: Any = None) -> None:
    """Roll back and reset *raw* to *settings* (in its lane); raise if it cannot be."""
    raw.rollback()
    if reset == "rollback":
        return
    if callable(reset):
        reset(raw)
        return
    if kind in ("psycopg2", "psycopg"):
        raw.autocommit = True  # DISCARD ALL cannot run inside a transaction block
        cursor = raw.cursor()
        try:
            cursor.execute("DISCARD ALL")
        finally:
            cursor.close()
    elif kind == "pymysql":
        raw.autocommit_mode = settings.get("autocommit_mode", raw.autocommit_mode)
        _reset_pymysql(raw)
        return
    if kind == "sqlite3" and "autocommit" in settings:
        # Python 3.12+: autocommit decides whether isolation_level counts; set it first.
        raw.autocommit = settings["autocommit"]
    for name, value in settings.items():
        if getattr(raw, name) != value:
            setattr(raw, name, value)
    if kind == "psycopg2":
        raw.notices.clear()
        raw.notifies.clear()


def _reset_pymysql(raw: Any) -> None:
    raw._execute_command(_COM_RESET_CONNECTION, b"")
    raw._read_ok_packet()
    # The server's defaults are not the connection's: replay what PyMySQL's connect() set.
    raw.set_character_set(raw.charset, raw.collation)
    cursor = raw.cursor()
    try:
        if raw.sql_mode is not None:
            cursor.execute("SET sql_mode=%s", (raw.sql_mode,))
        if raw.init_command is not None:
            cursor.execute(raw.init_command)
    finally:
        cursor.close()
    if raw.autocommit_mode is not None:
        raw.autocommit(raw.autocommit_mode)
