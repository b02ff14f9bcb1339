"""What the doctor learns about the process it runs in, with advice.

Driver probes measure one call; these checks look at how the process was
put together -- import order, the server it runs under, the interpreter
build -- for the mistakes that make a gevent program block silently or hang.
Each returns a :class:`Finding`.  :func:`environment` runs them all on the
*calling* process, so call it inside the application (a gunicorn
``post_fork`` hook, a health endpoint, a uWSGI worker) to check the real
thing; ``python -m offload doctor`` reports what it sees in its own fresh
interpreter.
"""

import importlib.util
import os
import sys

from gevent import monkey

from .finding import NOT_APPLICABLE, OK, WARNING, Finding
from .fork import check_fork
from .versions import check_free_threading, check_gevent_2213, check_gevent_threadpool, version_tuple

__all__ = [
    "Finding",
    "environment",
    "check_psycopg3",
    "check_psycogreen",
    "check_uwsgi",
    "check_fork",
    "check_free_threading",
    "check_gevent_2213",
    "check_gevent_threadpool",
]


def environment() -> list[Finding]:
    """Every environment check, run on the calling process.

    >>> [f.check for f in environment()]  # doctest: +NORMALIZE_WHITESPACE
    ['psycopg3', 'psycogreen', 'uwsgi-threads', 'uwsgi-fork', 'uwsgi-loop', 'fork', 'free-threading',
     'gevent-2213', 'gevent-threadpool']
    """
    return [
        check_psycopg3(),
        check_psycogreen(),
        *check_uwsgi(),
        check_fork(),
        check_free_threading(),
        check_gevent_2213(),
        check_gevent_threadpool(),
    ]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# -- psycopg 3 and psycogreen ----------------------------------------------------


def check_psycopg3() -> Finding:
    """psycopg 3 picks its wait function once, at import: before patching it picks C's ``wait_c``."""
    name = "psycopg3"
    waiting = sys.modules.get("psycopg.waiting")
    if waiting is None:
        if not _installed("psycopg"):
            return Finding(name, NOT_APPLICABLE, "psycopg 3 is not installed")
        c_speedups = _installed("psycopg_c") or _installed("psycopg_binary")
        advice = (
            "import psycopg only after gevent.monkey.patch_all(): imported before it, psycopg 3 "
            "chooses its C wait function (wait_c), which blocks the hub"
            if c_speedups
            else ""
        )
        return Finding(name, OK, "psycopg 3 is installed but not imported in this process", advice)
    wait = getattr(waiting, "wait", None)
    wait_name = getattr(wait, "__name__", repr(wait))
    version = getattr(sys.modules.get("psycopg"), "__version__", "?")
    patched = monkey.is_module_patched("select") or monkey.is_module_patched("socket")
    if wait_name != "wait_c":
        return Finding(name, OK, f"psycopg {version} waits with {wait_name}: cooperative once patched")
    if patched:
        return Finding(
            name,
            WARNING,
            f"psycopg {version} waits with wait_c, in C: it was imported before monkey patching, "
            "so every query blocks the hub, silently",
            "import psycopg after gevent.monkey.patch_all() (nothing that imports it may run first), "
            "or run its calls through offload",
        )
    return Finding(
        name,
        OK,
        f"psycopg {version} waits with wait_c; nothing is patched, so its calls block the hub",
        "run its calls through offload, or import it after gevent.monkey.patch_all()",
    )


def check_psycogreen() -> Finding:
    """A psycopg2 wait callback (psycogreen) and offload.dbapi both in one process: pick one."""
    name = "psycogreen"
    extensions = sys.modules.get("psycopg2.extensions")
    if extensions is None:
        status = "installed" if _installed("psycogreen") else "not installed"
        return Finding(name, NOT_APPLICABLE, f"psycopg2 is not imported (psycogreen is {status})")
    callback = extensions.get_wait_callback()
    if callback is None:
        return Finding(name, OK, "psycopg2 has no wait callback: offload.dbapi keeps its calls off the hub")
    where = f"{getattr(callback, '__module__', '?')}.{getattr(callback, '__qualname__', callback)}"
    if "offload.dbapi" in sys.modules:
        return Finding(
            name,
            WARNING,
            f"psycopg2 has a wait callback ({where}, as psycogreen installs) and offload.dbapi is in use: "
            "offloaded connections then wait through gevent inside offload's worker threads, "
            "each of which gets a hub of its own",
            "use one or the other: psycogreen for direct, cooperative psycopg2 calls, or offload.dbapi "
            "with psycopg2.extensions.set_wait_callback(None)",
        )
    return Finding(name, OK, f"psycopg2 waits through {where}: its own calls are cooperative")


# -- uWSGI -------------------------------------------------------------------------


def _opt_enabled(opt: dict, key: str) -> bool:
    value = opt.get(key)
    if isinstance(value, list):  # an option given more than once
        return any(_opt_enabled({key: v}, key) for v in value)
    if isinstance(value, bytes):
        return value.strip().lower() not in (b"", b"0", b"false", b"no", b"off")
    return bool(value)


def _opt_int(opt: dict, *keys: str) -> int:
    for key in keys:
        try:
            return int(opt[key])
        except (KeyError, TypeError, ValueError):
            continue
    return 1


def _loop_module() -> str:
    """The module of the event loop gevent is configured to use (``GEVENT_LOOP``)."""
    from gevent import config

    try:
        return config.loop.__module__
    except Exception:  # a loop that cannot be imported: what was asked for
        return os.environ.get("GEVENT_LOOP", "unknown")


def check_uwsgi() -> list[Finding]:
    """Under uWSGI: are Python threads enabled, do workers run Python's fork hooks, which loop?"""
    try:
        import uwsgi  # exists only inside a uWSGI worker
    except ImportError:
        return [
            Finding("uwsgi-threads", NOT_APPLICABLE, "not running under uWSGI"),
            Finding("uwsgi-fork", NOT_APPLICABLE, "not running under uWSGI"),
            Finding("uwsgi-loop", NOT_APPLICABLE, "not running under uWSGI"),
        ]
    opt = dict(getattr(uwsgi, "opt", {}))
    raw = getattr(uwsgi, "version", b"")
    version = raw.decode() if isinstance(raw, bytes) else str(raw)
    threads = (
        _opt_enabled(opt, "enable-threads")
        or "threads" in opt  # uWSGI's own threads turn Python threads on
        or version_tuple(version) >= (2, 0, 27)  # enabled by default since 2.0.27
    )
    findings = []
    if threads:
        findings.append(Finding("uwsgi-threads", OK, f"uWSGI {version}: Python threads are enabled"))
    else:
        findings.append(
            Finding(
                "uwsgi-threads",
                WARNING,
                f"uWSGI {version} without enable-threads: Python threads do not run, "
                "so offload's worker threads never pick up a call",
                "add enable-threads = true (or threads = N) to the uWSGI configuration",
            )
        )
    lazy = _opt_enabled(opt, "lazy-apps") or _opt_enabled(opt, "lazy")
    hooks = _opt_enabled(opt, "py-call-uwsgi-fork-hooks") or _opt_enabled(opt, "py-call-osafterfork")
    forks = _opt_enabled(opt, "master") or _opt_int(opt, "processes", "workers") > 1
    if forks and not lazy and not hooks:
        findings.append(
            Finding(
                "uwsgi-fork",
                WARNING,
                "uWSGI loads the application and then forks its workers without Python's fork hooks: "
                "a pool whose threads started before the fork hangs in every worker",
                "add py-call-uwsgi-fork-hooks = true (or lazy-apps = true), "
                "or make pools only in the worker (uwsgidecorators.postfork)",
            )
        )
    else:
        why = "lazy-apps" if lazy else ("fork hooks on" if hooks else "no fork after the application loads")
        findings.append(Finding("uwsgi-fork", OK, f"uWSGI workers start pools afresh ({why})"))
    loop = _loop_module()
    if "libuv" in loop:
        findings.append(
            Finding(
                "uwsgi-loop",
                WARNING,
                f"uWSGI's gevent mode on gevent's libuv loop ({loop}): under load its workers "
                "crashed (SIGSEGV) or failed requests, with offload's threads and with gevent's own "
                "(docs/frameworks.rst); on the default libev loop they did not",
                "run uWSGI on gevent's default loop: unset GEVENT_LOOP, or set GEVENT_LOOP=libev-cext",
            )
        )
    else:
        findings.append(Finding("uwsgi-loop", OK, f"gevent's {loop} loop"))
    return findings
