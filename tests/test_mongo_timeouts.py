"""A deadline on an offload.mongo call is a server-side limit, and bounds the caller's wait.

``pymongo.timeout()`` around a call, or the client's ``timeoutMS``, goes
with the call to its worker thread, where PyMongo sends it to the server as
``maxTimeMS`` and bounds its own socket reads by it; a call still queued for
a thread at its deadline is cancelled and never reaches the server.  The
commands that reach the server are seen with a PyMongo command listener.
nx-27017 ignores ``maxTimeMS`` (see docs/mongo.rst): there the client's
deadline is what ends the wait, and the server finishes the operation later.
"""

import os
import time

import gevent
import pymongo
import pytest
from mongo_server import client, coll, is_nx_27017, mongo_pool, mongo_server_info, mongo_uri  # noqa: F401
from pymongo import monitoring
from pymongo.errors import NetworkTimeout, PyMongoError, WaitQueueTimeoutError

import offload
from offload import mongo


class Commands(monitoring.CommandListener):
    """Every command the client sent, as (name, command document)."""

    def __init__(self):
        self.sent = []

    def started(self, event):
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def named(self, name):
        return [command for n, command in self.sent if n == name]


@pytest.fixture
def one_thread():
    pool = offload.ThreadPool(1, name="test-mongo-timeouts")
    yield pool
    pool.shutdown(wait=False)


def _in_greenlet(fn):
    return gevent.spawn(fn).get(timeout=60)


def _timed(fn):
    """(the PyMongo error *fn* raised or None, how long it took)."""
    started = time.monotonic()
    try:
        fn()
    except PyMongoError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def _idle_after(pool, seconds):
    deadline = time.monotonic() + seconds
    while pool.stats()["active"] and time.monotonic() < deadline:
        gevent.sleep(0.01)
    return pool.stats()["active"] == 0


@pytest.mark.parametrize("where", ["pymongo.timeout()", "timeoutMS", "timeoutMS=0"])
def test_the_deadline_reaches_the_server_as_max_time_ms(mongo_uri, mongo_pool, where):  # noqa: F811
    commands = Commands()
    options = {"timeoutMS": int(where.partition("=")[2] or 4000)} if where.startswith("timeoutMS") else {}
    with mongo.MongoClient(mongo_uri, event_listeners=[commands], pool=mongo_pool, **options) as c:
        coll = c.offload_tests.deadline  # noqa: F811
        coll.insert_one({"k": 1})

        def find():
            if where != "pymongo.timeout()":
                return coll.find_one({"k": 1})
            with pymongo.timeout(4):
                return coll.find_one({"k": 1})

        assert _in_greenlet(find)["k"] == 1
        assert coll.find_one({"k": 1}) is not None  # without a deadline, when none is set
        coll.drop()
    finds = commands.named("find")
    if where == "timeoutMS=0":  # no timeout, as in PyMongo
        assert ["maxTimeMS" in find for find in finds] == [False, False], finds
        return
    assert 0 < finds[0]["maxTimeMS"] <= 4000, finds[0]
    assert ("maxTimeMS" in finds[1]) == (where == "timeoutMS"), finds[1]


@pytest.mark.parametrize("where", ["pymongo.timeout()", "timeoutMS"])
def test_a_call_queued_past_its_deadline_is_cancelled_and_never_reaches_the_server(
    mongo_uri,  # noqa: F811
    one_thread,
    where,
):
    commands = Commands()
    options = {"timeoutMS": 300} if where == "timeoutMS" else {}
    c = mongo.MongoClient(mongo_uri, event_listeners=[commands], pool=one_thread, **options)
    coll = c.offload_tests.queued  # noqa: F811
    blocker = one_thread.submit(time.sleep, 3)  # the pool's only thread is busy for 3 s

    def find():
        if where == "timeoutMS":
            return coll.find_one({"queued": True})
        with pymongo.timeout(0.3):
            return coll.find_one({"queued": True})

    error, waited = _in_greenlet(lambda: _timed(find))
    assert isinstance(error, WaitQueueTimeoutError) and error.timeout, error
    assert "cancelled before it started" in str(error)
    assert waited < 2.0, waited  # the deadline (0.3 s), not the 3 s the thread stays busy
    blocker.result(10)
    assert c.admin.command("ping")["ok"] == 1  # the thread is free again, and took no find
    assert commands.named("find") == []
    c.close()


def test_a_slow_operation_under_a_deadline_ends_at_the_deadline(mongo_uri, mongo_pool):  # noqa: F811
    """A $lookup that nx-27017 needs seconds for, under pymongo.timeout(0.5).

    nx-27017 ignores maxTimeMS, so PyMongo's own deadline ends the wait: the
    socket read times out, PyMongo closes that connection, and the worker is
    free.  (A real server would end the operation itself, with an
    ExecutionTimeout.)
    """
    if not is_nx_27017():
        pytest.skip("the $lookup here is slow on nx-27017 only")
    # A database of its own: nx-27017 holds a database's lock while it works.
    name = f"offload_timeouts_{os.getpid()}"
    with mongo.MongoClient(mongo_uri, pool=mongo_pool, serverSelectionTimeoutMS=5000) as c:
        coll = c[name].docs  # noqa: F811
        coll.insert_many([{"i": i, "k": i % 50} for i in range(3000)])
        lookup = {"from": "docs", "localField": "k", "foreignField": "k", "as": "j"}
        join = [{"$lookup": lookup}, {"$count": "n"}]

        def slow():
            with pymongo.timeout(0.5):
                return coll.aggregate(join).to_list()

        error, waited = _in_greenlet(lambda: _timed(slow))
        assert isinstance(error, NetworkTimeout) and error.timeout, error
        assert waited < 2.5, waited  # alone on an idle machine the $lookup takes ~4 s
        assert _idle_after(mongo_pool, 2.0)  # no worker is left waiting on it
        # The server finishes the $lookup by itself and then serves the database again.
        started = time.monotonic()
        assert coll.count_documents({"k": 0}) == 60
        print(f"client error after {waited:.2f}s; the server was busy {time.monotonic() - started:.2f}s more")
        c.drop_database(name)


def test_a_running_call_that_ignores_its_deadline_is_abandoned_soon_after(mongo_uri, one_thread):  # noqa: F811
    """A with_transaction callback that sleeps past the deadline: PyMongo
    cannot stop it, so the caller stops waiting REPORT_GRACE after it."""
    with mongo.MongoClient(mongo_uri, pool=one_thread) as c:
        with c.start_session() as session:

            def stuck():
                with pymongo.timeout(0.3):
                    session.with_transaction(lambda s: time.sleep(3))

            error, waited = _in_greenlet(lambda: _timed(stuck))
        assert isinstance(error, NetworkTimeout) and error.timeout, error
        assert "still running" in str(error)
        assert waited < 2.5, waited  # 0.3 s, then 1 s of grace; not the 3 s the callback sleeps
