"""A pool of worker processes that greenlets can wait on cooperatively.

Threads do not help pure-Python CPU work: the GIL runs one thread at a time,
and a busy worker thread delays every hub wake-up by a switch interval.
:class:`ProcessPool` runs such calls in child processes instead, without the
traps of :mod:`multiprocessing` under gevent:

* Children start with ``forkserver`` (or ``spawn``), never by forking a
  patched, threaded parent.
* Each child is looked after by one real OS thread of the parent (from
  :mod:`offload._native`).  That thread sends the child one call at a time on
  a pipe, waits with the unpatched :func:`select.poll` for the answer or the
  child's death, and hands the outcome to the caller through the hub bridge.
  Nothing in this machinery is a patched primitive.
* Because a child only ever holds the one call it is running, a child that
  dies fails exactly that call with :exc:`WorkerCrashed`; its thread starts a
  replacement and goes on.  Queued calls stay in the parent, where a waiter
  that gives up can still cancel them.
* Calls are pickled in the caller, so an unpicklable function or argument
  raises there at once.
"""

import atexit
import io
import os
import pickle
import signal
import struct
import sys
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from functools import partial
from itertools import chain, islice
from time import monotonic
from types import FunctionType
from typing import Any

from gevent.monkey import get_original
from greenlet import getcurrent

from . import _native
from ._bridge import HubWaiting, ThreadWaiting, current_bridge, locked
from .future import Future
from .threadpool import _check_count, _name_of, check_callable, check_timeout

__all__ = ["ProcessPool", "WorkerCrashed", "get_default_process_pool", "default_process_count"]

_poll = get_original("select", "poll")
_waitpid = get_original("os", "waitpid")
_POLLIN = 0x001
_POLLOUT = 0x004
_POLL_ERRORS = 0x008 | 0x010 | 0x020  # POLLERR | POLLHUP | POLLNVAL

_HEADER = struct.Struct("!Q")
_STOP = _HEADER.pack(0)  # an empty message tells a child to exit
_VALUE, _RAISED, _UNSENDABLE = 0, 1, 2  # the first byte of every answer
_PROTOCOL = pickle.HIGHEST_PROTOCOL

_in_worker = False  # True in a child process of any ProcessPool
_start_lock = _native.allocate_lock()  # one process start at a time, see _Worker.start_process
_pools = weakref.WeakSet()


class WorkerCrashed(Exception):
    """The worker process running a call died before it answered.

    ``exitcode`` is the process's exit code, negative for the signal that
    killed it (as :attr:`multiprocessing.Process.exitcode`), or None if it
    could not be learnt.  Only the call that process was running fails; the
    pool starts a replacement and keeps serving.
    """

    def __init__(self, message, exitcode=None, pid=None):
        super().__init__(message)
        self.exitcode = exitcode
        self.pid = pid


class RemoteTraceback(Exception):
    """The traceback, as text, of an exception raised in a worker process.

    It is set as the ``__cause__`` of the re-raised exception, so the
    child's frames are printed above the caller's.
    """

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return "\n\n" + self.text


def default_process_count():
    """The number of processes a pool gets when none is asked for.

    ``OFFLOAD_PROCESSES`` from the environment if set, else the number of
    CPUs this process may run on.
    """
    value = os.environ.get("OFFLOAD_PROCESSES")
    if value is not None and value.strip():
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"OFFLOAD_PROCESSES must be an integer, not {value!r}") from None
        if count <= 0:
            raise ValueError(f"OFFLOAD_PROCESSES must be greater than 0, not {count}")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


# -- pickling ---------------------------------------------------------------


def _unwrapped(module, qualname):
    """The function that ``module.qualname`` wraps (see :class:`_WrapperAwarePickler`)."""
    obj = sys.modules.get(module) or __import__(module, fromlist=["_"])
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.__wrapped__


class _WrapperAwarePickler(pickle.Pickler):
    """Pickles a function hidden behind a decorator of the same name.

    ``@offload(pool="process")`` replaces ``f`` in its module by a wrapper
    that hands the original function to the pool; pickle would refuse it
    ("not the same object as module.f").  This pickler sends it as "the
    ``__wrapped__`` of ``module.f``" instead.  It is only the fallback when
    plain pickling fails, because a Python hook on every object is slow.
    """

    def reducer_override(self, obj):
        if type(obj) is FunctionType:
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", "")
            if module and "<locals>" not in qualname:
                try:
                    found = _unwrapped(module, qualname)
                except Exception:
                    return NotImplemented
                if found is obj:
                    return _unwrapped, (module, qualname)
        return NotImplemented


def _dumps(obj):
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except Exception as first:
        buffer = io.BytesIO()
        try:
            _WrapperAwarePickler(buffer, _PROTOCOL).dump(obj)
        except Exception:
            raise first from None
        return buffer.getvalue()


def _pack_call(fn, args, kwargs):
    """The message that asks a child to run ``fn(*args, **kwargs)``."""
    try:
        body = _dumps((fn, args, kwargs))
    except Exception as exc:
        raise pickle.PicklingError(
            f"cannot send {_name_of(fn)} and its arguments to a worker process: {exc} "
            "(functions must be importable by name, arguments and results picklable)"
        ) from exc
    return _HEADER.pack(len(body)) + body


def _run_chunk(fn, chunk):
    """Run *fn* over a list of argument tuples in one child (``map(chunksize=...)``)."""
    return [fn(*args) for args in chunk]


def _chunks(iterables, size):
    items = zip(*iterables)  # noqa: B905 - stops at the shortest, as map() does
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


# -- the child side ---------------------------------------------------------


def _read_exactly(fd, size):
    parts = []
    while size:
        part = os.read(fd, min(size, 1 << 20))
        if not part:
            raise EOFError
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _answer_raised(exc):
    """The answer that carries *exc*, its type and its traceback text."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        pickled = _dumps(exc)
    except Exception:
        pickled = None
    try:
        message = str(exc)
    except Exception:
        message = repr(exc)
    body = pickle.dumps((pickled, kind, message, text), _PROTOCOL)
    return bytes((_RAISED,)) + body


def _answer(data):
    """Run the call in *data* and return the answer to send back."""
    try:
        fn, args, kwargs = pickle.loads(data)
    except BaseException as exc:
        return _answer_raised(exc)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        return _answer_raised(exc)
    try:
        return bytes((_VALUE,)) + _dumps(value)
    except Exception as exc:
        text = f"cannot send the result of {_name_of(fn)} back from the worker process: {exc}"
        return bytes((_UNSENDABLE,)) + pickle.dumps(text, _PROTOCOL)


def _child_main(tasks, results, initializer, initargs):
    """The loop of a worker process: read a call, run it, write the answer."""
    global _in_worker
    _in_worker = True
    # Ctrl-C in a terminal signals the whole process group; the parent
    # decides what happens to the calls, so a child ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd = tasks.fileno(), results.fileno()

    def send(answer):
        _write_all(wfd, _HEADER.pack(len(answer)) + answer)

    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            send(_answer_raised(exc))
            return
    send(bytes((_VALUE,)) + pickle.dumps(None))  # ready
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(rfd, _HEADER.size))
            if not size:
                return
            data = _read_exactly(rfd, size)
        except EOFError:  # the parent is gone
            return
        answer = _answer(data)
        data = None
        try:
            send(answer)
        except BrokenPipeError:
            return


# -- the parent side --------------------------------------------------------


def _decode(answer, name):
    """(value, error) from a child's answer."""
    kind = answer[0]
    body = memoryview(answer)[1:]
    try:
        if kind == _VALUE:
            return pickle.loads(body), None
        if kind == _UNSENDABLE:
            return None, pickle.PicklingError(pickle.loads(body))
        pickled, type_name, message, text = pickle.loads(body)
    except Exception as exc:
        error = pickle.UnpicklingError(f"cannot load what the worker process sent back for {name}: {exc}")
        error.__cause__ = exc
        return None, error
    error = None
    if pickled is not None:
        try:
            error = pickle.loads(pickled)
        except Exception:
            error = None
        if not isinstance(error, BaseException):
            error = None
    if error is None:
        error = RuntimeError(f"{type_name}: {message} (raised in a worker process; cannot be sent back)")
    error.__cause__ = RemoteTraceback(text)
    return None, error


def _take_message(buffer):
    """Remove and return the first whole message in *buffer*, if there is one."""
    if len(buffer) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(buffer)
    end = _HEADER.size + size
    if len(buffer) < end:
        return None
    message = bytes(buffer[_HEADER.size : end])
    del buffer[:end]
    return message


def _describe(exitcode):
    if exitcode is None:
        return "an unknown exit code"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class _Counters:
    """What one worker has done; only its thread writes to it."""

    __slots__ = ("taken", "completed", "failed", "cancelled", "active", "wait_time", "run_time")

    def __init__(self):
        self.taken = self.completed = self.failed = self.cancelled = self.active = 0
        self.wait_time = self.run_time = 0.0

    def add(self, other):
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _Worker:
    """One worker process and the real thread that looks after it.

    The thread takes calls from the pool's queue one at a time, starts the
    process when it has none, and replaces it after a crash or after
    ``max_tasks_per_child`` calls.  Its pipe ends are non-blocking and it
    waits on them together with the process's sentinel, so a child that dies
    at any moment -- even halfway through a message -- is noticed.
    """

    def __init__(self, pool):
        self.pool = pool
        self.counters = _Counters()
        self.proc = None
        self.pid = None
        self.served = 0
        self.tasks_fd = self.results_fd = self.sentinel = None
        self.poller = None
        self.buffer = bytearray()
        self.stopping = False  # set by _terminate: do not start another process
        self.replace = False  # the process crashed or retired: start the next one now

    # -- the thread -------------------------------------------------------

    def run(self):
        pool = self.pool
        counters = self.counters
        get = pool._queue.get
        idle = pool._idle
        try:
            while True:
                item = get()
                if item is None:
                    return
                counters.taken += 1
                if not item.start():
                    counters.cancelled += 1
                    continue
                counters.active = 1
                started = monotonic()
                counters.wait_time += started - item.queued_at
                try:
                    value, error = self.execute(item.payload, item.name)
                except BaseException as exc:  # a failure of this machinery: tell the caller
                    value, error = None, exc
                counters.run_time += monotonic() - started
                counters.active = 0
                if error is None:
                    counters.completed += 1
                else:
                    counters.failed += 1
                item.finish(value, error)
                item = value = error = None
                self.replenish()
                if len(idle) < pool._max_workers:
                    idle.append(None)
        finally:
            self.stop_process()
            pool._retire(self)

    def execute(self, payload, name):
        """Run one call in the process; (value, error)."""
        for _ in range(2):  # a process found dead while idle is replaced once
            if self.proc is None:
                error = self.start_process()
                if error is not None:
                    return None, error
            if self.alive() and self.send(payload):
                break
            self.reap()
        else:
            return None, WorkerCrashed(f"worker processes die on start; cannot run {name}")
        answer = self.receive()
        if answer is None:
            exitcode, pid = self.reap()
            self.replace = True
            return None, WorkerCrashed(
                f"the worker process (pid {pid}) running {name} died with {_describe(exitcode)}",
                exitcode,
                pid,
            )
        self.served += 1
        return _decode(answer, name)

    def replenish(self):
        """After a call has been answered: retire a process that has served
        ``max_tasks_per_child`` calls, and replace one that is gone."""
        limit = self.pool._max_tasks_per_child
        if self.proc is not None and limit is not None and self.served >= limit:
            self.stop_process()
            self.replace = True
        if self.replace and not (self.stopping or self.pool._is_shutdown):
            self.replace = False
            self.start_process()  # if this fails, the next call tries again and reports it

    # -- the process ------------------------------------------------------

    def start_process(self):
        """Start a process and wait until it is ready; an error or None."""
        from multiprocessing import process as mp_process
        from multiprocessing.connection import Connection

        pool = self.pool
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        child_ends = (Connection(task_r, writable=False), Connection(result_w, readable=False))
        proc = pool._context.Process(
            target=_child_main,
            args=child_ends + (pool._initializer, pool._initargs),
            name=f"{pool.name}-worker",
        )
        try:
            # multiprocessing's forkserver client and resource tracker guard
            # themselves with locks that may be gevent's after patching; this
            # pool never contends for them from two threads at once.
            with _start_lock:
                proc.start()
        except BaseException as exc:
            os.close(task_w)
            os.close(result_r)
            failure = RuntimeError(f"cannot start a worker process: {exc!r}")
            failure.__cause__ = exc
            return failure
        finally:
            for end in child_ends:
                end.close()
        # This thread reaps the process itself, with unpatched calls;
        # multiprocessing's own bookkeeping would poll it with patched ones.
        mp_process._children.discard(proc)
        os.set_blocking(task_w, False)
        os.set_blocking(result_r, False)
        self.proc = proc
        self.pid = proc.pid
        self.tasks_fd, self.results_fd, self.sentinel = task_w, result_r, proc.sentinel
        self.poller = _poll()
        self.poller.register(result_r, _POLLIN)
        self.poller.register(proc.sentinel, _POLLIN)
        self.buffer = bytearray()
        self.served = 0
        ready = self.receive()
        if ready is None:
            exitcode, pid = self.reap()
            message = f"a new worker process (pid {pid}) died with {_describe(exitcode)}"
            return WorkerCrashed(message, exitcode, pid)
        value, error = _decode(ready, "the initializer")
        if error is not None:
            self.stop_process()
            failure = RuntimeError(f"the initializer of {pool.name} failed in a worker process: {error!r}")
            failure.__cause__ = error
            return failure
        return None

    def alive(self):
        return not any(fired == self.sentinel for fired, _ in self.poller.poll(0))

    def send(self, data):
        """Write a whole message; False if the process died first."""
        view = memoryview(data)
        fd = self.tasks_fd
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                waiter = _poll()
                waiter.register(fd, _POLLOUT)
                waiter.register(self.sentinel, _POLLIN)
                if any(fired == self.sentinel for fired, _ in waiter.poll()):
                    return False
            except OSError:  # BrokenPipeError: nobody reads any more
                return False
        return True

    def receive(self):
        """The next whole message from the process, or None if it died first."""
        buffer = self.buffer
        fd = self.results_fd
        while True:
            message = _take_message(buffer)
            if message is not None:
                return message
            dead = False
            for fired, events in self.poller.poll():
                if fired == self.sentinel or events & _POLL_ERRORS:
                    dead = True
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    dead = True
                    break
                buffer += chunk
            if dead:
                return _take_message(buffer)

    def reap(self):
        """Forget the (dead or dying) process; (exit code or None, pid)."""
        proc, pid = self.proc, self.pid
        if proc is None:
            return None, pid
        self.proc = None
        os.close(self.tasks_fd)
        os.close(self.results_fd)
        self.tasks_fd = self.results_fd = None
        self.poller = None
        exitcode = None
        popen = proc._popen
        try:
            if getattr(popen, "method", None) == "forkserver":
                # The forkserver reaps its children and writes the exit code
                # on the sentinel.
                from multiprocessing.forkserver import read_signed

                exitcode = read_signed(self.sentinel)
            else:
                _, status = _waitpid(pid, 0)
                exitcode = os.waitstatus_to_exitcode(status)
        except (OSError, EOFError, ValueError):
            exitcode = None  # reaped by someone else (e.g. a SIGCHLD handler)
        if exitcode is not None:
            popen.returncode = exitcode
        popen.close()
        return exitcode, pid

    def stop_process(self, grace=5.0):
        """Ask the process to exit; terminate, then kill it if it does not."""
        if self.proc is None:
            return
        try:
            os.write(self.tasks_fd, _STOP)
        except OSError:
            pass
        for action in (None, self.proc.terminate, self.proc.kill):
            if action is not None:
                try:
                    action()
                except OSError:
                    pass
            waiter = _poll()
            waiter.register(self.sentinel, _POLLIN)
            if waiter.poll(grace * 1000):
                break
            grace = 1.0
        self.reap()


# -- calls in the queue -----------------------------------------------------


class _Call:
    """A call whose caller waits on the item itself (:meth:`ProcessPool.call`)."""

    __slots__ = ()

    def __init__(self, payload, name, bridge):
        self.payload = payload
        self.name = name
        self.queued_at = monotonic()
        # Whoever pops the token owns the call: the worker thread (to run
        # it) or the caller (to cancel it).  list.pop is atomic.
        self.claim = [True]
        self.error = None
        self.done = False
        if bridge is None:
            self.lock = locked()
        else:
            self.glet = getcurrent()
            self.bridge = bridge
            self.woken = False

    def start(self):
        try:
            return self.claim.pop()
        except IndexError:
            return False

    def finish(self, value, error):
        self.payload = None
        self.value = value
        self.error = error
        self.done = True
        self.wake()

    def cancel(self):
        if self.start():
            self.finish(None, futures.CancelledError())
            return True
        return False

    def outcome(self):
        error = self.error
        if error is None:
            return self.value
        self.error = None
        try:
            raise error
        finally:
            error = None


_CALL_SLOTS = ("payload", "name", "queued_at", "claim", "value", "error", "done")


class _HubCall(_Call, HubWaiting):
    __slots__ = _CALL_SLOTS + ("glet", "bridge", "woken")


class _ThreadCall(_Call, ThreadWaiting):
    __slots__ = _CALL_SLOTS + ("lock",)


class _Task:
    """A call whose outcome goes to a :class:`Future` (:meth:`ProcessPool.submit`)."""

    __slots__ = ("payload", "name", "queued_at", "future")

    def __init__(self, future, payload, name):
        self.payload = payload
        self.name = name
        self.queued_at = monotonic()
        self.future = future

    def start(self):
        return self.future.set_running_or_notify_cancel()

    def finish(self, value, error):
        self.payload = None
        if error is None:
            self.future.set_result(value)
        else:
            self.future.set_exception(error)

    def cancel(self):
        self.future.cancel()
        return not self.start()


# -- the pool ---------------------------------------------------------------


def _context_for(mp_context):
    import multiprocessing

    if mp_context is None:
        return multiprocessing.get_context("forkserver")
    if isinstance(mp_context, str):
        if mp_context not in ("forkserver", "spawn"):
            raise ValueError(
                f"mp_context must be 'forkserver' or 'spawn', not {mp_context!r}: forking a process "
                "that runs gevent and threads copies their state half-way"
            )
        return multiprocessing.get_context(mp_context)
    method = getattr(mp_context, "get_start_method", None)
    if method is None or not callable(getattr(mp_context, "Process", None)):
        raise TypeError(
            f"mp_context must be None, 'forkserver', 'spawn' or a multiprocessing context, "
            f"not {type(mp_context).__name__}"
        )
    if method() not in ("forkserver", "spawn"):
        raise ValueError(f"mp_context must use the 'forkserver' or 'spawn' start method, not {method()!r}")
    return mp_context


class ProcessPool(futures.Executor):
    """A :class:`concurrent.futures.Executor` of worker processes for gevent.

    :param max_workers: the most processes it runs at once; ``None`` means
        :func:`default_process_count` (``OFFLOAD_PROCESSES``, else the CPUs
        available).
    :param mp_context: ``None`` (``forkserver``), ``"forkserver"``,
        ``"spawn"``, or a :mod:`multiprocessing` context using one of them.
        ``fork`` is refused: it copies a patched, threaded parent half-way.
    :param max_tasks_per_child: replace a process after it has run this many
        calls (``None``: never).
    :param initializer: called as ``initializer(*initargs)`` in each new
        process before its first call; it must be picklable.  If it raises,
        the call that was to run there fails with a RuntimeError from it.
    :param name: a label for :func:`repr`, :meth:`stats` and process names.

    Waiting on it -- :meth:`call`, or ``submit(...).result()`` -- blocks only
    the calling greenlet; in a plain thread it blocks that thread.  Processes
    start on demand and live until :meth:`shutdown`, or the end of the
    interpreter, which terminates them.  Inside a worker process, calls to
    any ProcessPool run inline: a worker never starts processes of its own.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: Any = None,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        name: str | None = None,
    ):
        if max_workers is None:
            max_workers = default_process_count()
        _check_count("max_workers", max_workers, 1)
        if max_tasks_per_child is not None:
            _check_count("max_tasks_per_child", max_tasks_per_child, 1)
        if initializer is not None:
            if not callable(initializer):
                raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
            if not isinstance(initargs, tuple):
                raise TypeError(f"initargs must be a tuple, not {type(initargs).__name__}")
            try:
                _dumps((initializer, initargs))
            except Exception as exc:
                raise TypeError(f"initializer and initargs must be picklable: {exc}") from exc
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self._context = _context_for(mp_context)
        self._max_workers = max_workers
        self._max_tasks_per_child = max_tasks_per_child
        self._initializer = initializer
        self._initargs = initargs
        self.name = name or f"ProcessPool-{id(self):x}"
        self._is_shutdown = False
        self._reset()
        _pools.add(self)
        _register_atexit()

    def _reset(self):
        """Start from nothing: on creation, and in the child after a fork."""
        self._lock = _native.allocate_lock()
        self._queue = _native.SimpleQueue()
        self._idle = deque()
        self._workers = []
        self._retired = _Counters()
        self._submitted = 0
        self._stopped = Future()

    @property
    def max_workers(self) -> int:
        return self._max_workers

    # -- submitting -------------------------------------------------------

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

        Only the calling greenlet waits.  *fn*, the arguments and the result
        cross a pipe, pickled: an unpicklable one raises
        :exc:`pickle.PicklingError` at once.  An exception raised in the
        child is re-raised here with its own type, and the child's traceback
        as its ``__cause__``.  If the process dies, :exc:`WorkerCrashed`.
        If the caller is killed, or a :class:`gevent.Timeout` fires, while
        the call is still queued, it is cancelled and never runs; a call
        already running finishes in its process and its result is dropped.
        """
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout):
        check_callable(fn)
        if _in_worker:
            return fn(*args, **kwargs)
        payload = _pack_call(fn, args, kwargs)
        bridge = current_bridge()
        item = (_ThreadCall if bridge is None else _HubCall)(payload, _name_of(fn), bridge)
        payload = None
        self._put(item)
        try:
            item.wait(timeout)
        except BaseException:
            item.start()  # cancels it if still queued
            raise
        if not item.done:
            state = "start" if item.start() else "finish"
            raise TimeoutError(f"{item.name} did not {state} within {timeout} seconds")
        return item.outcome()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` in a process; return a :class:`~offload.Future`.

        Pickling errors raise here, at once, as in :meth:`call`.
        """
        check_callable(fn)
        future = Future()
        if _in_worker:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)
            return future
        self._put(_Task(future, _pack_call(fn, args, kwargs), _name_of(fn)))
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Like :func:`map`, with calls run in the processes, results in order.

        :param chunksize: how many calls travel to a process together.  Large
            chunks save round trips for many small calls; an exception fails
            its whole chunk.
        :param timeout: seconds from this call until the iterator raises
            :exc:`TimeoutError` for a result not yet ready.

        Every call is submitted (and pickled) before this returns; leaving the
        iterator early cancels the calls that have not started.
        """
        check_callable(fn)
        check_timeout(timeout)
        _check_count("chunksize", chunksize, 1)
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        results = super().map(partial(_run_chunk, fn), _chunks(iterables, chunksize), timeout=timeout)
        return chain.from_iterable(results)

    def _put(self, item):
        # Under the lock, so that no call can land behind the stop markers
        # that shutdown() queues.
        with self._lock:
            if self._is_shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._submitted += 1
            self._queue.put(item)
        idle = self._idle
        if idle:
            try:
                idle.pop()  # a worker that finished a call will take this one
                return
            except IndexError:
                pass
        if len(self._workers) < self._max_workers:
            self._spawn()

    # -- workers ----------------------------------------------------------

    def _spawn(self):
        with self._lock:
            if len(self._workers) >= self._max_workers or self._is_shutdown:
                return
            worker = _Worker(self)
            self._workers.append(worker)
        try:
            _native.start_new_thread(worker.run, ())
        except BaseException:
            with self._lock:
                self._workers.remove(worker)
            raise

    def _retire(self, worker):
        with self._lock:
            self._workers.remove(worker)
            self._retired.add(worker.counters)
            last = not self._workers and self._is_shutdown
        if last:
            self._stopped.set_result(None)

    # -- lifecycle --------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; each process exits once the queue is done.

        :param wait: wait (cooperatively, in a greenlet) until every process
            has exited.
        :param cancel_futures: cancel the calls that have not started.
        """
        drained = self._close(cancel_futures)
        for item in drained:
            if item.cancel():
                with self._lock:
                    self._retired.cancelled += 1
        with self._lock:
            running = bool(self._workers)
        if wait and running:
            self._stopped.result()

    def _close(self, cancel_futures):
        drained = []
        with self._lock:
            self._is_shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except _native.Empty:
                        break
                    if item is not None:
                        drained.append(item)
                self._retired.taken += len(drained)
            for _ in self._workers:
                self._queue.put(None)
        return drained

    def _terminate(self, timeout):
        """Shut down now: cancel queued calls, kill running ones, reap all.

        What the interpreter's exit does to every pool still running.
        """
        for item in self._close(cancel_futures=True):
            item.cancel()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.stopping = True
            proc = worker.proc
            if proc is not None:
                try:
                    proc.terminate()
                except OSError:
                    pass
        if workers:
            done = locked()
            self._stopped.add_done_callback(lambda _: done.release())
            done.acquire(True, timeout)

    def _after_fork(self):
        # Only the forking thread exists in the child: the worker threads are
        # gone, and the processes are the parent's to look after.  Close the
        # copies of their pipes, or they would outlive the parent's.
        for worker in self._workers:
            for fd in (worker.tasks_fd, worker.results_fd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self._reset()

    def stats(self) -> dict:
        """A snapshot of what the pool has done, with :meth:`ThreadPool.stats`'s keys.

        ``workers`` processes alive, ``active`` running a call now, ``queued``
        waiting for a process, and totals since creation: ``submitted``,
        ``completed``, ``failed`` (raised, or their process crashed),
        ``cancelled`` (never ran); ``wait_time``/``run_time`` are the seconds
        calls spent queued/running (the round trip to the process included),
        with their means per call in ``mean_wait``/``mean_run``.
        """
        with self._lock:
            total = _Counters()
            total.add(self._retired)
            for worker in self._workers:
                total.add(worker.counters)
            workers = sum(1 for worker in self._workers if worker.proc is not None)
        ran = total.completed + total.failed
        return {
            "name": self.name,
            "max_workers": self._max_workers,
            "workers": workers,
            "active": total.active,
            "queued": max(self._submitted - total.taken, 0),
            "submitted": self._submitted,
            "completed": total.completed,
            "failed": total.failed,
            "cancelled": total.cancelled,
            "wait_time": total.wait_time,
            "run_time": total.run_time,
            "mean_wait": total.wait_time / ran if ran else 0.0,
            "mean_run": total.run_time / ran if ran else 0.0,
        }

    def pids(self) -> list:
        """The process ids of the worker processes alive now."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.proc is not None]

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.name!r} workers={len(self._workers)}"
            f"/{self._max_workers}{' shut down' if self._is_shutdown else ''}>"
        )


_default_pool = None
_default_lock = _native.allocate_lock()


def get_default_process_pool() -> ProcessPool:
    """The process-wide :class:`ProcessPool`, created on first use.

    ``pool="process"`` means this pool.  Its size is
    :func:`default_process_count`.
    """
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _default_lock:
            if _default_pool is None:
                _default_pool = ProcessPool(name="offload-process")
            pool = _default_pool
    return pool


_atexit_registered = False


def _register_atexit():
    # Registered when the first pool is made, after multiprocessing is
    # imported, so it runs before multiprocessing's own exit handler (atexit
    # runs last-registered first): the children are gone when that one looks.
    global _atexit_registered
    if not _atexit_registered:
        import multiprocessing.util  # noqa: F401 - registers its exit handler first

        _atexit_registered = True
        atexit.register(_terminate_all)


def _terminate_all():
    for pool in list(_pools):
        pool._terminate(timeout=5.0)


def _after_fork_in_child():
    global _start_lock
    _start_lock = _native.allocate_lock()
    for pool in list(_pools):
        pool._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
