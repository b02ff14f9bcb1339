"""offload.doctor.environment(): each check against the real thing where it can exist here.

psycopg 3, psycogreen, fork and gunicorn ``--preload`` and uWSGI run for
real (subprocesses, a real ``os.fork()``, real gunicorn and uWSGI servers);
uWSGI releases before 2.0.27 (threads off by default) cannot be built here,
so that branch runs on a stand-in ``uwsgi`` module; a free-threaded build
and the CPython releases of gevent #2213 are not installed, so those checks
are tested on the values they read.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import modes
import pytest
import services

from offload.doctor.environment import check_free_threading, check_gevent_2213, check_gevent_threadpool

DSN = services.POSTGRES_DSN


def _need_postgres():
    if not services.port_open("127.0.0.1", 5432):
        services.unavailable("PostgreSQL on 127.0.0.1:5432")


def _findings(output):
    return json.loads(output.strip().splitlines()[-1])


# -- psycopg 3 ------------------------------------------------------------------------

PSYCOPG3 = """
    import json, sys
    {first}
    import offload
    from offload.doctor import environment
    finding = {{f.check: f for f in environment()}}["psycopg3"]
    conn = psycopg.connect({dsn!r}, autocommit=True, connect_timeout=5)
    result = offload.probe(conn.execute, "SELECT pg_sleep(0.3)")
    conn.close()
    print(json.dumps({{"status": finding.status, "detail": finding.detail, "blocked": result.blocked}}))
"""


def test_psycopg3_imported_before_patching_is_found_and_really_blocks():
    _need_postgres()
    first = "import psycopg\n    from gevent import monkey; monkey.patch_all()"
    out = _findings(modes.run("none", PSYCOPG3.format(first=first, dsn=DSN)))
    assert out["status"] == "warning", out
    assert "waits with wait_c" in out["detail"] and "imported before monkey patching" in out["detail"]
    assert out["blocked"] is True  # what the warning says is what happens


def test_psycopg3_imported_after_patching_is_fine():
    _need_postgres()
    out = _findings(modes.run("all", PSYCOPG3.format(first="import psycopg", dsn=DSN)))
    assert out["status"] == "ok", out
    assert "wait_c" not in out["detail"]
    assert out["blocked"] is False


# -- psycogreen --------------------------------------------------------------------------

PSYCOGREEN = """
    import json
    import psycopg2, psycogreen.gevent
    psycogreen.gevent.patch_psycopg()
    {extra}
    from offload.doctor import environment
    f = {{f.check: f for f in environment()}}["psycogreen"]
    print(json.dumps({{"status": f.status, "detail": f.detail, "advice": f.advice}}))
"""


def test_psycogreen_with_offloaded_psycopg2_is_a_warning():
    out = _findings(modes.run("all", PSYCOGREEN.format(extra="import offload.dbapi")))
    assert out["status"] == "warning", out
    assert "psycogreen.gevent.gevent_wait_callback" in out["detail"]
    assert "set_wait_callback(None)" in out["advice"]


def test_psycogreen_alone_is_fine():
    out = _findings(modes.run("all", PSYCOGREEN.format(extra="")))
    assert out == {
        "status": "ok",
        "detail": "psycopg2 waits through psycogreen.gevent.gevent_wait_callback: "
        "its own calls are cooperative",
        "advice": "",
    }


# -- fork and gunicorn --preload ----------------------------------------------------------

FORK = """
    import json, os, psycopg2
    from offload.doctor import environment
    {before}
    pid = os.fork()
    if pid == 0:
        {after}
        f = {{f.check: f for f in environment()}}["fork"]
        print(json.dumps({{"status": f.status, "detail": f.detail}}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_a_connection_opened_before_fork_is_found_in_the_child():
    _need_postgres()
    code = FORK.format(before=f"conn = psycopg2.connect({DSN!r}, connect_timeout=5)", after="pass")
    out = _findings(modes.run("none", code))
    assert out["status"] == "warning", out
    assert "1 connected socket(s) (127.0.0.1:5432) are shared with the parent process" in out["detail"]


def test_a_connection_opened_after_fork_is_fine():
    _need_postgres()
    code = FORK.format(before="pass", after=f"conn = psycopg2.connect({DSN!r}, connect_timeout=5)")
    out = _findings(modes.run("none", code))
    assert out == {"status": "ok", "detail": "this process: no connection is shared with the parent process"}


APP = """
import json, os

import psycopg2

from offload.doctor import environment

CONN = psycopg2.connect({dsn!r}, connect_timeout=5)  # at import: in the master under --preload


{head}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(findings()).encode()]
"""


def _serve(tmp_path, argv, head, prefix):
    """Start a real server on *argv* (with {port}) serving APP; its JSON answer."""
    (tmp_path / "app.py").write_text(APP.format(dsn=DSN, head=head))
    port = services.free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), modes.ROOT]))
    proc = subprocess.Popen(
        [arg.format(port=port) for arg in argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    return json.loads(answer.read())
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"{prefix} did not serve: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)  # both servers stop at once on it (SIGTERM reloads uWSGI)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


GUNICORN_HEAD = """
def findings():
    f = {f.check: f for f in environment()}["fork"]
    return [f.status, f.detail]
"""


@pytest.mark.parametrize("preload", [True, False])
def test_gunicorn_preload_with_a_connection_opened_in_the_master(tmp_path, preload):
    _need_postgres()
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "app:app"]
    status, detail = _serve(tmp_path, argv + (["--preload"] if preload else []), GUNICORN_HEAD, "gunicorn")
    if preload:
        assert status == "warning"
        assert detail.startswith("gunicorn --preload: 1 connected socket(s) (127.0.0.1:5432) are shared")
    else:
        assert status == "ok"
        assert detail == "a gunicorn worker: no connection is shared with the parent process"


# -- uWSGI ------------------------------------------------------------------------------------

UWSGI_HEAD = """
from pool import POOL


def findings():
    try:
        works = POOL.submit(os.getpid).result(timeout=3) == os.getpid()
    except Exception:
        works = False
    found = {f.check: f.status for f in environment()}
    found["pool works"] = works
    return found
"""


def test_uwsgi_without_fork_hooks_is_found_and_pools_really_hang(tmp_path):
    uwsgi = os.path.join(os.path.dirname(sys.executable), "uwsgi")
    if not os.access(uwsgi, os.X_OK):
        services.unavailable(f"uWSGI beside {sys.executable} (the test extra installs it)")
    _need_postgres()
    # A pool whose thread started at import, in the process uWSGI forks workers from.
    pool = "import os, offload\nPOOL = offload.ThreadPool(1)\nPOOL.call(os.getpid)\n"
    (tmp_path / "pool.py").write_text(pool)
    base = [
        uwsgi,
        "--http-socket",
        "127.0.0.1:{port}",
        "--wsgi-file",
        "app.py",
        "--callable",
        "app",
        "--master",
        "-p",
        "1",
        "--disable-logging",
        "--import",
        "pool",
    ]
    plain = _serve(tmp_path, base, UWSGI_HEAD, "uWSGI")
    hooked = _serve(tmp_path, base + ["--py-call-uwsgi-fork-hooks"], UWSGI_HEAD, "uWSGI")
    assert plain["uwsgi-fork"] == "warning" and plain["pool works"] is False, plain
    assert hooked["uwsgi-fork"] == "ok" and hooked["pool works"] is True, hooked
    assert plain["uwsgi-threads"] == hooked["uwsgi-threads"] == "ok"  # 2.0.27+: threads on by default
    # The matrix runs the suite under each GEVENT_LOOP, and uWSGI inherits it.
    assert plain["uwsgi-loop"] == ("warning" if "libuv" in os.environ.get("GEVENT_LOOP", "") else "ok")


STAND_IN = """
    import json, sys, types
    from offload.doctor.environment import check_uwsgi
    results = []
    for version, opt in {cases!r}:
        sys.modules["uwsgi"] = types.SimpleNamespace(version=version, opt=opt)
        results.append({{f.check: f.status for f in check_uwsgi()}})
    print(json.dumps(results))
"""


def test_uwsgi_options_on_a_stand_in_module():
    cases = [
        (b"2.0.26", {}),
        (b"2.0.26", {"enable-threads": True}),
        (b"2.0.26", {"enable-threads": b"false"}),
        (b"2.0.26", {"threads": b"4"}),
        (b"2.0.27", {}),
        (b"2.0.31", {"master": True}),
        (b"2.0.31", {"master": True, "lazy-apps": True}),
        (b"2.0.31", {"processes": b"4", "py-call-osafterfork": True}),
        (b"2.0.31", {"processes": b"4"}),
    ]
    results = _findings(modes.run("none", STAND_IN.format(cases=cases), env={"GEVENT_LOOP": "libev-cext"}))
    assert {r["uwsgi-loop"] for r in results} == {"ok"}
    libuv = _findings(modes.run("none", STAND_IN.format(cases=cases[:1]), env={"GEVENT_LOOP": "libuv-cffi"}))
    assert libuv[0]["uwsgi-loop"] == "warning"
    assert [(r["uwsgi-threads"], r["uwsgi-fork"]) for r in results] == [
        ("warning", "ok"),
        ("ok", "ok"),
        ("warning", "ok"),
        ("ok", "ok"),
        ("ok", "ok"),
        ("ok", "warning"),
        ("ok", "ok"),
        ("ok", "ok"),
        ("ok", "warning"),
    ]


# -- the interpreter ----------------------------------------------------------------------------


def test_free_threading():
    assert check_free_threading(True, True).status == "warning"
    assert "the GIL is back on" in check_free_threading(True, True).detail
    assert "the GIL is off for now" in check_free_threading(True, False).detail
    assert check_free_threading(False, True).status == "ok"
    # This machine's CPython has the GIL: the check reads it so.
    import sysconfig

    assert not sysconfig.get_config_var("Py_GIL_DISABLED")
    assert check_free_threading().status == "ok"


@pytest.mark.parametrize(
    "version, patched, status",
    [
        ((3, 13, 11), True, "ok"),
        ((3, 13, 12), True, "warning"),
        ((3, 13, 12), False, "ok"),
        ((3, 14, 2), True, "ok"),
        ((3, 14, 3), True, "warning"),
        ((3, 15, 0), True, "warning"),
        ((3, 11, 7), True, "ok"),
    ],
)
def test_gevent_2213(version, patched, status):
    finding = check_gevent_2213(version, patched, "26.9.0")
    assert finding.status == status
    if status == "warning":
        assert "gevent #2213" in finding.detail and "offload.call()" in finding.advice


def test_gevent_2213_reads_this_process():
    code = textwrap.dedent("""
        from offload.doctor.environment import check_gevent_2213
        print(check_gevent_2213().detail)
    """)
    out = modes.run("all", code).strip()
    assert out.startswith(f"CPython {sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}")


@pytest.mark.parametrize(
    "version, patched, issues",
    [
        ("26.7.0", True, ["#1865", "#2207"]),
        ("26.7.0", False, ["#2207"]),  # #1865 needs patched threading
        ("26.8.0", True, ["#2207"]),
        ("24.2.1", True, ["#1865", "#2207"]),
        ("26.9.0", True, []),
    ],
)
def test_gevent_threadpool(version, patched, issues):
    finding = check_gevent_threadpool(version, patched)
    assert finding.status == ("warning" if issues else "ok")
    assert [i for i in ("#1865", "#2207") if i in finding.detail] == issues


def test_gevent_threadpool_reads_this_gevent():
    import gevent

    finding = check_gevent_threadpool()
    assert finding.detail.startswith(f"gevent {gevent.__version__}")
