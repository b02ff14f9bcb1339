"""The end of the interpreter and os.fork(): nothing submitted is lost, no waiter hangs.

Every scenario runs in its own interpreter (tests/modes.py), in each patching
mode, with real threads, processes, files and ``os.fork()``.  The functions
the snippets hand to process pools live here, so that children can import
them by name.
"""

import os
import signal
import time

import modes
import psutil
import pytest

from offload._core import exiting
from offload._core import native as _native


def append_line(path, text, delay=0.0):
    """Sleep *delay* seconds (a real sleep, in any thread), then append *text* to *path*."""
    _native.sleep(delay)
    with open(path, "a") as f:
        f.write(f"{text}\n")
    return text


def ignore_sigterm_forever(path):
    """Write this process's pid to *path*, then ignore SIGTERM and never return."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(0.05)


def _read_lines(path):
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


# -- exit ---------------------------------------------------------------------

RUNS_ALL = r"""
import gevent, offload
from test_lifecycle import append_line

path = {path!r}
threads = offload.ThreadPool(2)
for i in range(20):
    threads.submit(append_line, path, f"t{{i}}", 0.02)   # most still queued at exit
offload.submit(append_line, path, "default", 0.3)        # the default pool, running at exit
gevent.spawn(offload.call, append_line, path, "greenlet", 0.2)  # fire and forget
gevent.sleep(0)  # let the greenlet hand its call over
offload.ThreadPool(1).submit(append_line, path, "collected", 0.1)  # the pool is dropped at once
processes = offload.ProcessPool(1)
for i in range(3):
    processes.submit(append_line, path, f"p{{i}}", 0.1)
print("submitted=", threads.stats()["submitted"] + processes.stats()["submitted"])
"""


@pytest.mark.parametrize("mode", modes.ALL_MODES)
def test_exit_runs_every_submitted_call(mode, tmp_path):
    path = str(tmp_path / "lines")
    out, err = modes.run_full(mode, RUNS_ALL.format(path=path), timeout=60)
    assert modes.lines(out)["submitted"] == "23"
    expected = {f"t{i}" for i in range(20)} | {f"p{i}" for i in range(3)}
    expected |= {"default", "greenlet", "collected"}
    got = _read_lines(path)
    assert sorted(got) == sorted(expected)  # each ran, and ran once
    assert "gave up" not in err, err


GIVES_UP = r"""
import os, time, offload
from offload._core import native
from test_lifecycle import append_line, ignore_sigterm_forever

path, pidfile = {path!r}, {pidfile!r}
threads = offload.ThreadPool(1)
threads.submit(native.sleep, 30)                 # hung: running at the limit
threads.submit(append_line, path, "queued")      # behind it: never runs
processes = offload.ProcessPool(1)
processes.submit(ignore_sigterm_forever, pidfile)
deadline = time.monotonic() + 20
while not (os.path.exists(pidfile) and open(pidfile).read()):
    assert time.monotonic() < deadline
    time.sleep(0.01)
print("started=", time.monotonic())
"""


@pytest.mark.parametrize("mode", modes.ALL_MODES)
def test_exit_gives_up_after_the_limit_with_one_warning(mode, tmp_path):
    path, pidfile = str(tmp_path / "lines"), str(tmp_path / "pid")
    snippet = GIVES_UP.format(path=path, pidfile=pidfile)
    out, err = modes.run_full(mode, snippet, timeout=60, env={"OFFLOAD_EXIT_TIMEOUT": "1"})
    took = time.monotonic() - float(modes.lines(out)["started"])
    # 1 s limit + 1 s SIGTERM grace + reaping; the 30 s call and the process
    # that ignores SIGTERM did not hold the exit (generous for a loaded machine).
    assert took < 8, took
    assert err.count("gave up on") == 1, err
    assert "3 offload call(s)" in err
    assert "1 running (sleep), 1 queued (append_line)" in err
    assert "1 running (ignore_sigterm_forever)" in err
    assert _read_lines(path) == []  # the queued call was cancelled, not run late
    with open(pidfile) as f:
        pid = int(f.read())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"worker {pid} outlived the program"
        time.sleep(0.05)


FORK_THEN_EXIT = r"""
import os, sys, time, offload
from offload._core import native
pool = offload.ThreadPool(4)
pool.call(native.sleep, 0.01)           # workers alive in the parent at the fork
pid = os.fork()
if pid == 0:
    print("child_ended=", time.monotonic(), flush=True)
    sys.exit(0)                         # a normal exit: the exit hook runs in the child
_, status = os.waitpid(pid, 0)
print("child_reaped=", time.monotonic(), os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_a_forked_child_exits_without_waiting_for_the_parents_workers(mode):
    out, err = modes.run_full(mode, FORK_THEN_EXIT, timeout=60)
    got = modes.lines(out)
    reaped, code = got["child_reaped"].split()
    assert code == "0"
    assert float(reaped) - float(got["child_ended"]) < 5  # not the 10 s limit
    assert "gave up" not in err, err


IDLE = r"""
import time, offload
offload.call(sum, [1, 2])
offload.ProcessPool(1).call(sum, [1, 2])
print("ended=", time.monotonic())
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_exit_is_prompt_when_pools_are_idle(mode):
    # The default limit is 10 s: an idle exit must not wait for it.
    out = modes.run(mode, IDLE, timeout=60, env={"OFFLOAD_EXIT_TIMEOUT": ""})
    assert time.monotonic() - float(modes.lines(out)["ended"]) < 5


LATE = r"""
import atexit, offload
import offload.processpool  # imported now: importing concurrent.futures.process at exit fails on its own

def late():
    for make in (offload.get_default_pool, lambda: offload.ThreadPool(1), lambda: offload.ProcessPool(1)):
        try:
            make().submit(print, "ran late")
        except RuntimeError as exc:
            print("refused=", exc)

atexit.register(late)
offload.call(sum, [1])
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_submit_once_exit_has_begun_raises(mode):
    out = modes.run(mode, LATE, timeout=60)
    assert "ran late" not in out
    assert out.count("refused= cannot schedule new futures after interpreter shutdown") == 3


@pytest.mark.parametrize(
    "value, expected",
    [("", exiting.DEFAULT_EXIT_TIMEOUT), ("0", 0.0), ("2.5", 2.5), ("inf", None)],
)
def test_exit_timeout_values(monkeypatch, value, expected):
    monkeypatch.setenv("OFFLOAD_EXIT_TIMEOUT", value)
    assert exiting.exit_timeout() == expected


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_bad_exit_timeout_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("OFFLOAD_EXIT_TIMEOUT", value)
    with pytest.raises(ValueError, match="OFFLOAD_EXIT_TIMEOUT must be"):
        exiting.exit_timeout()


def test_bad_exit_timeout_fails_the_first_pool():
    snippet = """
    import offload
    try:
        offload.ThreadPool(1)
    except ValueError as exc:
        print("error=", exc)
    """
    out = modes.run("none", snippet, env={"OFFLOAD_EXIT_TIMEOUT": "ten"})
    assert modes.lines(out)["error"] == "OFFLOAD_EXIT_TIMEOUT must be a number of seconds, not 'ten'"


# -- fork ---------------------------------------------------------------------

FORK_IN_FLIGHT = r"""
import os, time
import gevent, offload
from offload._core import native
from test_lifecycle import append_line

def main():
    report = {report!r}
    threads = offload.ThreadPool(20)
    processes = offload.ProcessPool(1)
    processes.call(os.getpid)                       # the forkserver is the parent's
    glets = [gevent.spawn(threads.call, native.sleep, 0.5) for _ in range(100)]
    futures = [threads.submit(native.sleep, 0.5) for _ in range(10)]
    pglets = [gevent.spawn(processes.call, append_line, os.devnull, "x", 0.5) for _ in range(3)]
    gevent.sleep(0.1)                               # 20 + 1 running, the rest queued
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            started = time.monotonic()
            gevent.joinall(glets + pglets, timeout=5)
            took = time.monotonic() - started
            errors = [g.exception for g in glets + pglets] + [f.exception(timeout=5) for f in futures]
            named = sum(isinstance(e, RuntimeError) and f"when it forked (pid {{os.getppid()}})" in str(e)
                        for e in errors)
            states = sorted({{str(e).split(" was ")[1].split(" in ")[0] for e in errors if e}})
            fresh = offload.ProcessPool(1)
            with open(report, "w") as f:
                f.write(f"took={{took}}\nnamed={{named}}\nstates={{states}}\n")
                f.write(f"thread={{threads.call(os.getpid) == os.getpid()}}\n")
                f.write(f"inherited={{processes.call(os.getpid) not in (os.getpid(), 0)}}\n")
                f.write(f"fresh={{fresh.call(append_line, os.devnull, 'x')}}\n")
            fresh.shutdown()
            processes.shutdown()
            code = 0
        finally:
            os._exit(code)
    gevent.joinall(glets + pglets)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, "the child hung"
        gevent.sleep(0.02)
    ok = sum(g.successful() for g in glets + pglets) + sum(f.exception() is None for f in futures)
    print("parent_ok=", ok)
    print("parent_later=", processes.call(os.getpid) != os.getpid())

if __name__ == "__main__":
    main()
"""

LOOPS = [(mode, None) for mode in modes.ALL_MODES] + [("none", "libuv-cffi"), ("all", "libuv-cffi")]


@pytest.mark.parametrize("mode, loop", LOOPS)
def test_fork_fails_the_parents_calls_in_the_child_and_pools_work_there(mode, loop, tmp_path):
    report = str(tmp_path / "child")
    env = {"GEVENT_LOOP": loop} if loop else None
    out = modes.run(mode, FORK_IN_FLIGHT.format(report=report), 90, env)
    parent = modes.lines(out)
    assert parent["parent_ok"] == "113"  # the parent lost nothing
    assert parent["parent_later"] == "True"
    with open(report) as f:
        child = modes.lines(f.read())
    assert child["named"] == "113"  # every copied waiter got the error naming the fork
    assert child["states"] == "['queued', 'running']"
    assert float(child["took"]) < 3  # at once, not after the parent's 0.5 s calls (generous)
    assert child["thread"] == "True"
    assert child["inherited"] == "True"  # was ChildProcessError: No child processes
    assert child["fresh"] == "x"
