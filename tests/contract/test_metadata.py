"""MetadataStore contract: SqliteMetadata (local profile) and DynamoMetadata (aws profile, on
moto): revisions, conditional writes, atomic multi-writes, prefix queries, exact JSON."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.dynamodb import DynamoMetadata
from chalicelib.ports import ConditionFailedError, MetadataStore, Write
from iac.local.sqlite import SqliteMetadata
from tests.contract.conftest import TABLE, aws_client


def _dynamo_table(dynamodb: Any) -> None:
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    if request.param == "sqlite":
        return SqliteMetadata(tmp_path / "m.db")
    request.getfixturevalue("moto_aws")
    dynamodb = aws_client("dynamodb")
    _dynamo_table(dynamodb)
    return DynamoMetadata(TABLE, dynamodb)


def test_get_missing_is_none(meta: MetadataStore) -> None:
    assert meta.get("runs", "nope") is None
    assert meta.query("runs") == []


def test_put_returns_increasing_revisions(meta: MetadataStore) -> None:
    assert meta.put(Write("runs", "r1", {"n": 1})) == 1
    assert meta.put(Write("runs", "r1", {"n": 2})) == 2
    assert meta.put(Write("runs", "r1", {"n": 3}, expected_rev=2)) == 3
    record = meta.get("runs", "r1")
    assert record is not None
    assert (record.pk, record.sk, record.item, record.rev) == ("runs", "r1", {"n": 3}, 3)
    # Revisions are per item.
    assert meta.put(Write("runs", "r2", {})) == 1


def test_create_only(meta: MetadataStore) -> None:
    assert meta.put(Write("datasets", "iris", {"v": 1}, expected_rev=0)) == 1
    with pytest.raises(ConditionFailedError):
        meta.put(Write("datasets", "iris", {"v": "clobbered"}, expected_rev=0))
    record = meta.get("datasets", "iris")
    assert record is not None
    assert (record.item, record.rev) == ({"v": 1}, 1)


@pytest.mark.parametrize("expected", [1, 3, 99])
def test_expected_revision_mismatch(meta: MetadataStore, expected: int) -> None:
    meta.put(Write("p", "k", {"v": 1}))
    meta.put(Write("p", "k", {"v": 2}))  # rev 2
    with pytest.raises(ConditionFailedError):
        meta.put(Write("p", "k", {"v": "stale"}, expected_rev=expected))
    record = meta.get("p", "k")
    assert record is not None
    assert (record.item, record.rev) == ({"v": 2}, 2)


def test_expected_revision_on_a_missing_item_fails(meta: MetadataStore) -> None:
    with pytest.raises(ConditionFailedError):
        meta.put(Write("p", "ghost", {"v": 1}, expected_rev=1))
    assert meta.get("p", "ghost") is None


def test_query_sorted_by_sk_and_filtered_by_prefix(meta: MetadataStore) -> None:
    sks = ["v00000010", "v00000002", "v00000001", "alias#prod", "alias#dev", "w", "vé", "V1"]
    for sk in sks:
        meta.put(Write("models#m", sk, {"sk": sk}))
    meta.put(Write("models#other", "v00000003", {"sk": "other"}))
    meta.put(Write("models", "v00000004", {"sk": "shorter pk"}))

    everything = meta.query("models#m")
    # Ordinal (UTF-8 byte) order, as DynamoDB sorts range keys.
    assert [r.sk for r in everything] == sorted(sks)
    assert all(r.pk == "models#m" and r.item == {"sk": r.sk} and r.rev == 1 for r in everything)

    versions = meta.query("models#m", "v0")
    assert [r.sk for r in versions] == ["v00000001", "v00000002", "v00000010"]
    assert [r.sk for r in meta.query("models#m", "alias#")] == ["alias#dev", "alias#prod"]
    assert [r.sk for r in meta.query("models#m", "v")] == [
        "v00000001",
        "v00000002",
        "v00000010",
        "vé",
    ]
    assert meta.query("models#m", "zzz") == []
    assert meta.query("models#m", "%") == []  # no LIKE wildcards
    assert meta.query("models#m", "_") == []


def test_put_many_applies_all_writes(meta: MetadataStore) -> None:
    meta.put(Write("datasets", "d", {"latest": 1}))
    meta.put_many(
        [
            Write("versions#d", "v2", {"v": 2}, expected_rev=0),
            Write("datasets", "d", {"latest": 2}, expected_rev=1),
            Write("log", "x", {"unconditional": True}),
        ]
    )
    head = meta.get("datasets", "d")
    assert head is not None
    assert (head.item, head.rev) == ({"latest": 2}, 2)
    version = meta.get("versions#d", "v2")
    assert version is not None
    assert (version.item, version.rev) == ({"v": 2}, 1)
    log = meta.get("log", "x")
    assert log is not None
    assert log.rev == 1


@pytest.mark.parametrize("failing", ["first", "last"])
def test_put_many_is_atomic(meta: MetadataStore, failing: str) -> None:
    meta.put(Write("datasets", "d", {"latest": 1}))  # rev 1
    meta.put(Write("aliases", "prod", {"version": 1}))  # rev 1
    good = [
        Write("versions#d", "v2", {"v": 2}, expected_rev=0),
        Write("aliases", "prod", {"version": 2}, expected_rev=1),
        Write("log", "x", {"unconditional": True}),
    ]
    bad = Write("datasets", "d", {"latest": 2}, expected_rev=7)  # stale revision
    writes = [bad, *good] if failing == "first" else [*good, bad]
    with pytest.raises(ConditionFailedError):
        meta.put_many(writes)
    # None of the writes were applied.
    assert meta.get("versions#d", "v2") is None
    assert meta.get("log", "x") is None
    alias = meta.get("aliases", "prod")
    head = meta.get("datasets", "d")
    assert alias is not None
    assert head is not None
    assert (alias.item, alias.rev) == ({"version": 1}, 1)
    assert (head.item, head.rev) == ({"latest": 1}, 1)


def test_delete(meta: MetadataStore) -> None:
    meta.put(Write("p", "a", {"v": 1}))
    meta.put(Write("p", "b", {"v": 2}))
    meta.delete("p", "a")
    assert meta.get("p", "a") is None
    assert [r.sk for r in meta.query("p")] == ["b"]
    meta.delete("p", "never-existed")  # no error
    # A deleted item can be created again from revision 1.
    assert meta.put(Write("p", "a", {"v": 3}, expected_rev=0)) == 1


def test_json_documents_roundtrip_exactly(meta: MetadataStore) -> None:
    doc: dict[str, Any] = {
        "floats": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 3.141592653589793, 2.5e-7],
        "ints": [0, -1, 2**53 + 1, 10**20],
        "nested": {"a": [{"b": [1, [2, [3, {"c": None}]]]}], "empty": {}, "list": []},
        "unicode": 'naïve café ü 漢字 😀 \u0000 \n\t"quoted" \\',
        "ключ 🔑": "unicode key",
        "bools": [True, False],
        "null": None,
        "big": "x" * 10_000,
    }
    meta.put(Write("docs", "one", doc))
    record = meta.get("docs", "one")
    assert record is not None
    assert record.item == doc
    assert repr(record.item) == repr(doc)  # same types and float bits, key order kept
    (queried,) = meta.query("docs")
    assert repr(queried.item) == repr(doc)


def test_concurrent_compare_and_set_increments(tmp_path: Path) -> None:
    """4 threads x 25 optimistic increments, retrying on conflict, never lose an update.

    SQLite only: moto's DynamoDB evaluates a condition and writes without a lock, so it is not
    atomic under threads (real DynamoDB is); the conditional-write semantics themselves are
    covered on both sides by the tests above.
    """
    meta = SqliteMetadata(tmp_path / "m.db")
    meta.put(Write("counters", "c", {"n": 0}, expected_rev=0))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                while True:
                    current = meta.get("counters", "c")
                    assert current is not None
                    time.sleep(0)  # let the other threads read the same revision
                    write = Write("counters", "c", {"n": current.item["n"] + 1}, current.rev)
                    try:
                        meta.put(write)
                        break
                    except ConditionFailedError:
                        continue
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    final = meta.get("counters", "c")
    assert final is not None
    assert final.item == {"n": 100}
    assert final.rev == 101
