"""Run every ``bench/bench_*.py`` and write their sections to bench/README.md.

Each benchmark script prints one Markdown section to stdout; this runner adds
a header naming the machine and versions, so the table always says where its
numbers come from.  ``python bench/run.py core`` runs only ``bench_core.py``.
"""

import datetime
import glob
import os
import platform
import subprocess
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def header():
    cpus = os.cpu_count()
    names = ("gevent", "greenlet", "eventlet", "pymongo", "psycopg2-binary")
    versions = ", ".join(f"{name} {_version(name)}" for name in names)
    return (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {datetime.date.today().isoformat()}: "
        f"{platform.machine()}, {cpus} CPUs, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}; {versions}.\n\n"
        "Every figure is from one run of `make bench` on that machine; ratios compare "
        "implementations measured side by side in the same run.\n"
    )


def main(argv):
    wanted = set(argv)
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    sections = [header()]
    failed = []
    for script in scripts:
        topic = os.path.basename(script)[len("bench_") : -len(".py")]
        if wanted and topic not in wanted:
            continue
        print(f"== {topic}", file=sys.stderr, flush=True)
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, script], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
        if proc.returncode:
            failed.append(topic)
            continue
        sections.append(proc.stdout.strip() + "\n")
        print(proc.stdout, file=sys.stderr)
    if not wanted:
        with open(os.path.join(HERE, "README.md"), "w") as f:
            f.write("\n".join(sections))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
