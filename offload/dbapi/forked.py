"""A connection a forked child inherited: made harmless there, never used or closed on the parent's session.

The child must neither use such a connection nor close it: closing sends
the driver's goodbye (psycopg2's Terminate, PyMySQL's COM_QUIT) on the
socket the parent still uses, and ends the parent's session.  Nor may the
child just ``os.close`` the socket: the number would be reused by the
child's next file or socket, and the driver's finalizer would then write
its goodbye into that.  So ``disarm`` points the socket's descriptor at
``/dev/null`` (``dup2``): the number stays taken, the parent's socket is
untouched, and whatever the driver sends when the object is finally
collected goes nowhere.  A driver whose socket cannot be found is kept
alive instead, never finalized in the child.
"""

import os
from typing import Any

__all__ = ["disarm", "socket_fd"]

#: Inherited connections whose socket could not be found: kept alive in the
#: child, so that no finalizer closes them on the parent's session.
_kept: list = []


def disarm(raw: Any, *, file_only: bool = False) -> None:
    """In a forked child: make the parent's connection *raw* harmless here.

    *file_only*: the connection is to a file, not to a server (sqlite3):
    there is no session to protect, so one with no socket is left alone.
    Never raises: a fork must not fail over it.
    """
    try:
        fd = socket_fd(raw)
        if fd is None:
            if not file_only:
                _kept.append(raw)
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except Exception:  # keep the object alive instead
        _kept.append(raw)


def socket_fd(raw: Any) -> int | None:
    """The file descriptor of *raw*'s socket to the server, if the driver shows it."""
    fileno = getattr(raw, "fileno", None)  # psycopg2, psycopg
    if fileno is None:
        sock = getattr(raw, "_sock", None)  # PyMySQL
        fileno = getattr(sock, "fileno", None)
    if not callable(fileno):
        return None
    fd = fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None
