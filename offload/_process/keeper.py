"""The real thread that looks after one worker process of a ProcessPool.

The thread takes calls from the pool's queue one at a time, sends each to
its process, and waits with the unpatched :func:`select.poll` for the answer
or the process's death, so nothing here is a patched primitive that could
hang.  A process that dies fails only the call it was running, with
:exc:`WorkerCrashed`, and is replaced.
"""

import os
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from gevent.monkey import get_original

from .._core import native
from .._core.observe import logger
from .._poolbase import Counters, serve
from . import starting, wire
from .channel import Answers, socket_pair
from .child import child_main

_poll = get_original("select", "poll")
_waitpid = get_original("os", "waitpid")
_POLLIN = 0x001
_POLLOUT = 0x004

_start_lock = native.allocate_lock()  # one process start at a time, see ChildKeeper.start_process


class WorkerCrashed(BrokenProcessPool):
    """The worker process running a call died before it answered.

    ``exitcode`` is the process's exit code, negative for the signal that
    killed it (as :attr:`multiprocessing.Process.exitcode`), or None if it
    could not be learnt.  Only the call that process was running fails; the
    pool starts a replacement and keeps serving -- unlike the standard
    library's, whose pool is broken for good.  It is a
    :class:`concurrent.futures.process.BrokenProcessPool` (and so a
    :class:`concurrent.futures.BrokenExecutor`), so that code written for
    :class:`~concurrent.futures.ProcessPoolExecutor` catches it.
    """

    def __init__(self, message: str, exitcode: int | None = None, pid: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.pid = pid


WorkerCrashed.__module__ = "offload"  # where users import it from; tracebacks show this path


def _describe(exitcode):
    if exitcode is None:
        return "an unknown exit code"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(frozen=True)
class ChildSpec:
    """How a pool's worker processes are started."""

    context: Any  # a multiprocessing context (forkserver or spawn)
    initializer: Callable[..., Any] | None
    initargs: tuple
    name: str  # the pool's; a child is named "<name>-worker"
    max_tasks_per_child: int | None
    main_path: str | None = None  # __main__.__file__ when the pool was made


class ChildKeeper:
    """The real thread that looks after one worker process of a ProcessPool.

    The thread takes calls from the pool's queue one at a time, starts the
    process when it has none, and replaces it after a crash or after
    ``max_tasks_per_child`` calls.  Its pipe ends are non-blocking and it
    waits on them together with the process's sentinel, so a child that dies
    at any moment -- even halfway through a message -- is noticed.
    """

    def __init__(
        self,
        spec: ChildSpec,
        queue: Any,
        idle: deque,
        max_idle: int,
        closing: Callable[[], bool],
        retire: Callable[["ChildKeeper"], None],
    ) -> None:
        self.spec = spec
        self.queue = queue
        self.idle = idle
        self.max_idle = max_idle
        self.closing = closing  # whether the pool is shutting down
        self.retire = retire  # the pool's: called once, when this thread ends
        self.counters = Counters(spec.name)
        # The process and its pipe ends: None while there is no process.
        self.proc: Any = None
        self.pid: int | None = None
        self.served = 0
        self.tasks_fd: Any = None
        self.answers: Answers | None = None  # the results socket, read by whole answers
        self.sentinel: Any = None
        self.stopping = False  # set by _terminate: do not start another process
        self.current = None  # the call whose answer the process owes, under self.lock
        self.lock = native.allocate_lock()
        self.replace = False  # the process crashed or retired: start the next one now

    # -- the thread -------------------------------------------------------

    def run(self) -> None:
        """The body of the keeper thread: serve the queue, then stop the process."""
        try:
            serve(self.queue, self.idle, self.max_idle, self.counters, self._execute, self._after_each)
        finally:
            self.stop_process()
            self.retire(self)

    def _execute(self, item):
        try:
            return self.execute(item)
        except BaseException as exc:  # a failure of this machinery: tell the caller
            return None, exc

    def _after_each(self, work, item, run, ended):
        self.replenish()

    def execute(self, item):
        """Run one call in the process; (value, error)."""
        payload, name = item.work
        for _ in range(2):  # a process found dead while idle is replaced once
            if self.proc is None:
                error = self.start_process()
                if error is not None:
                    return None, error
            with self.lock:
                self.current = item
            if self.alive() and self.send(payload):
                break
            with self.lock:
                self.current = None
            self.reap()
        else:
            return None, WorkerCrashed(f"worker processes die on start; cannot run {name}")
        answer = self.answers.receive()  # type: ignore[union-attr]
        with self.lock:
            self.current = None
        if answer is None:
            exitcode, pid = self.reap()
            self.replace = True
            message = f"the worker process (pid {pid}) running {name} died with {_describe(exitcode)}"
            logger.debug("%s: %s; starting a replacement", self.spec.name, message)
            return None, WorkerCrashed(message, exitcode, pid)
        self.served += 1
        head, buffers = answer
        return wire.decode(head, buffers, name)

    def kill_running(self, item):
        """Kill the process if it is running *item* (and nothing else); True if killed."""
        with self.lock:
            if self.current is not item or self.proc is None or self.pid is None:
                return False
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                return False
            return True

    def signal(self, kill):
        """Send the process SIGTERM (or SIGKILL if *kill*), if it has one."""
        proc = self.proc
        if proc is not None:
            try:
                proc.kill() if kill else proc.terminate()
            except (OSError, AttributeError):  # gone already, or reaped meanwhile
                pass

    def replenish(self):
        """After a call has been answered: retire a process that has served
        ``max_tasks_per_child`` calls, and replace one that is gone."""
        limit = self.spec.max_tasks_per_child
        if self.proc is not None and limit is not None and self.served >= limit:
            self.stop_process()
            self.replace = True
        if self.replace and not (self.stopping or self.closing()):
            self.replace = False
            try:
                failure = self.start_process()
            except OSError as exc:
                failure = exc  # out of pipes or processes: the next call tries again and reports it
            if failure is None:
                logger.debug("%s: started worker process %s", self.spec.name, self.pid)
            else:
                logger.debug("%s: could not start a worker process: %r", self.spec.name, failure)

    # -- the process ------------------------------------------------------

    def start_process(self):
        """Start a process and wait until it is ready; an error or None."""
        from multiprocessing import process as mp_process
        from multiprocessing.connection import Connection

        spec = self.spec
        task_r, task_w = os.pipe()
        results, child_results = socket_pair()
        child_ends = (Connection(task_r, writable=False), Connection(child_results.detach(), readable=False))
        proc = spec.context.Process(
            target=child_main,
            args=child_ends + (spec.initializer, spec.initargs),
            name=f"{spec.name}-worker",
        )
        try:
            # multiprocessing's forkserver client and resource tracker guard
            # themselves with locks that may be gevent's after patching; this
            # pool never contends for them from two threads at once.
            with _start_lock:
                starting.restore_main_path(spec.main_path)
                proc.start()
        except BaseException as exc:
            os.close(task_w)
            results.close()
            failure = RuntimeError(f"cannot start a worker process: {exc!r}")
            failure.__cause__ = exc
            return failure
        finally:
            for end in child_ends:
                end.close()
        # This thread reaps the process itself, with unpatched calls;
        # multiprocessing's own bookkeeping would poll it with patched ones.
        mp_process._children.discard(proc)  # type: ignore[attr-defined]
        os.set_blocking(task_w, False)
        self.proc = proc
        self.pid = proc.pid
        self.tasks_fd, self.sentinel = task_w, proc.sentinel
        self.answers = Answers(results, proc.sentinel)
        self.served = 0
        ready = self.answers.receive()
        if ready is None:
            exitcode, pid = self.reap()
            message = f"a new worker process (pid {pid}) died with {_describe(exitcode)}"
            return WorkerCrashed(message, exitcode, pid)
        _, error = wire.decode(ready[0], ready[1], "the initializer")
        if error is not None:
            self.stop_process()
            failure = RuntimeError(f"the initializer of {spec.name} failed in a worker process: {error!r}")
            failure.__cause__ = error
            return failure
        return None

    def alive(self):
        return self.answers._alive()  # type: ignore[union-attr]

    def send(self, parts):
        """Write a whole message, its parts in order; False if the process died first."""
        fd = self.tasks_fd
        for part in parts:
            view = memoryview(part)
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

    def reap(self):
        """Forget the (dead or dying) process; (exit code or None, pid)."""
        proc, pid = self.proc, self.pid
        if proc is None:
            return None, pid
        self.proc = None
        os.close(self.tasks_fd)
        self.answers.close()  # type: ignore[union-attr]
        self.tasks_fd = self.answers = None
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

    def forget(self):
        """In a forked child: close the copies of the parent's pipe ends and
        sentinel (the process is the parent's), so that they do not outlive
        the parent's."""
        if self.tasks_fd is not None:
            try:
                os.close(self.tasks_fd)
            except OSError:
                pass
        if self.answers is not None:
            self.answers.close()
        if self.proc is not None:
            # The sentinel through multiprocessing's own finalizer, which
            # would otherwise close that fd number again when collected.
            self.proc._popen.close()
        self.proc = self.tasks_fd = self.answers = self.sentinel = None

    def stop_process(self, grace=5.0):
        """Ask the process to exit; terminate, then kill it if it does not."""
        if self.proc is None:
            return
        try:
            os.write(self.tasks_fd, wire.STOP)
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


def _after_fork_in_child():
    global _start_lock
    _start_lock = native.allocate_lock()
    starting.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
