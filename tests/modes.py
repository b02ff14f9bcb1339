"""Run a snippet in a fresh interpreter under one monkey-patching mode.

Patching is global and cannot be undone, so every patched scenario runs in
its own subprocess, never in the pytest process.
"""

import os
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
    """Like :func:`run`, but return ``(stdout, stderr)``."""
    code = PATCHES[mode] + "\n" + textwrap.dedent(snippet)
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.path.join(ROOT, "tests"))
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mode {mode!r}: snippet did not finish in {timeout}s\nstderr:\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"mode {mode!r}: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout, proc.stderr


def lines(output):
    """The ``key=value`` lines a snippet printed, as a dict of strings."""
    result = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result
