"""What a check is: a :class:`Check` record per driver, measured into a :class:`Row`.

Each check is described by a :class:`Check` record -- the driver, its
module, the target, the slow call, how to connect, the setup statement --
and measured by :meth:`Check.measure` (or :meth:`Check.run_dbapi` for a
DB-API driver) into a :class:`Row`.  The drivers' checks are in
:mod:`.drivers`; ``time.sleep``'s baseline, which needs no server, is here.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any

from gevent import monkey

from offload import ThreadPool, probe

from .redact import redact, scrub

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "SLEEP", "THRESHOLD", "Check", "Row", "Unreachable"]

SLEEP = 0.25  # seconds each slow call keeps the server busy
THRESHOLD = 0.05  # the least lateness of a heartbeat that means the hub was blocked (see froze())
CONNECT_TIMEOUT = 5  # seconds to connect (and, for MySQL, to get the server's greeting)
READ_TIMEOUT = 5  # seconds past SLEEP a server may take to answer


@dataclass
class Row:
    """One line of the doctor's table."""

    driver: str
    target: str
    patched: bool | None  # does the driver's I/O go through gevent here?
    blocks_directly: bool | None
    max_lag_direct: float | None
    max_lag_offload: float | None
    elapsed_direct: float | None
    elapsed_offload: float | None
    advice: str


#: What drivers' errors say when a server never answered (the libmariadb
#: client, mysqlclient's, says "Lost connection ... at 'handshake: reading
#: initial communication packet'" when no greeting came within its timeout).
_SILENT = ("timed out", "timeout", "reading initial communication packet")


class Unreachable(Exception):
    """The doctor could not talk to a server it was pointed at."""


# What each kind of driver is told to do when it blocks the hub.
DBAPI_FIX = "use offload.dbapi.connect() / ConnectionPool"
PSYCOPG2_FIX = f"{DBAPI_FIX} (or psycogreen's wait callback, which makes psycopg2's own calls cooperative)"


def pure_fix(offload_way: str) -> str:
    """The advice for a pure-Python client that blocks only because nothing is patched."""
    return f"patch_all() makes it cooperative, or {offload_way}"


def require(module: str, message: str) -> Any:
    """*module*, imported; Unreachable(*message*) if it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unreachable(message) from None


def pure_check(driver: str, target: str, offload_way: str) -> "Check":
    """The Check of a pure-Python client: cooperative exactly when socket is patched."""
    patched, why = socket_why()
    return Check(driver, target, patched, why, pure_fix(offload_way))


def socket_why() -> tuple[bool, str]:
    """Whether a pure-Python driver's sockets are gevent's here, and the reason shown."""
    patched = monkey.is_module_patched("socket")
    return patched, ("pure Python on gevent sockets" if patched else "pure Python, socket not patched")


@dataclass
class Check:
    """What one check needs: who it measures, where, with what slow call and advice.

    ``target`` is as the user gave it and is never shown: rows and messages
    carry ``redact(target)``.  ``module``, ``sql``, ``connect_args``,
    ``connect_kwargs`` and ``setup`` (a statement run first on each
    connection: it proves the target is usable and sets server-side limits)
    are for DB-API drivers.
    """

    driver: str
    target: str
    patched: bool
    why: str
    fix: str
    module: Any = None
    sql: str = ""
    connect_args: tuple = ()
    connect_kwargs: dict = field(default_factory=dict)
    setup: str | None = None

    @property
    def shown(self) -> str:
        return redact(self.target)

    def scrub(self, error: BaseException | str) -> str:
        """A driver's error text, safe to print."""
        return scrub(str(error).strip(), self.target)

    def unreachable(self, error: BaseException | str, timed_out: bool = False) -> Unreachable:
        """The error for a server that could not be reached, with a hint when it went silent
        (*timed_out*, or the driver's text says so)."""
        text = self.scrub(error)
        if timed_out or any(sign in text.lower() for sign in _SILENT):
            text += " (no answer within the doctor's timeouts: is it the right host and port?)"
        return Unreachable(f"{self.driver}: could not connect to {self.shown}: {text}")

    def measure(self, direct, via) -> Row:
        """Probe *direct* and *via* (callables doing the slow call) into a Row."""
        d = probe(direct, interval=0.005, threshold=THRESHOLD)
        v = probe(via, interval=0.005, threshold=THRESHOLD)
        blocked = froze(d)
        return Row(
            self.driver,
            self.shown,
            self.patched,
            blocked,
            d.max_lag,
            v.max_lag,
            d.elapsed,
            v.elapsed,
            advice(blocked, froze(v), self.fix, self.why),
        )

    def refused(self, error: BaseException | str) -> Row:
        """The row of a server that would not run the slow call: nothing measured."""
        return Row(self.driver, self.shown, self.patched, None, None, None, None, None, self.scrub(error))

    def run_dbapi(self) -> Row:
        """Connect directly and through offload.dbapi and probe ``sql`` on each."""
        from .. import dbapi

        module = self.module
        raw = conn = None
        try:
            raw = module.connect(*self.connect_args, **self.connect_kwargs)
            if self.setup is not None:
                raw.cursor().execute(self.setup)
        except module.Error as exc:
            if raw is not None:
                raw.close()
            raise self.unreachable(exc) from None
        try:
            conn = dbapi.connect(module, *self.connect_args, **self.connect_kwargs)
            rc, oc = raw.cursor(), conn.cursor()
            if self.setup is not None:
                oc.execute(self.setup)
            return self.measure(lambda: rc.execute(self.sql), lambda: oc.execute(self.sql))
        except module.Error as exc:
            return self.refused(f"server refused the slow call: {self.scrub(exc)}")
        finally:
            raw.close()
            if conn is not None:
                conn.close()


def froze(result: Any) -> bool:
    """Whether the hub froze for the call *result* (a :class:`~offload.ProbeResult`) measured.

    A slow call that blocks the hub holds it for about all of its time, so a
    heartbeat comes late by nearly that much; a cooperative one leaves only
    the lateness of a busy machine.  The line between them is half the call's
    time, never less than :data:`THRESHOLD`: a fixed 50 ms judged a
    cooperative driver blocking on a loaded machine (a CI run saw it).
    """
    return bool(result.max_lag > max(THRESHOLD, result.elapsed / 2))


def advice(direct_blocked: bool, via_blocked: bool, fix: str, why: str) -> str:
    """What to do, from the two measurements."""
    if direct_blocked and not via_blocked:
        return f"blocks the hub ({why}): {fix}"
    if direct_blocked:
        return f"blocks the hub even through offload ({why}): CPU work holding the GIL? use a process pool"
    if via_blocked:
        return "cooperative as patched, but the offloaded call blocked: keep calling it directly"
    return f"cooperative as patched ({why}): offload not needed, and harmless"


def lane():
    return ThreadPool(1, name="offload-doctor")
