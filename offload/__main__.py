"""``python -m offload COMMAND``: the command line.

One command so far, ``doctor`` (see :mod:`offload.doctor`).  By the time
this module runs, ``python -m`` has imported the ``offload`` package and so
gevent and threading: too late to monkey patch well.  A command that needs
patching therefore runs again in a fresh interpreter that patches first.
"""

import argparse
import sys

from offload._version import __version__

COMMANDS = {"doctor": "measure whether database drivers block the gevent hub"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m offload",
        usage="python -m offload [--version] COMMAND [ARGS...]",
        description="offload's command line.",
        epilog="commands:\n"
        + "\n".join(f"  {name:10} {text}" for name, text in COMMANDS.items())
        + "\n\n'python -m offload COMMAND --help' describes a command's own arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"offload {__version__}")
    parser.add_argument("command", metavar="COMMAND", help="what to run: " + ", ".join(COMMANDS))
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    """Run a command; the process exit code (2 for a usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if not argv:
        parser.print_usage(sys.stderr)
        commands = ", ".join(COMMANDS)
        print(f"python -m offload: error: name a command: {commands} (try --help)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        parser.error(f"unknown command {args.command!r}: the commands are {', '.join(COMMANDS)}")
    from offload.doctor import main as doctor

    return doctor(args.args, prog=f"python -m offload {args.command}")


if __name__ == "__main__":
    sys.exit(main())
