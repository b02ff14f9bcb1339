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

import gc
import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass

import gevent
from gevent import monkey

__all__ = [
    "Finding",
    "environment",
    "check_psycopg3",
    "check_psycogreen",
    "check_uwsgi",
    "check_fork",
    "check_free_threading",
    "check_gevent_2213",
]

OK, WARNING, NOT_APPLICABLE = "ok", "warning", "n/a"


@dataclass
class Finding:
    """One thing the doctor found about the process: ``status`` is "ok", "warning" or "n/a"."""

    check: str
    status: str
    detail: str
    advice: str = ""


def environment() -> list[Finding]:
    """Every environment check, run on the calling process.

    >>> [f.check for f in environment()]  # doctest: +NORMALIZE_WHITESPACE
    ['psycopg3', 'psycogreen', 'uwsgi-threads', 'uwsgi-fork', 'fork', 'free-threading', 'gevent-2213']
    """
    return [
        check_psycopg3(),
        check_psycogreen(),
        *check_uwsgi(),
        check_fork(),
        check_free_threading(),
        check_gevent_2213(),
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
        name, OK, f"psycopg {version} waits with wait_c; nothing is patched, so its calls block the hub",
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


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_uwsgi() -> list[Finding]:
    """Under uWSGI: are Python threads enabled, and do workers run Python's fork hooks?"""
    try:
        import uwsgi  # exists only inside a uWSGI worker
    except ImportError:
        return [
            Finding("uwsgi-threads", NOT_APPLICABLE, "not running under uWSGI"),
            Finding("uwsgi-fork", NOT_APPLICABLE, "not running under uWSGI"),
        ]
    opt = dict(getattr(uwsgi, "opt", {}))
    raw = getattr(uwsgi, "version", b"")
    version = raw.decode() if isinstance(raw, bytes) else str(raw)
    threads = (
        _opt_enabled(opt, "enable-threads")
        or "threads" in opt  # uWSGI's own threads turn Python threads on
        or _version_tuple(version) >= (2, 0, 27)  # enabled by default since 2.0.27
    )
    findings = []
    if threads:
        findings.append(Finding("uwsgi-threads", OK, f"uWSGI {version}: Python threads are enabled"))
    else:
        findings.append(Finding(
            "uwsgi-threads", WARNING,
            f"uWSGI {version} without enable-threads: Python threads do not run, "
            "so offload's worker threads never pick up a call",
            "add enable-threads = true (or threads = N) to the uWSGI configuration",
        ))
    lazy = _opt_enabled(opt, "lazy-apps") or _opt_enabled(opt, "lazy")
    hooks = _opt_enabled(opt, "py-call-uwsgi-fork-hooks") or _opt_enabled(opt, "py-call-osafterfork")
    forks = _opt_enabled(opt, "master") or _opt_int(opt, "processes", "workers") > 1
    if forks and not lazy and not hooks:
        findings.append(Finding(
            "uwsgi-fork", WARNING,
            "uWSGI loads the application and then forks its workers without Python's fork hooks: "
            "a pool whose threads started before the fork hangs in every worker",
            "add py-call-uwsgi-fork-hooks = true (or lazy-apps = true), "
            "or make pools only in the worker (uwsgidecorators.postfork)",
        ))
    else:
        why = "lazy-apps" if lazy else ("fork hooks on" if hooks else "no fork after the application loads")
        findings.append(Finding("uwsgi-fork", OK, f"uWSGI workers start pools afresh ({why})"))
    return findings


# -- fork: connections shared with the parent (gunicorn --preload) ----------------


def _socket_inodes(pid: int | str) -> set[str]:
    inodes: set[str] = set()
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return inodes
    for fd in names:
        try:
            link = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _hex_address(text: str) -> str:
    host, _, port = text.partition(":")
    if len(host) == 8:  # IPv4, little-endian
        host = ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        host = "[ipv6]"
    return f"{host}:{int(port, 16)}"


def _connected_sockets() -> dict[str, str]:
    """inode -> peer of this network namespace's connected sockets (TCP and Unix)."""
    peers = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] != "0A":  # 0A: listening
                peers[cols[9]] = _hex_address(cols[2])
    try:
        with open("/proc/net/unix") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) > 6 and not int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                    peers[cols[6]] = cols[7] if len(cols) > 7 else "unix socket"
    except OSError:
        pass
    return peers


def shared_connections() -> list[str]:
    """Peers of the connected sockets this process shares with its parent (Linux).

    A socket open in both is one session used by two processes: the child
    inherited a connection opened before ``fork()``.
    """
    shared = _socket_inodes("self") & _socket_inodes(os.getppid())
    if not shared:
        return []
    peers = _connected_sockets()
    return sorted(peers[inode] for inode in shared if inode in peers)


def _gunicorn_preload() -> bool | None:
    """Inside a gunicorn worker: whether the app was preloaded in the master; else None."""
    base = sys.modules.get("gunicorn.workers.base")
    if base is None:
        return None
    for obj in gc.get_objects():  # the worker object is not reachable from any module
        if isinstance(obj, base.Worker):
            return bool(getattr(obj.cfg, "preload_app", False))
    return None


def check_fork() -> Finding:
    """Connections opened before a fork and shared with the parent (gunicorn ``--preload``)."""
    name = "fork"
    preload = _gunicorn_preload()
    where = "gunicorn --preload" if preload else ("a gunicorn worker" if preload is False else "this process")
    if not os.path.isdir("/proc/self/fd"):
        return Finding(name, NOT_APPLICABLE, "no /proc: shared connections cannot be seen here")
    peers = shared_connections()
    if peers:
        shown = ", ".join(sorted(set(peers))[:5])
        return Finding(
            name,
            WARNING,
            f"{where}: {len(peers)} connected socket(s) ({shown}) are shared with the parent process "
            f"{os.getppid()}: connections opened before the fork are used by two processes at once",
            "open pools and connections after the fork: lazily on first use, or in gunicorn's post_fork "
            "hook; or drop --preload",
        )
    detail = f"{where}: no connection is shared with the parent process"
    advice = "keep it so: make pools on first use or in post_fork, not at import" if preload else ""
    return Finding(name, OK, detail, advice)


# -- the interpreter ----------------------------------------------------------------


def check_free_threading(gil_disabled_build: bool | None = None, gil_enabled: bool | None = None) -> Finding:
    """A free-threaded CPython build: gevent turns the GIL back on.

    The arguments default to this interpreter's (``sysconfig``'s
    ``Py_GIL_DISABLED`` and ``sys._is_gil_enabled()``).
    """
    if gil_disabled_build is None:
        gil_disabled_build = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if gil_enabled is None:
        is_enabled = getattr(sys, "_is_gil_enabled", None)
        gil_enabled = True if is_enabled is None else bool(is_enabled())
    if not gil_disabled_build:
        return Finding("free-threading", OK, "CPython with the GIL (not a free-threaded build)")
    state = "back on" if gil_enabled else "off for now"
    return Finding(
        "free-threading",
        WARNING,
        f"free-threaded CPython build, the GIL is {state}: gevent does not support free-threading "
        "and importing it turns the GIL back on, so offload's threads share one GIL as usual",
        "run gevent programs on a regular (GIL) build; for CPU-heavy calls use offload.ProcessPool",
    )


def check_gevent_2213(
    version: tuple[int, ...] | None = None,
    threading_patched: bool | None = None,
    gevent_version: str | None = None,
) -> Finding:
    """gevent #2213: CPython >= 3.13.12 / >= 3.14.3 under ``patch_all`` loses executor wake-ups.

    The arguments default to this process's Python, patching and gevent.
    """
    version = tuple(sys.version_info[:3]) if version is None else tuple(version)
    if threading_patched is None:
        threading_patched = monkey.is_module_patched("threading")
    gevent_version = gevent.__version__ if gevent_version is None else gevent_version
    shown = ".".join(map(str, version))
    affected = (3, 13, 12) <= version < (3, 14) or version >= (3, 14, 3)
    if not affected:
        return Finding("gevent-2213", OK, f"CPython {shown}: not affected by gevent #2213")
    if not threading_patched:
        return Finding(
            "gevent-2213", OK,
            f"CPython {shown} (gevent {gevent_version}) has gevent #2213, but only with threading patched",
        )
    return Finding(
        "gevent-2213",
        WARNING,
        f"CPython {shown} with gevent {gevent_version} and threading patched (gevent #2213): asyncio's "
        "run_in_executor()/to_thread() results are not delivered until the next timer fires, "
        "and loop.getaddrinfo() (so create_connection(hostname)) with them",
        "in asyncio-on-gevent code run blocking calls with offload.call()/submit() rather than "
        "loop.run_in_executor()/asyncio.to_thread(), or use CPython < 3.13.12 (3.14 < 3.14.3) "
        "until gevent fixes #2213",
    )
