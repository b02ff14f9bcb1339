"""offload.mongo's cursors, command cursors and change streams against a real server.

One server batch per thread hop, the bounded default batch size, and a hub
that keeps ticking while large batches are decoded.  The server is nx-27017
(or ``OFFLOAD_TEST_MONGODB_URI``), see mongo_server.py.
"""

import bson
import gevent
import pymongo
import pytest
from mongo_server import client, coll, hops, mongo_pool, mongo_server_info, mongo_uri  # noqa: F401

import offload
from offload import mongo
from offload.mongo import _pymongo


def test_aggregate_returns_a_batched_command_cursor(coll, mongo_pool):  # noqa: F811
    coll.insert_many([{"g": i % 3, "v": i} for i in range(300)])
    pipeline = [{"$match": {"v": {"$lt": 30}}}, {"$group": {"_id": "$g", "total": {"$sum": "$v"}}}]
    cursor = coll.aggregate(pipeline)
    assert type(cursor) is mongo.CommandCursor
    assert sorted((d["_id"], d["total"]) for d in cursor) == [(0, 135), (1, 145), (2, 155)]
    cursor = coll.aggregate([{"$sort": {"v": 1}}], batchSize=50)
    before = hops(mongo_pool)
    values = [d["v"] for d in cursor]
    assert values == list(range(300))
    assert hops(mongo_pool) - before <= 300 // 50 + 2


# -- cursors -----------------------------------------------------------------------


def test_iteration_fetches_one_batch_per_hop(coll, mongo_pool):  # noqa: F811
    coll.insert_many([{"i": i} for i in range(1000)])
    before = hops(mongo_pool)
    got = [d["i"] for d in coll.find({}, {"_id": 0}).sort("i").batch_size(100)]
    assert got == list(range(1000))
    assert hops(mongo_pool) - before <= 12  # 10 batches, and at most one empty getMore


def test_cursors_get_a_bounded_default_batch_size(coll):  # noqa: F811
    assert _pymongo.batch_size(offload.unwrap(coll.find())) == mongo.DEFAULT_BATCH_SIZE
    assert _pymongo.batch_size(offload.unwrap(coll.find().batch_size(7))) == 7
    assert _pymongo.batch_size(offload.unwrap(coll.find_raw_batches())) == 0


def test_to_list_and_next(coll, mongo_pool):  # noqa: F811
    coll.insert_many([{"i": i} for i in range(250)])
    cursor = coll.find().sort("i").batch_size(100)
    assert cursor.next()["i"] == 0 and next(cursor)["i"] == 1
    before = hops(mongo_pool)
    assert [d["i"] for d in cursor.to_list(5)] == [2, 3, 4, 5, 6]  # from the buffer
    assert hops(mongo_pool) == before
    rest = cursor.to_list()
    assert [d["i"] for d in rest] == list(range(7, 250))
    assert cursor.to_list() == [] and not cursor.alive
    with pytest.raises(StopIteration):
        next(cursor)
    with pytest.raises(ValueError):
        coll.find().to_list(0)
    assert coll.find().sort("i")[3]["i"] == 3
    assert [d["i"] for d in coll.find().sort("i")[10:13]] == [10, 11, 12]


def test_cursor_context_manager_closes(coll):  # noqa: F811
    coll.insert_many([{"i": i} for i in range(50)])
    with coll.find().batch_size(10) as cursor:
        assert next(cursor)["i"] == 0
        assert cursor.alive and cursor.cursor_id
    # Closed on the server; as in PyMongo, the rest of the batch stays readable.
    assert len(list(cursor)) == 9
    assert not cursor.alive
    cursor = coll.find().batch_size(10)
    cursor.close()  # never started: no server cursor, no hop needed
    assert list(cursor) == []


def test_raw_batches(coll):  # noqa: F811
    coll.insert_many([{"i": i} for i in range(30)])
    batches = list(coll.find_raw_batches().sort("i").batch_size(10))
    docs = [d for batch in batches for d in bson.decode_all(batch)]
    assert [d["i"] for d in docs] == list(range(30))


# -- change streams ----------------------------------------------------------


def test_change_stream_try_next_and_next(coll):  # noqa: F811
    coll.insert_one({"setup": True})
    with coll.watch(max_await_time_ms=100) as stream:
        assert type(stream) is mongo.ChangeStream
        assert stream.try_next() is None
        coll.insert_one({"n": 1})
        coll.insert_one({"n": 2})
        change = None
        for _ in range(50):
            change = stream.try_next()
            if change is not None:
                break
        assert change is not None and change["fullDocument"]["n"] == 1
        assert next(stream)["fullDocument"]["n"] == 2
        assert stream.alive
    assert not stream.alive


def test_change_stream_iteration_does_not_pin_a_worker(coll, mongo_pool):  # noqa: F811
    coll.insert_one({"setup": True})
    stream = coll.watch(max_await_time_ms=50)
    waiter = gevent.spawn(next, stream)
    gevent.sleep(0.3)
    assert not waiter.ready()
    assert mongo_pool.stats()["active"] <= 1  # polling: a worker only for one getMore at a time
    assert coll.find_one({"setup": True}) is not None  # the mongo_pool still serves others
    coll.insert_one({"n": 42})
    assert waiter.get(timeout=10)["fullDocument"]["n"] == 42
    stream.close()


def test_hub_keeps_ticking_during_large_finds(client, coll, mongo_uri):  # noqa: F811
    coll.insert_many([{"i": i, "pad": "x" * 200} for i in range(20000)])
    with offload.Heartbeat(0.005) as beat:
        jobs = [gevent.spawn(lambda: sum(1 for _ in coll.find())) for _ in range(2)]
        gevent.joinall(jobs, raise_error=True)
    assert [j.value for j in jobs] == [20000, 20000]
    # Plain PyMongo in a greenlet freezes the hub for the whole find.
    plain = pymongo.MongoClient(mongo_uri)
    try:
        blocked = offload.probe(lambda: sum(1 for _ in plain[coll.database.name][coll.name].find()))
    finally:
        plain.close()
    assert blocked.value == 20000
    assert blocked.max_lag > 0.1
    # A batch is decoded in the worker with the GIL held, so the hub waits
    # out one batch now and then (0.05-0.12 s here), never the whole find.
    assert beat.max_lag < max(0.2, blocked.max_lag / 2), (beat.max_lag, blocked.max_lag)
    assert len(beat.lags) > 10
