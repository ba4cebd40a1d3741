"""ObjectStore contract: FileObjectStore (local profile) and S3ObjectStore (aws profile, on
moto) must behave the same for every key the product uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.errors import NotFoundError
from chalicelib.ports import ObjectStore
from iac.local.files import FileObjectStore
from tests.contract.conftest import BUCKET


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return FileObjectStore(tmp_path / "objects")
    s3: Any = request.getfixturevalue("s3_client")
    return S3ObjectStore(BUCKET, s3)


def test_put_get_bytes_roundtrip(store: ObjectStore) -> None:
    payload = bytes(range(256)) * 3
    store.put_bytes("runs/r1/blob.bin", payload)
    assert store.get_bytes("runs/r1/blob.bin") == payload
    store.put_bytes("runs/r1/blob.bin", b"second")  # overwrite
    assert store.get_bytes("runs/r1/blob.bin") == b"second"
    store.put_bytes("runs/r1/empty", b"")
    assert store.get_bytes("runs/r1/empty") == b""


def test_put_returns_the_uri_of_the_key(store: ObjectStore) -> None:
    assert store.put_bytes("a/b.txt", b"x") == store.uri("a/b.txt")


@pytest.mark.parametrize(
    "key",
    ["datasets/iris/v00000001/data.parquet", "a", "with space/ü-ñ.txt", "pct/%41%2F.bin"],
)
def test_uri_key_of_roundtrip(store: ObjectStore, key: str) -> None:
    uri = store.uri(key)
    assert uri.startswith(("file://", "s3://"))
    assert store.key_of(uri) == key


def test_uri_scheme_matches_the_store(store: ObjectStore, tmp_path: Path) -> None:
    if isinstance(store, S3ObjectStore):
        assert store.uri("a/b") == f"s3://{BUCKET}/a/b"
    else:
        assert store.uri("a/b") == (tmp_path / "objects" / "a" / "b").resolve().as_uri()


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("x/y.txt")
    store.put_bytes("x/y.txt", b"1")
    assert store.exists("x/y.txt")
    # A "directory" is not an object.
    assert not store.exists("x")


def test_list_is_sorted_and_only_under_the_prefix(store: ObjectStore) -> None:
    keys = [
        "runs/r1/split/train/data.parquet",
        "runs/r1/b.txt",
        "runs/r1/a.txt",
        "runs/r1/Z.txt",
        "runs/r10/other.txt",  # shares the string prefix "runs/r1", not the directory
        "runs/r2/c.txt",
        "top.txt",
    ]
    for key in keys:
        store.put_bytes(key, key.encode())
    expected = [
        "runs/r1/Z.txt",
        "runs/r1/a.txt",
        "runs/r1/b.txt",
        "runs/r1/split/train/data.parquet",
    ]
    assert store.list("runs/r1/") == expected
    assert store.list("runs/r1") == expected
    assert store.list("runs/r1/split/train/") == ["runs/r1/split/train/data.parquet"]
    assert store.list("runs/nope/") == []
    assert store.list("") == sorted(keys)


def test_put_file_get_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00file body\xff" * 1000)
    assert store.put_file("files/model.tar.gz", src) == store.uri("files/model.tar.gz")
    assert store.get_bytes("files/model.tar.gz") == src.read_bytes()
    dest = tmp_path / "out" / "nested" / "model.tar.gz"  # parents are created
    assert store.get_file("files/model.tar.gz", dest) == dest
    assert dest.read_bytes() == src.read_bytes()


def test_delete_prefix(store: ObjectStore) -> None:
    for key in [
        "datasets/d/v00000001/data.parquet",
        "datasets/d/v00000001/meta/x.json",
        "datasets/d/v000000010/data.parquet",  # string-prefix sibling: must survive
        "datasets/d/v00000002/data.parquet",
    ]:
        store.put_bytes(key, b"x")
    store.delete_prefix("datasets/d/v00000001")
    assert store.list("datasets/") == [
        "datasets/d/v000000010/data.parquet",
        "datasets/d/v00000002/data.parquet",
    ]
    assert not store.exists("datasets/d/v00000001/data.parquet")
    store.delete_prefix("datasets/d/")
    assert store.list("datasets/") == []
    store.delete_prefix("datasets/never-existed/")  # no error


@pytest.mark.parametrize(
    "key", ["missing.bin", "deep/missing/key.bin", "dir", "dir/inside.txt/below"]
)
def test_get_missing_raises_not_found(store: ObjectStore, tmp_path: Path, key: str) -> None:
    store.put_bytes("dir/inside.txt", b"x")  # "dir" is a prefix, not an object
    with pytest.raises(NotFoundError):
        store.get_bytes(key)
    with pytest.raises(NotFoundError):
        store.get_file(key, tmp_path / "dest.bin")


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "", "a/../b", "a/./b", "a/"])
def test_invalid_keys_are_rejected(store: ObjectStore, tmp_path: Path, key: str) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for call in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.put_file(key, src),
        lambda: store.get_file(key, tmp_path / "dest"),
        lambda: store.exists(key),
        lambda: store.uri(key),
    ):
        with pytest.raises(ValueError, match="invalid object key"):
            call()
    assert store.list("") == []  # nothing was written anywhere


def test_key_of_a_foreign_uri_raises(store: ObjectStore, tmp_path: Path) -> None:
    other_file = (tmp_path / "elsewhere" / "a.txt").as_uri()
    for uri in [
        "s3://another-bucket/a.txt",
        f"s3://{BUCKET}-2/a.txt",
        other_file,
        "https://example.com/a.txt",
        "a.txt",
    ]:
        with pytest.raises(ValueError):
            store.key_of(uri)
    # ... and a uri of this store whose key would be invalid.
    with pytest.raises(ValueError):
        store.key_of(store.uri("a") + "/../../etc/passwd")


def test_presigned_put_lands_at_the_key(s3_client: Any) -> None:
    """Large dataset uploads (chalicelib/uploads.py): the URL takes one PUT of the file."""
    import requests

    store = S3ObjectStore(BUCKET, s3_client)
    url = store.presign_put("datasets/d/uploads/abc/data", 600)
    assert "X-Amz-Signature=" in url or "Signature=" in url
    resp = requests.put(url, data=b"a,b\n1,2\n", timeout=10)
    assert resp.status_code == 200, resp.text
    assert store.get_bytes("datasets/d/uploads/abc/data") == b"a,b\n1,2\n"
