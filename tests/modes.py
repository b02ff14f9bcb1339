"""Run a snippet in a fresh interpreter under one monkey-patching mode.

Patching is global and cannot be undone, so every patched scenario runs in
its own subprocess, never in the pytest process.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# One table of patching modes: the doctor's --patch choices are these same modes.
from offload.doctor import PATCHES  # noqa: E402

ALL_MODES = tuple(PATCHES)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(mode, snippet, timeout=120, env=None):
    """Run *snippet* after the *mode* patching line; return its stdout.

    Fails the test, with the child's stderr, if the child exits non-zero or
    does not finish within *timeout* seconds.
    """
    return run_full(mode, snippet, timeout, env)[0]


def run_full(mode, snippet, timeout=120, env=None):
    """Like :func:`run`, but return ``(stdout, stderr)``.

    A child that hangs is sent SIGABRT at *timeout*: with faulthandler on
    (``PYTHONFAULTHANDLER``) it prints every thread's stack before it dies,
    and the failure shows where each one waited.
    """
    code = PATCHES[mode] + "\n" + textwrap.dedent(snippet)
    path = ROOT + os.pathsep + os.path.join(ROOT, "tests")
    full_env = dict(os.environ, PYTHONPATH=path, PYTHONFAULTHANDLER="1")
    if env:
        full_env.update(env)
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=ROOT,
    ) as proc:
        hung = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            stdout, stderr = _stacks_then_kill(proc)
        except BaseException:
            # pytest's own timeout (or ^C) while the child runs: Popen's exit
            # would wait for it for ever.  Its stacks go to the test's stderr.
            stdout, stderr = _stacks_then_kill(proc)
            print(
                f"mode {mode!r}: the snippet was stopped\nstdout:\n{stdout}\nstderr:\n{stderr}",
                file=sys.stderr,
            )
            raise
    if hung:
        pytest.fail(
            f"mode {mode!r}: snippet did not finish in {timeout}s\nstdout:\n{stdout}\n"
            f"stderr (with every thread's stack):\n{stderr}"
        )
    if proc.returncode != 0:
        pytest.fail(f"mode {mode!r}: exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return stdout, stderr


def _stacks_then_kill(proc):
    """SIGABRT *proc* (faulthandler prints every thread's stack), then make sure it is gone."""
    proc.send_signal(signal.SIGABRT)
    try:
        return proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:  # stuck past the signal: no stacks, but no hang here
        proc.kill()
        return proc.communicate()


def lines(output):
    """The ``key=value`` lines a snippet printed, as a dict of strings."""
    result = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result
