"""Write the intersphinx inventories the docs use, for builds without internet.

Sphinx's ``intersphinx`` normally downloads ``objects.inv`` from each project's
site; this machine (and CI) cannot reach them.  So ``docs/conf.py`` points
``intersphinx_mapping`` at the real documentation URLs with these local files
as the inventories, and links in the built HTML go to the real pages.

Each inventory is made by introspecting the installed modules listed below:
every public module, class, exception, function, method and property, with
the URI each project's documentation uses for it (``library/<module>.html``
for the Python standard library, ``api/gevent.<module>.html`` for gevent,
``api/pymongo/<module>.html`` for PyMongo).  Objects re-exported from a
private module (``concurrent.futures._base.Executor``) are listed under both
names, because autodoc renders type hints with the defining module.

A new reference to a module not listed here fails ``make docs`` (``-n -W``):
add the module below and run ``make inventories``.  The written files are
checked by loading them back with :mod:`sphinx.util.inventory`.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# The standard library modules the docs (and the docstrings autodoc pulls in) refer to.
PYTHON_MODULES = [
    "asyncio", "collections", "collections.abc", "concurrent.futures", "concurrent.futures.process",
    "concurrent.futures.thread", "faulthandler", "sys",
    "contextlib", "contextvars",
    "dataclasses", "enum", "functools", "hashlib", "inspect", "io", "itertools", "json", "logging",
    "math", "multiprocessing", "numbers", "os", "pickle", "queue", "random", "select", "signal",
    "socket", "sqlite3", "ssl", "statistics", "subprocess", "threading", "time", "traceback",
    "types", "typing", "warnings", "weakref",
]  # fmt: skip
# Modules CPython documents on another module's page.
PYTHON_PAGES = {
    "concurrent.futures.process": "concurrent.futures",
    "concurrent.futures.thread": "concurrent.futures",
}
# Documented names the walk leaves out (private-looking, or data).
PYTHON_EXTRA = [
    ("sys._current_frames", "py:function", "library/sys.html#sys._current_frames"),
    (
        "concurrent.futures.FIRST_COMPLETED",
        "py:data",
        "library/concurrent.futures.html#concurrent.futures.FIRST_COMPLETED",
    ),
    (
        "concurrent.futures.FIRST_EXCEPTION",
        "py:data",
        "library/concurrent.futures.html#concurrent.futures.FIRST_EXCEPTION",
    ),
    (
        "concurrent.futures.ALL_COMPLETED",
        "py:data",
        "library/concurrent.futures.html#concurrent.futures.ALL_COMPLETED",
    ),
]
GEVENT_MODULES = [
    "gevent",
    "gevent.monkey",
    "gevent.threadpool",
    "gevent.timeout",
    "gevent.event",
    "gevent.hub",
]
PYMONGO_MODULES = [
    "pymongo", "pymongo.mongo_client", "pymongo.database", "pymongo.collection", "pymongo.cursor",
    "pymongo.command_cursor", "pymongo.change_stream", "pymongo.client_session", "pymongo.driver_info",
    "pymongo.errors", "gridfs",
]  # fmt: skip


def _kind(obj: object) -> str | None:
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if inspect.isroutine(obj):
        return "py:function"
    return None


def _walk(modname: str) -> list[tuple[str, str, object]]:
    """(full name, role, object) for a module, its public names and their members."""
    module = importlib.import_module(modname)
    entries: list[tuple[str, str, object]] = [(modname, "py:module", module)]
    public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in public:
        obj = getattr(module, name, None)
        role = _kind(obj)
        if role is None:
            continue
        full = f"{modname}.{name}"
        entries.append((full, role, obj))
        owner = getattr(obj, "__module__", modname) or modname
        if owner != modname and owner.startswith(modname + "._"):
            entries.append((f"{owner}.{name}", role, obj))  # the private path autodoc shows
        if role == "py:class" and modname in PYTHON_MODULES:
            # CPython documents some classes as functions (functools.partial)
            entries.append((full, "py:function", obj))
        if inspect.isclass(obj):
            inherited = {}
            for base in reversed(obj.__mro__):
                if base.__module__.split(".")[0] == obj.__module__.split(".")[0]:
                    inherited.update(vars(base))  # members from the same package's bases too
            for attr, value in inherited.items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (property, staticmethod, classmethod)) or inspect.isroutine(value):
                    member_role = "py:property" if isinstance(value, property) else "py:method"
                    entries.append((f"{full}.{attr}", member_role, value))
                    # data descriptors such as multiprocessing.Process.exitcode are documented
                    # as attributes: give the attribute role too.
                    if member_role == "py:property":
                        entries.append((f"{full}.{attr}", "py:attribute", value))
    return entries


def _python_entries() -> list[tuple[str, str, str]]:
    rows = []
    for name, obj in vars(builtins).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            rows.append((name, "py:exception", "library/exceptions.html#$"))
        elif inspect.isclass(obj):
            rows.append((name, "py:class", "library/functions.html#$"))
        elif inspect.isroutine(obj):
            rows.append((name, "py:function", "library/functions.html#$"))
    rows.extend(PYTHON_EXTRA)
    for modname in PYTHON_MODULES:
        for full, role, _obj in _walk(modname):
            anchor = f"module-{modname}" if role == "py:module" else full.replace("._base.", ".")
            page = PYTHON_PAGES.get(modname, modname)
            rows.append((full, role, f"library/{page}.html#{anchor}"))
    return rows


def _gevent_entries() -> list[tuple[str, str, str]]:
    rows = []
    for modname in GEVENT_MODULES:
        for full, role, obj in _walk(modname):
            if role == "py:module":
                rows.append((full, role, f"api/{modname}.html#module-{modname}"))
                continue
            # gevent documents a top-level name on its defining module's page
            page = getattr(obj, "__module__", None) or modname
            if not page.startswith("gevent") or page.split(".")[-1].startswith("_"):
                page = modname
            rows.append((full, role, f"api/{page}.html#{full}"))
    return rows


def _pymongo_entries() -> list[tuple[str, str, str]]:
    rows = []
    for modname in PYMONGO_MODULES:
        for full, role, obj in _walk(modname):
            if role == "py:module":
                page = "gridfs/index" if modname == "gridfs" else modname.replace(".", "/")
                rows.append(
                    (full, role, f"api/{'pymongo/index' if page == 'pymongo' else page}.html#module-{full}")
                )
                continue
            anchor = full
            if modname in ("pymongo", "gridfs"):
                # a top-level name is documented on its public defining module's page
                defining = (getattr(obj, "__module__", None) or modname).replace(".synchronous", "")
                if defining.startswith("pymongo.") and modname == "pymongo":
                    anchor = f"{defining}.{full.rsplit('.', 1)[1]}"
                    page = defining.replace(".", "/")
                else:
                    page = "gridfs/index" if modname == "gridfs" else "pymongo/index"
            else:
                page = modname.replace(".", "/")
            rows.append((full, role, f"api/{page}.html#{anchor}"))
    return rows


def write(path: str, project: str, version: str, rows: list[tuple[str, str, str]]) -> int:
    """Write an intersphinx (version 2) inventory; return how many entries it holds."""
    unique = sorted(set(rows))
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in unique)
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode() + zlib.compress(body.encode()))
    return len(unique)


def _check(path: str, base: str) -> int:
    """Load an inventory back with Sphinx's own reader; return its entry count."""
    from sphinx.util.inventory import InventoryFile

    with open(path, "rb") as f:
        inv = InventoryFile.loads(f.read(), uri=base)
    data = getattr(inv, "data", inv)  # Sphinx 8.2+ returns an _Inventory, older a dict
    return sum(len(v) for v in data.values())


def main() -> int:
    import gevent
    import pymongo

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    targets = [
        ("python.inv", "Python", py, _python_entries(), "https://docs.python.org/3/"),
        ("gevent.inv", "gevent", gevent.__version__, _gevent_entries(), "https://www.gevent.org/"),
        (
            "pymongo.inv",
            "PyMongo",
            pymongo.version,
            _pymongo_entries(),
            "https://pymongo.readthedocs.io/en/stable/",
        ),
    ]
    for filename, project, version, rows, base in targets:
        path = os.path.join(HERE, filename)
        n = write(path, project, version, rows)
        print(f"{filename}: {n} entries ({project} {version}), loads back with {_check(path, base)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
