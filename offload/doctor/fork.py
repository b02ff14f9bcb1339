"""Connections a forked process shares with its parent (gunicorn ``--preload``, a pool made at import).

A socket open in both processes is one session used by two: the child
inherited a connection opened before ``fork()``.  Linux's ``/proc`` shows
it: the same socket inode among both processes' file descriptors.
"""

import gc
import os
import sys

from .finding import NOT_APPLICABLE, OK, WARNING, Finding

__all__ = ["check_fork", "shared_connections"]


def _socket_inodes(pid: int | str) -> set[str]:
    inodes: set[str] = set()
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return inodes
    for fd in names:
        try:
            link = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _hex_address(text: str) -> str:
    host, _, port = text.partition(":")
    if len(host) == 8:  # IPv4, little-endian
        host = ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        host = "[ipv6]"
    return f"{host}:{int(port, 16)}"


def _connected_sockets() -> dict[str, str]:
    """inode -> peer of this network namespace's connected sockets (TCP and Unix)."""
    peers = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] != "0A":  # 0A: listening
                peers[cols[9]] = _hex_address(cols[2])
    try:
        with open("/proc/net/unix") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) > 6 and not int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                    peers[cols[6]] = cols[7] if len(cols) > 7 else "unix socket"
    except OSError:
        pass
    return peers


def shared_connections() -> list[str]:
    """Peers of the connected sockets this process shares with its parent (Linux).

    A socket open in both is one session used by two processes: the child
    inherited a connection opened before ``fork()``.
    """
    shared = _socket_inodes("self") & _socket_inodes(os.getppid())
    if not shared:
        return []
    peers = _connected_sockets()
    return sorted(peers[inode] for inode in shared if inode in peers)


def _gunicorn_preload() -> bool | None:
    """Inside a gunicorn worker: whether the app was preloaded in the master; else None."""
    base = sys.modules.get("gunicorn.workers.base")
    if base is None:
        return None
    for obj in gc.get_objects():  # the worker object is not reachable from any module
        if isinstance(obj, base.Worker):
            return bool(getattr(obj.cfg, "preload_app", False))
    return None


def check_fork() -> Finding:
    """Connections opened before a fork and shared with the parent (gunicorn ``--preload``)."""
    name = "fork"
    preload = _gunicorn_preload()
    where = "gunicorn --preload" if preload else ("a gunicorn worker" if preload is False else "this process")
    if not os.path.isdir("/proc/self/fd"):
        return Finding(name, NOT_APPLICABLE, "no /proc: shared connections cannot be seen here")
    peers = shared_connections()
    if peers:
        shown = ", ".join(sorted(set(peers))[:5])
        return Finding(
            name,
            WARNING,
            f"{where}: {len(peers)} connected socket(s) ({shown}) are shared with the parent process "
            f"{os.getppid()}: connections opened before the fork are used by two processes at once",
            "open pools and connections after the fork: lazily on first use, or in gunicorn's post_fork "
            "hook; or drop --preload",
        )
    detail = f"{where}: no connection is shared with the parent process"
    advice = "keep it so: make pools on first use or in post_fork, not at import" if preload else ""
    return Finding(name, OK, detail, advice)
