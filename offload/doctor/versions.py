"""The interpreter and gevent versions: free-threaded builds and known gevent bugs."""

import sys
import sysconfig

import gevent
from gevent import monkey

from .finding import OK, WARNING, Finding

__all__ = ["check_free_threading", "check_gevent_2213", "check_gevent_threadpool", "version_tuple"]


def version_tuple(text: str) -> tuple[int, ...]:
    """``"2.0.31"`` -> ``(2, 0, 31)``; stops at the first part that is not a number."""
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


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
            "gevent-2213",
            OK,
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


# gevent releases that fixed a threadpool or fork bug offload's users meet:
# (fixed in, issue, what happens before it, whether only with threading patched).
_GEVENT_FIXES = [
    ((26, 8, 0), "#1865", "os.fork() can deadlock while concurrent.futures threads exist", True),
    ((26, 9, 0), "#2207", "a task whose setup fails strands its caller in gevent's own threadpool", False),
]


def check_gevent_threadpool(
    gevent_version: str | None = None, threading_patched: bool | None = None
) -> Finding:
    """gevent releases before the fixes of its threadpool and fork bugs (#1865, #2207).

    The arguments default to this process's gevent and patching.
    """
    gevent_version = gevent.__version__ if gevent_version is None else gevent_version
    if threading_patched is None:
        threading_patched = monkey.is_module_patched("threading")
    found = [
        f"{issue} (fixed in {'.'.join(map(str, fixed))}): {what}"
        for fixed, issue, what, needs_patch in _GEVENT_FIXES
        if version_tuple(gevent_version) < fixed and (threading_patched or not needs_patch)
    ]
    if not found:
        return Finding("gevent-threadpool", OK, f"gevent {gevent_version}: no known threadpool bug applies")
    return Finding(
        "gevent-threadpool",
        WARNING,
        f"gevent {gevent_version} has known threadpool bugs: " + "; ".join(found),
        "upgrade gevent (pip install -U gevent); offload's own pools do not use gevent's threadpool",
    )
