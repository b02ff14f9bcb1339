"""One connection's lane: the thread its calls run on, and the path every call takes.

A :class:`Session` holds the driver's connection, the one-thread
:class:`~offload.ThreadPool` it lives on, and whether it is closed.  Every
call on a :class:`~offload.dbapi.Connection` or on one of its cursors goes
through :meth:`Session.call`, so what a call checks first (closed, forked)
and how it waits is written once.  It puts its items on the lane itself
(``ThreadPool._pack``/``_put``, the pool's own path for ``call``) rather
than through ``ThreadPool.call``, because it needs a give-up of its own: a
call whose caller leaves while it runs is cancelled on the server
(:mod:`offload.dbapi.cancel`), and one from the hub may be deferred
(:mod:`offload.dbapi.hub`).

A call the driver answers from memory (:mod:`offload.dbapi.quiet`) may skip
the lane: :meth:`Session.here` says whether it may run in the caller's
thread, which is only when nothing of the connection is queued or running
in the lane (``Session.pending``), so that it never overtakes a call made
before it.
"""

import importlib
import os
from time import monotonic
from types import ModuleType
from typing import Any

from .._core import native
from .._core.bridge import current_bridge
from .._core.calls import HubCall, ThreadCall
from .._core.checks import name_of
from .._core.lifecycle import ForkRegistry
from ..proxy import ProxyBase, setattribute, unwrap, unwrap_args
from ..threadpool import ThreadPool, _tls
from .cancel import cancel_pool, canceller_for
from .forked import disarm
from .hub import in_hub, warn_blocking
from .quiet import quiet_for
from .reset import kind_of


def check_module(module: ModuleType | str) -> ModuleType:
    """The DB-API module *module* names (imported if a str)."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    if not callable(getattr(module, "connect", None)):
        raise TypeError(
            f"module must be a DB-API 2.0 module (with connect()) or its import name, "
            f"not {type(module).__name__}"
        )
    return module


def lane_for(pool: ThreadPool | None, module: ModuleType) -> tuple[ThreadPool, bool]:
    """The one-thread pool a new connection runs in, and whether it owns it."""
    if pool is None:
        name = f"offload.dbapi:{getattr(module, '__name__', 'db')}"
        return ThreadPool(1, name=name), True
    if not isinstance(pool, ThreadPool):
        raise TypeError(
            f"pool must be None or an offload.ThreadPool with max_workers=1, not {type(pool).__name__}"
        )
    if pool.max_workers != 1:
        raise ValueError(
            "pool must have max_workers=1: a connection's calls must all run on one thread, "
            f"and {pool!r} has {pool.max_workers}"
        )
    return pool, False


_sessions: "ForkRegistry[Session]" = ForkRegistry()


class Stats:
    """What happened to calls whose caller went away; shared by a pool's connections.

    ``abandoned``: calls whose caller went away while they ran;
    ``cancels_sent``: cancels delivered to the server for them;
    ``cancels_effective``: statements the cancel stopped; ``cancel_seconds``:
    the longest time from a cancel sent to its statement's end;
    ``hub_blocking``/``hub_deferred``: calls made from the hub that blocked
    it / that were deferred (see :mod:`offload.dbapi.hub`).
    """

    FIELDS = ("abandoned", "cancels_sent", "cancels_effective", "hub_blocking", "hub_deferred")

    def __init__(self) -> None:
        self._lock = native.allocate_lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)
        self._longest = 0.0

    def add(self, name: str, seconds: float | None = None) -> None:
        with self._lock:  # counted from the hub, the lanes and the cancel threads
            self._counts[name] += 1
            if seconds is not None:
                self._longest = max(self._longest, seconds)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts, cancel_seconds=self._longest)


class _Run:
    """One call on its way through the lane, as the caller, the lane and the canceller see it."""

    __slots__ = ("finished", "abandoned", "cancelled_at")

    def __init__(self) -> None:
        self.finished = self.abandoned = False
        self.cancelled_at = 0.0  # when a cancel reached the server for it


class Session:
    """A driver connection on its lane: the state every proxy of it shares."""

    __slots__ = (
        "raw", "module", "lane", "owned", "closed", "pid", "forked", "settings", "dial",
        "canceller", "stats", "dirty", "running", "lock", "cancel_lock", "pending", "quiet",
        "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        raw: Any,
        module: ModuleType,
        lane: ThreadPool,
        owned: bool,
        *,
        dial: tuple = ((), {}),
        cancel_on_abandon: bool = True,
        stats: Stats | None = None,
    ) -> None:
        self.raw = raw
        self.module = module
        self.lane = lane
        self.owned = owned
        self.closed = False
        self.pid = os.getpid()
        self.forked = False  # set in a forked child: the connection is the parent's
        self.settings: dict | None = None  # what a pool restores (see reset.py)
        self.dial = dial  # connect()'s (args, kwargs): a MySQL cancel opens a side connection
        self.canceller = canceller_for(module) if cancel_on_abandon else None
        self.stats = stats if stats is not None else Stats()
        self.dirty = False  # a cancel was sent since a pool last checked the connection
        self.running: _Run | None = None  # the call the lane runs now (under lock)
        self.lock = native.allocate_lock()  # guards running and each _Run's fields
        # Held while a cancel is delivered: the lane cannot finish the call
        # it cancels, nor start the next, until the server has the cancel.
        self.cancel_lock = native.allocate_lock()
        # One token per call of this connection queued or running in the lane,
        # whichever way it went there: list.append and list.pop are atomic, so
        # callers, the lane and the cancel threads need no lock for it.
        self.pending: list = []
        self.quiet = quiet_for(kind_of(module))  # which driver calls do no I/O
        _sessions.add(self)

    def check(self) -> None:
        """Raise the driver's ``InterfaceError`` if the connection cannot take calls."""
        if self.forked:
            raise self.error(
                "InterfaceError",
                f"this connection was opened in process {self.pid}, before os.fork(); process "
                f"{os.getpid()} must not use it (both processes would talk on one session): open a "
                "new connection in the child (offload.dbapi.ConnectionPool does so by itself)",
            )
        if self.closed and self.owned:
            raise self.error("InterfaceError", "connection already closed")

    def error(self, name: str, message: str) -> Exception:
        """The driver's exception class *name* (else RuntimeError) with *message*."""
        return getattr(self.module, name, RuntimeError)(message)

    def here(self, deferrable: bool = False) -> bool:
        """Whether a driver call that does no I/O may run here, in the caller's thread.

        True when nothing of this connection is queued or running in the
        lane: the call then cannot overtake one made before it, nor touch
        the connection while the lane does.  (Another OS thread may still
        queue a call meanwhile; the calls made here are ones the drivers
        allow alongside a call in another thread -- see
        :mod:`offload.dbapi.quiet`.)  A *deferrable* call from the hub is
        always queued, as :meth:`call` queues it, and a lane that was shut
        down answers as it would have.  Raises what :meth:`call` raises
        first (the connection closed, or forked).
        """
        self.check()
        lane = self.lane
        if self.pending or lane._is_shutdown or lane._broken is not None:
            return False
        return not (deferrable and in_hub())

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Queue ``fn(*args, **kwargs)`` on the lane without waiting; its :class:`~offload.Future`.

        Counted in :attr:`pending` until it has run (or was cancelled), like
        every call of the connection, so that no call skips the lane ahead of it.
        """
        pending = self.pending
        pending.append(None)
        try:
            future = self.lane.submit(fn, *args, **kwargs)
        except BaseException:
            pending.pop()
            raise
        # Done means run, failed or cancelled: called once, in the thread that settled it.
        future.add_done_callback(lambda _: pending.pop())
        return future

    def busy(self) -> bool:
        """Whether the lane still runs a call whose caller went away."""
        run = self.running
        return run is not None and run.abandoned

    def call(self, fn, args=(), kwargs=None, *, timeout=None, deferrable=False):
        """Run ``fn(*args, **kwargs)`` in the lane; only the calling greenlet waits.

        If the caller goes away (killed, a ``gevent.Timeout``, *timeout*
        passed) while the call is queued, it never runs; while it runs, the
        driver is asked to stop it (see :mod:`offload.dbapi.cancel`).  From
        the hub, a *deferrable* call is queued without waiting (None is
        returned); any other blocks the hub, counted and warned about once.
        """
        self.check()
        args, kwargs = unwrap_args(args, kwargs or {})
        lane = self.lane
        if _tls.queue is lane._queue:  # from the lane itself (a call inside call()): inline
            return fn(*args, **kwargs)
        bridge = current_bridge()
        if bridge is None and in_hub():
            if deferrable:
                self.stats.add("hub_deferred")
                self.submit(fn, *args, **kwargs)
                return None
            self.stats.add("hub_blocking")
            warn_blocking(name_of(fn))
        run = _Run()
        work = lane._pack(self._run, (run, fn, args, kwargs), {})
        item = (ThreadCall if bridge is None else HubCall)(work, bridge)
        pending = self.pending
        pending.append(None)  # taken back by _run, or by _give_up if the call never starts
        try:
            must_wait = lane._put(item)
        except BaseException:
            pending.pop()
            raise
        if must_wait and bridge is not None:
            bridge.gather()
        # The name only matters for a timeout's message: skip the lookup otherwise.
        name = name_of(fn) if timeout is not None else None
        return item.settle(timeout, name, lambda item: self._give_up(item, run))

    def _run(self, run, fn, args, kwargs):
        """The call, in the lane, marked as the one running while it runs."""
        with self.lock:
            if run.abandoned:  # its caller left between the lane's claim and here
                run.finished = True
                self.pending.pop()
                return None
            self.running = run
        error = None
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self.cancel_lock, self.lock:
                self.running = None
                run.finished = True
            self.pending.pop()  # after the call: from here on it no longer touches the connection
            if run.cancelled_at:
                took = self.canceller is not None and self.canceller.took_effect(error)
                if took:
                    self.stats.add("cancels_effective", monotonic() - run.cancelled_at)
            error = None

    def _give_up(self, item, run):
        """The caller went away: a queued call never runs; a running one is cancelled."""
        if item.start():  # still queued: it never runs
            self.pending.pop()
            return "start"
        with self.lock:
            if run.finished:
                return "finish"
            run.abandoned = True
        self.stats.add("abandoned")
        if self.canceller is not None:
            cancel_pool().submit(self._cancel, run)
        return "finish"

    def _cancel(self, run: _Run) -> None:
        """In a cancel thread: stop *run* if it is still the call the lane runs."""
        with self.cancel_lock:
            with self.lock:
                if self.running is not run:
                    return
            try:
                self.canceller.cancel(self.raw, self.dial)  # type: ignore[union-attr]
            except Exception:  # the server is gone or refused: the statement ends by itself
                return
            run.cancelled_at = monotonic()
            self.dirty = True
        self.stats.add("cancels_sent")

    def _after_fork(self) -> None:
        """In a forked child: make the parent's connection unusable here, and
        harmless (see :mod:`offload.dbapi.forked`)."""
        self.forked = True
        if not self.closed:
            disarm(self.raw, file_only=self.module.__name__ == "sqlite3")


class SessionProxy(ProxyBase):
    """What a :class:`~offload.dbapi.Connection` and a :class:`~offload.dbapi.Cursor`
    share: their calls go through their :class:`Session`, attribute writes
    run in the lane."""

    __slots__ = ("_offload_session",)

    def __init__(self, raw: Any, session: Any) -> None:  # a Session (Any: the docs do not show it)
        super().__init__(raw, pool=session.lane)
        setattribute(self, "_offload_session", session)

    def _offload_call(self, fn, args=(), kwargs=None):
        return self._offload_session.call(fn, args, kwargs)

    def __getattr__(self, name):
        # Only the real object's own methods run in the lane.  Everything
        # else is returned as it is: the driver's exception classes
        # (``conn.Error`` must work in ``except``), other classes, functions
        # stored as attributes (sqlite3's ``row_factory``), plain values.
        attr = getattr(self._offload_obj, name)
        if getattr(attr, "__self__", None) is self._offload_obj and not isinstance(attr, type):
            return self._offload_method(attr, name)
        return self._offload_wrap(attr, name)

    def __setattr__(self, name, value):
        self._offload_call(setattr, (self._offload_obj, name, unwrap(value)))

    def __delattr__(self, name):
        self._offload_call(delattr, (self._offload_obj, name))
