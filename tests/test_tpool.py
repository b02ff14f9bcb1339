"""offload.tpool: eventlet.tpool's API on gevent, and where it deliberately differs.

Each difference from eventlet is shown against eventlet itself, run in a
subprocess (eventlet and gevent cannot share an interpreter).
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import gevent
import modes
import pytest

import offload
from offload import tpool


@pytest.fixture(autouse=True)
def fresh_pool():
    tpool.killall()
    yield
    tpool.killall()
    tpool.set_num_threads(20)


def run_eventlet(snippet, timeout=10):
    """Run *snippet* under eventlet; return (returncode or 'hung', stdout)."""
    pytest.importorskip("eventlet")
    code = "import warnings; warnings.simplefilter('ignore')\n" + textwrap.dedent(snippet)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hung", ""
    return proc.returncode, proc.stdout


@pytest.mark.timing
def test_execute_runs_in_a_thread_and_keeps_the_hub_free():
    result = offload.probe(tpool.execute, lambda: (time.sleep(0.3), threading.get_ident())[1], threshold=0.2)
    assert not result.blocked, result
    assert result.value != threading.get_ident()


@pytest.mark.timing
def test_execute_overlaps_up_to_the_thread_count():
    tpool.set_num_threads(2)
    started = time.monotonic()
    gevent.joinall([gevent.spawn(tpool.execute, time.sleep, 0.2) for _ in range(4)], raise_error=True)
    elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 1.0, elapsed  # two rounds of two


def _fails_with_a_local():
    secret = "worker-local"  # noqa: F841 - read back from the traceback
    raise ValueError("boom")


def test_exception_keeps_the_worker_frame_and_its_locals():
    with pytest.raises(ValueError) as info:
        tpool.execute(_fails_with_a_local)
    frames = [entry.frame for entry in info.traceback]
    worker = [f for f in frames if f.code.name == "_fails_with_a_local"]
    assert worker and worker[0].f_locals.get("secret") == "worker-local"


def test_eventlet_clears_the_worker_frame():
    code, out = run_eventlet("""
        from eventlet import tpool
        def fails():
            secret = "worker-local"
            raise ValueError("boom")
        try:
            tpool.execute(fails)
        except ValueError as exc:
            tb = exc.__traceback__
            while tb.tb_next:
                tb = tb.tb_next
            print("secret=%s" % tb.tb_frame.f_locals.get("secret"))
        """)
    assert code == 0 and "secret=None" in out, (code, out)


class Stop(BaseException):
    pass


def _raise_stop():
    raise Stop()


def test_base_exception_reaches_the_caller():
    with pytest.raises(Stop):
        tpool.execute(_raise_stop)
    assert tpool.execute(lambda: 3) == 3  # the pool still works


def test_eventlet_hangs_on_a_base_exception():
    code, _ = run_eventlet(
        """
        from eventlet import tpool
        class Stop(BaseException):
            pass
        def stop():
            raise Stop()
        tpool.set_num_threads(1)
        try:
            tpool.execute(stop)
        except Stop:
            print("delivered")
        """,
        timeout=5,
    )
    assert code == "hung"


class Made:
    def value(self):
        return threading.get_ident()

    def again(self):
        return Made()

    def other(self):
        return Other()


class Factory:
    def make(self):
        return Made()

    def __call__(self):
        return Made()


def test_proxy_autowrap_and_autowrap_names():
    by_type = tpool.Proxy(Factory(), (Made,))
    made = by_type.make()
    assert isinstance(made, tpool.Proxy)
    assert made.value() != threading.get_ident()  # its methods run in the pool too

    by_name = tpool.Proxy(Factory(), autowrap_names=("make",))
    assert isinstance(by_name.make(), tpool.Proxy)
    assert isinstance(tpool.Proxy(Factory(), autowrap_names=("__call__",))(), tpool.Proxy)
    assert not isinstance(tpool.Proxy(Factory())(), tpool.Proxy)


class Other:
    pass


class Maker:
    def make(self):
        return Made()

    def other(self):
        return Other()


def test_proxy_children_keep_autowrap():
    made = tpool.Proxy(Maker(), (Made,), ("other",)).make()  # wrapped by type
    assert isinstance(made.again(), tpool.Proxy)
    by_name = tpool.Proxy(Factory(), (Other,), ("make",)).make()  # wrapped by name
    assert isinstance(by_name.other(), tpool.Proxy)  # and keeps autowrap: eventlet's does not


def test_eventlet_children_lose_autowrap():
    code, out = run_eventlet("""
        from eventlet import tpool
        class Other:
            pass
        class Made:
            def other(self):
                return Other()
        class Factory:
            def make(self):
                return Made()
        made = tpool.Proxy(Factory(), (Other,), ("make",)).make()  # wrapped by name
        print("wrapped=%s" % isinstance(made.other(), tpool.Proxy))
        """)
    assert code == 0 and "wrapped=False" in out, (code, out)


def test_nonblocking_runs_inline():
    proxy = tpool.Proxy(Made())
    assert proxy.value(nonblocking=True) == threading.get_ident()
    assert proxy.value() != threading.get_ident()


def test_killall_then_execute_starts_again():
    assert tpool.execute(lambda: 1) == 1
    tpool.killall()
    assert tpool.execute(lambda: 2) == 2


def test_set_num_threads_checks_its_argument():
    with pytest.raises(TypeError, match="nthreads must be an int"):
        tpool.set_num_threads("4")
    with pytest.raises(ValueError, match="nthreads must be at least 0"):
        tpool.set_num_threads(-1)


ENV_SNIPPET = """
import threading, warnings
from offload import tpool
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pool = tpool.setup()
    inline = tpool.execute(threading.get_ident) == threading.get_ident()
print("max_workers=%s" % (pool.max_workers if pool else 0))
print("inline=%s" % inline)
print("warned=%s" % any(issubclass(w.category, RuntimeWarning) for w in caught))
"""


@pytest.mark.parametrize(
    "size, workers, inline", [("3", "3", "False"), ("0", "0", "True"), ("", "20", "False")]
)
def test_eventlet_threadpool_size_is_honoured(size, workers, inline):
    out = modes.lines(modes.run("none", ENV_SNIPPET, env={"EVENTLET_THREADPOOL_SIZE": size}))
    assert out["max_workers"] == workers and out["inline"] == inline, out
    assert out["warned"] == str(size == "0"), out


FORK_SNIPPET = """
import os
from offload import tpool
tpool.execute(os.getpid)
child = os.fork()
if child == 0:
    os._exit(0 if tpool.execute(os.getpid) == os.getpid() else 1)
_, status = os.waitpid(child, 0)
print("child_exit=%d" % os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("mode", ["none", "all"])
def test_forked_child_can_execute(mode):
    out = modes.lines(modes.run(mode, FORK_SNIPPET, timeout=30))
    assert out["child_exit"] == "0", out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_eventlet_forked_child_hangs():
    code, out = run_eventlet("""
        import os, signal
        from eventlet import tpool
        tpool.execute(os.getpid)
        child = os.fork()
        if child == 0:
            tpool.execute(os.getpid)
            os._exit(0)
        signal.alarm(3)  # the child never returns; end the wait (and us) after 3 s
        os.waitpid(child, 0)
        print("child returned")
        """)
    assert "child returned" not in out, (code, out)
