"""offload.mongo's GridFS and GridFSBucket against a real server (see mongo_server.py)."""

import gridfs
import pytest
from mongo_server import client, coll, hops, mongo_pool, mongo_server_info, mongo_uri  # noqa: F401

import offload
from offload import mongo
from offload.mongo.gridfs import _GridOutProxy


def test_gridfs_bucket(client):  # noqa: F811
    bucket = mongo.GridFSBucket(client.offload_tests, bucket_name="bucket_test")
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    file_id = bucket.upload_from_stream("one.bin", data, metadata={"k": "v"})
    with bucket.open_upload_stream("two.bin") as upload:
        upload.write(b"hello ")
        upload.write(b"world")
    download = bucket.open_download_stream(file_id)
    assert download.length == len(data) and download.metadata == {"k": "v"}
    assert download.read() == data
    assert bucket.open_download_stream_by_name("two.bin").read() == b"hello world"
    names = sorted(f.filename for f in bucket.find())
    assert names == ["one.bin", "two.bin"]
    for f in bucket.find():
        bucket.delete(f._id)
    with pytest.raises(gridfs.errors.NoFile):
        bucket.open_download_stream(file_id)


def test_gridfs_legacy(client, mongo_pool):  # noqa: F811
    fs = mongo.GridFS(client.offload_tests, "legacy_test")
    file_id = fs.put(b"line one\nline two\n", filename="lines.txt")
    assert fs.exists(file_id) and "lines.txt" in fs.list()
    out = fs.get(file_id)
    before = hops(mongo_pool)
    assert out.filename == "lines.txt" and out.length == 18  # metadata already loaded: inline
    assert hops(mongo_pool) == before
    lazy = _GridOutProxy._wrap_existing(
        gridfs.GridOut(offload.unwrap(client.offload_tests).legacy_test, file_id), client._offload_runner
    )
    assert lazy.filename == "lines.txt"  # loads the file document: in the mongo_pool
    assert hops(mongo_pool) == before + 1
    assert list(out) == [b"line one\n", b"line two\n"]
    lazy = fs.get_last_version("lines.txt")
    assert lazy.read() == b"line one\nline two\n"
    fs.delete(file_id)
    assert not fs.exists(file_id)
