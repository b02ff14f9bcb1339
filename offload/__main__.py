"""``python -m offload COMMAND``: the command line.

One command so far, ``doctor`` (see :mod:`offload.doctor`).  By the time
this module runs, ``python -m`` has imported the ``offload`` package and so
gevent and threading: too late to monkey patch well.  A command that needs
patching therefore runs again in a fresh interpreter that patches first.
"""

import argparse
import sys

COMMANDS = {"doctor": "measure whether database drivers block the gevent hub"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offload",
        description="offload's command line.",
        epilog="commands: " + "; ".join(f"{name}: {text}" for name, text in COMMANDS.items()),
    )
    parser.add_argument("command", choices=tuple(COMMANDS), help="what to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (try --help)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from offload.doctor import main as doctor

    return doctor(args.args, prog=f"python -m offload {args.command}")


if __name__ == "__main__":
    sys.exit(main())
