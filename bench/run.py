"""Run every ``bench/bench_*.py`` and write their sections to bench/README.md.

Each benchmark script prints one Markdown section to stdout; this runner adds
a header naming the machine, its state and the versions, so the tables always
say where their numbers come from, and after each section the notes kept in
``bench/notes/<topic>.md`` (dated analyses and trials, written by hand: a new
run must not erase them).  The database benchmarks then run again with the
server 0.2 ms and 1 ms away (``OFFLOAD_BENCH_RTT_MS``, through
``bench/delayline.py``).  ``python bench/run.py core`` runs only
``bench_core.py`` and prints its section without writing the file.
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
#: The benchmarks run again with the server this far away (ms), and which.
DISTANCES = ("0.2", "1")
AT_A_DISTANCE = ("dbapi", "mongo")
#: The sections' order in the file; any other bench_*.py comes after them.
ORDER = ("core", "dbapi", "pool", "frameworks", "mongo", "process", "bigresult")
HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _halt_poll():
    """The guest's halt-polling setting, if this is a VM that has one (see notes/core.md)."""
    try:
        with open(HALT_POLL) as f:
            return f" Guest halt-polling: {f.read().strip()} ns (`{HALT_POLL}`)."
    except OSError:
        return ""


def header(started, took, loads):
    cpus = os.cpu_count()
    names = ("gevent", "greenlet", "eventlet", "pymongo", "psycopg2-binary")
    versions = ", ".join(f"{name} {_version(name)}" for name in names)
    return (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {started:%Y-%m-%d}, from {started:%H:%M} UTC for "
        f"{took / 60:.0f} minutes: {platform.machine()}, {cpus} CPUs, {platform.system()} "
        f"{platform.release()}, CPython {platform.python_version()}; {versions}. "
        f"Load average (1 min) {loads[0]:.2f} at the start, {loads[1]:.2f} at the end."
        f"{_halt_poll()}\n\n"
        "Every table is from this one run of `make bench`, its sections one after the other; "
        "ratios compare implementations measured side by side in the same run, and absolute "
        "figures on this shared 2-CPU machine vary from run to run by up to 2x: read the "
        "ratios. The paragraphs after a section's tables that carry a date are notes kept in "
        "`bench/notes/`, from the runs and trials they name.\n"
    )


def _notes(topic):
    try:
        with open(os.path.join(HERE, "notes", f"{topic}.md")) as f:
            return "\n" + f.read().strip() + "\n"
    except FileNotFoundError:
        return ""


def _run(topic, script, extra_env=None):
    """One benchmark's section (stdout), or None if it failed."""
    print(f"== {topic}", file=sys.stderr, flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT, **(extra_env or {}))
    proc = subprocess.run([sys.executable, script], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    if proc.returncode:
        return None
    print(proc.stdout, file=sys.stderr)
    return proc.stdout.strip() + "\n"


def _topic(script):
    return os.path.basename(script)[len("bench_") : -len(".py")]


def main(argv):
    wanted = set(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    scripts = sorted(
        glob.glob(os.path.join(HERE, "bench_*.py")),
        key=lambda path: (ORDER.index(_topic(path)) if _topic(path) in ORDER else len(ORDER), path),
    )
    runs = []  # (topic, script, extra environment)
    for script in scripts:
        topic = _topic(script)
        if not wanted or topic in wanted:
            runs.append((topic, script, None))
    if not wanted:
        for rtt in DISTANCES:
            for topic in AT_A_DISTANCE:
                script = os.path.join(HERE, f"bench_{topic}.py")
                runs.append((f"{topic}@{rtt}ms", script, {"OFFLOAD_BENCH_RTT_MS": rtt}))
    sections = []
    failed = []
    for topic, script, extra_env in runs:
        section = _run(topic, script, extra_env)
        if section is None:
            failed.append(topic)
            continue
        sections.append(section + _notes(topic))
    if not wanted:
        took = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
        with open(os.path.join(HERE, "README.md"), "w") as f:
            f.write("\n".join([header(started, took, (load_before, os.getloadavg()[0])), *sections]))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
