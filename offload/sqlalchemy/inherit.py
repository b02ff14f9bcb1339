"""Cut a connection inherited across ``os.fork()`` off from the parent's socket.

A forked child shares its parent's sockets.  Using an inherited connection
interleaves two processes' traffic on one session; merely closing it -- or
letting the garbage collector or interpreter exit close it -- sends the
driver's goodbye (libpq's Terminate, MySQL's COM_QUIT) and ends the
*parent's* session.  :func:`forget` points the child's copy of the file
descriptor at ``/dev/null``: whatever the child later does with the
connection goes nowhere, the descriptor number stays taken until the driver
closes it (so it cannot be reused for another socket meanwhile), and the
parent's socket is untouched.
"""

import os
from typing import Any

from ..proxy import unwrap

__all__ = ["forget", "socket_fd"]


def socket_fd(conn: Any) -> int | None:
    """The file descriptor of a DB-API connection's socket, or None if it has none.

    psycopg2, psycopg 3 and mysqlclient have ``fileno()``; PyMySQL keeps its
    socket in ``_sock``; sqlite3 has no socket.
    """
    raw = unwrap(conn)
    for get in (getattr(raw, "fileno", None), getattr(getattr(raw, "_sock", None), "fileno", None)):
        if get is None:
            continue
        try:
            fd = get()
        except Exception:  # closed already, or a driver whose fileno() refuses
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None


def forget(conn: Any) -> bool:
    """Make *conn*, inherited from the parent, harmless in this child; True if a socket was cut.

    Call it only in a child, on connections the parent opened: in the parent
    it would break the connection.
    """
    fd = socket_fd(conn)
    if fd is None:
        return False
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    return True
