"""The object store: the same behaviour from a local directory and from S3 (moto's real HTTP
server on 127.0.0.1), atomic local writes, key validation and configuration from the env."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trace_chain import object_store
from trace_chain.devchain import free_port
from trace_chain.object_store import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStoreError,
    S3ObjectStore,
    object_store_from_env,
    object_store_from_url,
)


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's S3 over real HTTP on a free loopback port; yields its endpoint URL. Its state is
    process-wide and survives a restart, so every test takes a bucket of its own."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_bucket_create(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Throwaway credentials (no shared AWS config read) and a new bucket; returns its name."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = f"trace-cold-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint, monkeypatch) -> str:
    return s3_bucket_create(s3_endpoint, monkeypatch)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch) -> object_store.ObjectStore:
    if request.param == "file":
        return object_store_from_url((tmp_path / "objects").as_uri())
    bucket = request.getfixturevalue("bucket")
    monkeypatch.setenv("TRACE_S3_ENDPOINT_URL", request.getfixturevalue("s3_endpoint"))
    return object_store_from_url(f"s3://{bucket}/cold")


def test_put_get_exists_overwrite(store, tmp_path):
    assert not store.exists("a/b/one.bin")
    store.put_bytes(b"first", "a/b/one.bin")
    assert store.exists("a/b/one.bin")
    assert store.get_bytes("a/b/one.bin") == b"first"
    store.put_bytes(b"second", "a/b/one.bin")
    assert store.get_bytes("a/b/one.bin") == b"second"
    local = tmp_path / "payload.parquet"
    local.write_bytes(os.urandom(70_000))
    store.put_file(local, "a/c/two.parquet")
    assert store.get_bytes("a/c/two.parquet") == local.read_bytes()
    with pytest.raises(ObjectNotFound):
        store.get_bytes("a/b/missing.bin")
    assert not store.exists("a/b")  # a "directory" is not an object


def test_a_stream_reads_the_whole_object_in_pieces(store):
    payload = os.urandom(300_000)
    store.put_bytes(payload, "exports/big.bin")
    stream = store.open_stream("exports/big.bin")
    try:
        pieces = iter(lambda: stream.read(65_536), b"")
        assert b"".join(pieces) == payload
    finally:
        stream.close()
    for missing in ("exports/none.bin", "exports"):
        with pytest.raises(ObjectNotFound):
            store.open_stream(missing)


def test_list_is_a_sorted_string_prefix_match(store):
    for key in ["p/x/2.txt", "p/x/1.txt", "p/xy/3.txt", "p/y/4.txt", "q/5.txt"]:
        store.put_bytes(key.encode(), key)
    assert store.list("p/x/") == ["p/x/1.txt", "p/x/2.txt"]
    assert store.list("p/x") == ["p/x/1.txt", "p/x/2.txt", "p/xy/3.txt"]
    assert store.list("") == ["p/x/1.txt", "p/x/2.txt", "p/xy/3.txt", "p/y/4.txt", "q/5.txt"]
    assert store.list("nothing/") == []


def test_delete_prefix_removes_exactly_that_prefix(store):
    for key in ["p/x/1.txt", "p/x/2.txt", "p/xy/3.txt", "q/4.txt"]:
        store.put_bytes(b".", key)
    assert store.delete_prefix("p/x/") == 2
    assert store.list("") == ["p/xy/3.txt", "q/4.txt"]
    assert store.delete_prefix("p/") == 1
    assert store.delete_prefix("p/") == 0
    with pytest.raises(ObjectStoreError, match="empty prefix"):
        store.delete_prefix("")
    assert store.list("") == ["q/4.txt"]


@pytest.mark.parametrize(
    "key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/\0", "a/.trace-tmp-x"]
)
def test_keys_that_could_escape_the_root_are_refused(store, key):
    with pytest.raises(ObjectStoreError, match="invalid object key"):
        store.put_bytes(b"x", key)


def test_uri_names_the_object(store):
    if isinstance(store, LocalObjectStore):
        assert store.uri("a/b.txt") == (store.root / "a" / "b.txt").as_uri()
        assert store.uri("a/") == (store.root / "a").as_uri() + "/"
    else:
        assert store.uri("a/b.txt") == f"s3://{store.bucket}/cold/a/b.txt"
        assert store.uri("a/") == f"s3://{store.bucket}/cold/a/"


def test_s3_keys_land_under_the_url_prefix(s3_endpoint, bucket, monkeypatch):
    import boto3

    monkeypatch.delenv("TRACE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # the generic AWS variable works too
    store = object_store_from_url(f"s3://{bucket}/deep/prefix/")
    assert isinstance(store, S3ObjectStore) and store.endpoint_url == s3_endpoint
    store.put_bytes(b"hello", "k/v.txt")
    raw = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in raw["Contents"]] == ["deep/prefix/k/v.txt"]
    assert store.list("k/") == ["k/v.txt"]


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    store = LocalObjectStore(tmp_path / "objects")
    store.put_bytes(b"old", "k/v.bin")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(object_store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(b"new", "k/v.bin")
    monkeypatch.undo()
    assert store.get_bytes("k/v.bin") == b"old"
    assert sorted(p.name for p in (tmp_path / "objects" / "k").iterdir()) == ["v.bin"]


def test_local_temp_files_are_never_listed(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.put_bytes(b"x", "k/v.bin")
    (tmp_path / "objects" / "k" / ".trace-tmp-abc").write_bytes(b"half")
    assert store.list("k/") == ["k/v.bin"]


def test_local_delete_prefix_prunes_empty_directories(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.put_bytes(b"x", "31337/blocks/abc/00000000_00000009/f.parquet")
    store.put_bytes(b"x", "31337/logs/def/00000000_00000009/f.parquet")
    store.delete_prefix("31337/blocks/")
    assert not (tmp_path / "objects" / "31337" / "blocks").exists()
    assert store.list("") == ["31337/logs/def/00000000_00000009/f.parquet"]


def test_store_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACE_OBJECT_STORE_URL", raising=False)
    monkeypatch.setenv("TRACE_HOME", str(tmp_path / "home"))
    default = object_store_from_env()
    assert isinstance(default, LocalObjectStore)
    assert default.root == (tmp_path / "home" / "objects").resolve()
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", "s3://bucket/some/prefix")
    monkeypatch.setenv("TRACE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    s3 = object_store_from_env()
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "bucket",
        "some/prefix/",
        "http://127.0.0.1:9",
    )
    assert s3.uri() == "s3://bucket/some/prefix/"


@pytest.mark.parametrize(
    "url, message",
    [
        ("gs://bucket", "unsupported object store URL"),
        ("file://host/dir", "file:///abs/dir"),
        ("s3:///nobucket", "needs a bucket"),
    ],
)
def test_bad_store_urls_fail_with_a_clear_message(url, message):
    with pytest.raises(ObjectStoreError, match=message):
        object_store_from_url(url)


def test_relative_local_root_is_refused():
    with pytest.raises(ObjectStoreError, match="absolute"):
        LocalObjectStore(Path("relative/dir"))
