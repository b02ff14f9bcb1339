"""The doctor's report: what is patched, the checks' rows, the environment, as a dict or text."""

import os
import platform
import sys
from dataclasses import asdict
from typing import Any

import gevent
from gevent import monkey

from .._core import native
from .._version import __version__
from . import drivers
from .checks import SLEEP, THRESHOLD, Unreachable
from .environment import environment
from .redact import redact, scrub

__all__ = ["patch_state", "run", "render", "CHECK_DEADLINE", "TARGETS"]

# The most seconds one check may take before the doctor gives up on it (and
# exits 1): each driver has its own connect and read timeouts well inside this;
# the deadline catches one that ignores them.
CHECK_DEADLINE = 30.0

# option name -> the check it runs, in report order.
TARGETS = {
    "postgres": drivers.check_postgres,
    "mysql": drivers.check_mysql,
    "sqlite": drivers.check_sqlite,
    "mongo": drivers.check_mongo,
    "redis": drivers.check_redis,
}


def patch_state() -> dict:
    """What gevent has patched in this process, and what that did to ``select``."""
    import select
    import selectors

    modules = sorted(name for name in monkey.saved if not name.startswith("_gevent"))
    if monkey.is_module_patched("threading") and monkey.is_module_patched("socket"):
        kind = "all"
    elif modules:
        kind = "partial"
    else:
        kind = "none"
    return {
        "patched": kind,
        "modules": modules,
        "select_epoll": hasattr(select, "epoll"),
        "default_selector": selectors.DefaultSelector.__name__,
        "threads_are_greenlets": monkey.is_module_patched("threading"),
    }


class _Deadline:
    """A real thread that ends the process if one check outlives CHECK_DEADLINE.

    It is an OS thread, not a greenlet: a driver blocking the hub in C must
    not be able to stop it.
    """

    def __init__(self, name: str, shown: str) -> None:
        self._done = native.allocate_lock()
        self._done.acquire()
        self._name, self._shown = name, shown

    def __enter__(self):
        native.start_new_thread(self._watch, ())
        return self

    def __exit__(self, *exc_info):
        self._done.release()

    def _watch(self):
        if not self._done.acquire(timeout=CHECK_DEADLINE):
            message = (
                f"offload doctor: {self._name}: no answer from {self._shown} within {CHECK_DEADLINE:.0f} s; "
                "gave up (is it the right host and port?)\n"
            )
            os.write(2, message.encode())
            os._exit(1)


def run(args: Any) -> dict:
    """Run every check *args* asks for; the report as a JSON-ready dict."""
    todo: list[tuple[str, Any, Any]] = [("time", drivers.check_time, None)]
    todo += [
        (name, fn, getattr(args, name)) for name, fn in TARGETS.items() if getattr(args, name) is not None
    ]
    rows, errors = [], []
    for name, fn, value in todo:
        try:
            with _Deadline(name, "-" if value is None else redact(value)):
                rows += fn() if value is None else fn(value)
        except Unreachable as exc:
            errors.append(str(exc))
        except Exception as exc:  # a driver or server misbehaving: report it, never a traceback
            message = scrub(str(exc), value or "")
            errors.append(f"{name}: the check failed with {type(exc).__name__}: {message}")
    return {
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "offload": __version__,
        "requested_patch": args.patch,
        "patching": patch_state(),
        "rows": [asdict(r) for r in rows],
        "environment": [asdict(f) for f in environment()],
        "targets_given": len(todo) > 1,
        "errors": errors,
    }


def _ms(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _yes(flag):
    return "-" if flag is None else ("yes" if flag else "no")


def _table(rows: list[dict]) -> list[str]:
    header = ("driver", "patched?", "blocks hub directly?", "max lag direct", "max lag via offload", "advice")
    table = [header]
    for r in rows:
        table.append(
            (
                r["driver"],
                _yes(r["patched"]),
                _yes(r["blocks_directly"]),
                _ms(r["max_lag_direct"]),
                _ms(r["max_lag_offload"]),
                r["advice"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    cells = ([cell.ljust(w) for cell, w in zip(row, widths, strict=False)] + [row[-1]] for row in table)
    return ["  ".join(row).rstrip() for row in cells]


def render(report: dict) -> str:
    """The report as text: patching state, the table, the environment."""
    p = report["patching"]
    epoll = "present" if p["select_epoll"] else "removed by gevent"
    lines = [
        f"offload doctor: Python {report['python']}, gevent {report['gevent']}, offload {report['offload']}",
        f"monkey patching: {p['patched']} (asked for --patch {report['requested_patch']})",
        f"  patched modules: {', '.join(p['modules']) or 'none'}",
        f"  select.epoll: {epoll}; selectors.DefaultSelector is {p['default_selector']}",
        f"  threads are greenlets: {_yes(p['threads_are_greenlets'])}",
        "",
        *_table(report["rows"]),
    ]
    targets = [f"  {r['driver']}: {r['target']}" for r in report["rows"] if r["target"] != "-"]
    if targets:
        lines += ["", "targets:"] + targets
    if not report.get("targets_given", True):
        lines += [
            "",
            "no database given: point the doctor at yours with --postgres DSN, --mysql URL, "
            "--sqlite PATH, --redis URL or --mongo URI (see --help)",
        ]
    lines += ["", "environment (this interpreter; call offload.doctor.environment() inside your app):"]
    for f in report.get("environment", []):
        lines.append(f"  [{f['status']}] {f['check']}: {f['detail']}")
        if f["advice"]:
            lines.append(f"      advice: {f['advice']}")
    lines += ["", "a call blocks the hub when a heartbeat comes later than half the call's time"]
    least, busy = THRESHOLD * 1000, SLEEP * 1000
    lines.append(f"(and at least {least:.0f} ms late); each slow call keeps the server busy {busy:.0f} ms.")
    return "\n".join(lines)


def print_report(report: dict, as_json: bool) -> int:
    """Print *report* (stdout) and its errors (stderr); the exit code."""
    import json

    print(json.dumps(report, indent=2) if as_json else render(report), flush=True)
    for error in report["errors"]:
        print(f"offload doctor: {error}", file=sys.stderr)
    return 1 if report["errors"] else 0
