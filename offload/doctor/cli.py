"""The doctor's command line: arguments, and the re-exec that patches first.

Patching is process-wide and must come before anything else is imported, so
for any ``--patch`` but ``none`` :func:`main` runs the doctor again in a
fresh interpreter whose first line patches, entering at :func:`_patched_main`
(a private entry point, so :func:`main` keeps a plain public signature).
"""

import argparse
import subprocess
import sys
from collections.abc import Sequence

from .._version import __version__
from .redact import redact
from .report import print_report, run

__all__ = ["PATCHES", "main", "parser"]

# --patch MODE -> the first line of the interpreter that measures under it.
# tests/modes.py runs its scenarios under these same modes.
PATCHES = {
    "none": "",
    "all": "from gevent import monkey; monkey.patch_all()",
    "nothread": "from gevent import monkey; monkey.patch_all(thread=False)",
    "socket": "from gevent import monkey; monkey.patch_socket()",
}

PROG = "python -m offload doctor"


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error never echoes a credential."""

    def error(self, message: str):  # type: ignore[override]
        # "unrecognized arguments: --postgress password=..." quotes argv.
        for arg in sorted(set(sys.argv[1:] + self._argv), key=len, reverse=True):
            if "=" in arg or "://" in arg:
                message = message.replace(arg, redact(arg))
        super().error(message)

    _argv: list[str] = []


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The doctor's argument parser."""
    p = _Parser(
        prog=prog,
        description="Measure whether database drivers block the gevent hub, directly and through offload, "
        "and check the environment for mistakes that block it silently.",
        epilog="example: %(prog)s --postgres 'host=127.0.0.1 dbname=app' --redis redis://127.0.0.1:6379/0",
    )
    add = p.add_argument
    add("--postgres", metavar="DSN", help="libpq DSN or postgresql:// URI (psycopg2)")
    add("--mysql", metavar="URL", help="mysql://user:password@host:port/db (mysqlclient, PyMySQL)")
    add("--sqlite", metavar="PATH", help="an existing sqlite3 database file, opened read-only")
    add("--mongo", metavar="URI", help="mongodb:// URI (PyMongo)")
    add("--redis", metavar="URL", help="redis:// URL (redis-py)")
    add(
        "--patch",
        choices=tuple(PATCHES),
        default="all",
        help="monkey patching to apply before anything else: none, patch_all() (all, the default), "
        "patch_all(thread=False) (nothread) or patch_socket() (socket)",
    )
    add("--json", action="store_true", help="print the report as JSON")
    add("--version", action="version", version=f"offload {__version__}")
    return p


def _parse(argv: Sequence[str], prog: str) -> argparse.Namespace:
    p = parser(prog)
    p._argv = list(argv)  # type: ignore[attr-defined]
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run the doctor; the process exit code (0: it ran; 1: a check could not run; 2: usage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv, prog)
    if args.patch == "none":
        return print_report(run(args), args.json)
    code = (
        f"{PATCHES[args.patch]}\n"
        "import sys\n"
        "from offload.doctor.cli import _patched_main\n"
        f"sys.exit(_patched_main(sys.argv[1:], {prog!r}))\n"
    )
    return subprocess.call([sys.executable, "-c", code, *argv])


def _patched_main(argv: Sequence[str], prog: str) -> int:
    """The doctor in the interpreter :func:`main` started, patched as ``--patch`` asked."""
    args = _parse(argv, prog)
    return print_report(run(args), args.json)
