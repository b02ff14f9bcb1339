"""The README's quickstart runs as written.

Each ``python`` block of the README's Quickstart section is saved as a script
and run in a fresh interpreter, the way a reader who pastes it would; what it
prints must match the ``# expected`` comments on its ``print`` lines.  Only
the server addresses are swapped for the test servers': the PostgreSQL DSN
(``OFFLOAD_TEST_POSTGRES_DSN``) and the MongoDB URI (nx-27017 started by
``tests/mongo_server.py``, or ``OFFLOAD_TEST_MONGODB_URI``).  A missing server
skips its block (and fails under ``CI=true``).
"""

import os
import re
import subprocess
import sys
import time
import zipfile

import pytest
import services
from mongo_server import mongo_server_info, mongo_uri  # noqa: F401

import offload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_DSN = '"dbname=test"'
README_MONGO = '"mongodb://localhost:27017"'


def quickstart_blocks():
    """The ``python`` code blocks between '## Quickstart' and the next '## ' heading."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def expected_output(code):
    """The values the block's ``print(...)  # value`` lines promise, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s*#\s*(.+)$", code, re.M)]


def run_script(tmp_path, code):
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # as a reader's own folder: offload comes from the install, not the clone
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout.splitlines()


def block(marker):
    """The one quickstart block containing *marker*."""
    found = [code for code in quickstart_blocks() if marker in code]
    assert len(found) == 1, f"expected one README quickstart block with {marker!r}, found {len(found)}"
    return found[0]


def test_quickstart_has_the_three_blocks():
    blocks = quickstart_blocks()
    assert len(blocks) == 3
    for code in blocks:
        assert expected_output(code), "every block prints what it promises"


def test_threads_and_postgres_block(tmp_path):
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL is not listening on 127.0.0.1:5432")
    code = block("offload.dbapi")
    assert README_DSN in code
    code = code.replace(README_DSN, repr(services.POSTGRES_DSN))
    assert run_script(tmp_path, code) == expected_output(code)


def test_the_probe_line_tells_a_blocking_driver_apart():
    """The README's probe, on a plain psycopg2 cursor, says blocked: its False means something."""
    psycopg2 = pytest.importorskip("psycopg2")
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL is not listening on 127.0.0.1:5432")
    line = next(line for line in block("offload.dbapi").splitlines() if "offload.probe(" in line)
    assert 'offload.probe(cur.execute, "SELECT pg_sleep(0.5)", threshold=0.25)' in line
    conn = psycopg2.connect(services.POSTGRES_DSN)
    try:
        result = offload.probe(conn.cursor().execute, "SELECT pg_sleep(0.5)", threshold=0.25)
    finally:
        conn.close()
    assert result.blocked, result


def test_mongo_block(tmp_path, mongo_uri):  # noqa: F811 (the fixture)
    code = block("offload.mongo")
    assert README_MONGO in code
    code = code.replace(README_MONGO, repr(mongo_uri))
    assert run_script(tmp_path, code) == expected_output(code)


@pytest.mark.timing
def test_mongo_block_gives_up_fast_without_a_server(tmp_path):
    """The block as written, with nothing on its port: an error within seconds, not PyMongo's 30 s."""
    code = block("offload.mongo").replace(README_MONGO, repr(f"mongodb://127.0.0.1:{services.free_port()}"))
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert "ServerSelectionTimeoutError" in proc.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s: serverSelectionTimeoutMS=2000 should end it near 2 s"


def test_process_block(tmp_path):
    code = block('pool="process"')
    assert 'if __name__ == "__main__":' in code
    assert run_script(tmp_path, code) == expected_output(code)


def test_pip_install_from_a_clone_builds(tmp_path):
    """``pip install .``, the README's first install line, builds offload with its floors."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("offload-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "offload/py.typed" in names
    assert 'Requires-Dist: gevent>=24.2.1; python_version < "3.13"' in metadata
    assert 'Requires-Dist: pymongo>=4.18; extra == "mongo"' in metadata
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        install = f.read().split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    assert "$ pip install .  " in install
