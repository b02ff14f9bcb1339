"""The parent's end of the socket a worker process answers on.

An answer (see :mod:`offload._process.wire`) is read exactly, part by part,
into the objects that will hold it: the head into a buffer of the announced
size, each out-of-band buffer into its own.  Reads go through the unpatched
socket module in chunks, each a system call that releases the GIL, so the
caller's hub runs while a large result arrives; nothing is joined or sliced
afterwards.  A read-only buffer (a ``bytes`` result) becomes a ``bytes``
object without a copy: one ``recv(MSG_WAITALL)`` fills it, the GIL released
for the whole transfer, bounded by ``SO_RCVTIMEO`` so that a stuck child is
still noticed.  The process's death, at any moment, is noticed through its
sentinel.
"""

import mmap
import socket as _stdlib_socket
import struct
from typing import Any

from gevent.monkey import get_original

from . import wire

_poll = get_original("select", "poll")
_socketpair = get_original("_socket", "socketpair")
_POLLIN = 0x001
_POLL_ERRORS = 0x008 | 0x010 | 0x020  # POLLERR | POLLHUP | POLLNVAL
# How long one blocking MSG_WAITALL read may wait for more data before the
# reader checks that the process is still alive (seconds, microseconds).
_WAITALL_PATIENCE = struct.pack("ll", 1, 0)


def socket_pair() -> tuple[Any, Any]:
    """(parent's end, child's end): unpatched stream sockets, the parent's non-blocking."""
    parent, child = _socketpair(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    parent.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_RCVTIMEO, _WAITALL_PATIENCE)
    parent.setblocking(False)
    return parent, child


class Answers:
    """Reads whole answers from *sock*; *sentinel* is the process's."""

    __slots__ = ("sock", "sentinel", "poller")

    def __init__(self, sock: Any, sentinel: int) -> None:
        self.sock = sock
        self.sentinel = sentinel
        self.poller = _poll()
        self.poller.register(sock.fileno(), _POLLIN)
        self.poller.register(sentinel, _POLLIN)

    def close(self) -> None:
        self.sock.close()

    def receive(self) -> tuple[Any, list] | None:
        """The next answer as (head, buffers), or None if the process died first."""
        header = bytearray(wire.HEADER.size)
        if not self._fill(memoryview(header)):
            return None
        (size,) = wire.HEADER.unpack(header)
        head = bytearray(size)
        if not self._fill(memoryview(head)):
            return None
        _, table, _ = wire.buffer_table(head)
        buffers = []
        for size, readonly in table:
            buffer = self._read_bytes(size) if readonly else self._read_writable(size)
            if buffer is None:
                return None
            buffers.append(buffer)
        return head, buffers

    def _read_writable(self, size):
        # An anonymous mapping: zeroed lazily by the kernel, where bytearray(n)
        # would memset it all holding the GIL.
        buffer = mmap.mmap(-1, size) if size else bytearray()
        return buffer if self._fill(memoryview(buffer)) else None

    def _read_bytes(self, size):
        if size < wire.OUT_OF_BAND:
            buffer = bytearray(size)
            return bytes(buffer) if self._fill(memoryview(buffer)) else None
        if not self._wait():
            return None
        sock = self.sock
        sock.setblocking(True)
        try:
            data = sock.recv(size, _stdlib_socket.MSG_WAITALL)
        except BlockingIOError:  # SO_RCVTIMEO passed with nothing read
            data = b""
        except OSError:
            return None
        finally:
            sock.setblocking(False)
        if len(data) == size:
            return data
        if not data and not self._alive():
            return None
        # Interrupted (a signal, a stalled child): read the rest and join,
        # the one copy this path cannot avoid.
        rest = bytearray(size - len(data))
        return data + rest if self._fill(memoryview(rest)) else None

    def _fill(self, view):
        """Fill *view* from the socket; False if the process died first."""
        recv_into = self.sock.recv_into
        done, size = 0, len(view)
        while done < size:
            try:
                got = recv_into(view[done:], size - done)
            except BlockingIOError:
                if not self._wait():
                    return False
                continue
            except OSError:
                return False
            if not got:
                return False  # the process closed its end: it died
            done += got
        return True

    def _wait(self):
        """Wait until there is something to read; False if the process died
        with nothing left to read."""
        dead = False
        readable = False
        for fired, events in self.poller.poll():
            if fired == self.sentinel:
                dead = True
            elif events & _POLLIN:
                readable = True
            elif events & _POLL_ERRORS:
                dead = True
        return readable or not dead

    def _alive(self):
        return not any(fired == self.sentinel for fired, _ in self.poller.poll(0))
