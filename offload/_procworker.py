"""The real thread that looks after one worker process of a ProcessPool.

The thread takes calls from the pool's queue one at a time, sends each to
its process, and waits with the unpatched :func:`select.poll` for the answer
or the process's death, so nothing here is a patched primitive that could
hang.  A process that dies fails only the call it was running, with
:exc:`WorkerCrashed`, and is replaced.
"""

import os
import signal
from time import monotonic

from gevent.monkey import get_original

from . import _wire
from ._core import native
from ._poolbase import Counters

_poll = get_original("select", "poll")
_waitpid = get_original("os", "waitpid")
_POLLIN = 0x001
_POLLOUT = 0x004
_POLL_ERRORS = 0x008 | 0x010 | 0x020  # POLLERR | POLLHUP | POLLNVAL

_start_lock = native.allocate_lock()  # one process start at a time, see Worker.start_process


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


def _describe(exitcode):
    if exitcode is None:
        return "an unknown exit code"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class Worker:
    """One worker process and the real thread that looks after it.

    The thread takes calls from the pool's queue one at a time, starts the
    process when it has none, and replaces it after a crash or after
    ``max_tasks_per_child`` calls.  Its pipe ends are non-blocking and it
    waits on them together with the process's sentinel, so a child that dies
    at any moment -- even halfway through a message -- is noticed.
    """

    def __init__(self, pool):
        self.pool = pool
        self.counters = Counters()
        self.proc = None
        self.pid = None
        self.served = 0
        self.tasks_fd = self.results_fd = self.sentinel = None
        self.poller = None
        self.buffer = bytearray()
        self.stopping = False  # set by _terminate: do not start another process
        self.current = None  # the call whose answer the process owes, under self.lock
        self.lock = native.allocate_lock()
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
                    value, error = self.execute(item)
                except BaseException as exc:  # a failure of this machinery: tell the caller
                    value, error = None, exc
                counters.run_time += monotonic() - started
                counters.active = 0
                if error is None:
                    counters.completed += 1
                else:
                    counters.failed += 1
                item.finish(value, error, pool._queue.qsize() > 0)
                item = value = error = None
                self.replenish()
                if len(idle) < pool._max_workers:
                    idle.append(None)
        finally:
            self.stop_process()
            pool._retire(self)

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
        answer = self.receive()
        with self.lock:
            self.current = None
        if answer is None:
            exitcode, pid = self.reap()
            self.replace = True
            return None, WorkerCrashed(
                f"the worker process (pid {pid}) running {name} died with {_describe(exitcode)}",
                exitcode,
                pid,
            )
        self.served += 1
        return _wire.decode(answer, name)

    def kill_running(self, item):
        """Kill the process if it is running *item* (and nothing else); True if killed."""
        with self.lock:
            if self.current is not item or self.proc is None:
                return False
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                return False
            return True

    def replenish(self):
        """After a call has been answered: retire a process that has served
        ``max_tasks_per_child`` calls, and replace one that is gone."""
        limit = self.pool._max_tasks_per_child
        if self.proc is not None and limit is not None and self.served >= limit:
            self.stop_process()
            self.replace = True
        if self.replace and not (self.stopping or self.pool._is_shutdown):
            self.replace = False
            try:
                self.start_process()
            except OSError:
                pass  # out of pipes or processes: the next call tries again and reports it

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
            target=_wire.child_main,
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
        value, error = _wire.decode(ready, "the initializer")
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
            message = _wire.take_message(buffer)
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
                return _wire.take_message(buffer)

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
            os.write(self.tasks_fd, _wire.STOP)
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


os.register_at_fork(after_in_child=_after_fork_in_child)
