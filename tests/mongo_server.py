"""A MongoDB wire-protocol server for the tests, and the fixtures the Mongo tests share.

``OFFLOAD_TEST_MONGODB_URI`` (a real mongod, Atlas, ...) is used as it is
when set.  Otherwise the session-scoped :func:`mongo_server_info` fixture
starts the ``nx-27017`` console script installed beside this Python
(``--db memory`` on a free loopback port; the launcher is the one of
``examples/mongo_without_patching.py``), waits until it listens, and stops
it at the end.  Import the fixtures into a test module with
``from mongo_server import client, coll, mongo_pool, mongo_server_info, mongo_uri  # noqa: F401``.
"""

import os
import sys

import pytest
import services

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
from mongo_without_patching import NX27017  # noqa: E402

import offload  # noqa: E402
from offload import mongo  # noqa: E402

__all__ = ["NX27017", "client", "coll", "hops", "is_nx_27017", "mongo_pool", "mongo_server_info", "mongo_uri"]

URI = os.environ.get("OFFLOAD_TEST_MONGODB_URI")


@pytest.fixture(scope="session")
def mongo_server_info():
    if URI:
        yield URI, None
        return
    server = NX27017()
    reason = server.start()
    try:
        yield server.uri, reason
    finally:
        server.stop()


@pytest.fixture
def mongo_uri(mongo_server_info):
    """The server's URI; the test is skipped (failed under CI) without one."""
    uri, reason = mongo_server_info
    if reason is not None:
        services.unavailable(reason)
    return uri


def is_nx_27017():
    """True when the tests run against nx-27017 rather than a real server."""
    return not URI


@pytest.fixture(scope="module")
def mongo_pool():
    """One module's thread pool, whose ``submitted`` counts the hops."""
    p = offload.ThreadPool(8, name="test-mongo")
    yield p
    p.shutdown()


@pytest.fixture(scope="module")
def client(mongo_server_info, mongo_pool):
    """An offload.mongo client on :func:`mongo_pool` (None without a server)."""
    uri, reason = mongo_server_info
    if reason is not None:
        yield None
        return
    c = mongo.MongoClient(uri, serverSelectionTimeoutMS=5000, pool=mongo_pool)
    yield c
    c.close()


@pytest.fixture
def coll(request, client, mongo_uri):
    """A collection of its own for the test, empty at the start, dropped at the end."""
    c = client.offload_tests[request.node.name.replace("[", "_").replace("]", "")]
    c.drop()
    yield c
    c.drop()


def hops(pool):
    """How many calls *pool* has been handed so far."""
    return pool.stats()["submitted"]
