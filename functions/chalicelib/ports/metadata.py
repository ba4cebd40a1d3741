"""Metadata port: small JSON documents under (partition, sort) keys with optimistic locking.

Every document carries a revision. A write may demand the revision it expects (0 = must not
exist yet); a mismatch raises ``ConditionFailedError``. Alias moves, version allocation and run
status changes are built on that, on DynamoDB (conditional writes, TransactWriteItems) and on
SQLite (one transaction) alike.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError


class ConditionFailedError(Exception):
    """A conditional write found a different revision than it expected."""


@dataclass(frozen=True)
class Record:
    pk: str
    sk: str
    item: dict[str, Any]
    rev: int


@dataclass(frozen=True)
class Write:
    pk: str
    sk: str
    item: dict[str, Any]
    # None: unconditional; 0: create only; n: only if the stored revision is n.
    expected_rev: int | None = None


class MetadataStore(Protocol):
    def get(self, pk: str, sk: str) -> Record | None: ...
    def query(self, pk: str, sk_prefix: str = "") -> list[Record]: ...
    def put(self, write: Write) -> int: ...
    def put_many(self, writes: list[Write]) -> None: ...
    def delete(self, pk: str, sk: str) -> None: ...


class SqliteMetadata:
    """Local profile. One file; WAL so readers never block the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS items (pk TEXT NOT NULL, sk TEXT NOT NULL, "
                "rev INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (pk, sk))"
            )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def get(self, pk: str, sk: str) -> Record | None:
        row = (
            self._conn()
            .execute("SELECT rev, doc FROM items WHERE pk = ? AND sk = ?", (pk, sk))
            .fetchone()
        )
        return Record(pk, sk, json.loads(row[1]), row[0]) if row else None

    def query(self, pk: str, sk_prefix: str = "") -> list[Record]:
        rows = (
            self._conn()
            .execute(
                "SELECT sk, rev, doc FROM items WHERE pk = ? AND substr(sk, 1, ?) = ? ORDER BY sk",
                (pk, len(sk_prefix), sk_prefix),
            )
            .fetchall()
        )
        return [Record(pk, sk, json.loads(doc), rev) for sk, rev, doc in rows]

    def _apply(self, db: sqlite3.Connection, write: Write) -> int:
        row = db.execute(
            "SELECT rev FROM items WHERE pk = ? AND sk = ?", (write.pk, write.sk)
        ).fetchone()
        current = row[0] if row else 0
        if write.expected_rev is not None and current != write.expected_rev:
            raise ConditionFailedError(f"{write.pk}/{write.sk}: revision {current}")
        doc = json.dumps(write.item, separators=(",", ":"))
        db.execute(
            "INSERT INTO items (pk, sk, rev, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (pk, sk) DO UPDATE SET rev = excluded.rev, doc = excluded.doc",
            (write.pk, write.sk, current + 1, doc),
        )
        return int(current + 1)

    def put(self, write: Write) -> int:
        with self._tx() as db:
            return self._apply(db, write)

    def put_many(self, writes: list[Write]) -> None:
        with self._tx() as db:
            for write in writes:
                self._apply(db, write)

    def delete(self, pk: str, sk: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM items WHERE pk = ? AND sk = ?", (pk, sk))


class DynamoMetadata:
    """AWS profile. One table: ``pk`` (hash), ``sk`` (range), ``rev`` (number), ``doc``
    (the JSON document as a string, so no float/Decimal conversions leak into the domain)."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table = table
        self.db = dynamodb

    def get(self, pk: str, sk: str) -> Record | None:
        resp = self.db.get_item(
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        if not item:
            return None
        return Record(pk, sk, json.loads(item["doc"]["S"]), int(item["rev"]["N"]))

    def query(self, pk: str, sk_prefix: str = "") -> list[Record]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if sk_prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": sk_prefix}
        records: list[Record] = []
        paginator = self.db.get_paginator("query")
        for page in paginator.paginate(**kwargs):
            for item in page.get("Items", []):
                records.append(
                    Record(
                        pk,
                        item["sk"]["S"],
                        json.loads(item["doc"]["S"]),
                        int(item["rev"]["N"]),
                    )
                )
        return sorted(records, key=lambda r: r.sk)

    def _put_request(self, write: Write, new_rev: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "pk": {"S": write.pk},
                "sk": {"S": write.sk},
                "rev": {"N": str(new_rev)},
                "doc": {"S": json.dumps(write.item, separators=(",", ":"))},
            },
        }
        if write.expected_rev == 0:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        elif write.expected_rev is not None:
            request["ConditionExpression"] = "rev = :rev"
            request["ExpressionAttributeValues"] = {":rev": {"N": str(write.expected_rev)}}
        return request

    def _next_rev(self, write: Write) -> int:
        if write.expected_rev is not None:
            return write.expected_rev + 1
        current = self.get(write.pk, write.sk)
        return (current.rev if current else 0) + 1

    def put(self, write: Write) -> int:
        new_rev = self._next_rev(write)
        try:
            self.db.put_item(**self._put_request(write, new_rev))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConditionFailedError(f"{write.pk}/{write.sk}") from None
            raise
        return new_rev

    def put_many(self, writes: list[Write]) -> None:
        items = [{"Put": self._put_request(w, self._next_rev(w))} for w in writes]
        try:
            self.db.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConditionFailedError("transaction cancelled: " + str(exc)) from None
            raise

    def delete(self, pk: str, sk: str) -> None:
        self.db.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
