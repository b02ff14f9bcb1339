"""offload.mongo under each monkey-patching mode, each in a fresh interpreter.

The server URI reaches the snippets through the environment (``MONGO_URI``).
"""

import os
import subprocess
import sys

import pytest
from modes import ROOT, lines, run
from mongo_server import is_nx_27017, mongo_server_info, mongo_uri  # noqa: F401

# 8 greenlets, each inserting ~3 MB in one insert_many, over ONE pooled
# connection (maxPoolSize=1) shared by a 4-thread pool: a send that blocks in
# a worker other than the one that opened the connection.
LARGE_WRITES = """
import os, gevent, offload, pymongo
from gevent import monkey

def watchdog():  # a real thread: report a hang, rather than wait for pytest's timeout
    monkey.get_original("time", "sleep")(30)
    print("hung=1", flush=True)
    os._exit(0)
monkey.get_original("_thread", "start_new_thread")(watchdog, ())

pool = offload.ThreadPool(4)
if os.environ["CLIENT"] == "proxy":
    from offload.mongo import MongoClient
    client = MongoClient(os.environ["MONGO_URI"], maxPoolSize=1, pool=pool)
    call = lambda fn, *args: fn(*args)
else:  # plain PyMongo, its calls handed to the pool by hand
    if os.environ["CLIENT"] == "plain, after an offload.mongo client":
        import offload.mongo
        offload.mongo.MongoClient(os.environ["MONGO_URI"], connect=False).close()
    elif os.environ["CLIENT"] == "plain, offload.mongo imported":
        import offload.mongo  # changes nothing in PyMongo by itself
    client = pymongo.MongoClient(os.environ["MONGO_URI"], maxPoolSize=1)
    call = pool.call
coll = client.offload_tests[os.environ["COLL"]]
call(coll.drop)

def work(k):
    docs = [{"k": k, "i": i, "pad": "x" * 3000} for i in range(1000)]
    return len(call(coll.insert_many, docs).inserted_ids)

jobs = [gevent.spawn(work, k) for k in range(8)]
gevent.joinall(jobs)
errors = [repr(j.exception) for j in jobs if not j.successful()]
print("socket_patched=%s" % monkey.is_module_patched("socket"))
print("failures=%d" % len(errors))
print("cannot_switch=%d" % sum("Cannot switch to a different thread" in e for e in errors))
for e in errors[:3]:
    print("error: " + e[:300])
try:
    print("count=%d" % call(coll.count_documents, {}))
    call(coll.drop)
except Exception as exc:  # the control run may have broken its one connection
    print("count_error=" + repr(exc)[:200])
"""


TLS_CLIENT = """
from offload.mongo import MongoClient
try:
    MongoClient("mongodb://127.0.0.1:9/?tls=true&tlsAllowInvalidCertificates=true", connect=False)
except RuntimeError as exc:
    print("refused=" + str(exc))
else:
    print("refused=")
"""


@pytest.mark.parametrize("mode, refused", [("none", False), ("nothread", True), ("all", False)])
def test_tls_through_patched_ssl_with_real_threads_is_refused_at_once(mode, refused):
    # gevent's SSL sockets belong to one thread's hub; PyMongo shares
    # connections between threads.  Refused when the client is made, not
    # with "Cannot switch to a different thread" on the first large write.
    out = lines(run(mode, TLS_CLIENT))
    assert bool(out["refused"]) is refused, out
    if refused:
        assert "patch_all()" in out["refused"]


@pytest.mark.parametrize("mode", ["socket", "nothread"])
def test_large_writes_through_shared_connections_with_patched_sockets(mongo_uri, mode):  # noqa: F811
    env = {"MONGO_URI": mongo_uri, "CLIENT": "proxy", "COLL": f"large_{mode}"}
    out = lines(run(mode, LARGE_WRITES, env=env))
    assert out["socket_patched"] == "True"
    assert out["failures"] == "0", out
    assert out["count"] == "8000"


@pytest.mark.parametrize("client", ["plain", "plain, offload.mongo imported"])
def test_plain_pymongo_on_worker_threads_hits_the_trap(mongo_uri, client):  # noqa: F811
    """The control for the test above: without offload.mongo's shim -- and
    importing offload.mongo does not install it -- PyMongo's gevent sockets
    fail when another thread must wait on them."""
    env = {"MONGO_URI": mongo_uri, "CLIENT": client, "COLL": "large_plain"}
    out = lines(run("socket", LARGE_WRITES, env=env))
    # The trap is the error, or (libuv, CPython 3.13: 2 runs in 3) a wait that never ends.
    assert out.get("hung") == "1" or int(out["cannot_switch"]) >= 1, out


def test_the_first_offload_mongo_client_fixes_plain_pymongo_on_workers(mongo_uri):  # noqa: F811
    """The fix is where PyMongo opens connections: once an offload.mongo
    client has been made (or offload.mongo.install_real_sockets() called),
    connections opened in offload workers use real sockets."""
    client = "plain, after an offload.mongo client"
    env = {"MONGO_URI": mongo_uri, "CLIENT": client, "COLL": "large_plain_fixed"}
    out = lines(run("socket", LARGE_WRITES, env=env))
    assert out["failures"] == "0", out
    assert out["count"] == "8000"


INSTALL = """
import threading
import pymongo.pool_shared as shared
import offload.mongo

print("after_import=%s" % type(shared.socket).__name__)
results = []
install = lambda: results.append(offload.mongo.install_real_sockets())
threads = [threading.Thread(target=install) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wrapped = shared.socket
print("installed=%s" % results)
print("after_install=%s" % type(wrapped).__name__)
print("again=%s" % offload.mongo.install_real_sockets())
offload.mongo.MongoClient("mongodb://127.0.0.1:9/", connect=False).close()
print("wrapped_once=%s" % (shared.socket is wrapped and type(wrapped._module).__name__ == "module"))
"""


def test_importing_offload_mongo_leaves_pymongo_alone_and_install_is_idempotent():
    out = lines(run("socket", INSTALL))
    assert out["after_import"] == "module", out
    assert out["installed"] == str([True] * 8) and out["again"] == "True", out
    assert out["after_install"] == "_SocketModule" and out["wrapped_once"] == "True", out


EVERYTHING = """
import os, time, gevent, offload, pymongo
from gevent import monkey
from offload import mongo

client = mongo.MongoClient(os.environ["MONGO_URI"], serverSelectionTimeoutMS=10000)
runner = client._offload_runner
coll = client.offload_tests[os.environ["COLL"]]
coll.drop()
coll.insert_many([{"i": i, "pad": "x" * 100} for i in range(3000)])
before = runner.pool.stats()["submitted"] if runner.pool else 0
got = [d["i"] for d in coll.find().sort("i").batch_size(500)]
hops = (runner.pool.stats()["submitted"] if runner.pool else 0) - before
assert got == list(range(3000))

with client.start_session() as s:
    with s.start_transaction():
        coll.insert_one({"i": -1}, session=s)
    s.with_transaction(lambda s: coll.insert_one({"i": -2}, session=s))

def reader(k):
    return sum(1 for _ in coll.find({"i": {"$lt": 100}}))

with offload.Heartbeat(0.002) as beat:
    jobs = [gevent.spawn(reader, k) for k in range(50)]
    gevent.joinall(jobs, raise_error=True)
assert [j.value for j in jobs] == [102] * 50
# The same 50 reads done directly, one after the other: a hub blocked by the
# reads above would have frozen for about this long.
plain = pymongo.MongoClient(os.environ["MONGO_URI"], serverSelectionTimeoutMS=10000)
plain_coll = plain.offload_tests[os.environ["COLL"]]
sum(1 for _ in plain_coll.find({"i": {"$lt": 100}}))  # connect first
started = time.perf_counter()
for k in range(50):
    sum(1 for _ in plain_coll.find({"i": {"$lt": 100}}))
print("direct=%.4f" % (time.perf_counter() - started))
plain.close()

print("inline=%s" % runner.inline)
print("threading_patched=%s" % monkey.is_module_patched("threading"))
print("iteration_hops=%d" % hops)
print("count=%d" % coll.count_documents({}))
print("max_lag=%.4f" % beat.max_lag)
print("ticks=%d" % len(beat.lags))
coll.drop()
client.close()
"""


@pytest.mark.parametrize("mode", ["none", "socket", "nothread", "all"])
def test_every_mode(mongo_uri, mode):  # noqa: F811
    out = lines(run(mode, EVERYTHING, env={"MONGO_URI": mongo_uri, "COLL": f"every_{mode}"}))
    assert out["count"] == "3002"
    if mode == "all":
        # PyMongo is cooperative there and its internals are greenlets: inline.
        assert out["inline"] == "True" and out["threading_patched"] == "True"
        assert out["iteration_hops"] == "0"
    else:
        assert out["inline"] == "False"
        assert 6 <= int(out["iteration_hops"]) <= 8  # 3000 documents, batches of 500
    assert int(out["ticks"]) > 5
    # A blocked hub would freeze for about as long as the reads done directly.
    assert float(out["max_lag"]) < float(out["direct"]) / 2, out


def test_example_runs(mongo_uri):  # noqa: F811
    """By default the example starts its own nx-27017; given a URI, it uses that."""
    args = [] if is_nx_27017() else [mongo_uri]
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "mongo_without_patching.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert proc.returncode == 0, proc.stderr
    assert "offload.mongo keeps it ticking" in proc.stdout
    labels = ("plain", "offload.")
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith(labels)}
    assert set(rows) == {"plain", "offload.mongo"}
