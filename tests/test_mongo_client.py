"""offload.mongo's client objects against a real wire-protocol server, with no monkey patching.

MongoClient, Database, Collection and ClientSession: what runs where, the
client's own pool, CRUD, sessions, errors, and many greenlets on one client.
The server is nx-27017 (or ``OFFLOAD_TEST_MONGODB_URI``), see mongo_server.py;
pool hops are counted with the pool's ``submitted`` statistic.
"""

import socket
import threading
import time
import traceback

import gevent
import pymongo
import pytest
from mongo_server import client, coll, hops, mongo_pool, mongo_server_info, mongo_uri  # noqa: F401
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    ServerSelectionTimeoutError,
)

import offload
from offload import mongo

# -- what runs where -----------------------------------------------------------


def test_access_without_io_stays_inline(client, coll, mongo_pool):  # noqa: F811
    before = hops(mongo_pool)
    db = client.offload_tests
    objects = [
        db,
        client["offload_tests"],
        client.get_database("offload_tests"),
        db.some_collection,
        db["some_collection"],
        db.get_collection("some_collection"),
        db.some_collection.with_options(write_concern=pymongo.WriteConcern(w=1)),
        db.some_collection.sub,
    ]
    cursor = coll.find({"x": 1}).sort("x").skip(1).limit(5).batch_size(2).max_time_ms(1000).comment("c")
    sliced = coll.find()[2:4]
    assert hops(mongo_pool) == before
    assert [type(o) for o in objects] == [mongo.Database] * 3 + [mongo.Collection] * 5
    assert type(cursor) is mongo.Cursor and type(sliced) is mongo.Cursor
    assert cursor.alive and cursor.retrieved == 0
    assert type(coll.database) is mongo.Database and type(db.client) is mongo.MongoClient
    assert db.name == "offload_tests" and coll.full_name.startswith("offload_tests.")


def test_blocking_properties_and_methods_go_to_the_pool(client, coll, mongo_pool):  # noqa: F811
    before = hops(mongo_pool)
    host, port = client.address
    assert hops(mongo_pool) == before + 1
    assert isinstance(port, int)
    assert client.is_primary is True
    assert (host, port) in client.nodes
    coll.insert_one({})
    assert coll.database.name in client.list_database_names()
    assert hops(mongo_pool) == before + 5


def test_unwrap_and_proxies_as_arguments(client, coll):  # noqa: F811
    real = offload.unwrap(client)
    assert type(real) is pymongo.MongoClient
    assert type(offload.unwrap(coll)) is pymongo.collection.Collection
    assert offload.unwrap(coll.database) == real.offload_tests
    assert coll == real.offload_tests[coll.name] and coll.database == offload.unwrap(coll.database)
    with client.start_session() as session:
        coll.insert_one({"a": 1}, session=session)  # the proxy session is unwrapped
        assert coll.find_one({"a": 1}, session=session)["a"] == 1


def test_driver_info_names_offload(mongo_uri, mongo_pool):  # noqa: F811
    c = mongo.MongoClient(mongo_uri, pool=mongo_pool)
    assert "offload" in offload.unwrap(c).options.pool_options.metadata["driver"]["name"]
    c.close()
    mine = pymongo.driver_info.DriverInfo("myapp", "1.0")
    c = mongo.MongoClient(mongo_uri, pool=mongo_pool, driver=mine)
    name = offload.unwrap(c).options.pool_options.metadata["driver"]["name"]
    assert "myapp" in name and "offload" in name
    c.close()


def test_bad_arguments_fail_early(mongo_uri, client):  # noqa: F811
    with pytest.raises(TypeError, match="pool"):
        mongo.MongoClient(mongo_uri, pool=5)
    with pytest.raises(ValueError, match="pool"):
        mongo.MongoClient(mongo_uri, pool="no-such-pool")

    class NotAThreadPool:
        def _call(self, fn, args, kwargs, timeout):
            return fn(*args, **kwargs)

    with pytest.raises(TypeError, match="ThreadPool"):
        mongo.MongoClient(mongo_uri, pool=NotAThreadPool())
    with pytest.raises(TypeError, match="MongoClient"):
        mongo.MongoClient(mongo_uri, 27017, dict, False, True, None, "one too many")
    with pytest.raises(TypeError, match="Database from offload.mongo"):
        mongo.GridFSBucket(offload.unwrap(client.offload_tests))
    with pytest.raises(TypeError, match="callback"):
        with client.start_session() as s:
            s.with_transaction(None)


def test_dedicated_pool_is_sized_to_max_pool_size_and_closed_with_the_client(mongo_uri):  # noqa: F811
    c = mongo.MongoClient(mongo_uri, maxPoolSize=3, serverSelectionTimeoutMS=5000)
    own = c._offload_runner.pool
    assert isinstance(own, offload.ThreadPool) and own.max_workers == 3
    assert c.offload_tests.sized.find_one() is None
    c.close()
    assert "shut down" in repr(own)
    with pytest.raises(InvalidOperation):  # PyMongo's own error, not the mongo_pool's
        c.offload_tests.sized.find_one()
    with mongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as c2:
        assert c2._offload_runner.pool.max_workers == 100  # PyMongo's default maxPoolSize
        c2.admin.command("ping")


def test_dedicated_pool_does_not_start_a_thread_per_greenlet_for_a_busy_server(mongo_uri, coll):  # noqa: F811
    # 100 greenlets keep the (local, single-process) server busy: calls only
    # get slower with more threads, and the adaptive mongo_pool stays far below the
    # 100 threads an eager mongo_pool would start.
    coll.insert_many([{"_id": i} for i in range(10)])
    with mongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as c:
        one = c[coll.database.name][coll.name]

        def find_ones(k):
            for j in range(10):
                assert one.find_one({"_id": (k + j) % 10}) is not None

        gevent.joinall([gevent.spawn(find_ones, k) for k in range(100)], raise_error=True)
        workers = c._offload_runner.pool.stats()["workers"]
    assert workers <= 50, workers


def _nodes_after(client, seconds):  # noqa: F811
    deadline = time.monotonic() + seconds
    while not client.nodes and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return client.nodes


@pytest.mark.parametrize("how", ["keyword", "uri"])
def test_connect_false_is_honoured(mongo_uri, mongo_pool, how):  # noqa: F811
    if how == "keyword":
        lazy = mongo.MongoClient(mongo_uri, connect=False, pool=mongo_pool)
    else:
        lazy = mongo.MongoClient(mongo_uri + "&connect=false", pool=mongo_pool)
    eager = mongo.MongoClient(mongo_uri, pool=mongo_pool)  # connects in the background, as PyMongo does
    try:
        assert _nodes_after(eager, 10)
        assert not _nodes_after(lazy, 0.3)
        lazy.admin.command("ping")  # connects on first use
        assert lazy.nodes
    finally:
        lazy.close()
        eager.close()


# -- CRUD and friends --------------------------------------------------------------


def test_crud(coll):  # noqa: F811
    assert coll.insert_one({"_id": 1, "n": 1}).inserted_id == 1
    assert coll.insert_many([{"_id": i, "n": i} for i in range(2, 11)]).inserted_ids == list(range(2, 11))
    assert coll.find_one({"_id": 3}) == {"_id": 3, "n": 3}
    assert coll.update_one({"_id": 1}, {"$set": {"tag": "a"}}).modified_count == 1
    assert coll.update_many({"n": {"$gt": 8}}, {"$set": {"tag": "big"}}).modified_count == 2
    assert coll.replace_one({"_id": 2}, {"n": 20}).matched_count == 1
    doc = coll.find_one_and_update({"_id": 4}, {"$inc": {"n": 100}}, return_document=True)
    assert doc["n"] == 104
    assert coll.count_documents({"tag": "big"}) == 2
    assert coll.estimated_document_count() == 10
    assert sorted(coll.distinct("tag")) == ["a", "big"]
    assert coll.delete_one({"_id": 1}).deleted_count == 1
    assert coll.delete_many({"tag": "big"}).deleted_count == 2
    assert coll.count_documents({}) == 7


def test_bulk_write(coll):  # noqa: F811
    result = coll.bulk_write(
        [
            InsertOne({"_id": 1}),
            InsertOne({"_id": 2}),
            UpdateOne({"_id": 1}, {"$set": {"x": 1}}),
            DeleteOne({"_id": 2}),
        ]
    )
    assert (result.inserted_count, result.modified_count, result.deleted_count) == (2, 1, 1)
    assert list(coll.find()) == [{"_id": 1, "x": 1}]


def test_indexes(coll):  # noqa: F811
    name = coll.create_index("n", unique=True)
    assert isinstance(name, str)
    indexes = coll.list_indexes()
    assert type(indexes) is mongo.CommandCursor
    keys = {tuple(ix["key"].items()): ix.get("unique", False) for ix in indexes}
    assert keys[(("n", 1),)] is True  # nx-27017 names indexes its own way
    assert len(coll.index_information()) == 2
    coll.insert_one({"n": 1})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"n": 1})
    coll.drop_indexes()
    coll.insert_one({"n": 1})
    assert coll.count_documents({"n": 1}) == 2


# -- sessions and transactions -----------------------------------------------


def test_sessions_and_transactions(client, coll):  # noqa: F811
    coll.insert_one({"_id": "seed"})  # the collection must exist before a transaction
    with client.start_session() as session:
        assert type(session) is mongo.ClientSession
        assert type(session.client) is mongo.MongoClient
        with session.start_transaction():
            coll.insert_one({"_id": "committed"}, session=session)
            assert session.in_transaction
        assert not session.in_transaction
        with pytest.raises(RuntimeError, match="roll back"):
            with session.start_transaction():
                coll.insert_one({"_id": "aborted"}, session=session)
                raise RuntimeError("roll back")

        seen = []

        def callback(s):
            seen.append(type(s))
            return coll.insert_one({"_id": "callback"}, session=s).inserted_id

        assert session.with_transaction(callback) == "callback"
        assert seen == [mongo.ClientSession]
    assert session.has_ended
    assert sorted(d["_id"] for d in coll.find()) == ["callback", "committed", "seed"]


# -- errors ------------------------------------------------------------------------


def test_pymongo_errors_reach_the_caller_with_the_worker_traceback(coll):  # noqa: F811
    coll.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as info:
        coll.insert_one({"_id": 1})
    frames = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert any("pymongo" in f for f in frames)
    with pytest.raises(OperationFailure):
        coll.find_one({"x": {"$noSuchOperator": 1}})
    with pytest.raises(OperationFailure):
        coll.aggregate([{"$noSuchStage": {}}])


def test_server_selection_timeout(mongo_pool):  # noqa: F811
    port = _closed_port()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    c = mongo.MongoClient(uri, serverSelectionTimeoutMS=200, pool=mongo_pool)
    with pytest.raises(ServerSelectionTimeoutError):
        c.db.coll.find_one()
    c.close()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Forwarder:
    """A TCP relay to the server whose connections can be cut at will."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            self.pairs.append((down, up))
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        for pair in self.pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()
        self.cut()


def test_auto_reconnect_when_the_connection_drops(mongo_uri, mongo_pool):  # noqa: F811
    host, port = pymongo.uri_parser.parse_uri(mongo_uri)["nodelist"][0]
    relay = _Forwarder(host, port)
    c = mongo.MongoClient(
        f"mongodb://127.0.0.1:{relay.port}/?directConnection=true",
        retryReads=False,
        heartbeatFrequencyMS=60000,
        serverSelectionTimeoutMS=5000,
        pool=mongo_pool,
    )
    try:
        c.admin.command("ping")  # a pooled connection through the relay
        relay.cut()
        with pytest.raises(AutoReconnect):
            c.offload_tests.relay.find_one()
    finally:
        relay.close()
        c.close()


# -- concurrency and the hub -------------------------------------------------------


def test_200_greenlets_share_one_client(coll):  # noqa: F811
    coll.insert_many([{"_id": i, "v": i * i} for i in range(200)])

    def work(i):
        assert coll.find_one({"_id": i})["v"] == i * i
        coll.update_one({"_id": i}, {"$set": {"seen": True}})
        return sum(1 for _ in coll.find({"_id": {"$lt": 20}}))

    jobs = [gevent.spawn(work, i) for i in range(200)]
    gevent.joinall(jobs, raise_error=True, timeout=120)
    assert [j.value for j in jobs] == [20] * 200
    assert coll.count_documents({"seen": True}) == 200


def test_plain_threads_can_use_the_proxies_too(coll):  # noqa: F811
    coll.insert_many([{"i": i} for i in range(300)])
    results = []

    def in_thread():  # no hub here: the call blocks this thread, not a greenlet
        results.append((coll.count_documents({}), sum(1 for _ in coll.find().batch_size(50))))

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(300, 300)] * 3
