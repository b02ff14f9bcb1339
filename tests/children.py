"""What the children run: functions that worker processes import by name.

ProcessPool sends a function by reference (its module and name), so
everything a test hands to a child lives here, in a module the child can
import from ``tests/`` (on ``sys.path`` through conftest.py and modes.py).
test_process.py, test_process_modes.py, test_wrap_executor.py and
test_executor_contract.py import from here; the thread pools run the same
functions, so one contract test serves every kind of executor.
"""

import ctypes
import os
import signal
import threading
import time

import offload


def add(a, b):
    return a + b


def getpid(*_):
    return os.getpid()


class Odd(Exception):
    """Picklable, but cannot be unpickled: its __init__ wants two arguments."""

    def __init__(self, a, b):
        super().__init__(f"odd {a} {b}")


def fail(kind):
    if kind == "value":
        raise ValueError("raised in the child")
    if kind == "odd":
        raise Odd(1, 2)
    if kind == "exit":
        raise SystemExit(5)
    raise AssertionError(kind)


def die(how):
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        ctypes.string_at(0)
    time.sleep(5)


def echo(value):
    return value


def lock_result():
    return threading.Lock()


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def timed_sleep(seconds):
    """When the sleep started and ended, by the wall clock."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


def write_pid_and_sleep(path, seconds):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def touch(path):
    with open(path, "w") as f:
        f.write("ran")
    return path


def spin(n):
    total = 0
    for i in range(n):
        total += i
    return total


_value = None


def set_value(value):
    global _value
    _value = value


def get_value():
    return _value


def bad_initializer():
    raise KeyError("no config")


@offload.offload(pool="process")
def decorated_square(x):
    return x * x, os.getpid()


def nested_call(x):
    # Inside a worker, a ProcessPool call runs inline.
    return offload.call(getpid, pool="process"), os.getpid(), x


_BASE_EXCEPTIONS = {cls.__name__: cls for cls in (SystemExit, KeyboardInterrupt, GeneratorExit)}


def raise_base(name):
    """Raise the BaseException named *name* (SystemExit, KeyboardInterrupt, GeneratorExit)."""
    raise _BASE_EXCEPTIONS[name]()


def whoami():
    """The process and thread this call ran on: a worker that died would show a new pair."""
    return os.getpid(), threading.get_ident()
