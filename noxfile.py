"""The test matrix: every installed Python x gevent {floor, newest} x GEVENT_LOOP.

``make matrix`` runs all of it; ``make matrix PY=3.12 GEVENT=floor LOOP=libuv-cffi``
runs a subset (each of the three takes a space-separated list; the Makefile
turns PY into ``nox -p`` and GEVENT into ``nox -k``, LOOP reaches the session
as an environment variable).  The floor cells pin every declared floor
(gevent per Python, PyMongo); the newest cells upgrade both.  Each
(Python, gevent) pair gets one virtualenv under ``.nox/``; the whole suite then
runs once per loop in it, and each run's counts land in ``.nox/matrix/`` for
``python noxfile.py`` (``make matrix-report``) to tabulate.

Interpreters are found, never downloaded: first under pyenv
(``$PYENV_ROOT/versions/3.X.*``, this machine kind has 3.10 to 3.13 there), then
on ``PATH``.  A Python that is not there is skipped with nox's own message.

``make coverage`` is the ``coverage`` session: one run of the suite on 3.12+,
where ``COVERAGE_CORE=sysmon`` sees the pools' raw worker threads, and
coverage's subprocess patch follows the ``tests/modes.py`` children.
"""

from __future__ import annotations

import glob
import os
import sys
import time
import xml.etree.ElementTree as ET

try:
    import nox
except ImportError:  # ``python noxfile.py`` (the report) needs only the standard library
    nox = None

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOOPS = ["libev-cext", "libev-cffi", "libuv-cffi"]
# The oldest gevent with wheels for each Python on PyPI: 24.2.1 has cp310-cp312
# wheels, 3.13 needs 24.10.1 (the first release with cp313 wheels).  setup.cfg's
# install_requires declares the same floors with environment markers.
GEVENT_FLOOR = {"3.10": "24.2.1", "3.11": "24.2.1", "3.12": "24.2.1", "3.13": "24.10.1"}
# offload.mongo needs MongoClient.append_metadata and the helpers of PyMongo
# 4.18 (4.6 fails at the first client); nx-27017, the tests' server, needs 4.18 too.
PYMONGO_FLOOR = "4.18.0"
COVERAGE_PYTHON = "3.13"

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, ".nox", "matrix")


def _pyenv_bins() -> list[str]:
    """The ``bin`` folders of the pyenv Pythons we test, newest patch release of each."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = []
    for minor in PYTHONS:
        candidates = sorted(
            glob.glob(os.path.join(root, "versions", minor + ".*", "bin", "python" + minor)),
            key=lambda p: [int(x) for x in p.split(os.sep)[-3].split(".") if x.isdigit()],
        )
        if candidates:
            found.append(os.path.dirname(candidates[-1]))
    return found


# pyenv's shims answer "command not found" for a version that is not global, so
# put the real interpreters' folders ahead of them for nox's discovery.
os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


def _selected(var: str, default: list[str]) -> list[str]:
    return os.environ.get(var, "").split() or default


def _counts(junit: str) -> dict[str, int]:
    """passed/failed/error/skipped/xfail totals from one pytest junit-xml file."""
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)  # <testsuites> wraps them
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


if nox is not None:
    nox.options.sessions = ["tests"]
    nox.options.download_python = "never"  # find interpreters, never fetch one
    nox.options.reuse_venv = "yes"  # a cell's install is the slow part; rerun cheaply

    @nox.session(python=PYTHONS)
    @nox.parametrize("gevent", ["floor", "newest"])
    def tests(session: nox.Session, gevent: str) -> None:
        """The whole suite under each selected GEVENT_LOOP, one (Python, gevent) pair."""
        session.install("-q", "-e", ".[mongo,test]")
        if gevent == "floor":  # every declared floor at once: gevent, PyMongo
            session.install("-q", f"gevent=={GEVENT_FLOOR[session.python]}", f"pymongo=={PYMONGO_FLOOR}")
        else:
            session.install("-q", "--upgrade", "gevent", "pymongo")
        version = session.run(
            "python", "-c", "import gevent, pymongo; print(gevent.__version__, pymongo.version)", silent=True
        ).split()[0]
        os.makedirs(RESULTS, exist_ok=True)
        failed = []
        for loop in _selected("LOOP", LOOPS):
            cell = f"py{session.python}-gevent{version}-{loop}"
            junit = os.path.join(RESULTS, cell + ".xml")
            if os.path.exists(junit):
                os.remove(junit)
            session.run(
                "python",
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                *session.posargs,
                env={"GEVENT_LOOP": loop},
                # any exit, a signal's too: judged below from the counts, so every loop runs
                success_codes=range(-64, 256),
            )
            if not os.path.exists(junit):  # pytest died (a segfault): say so in the report
                with open(junit, "w") as f:
                    f.write('<testsuite name="crashed before writing results" tests="1" errors="1"/>')
            if _counts(junit)["failures"] + _counts(junit)["errors"]:
                failed.append(cell)
        if failed:
            session.error("failed: " + ", ".join(failed))

    @nox.session(python=COVERAGE_PYTHON)
    def coverage(session: nox.Session) -> None:
        """Line coverage per module of the whole suite, worker threads and mode children included."""
        session.install("-q", "-e", ".[mongo,test]", "coverage>=7.10")
        # sysmon (3.12+) sees threads started with _thread, which the settrace core misses
        env = {"COVERAGE_CORE": "sysmon"}
        # Under coverage two assertions fail by construction: coverage's start-up in
        # every child imports multiprocessing, which test_process_modes checks that
        # `import offload` does not.  The run still counts; its failures are listed.
        session.run("coverage", "erase")
        session.run(
            "coverage",
            "run",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *session.posargs,
            env=env,
            success_codes=[0, 1],
        )
        session.run("coverage", "combine", "-q")
        session.run("coverage", "report")
        session.run("coverage", "json", "-q", "-o", os.path.join(HERE, ".nox", "coverage.json"))


def report() -> int:
    """Print one line per matrix cell run so far: pass/fail/error/skip counts."""
    rows = []
    for junit in sorted(glob.glob(os.path.join(RESULTS, "*.xml"))):
        c = _counts(junit)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(junit)))
        name = os.path.basename(junit)[:-4]
        rows.append((name, c["passed"], c["failures"], c["errors"], c["skipped"], when))
    if not rows:
        print("no matrix results yet: run `make matrix`")
        return 1
    width = max(len(r[0]) for r in rows)
    print(f"{'cell':<{width}}  passed  failed  errors  skipped  finished (UTC)")
    for name, p, f, e, s, when in rows:
        print(f"{name:<{width}}  {p:>6}  {f:>6}  {e:>6}  {s:>7}  {when}")
    return 0 if all(r[2] == r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(report())
