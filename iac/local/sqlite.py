"""The metadata store on SQLite: the same documents, revisions and conditional writes as on
DynamoDB (one transaction here, TransactWriteItems there), and the same 400 KB item limit so
that what works offline also fits on AWS."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chalicelib.errors import TransientError
from chalicelib.ports import ConditionFailedError, Delete, Record, TooLargeError, Write

# DynamoDB refuses items over 400 KB; refuse them here too (see adapters/dynamodb.py).
MAX_DOC_BYTES = 390_000


class SqliteMetadata:
    """One file; WAL so readers never block the writer."""

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
        with _busy():
            db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        with _busy():
            db.execute("COMMIT")

    def get(self, pk: str, sk: str) -> Record | None:
        with _busy():
            row = (
                self._conn()
                .execute("SELECT rev, doc FROM items WHERE pk = ? AND sk = ?", (pk, sk))
                .fetchone()
            )
        return Record(pk, sk, json.loads(row[1]), row[0]) if row else None

    def query(self, pk: str, sk_prefix: str = "") -> list[Record]:
        with _busy():
            rows = self._select(pk, sk_prefix)
        return [Record(pk, sk, json.loads(doc), rev) for sk, rev, doc in rows]

    def _select(self, pk: str, sk_prefix: str) -> list[tuple[str, int, str]]:
        rows: list[tuple[str, int, str]] = (
            self._conn()
            .execute(
                "SELECT sk, rev, doc FROM items WHERE pk = ? AND substr(sk, 1, ?) = ? ORDER BY sk",
                (pk, len(sk_prefix), sk_prefix),
            )
            .fetchall()
        )
        return rows

    def _apply(self, db: sqlite3.Connection, write: Write) -> int:
        row = db.execute(
            "SELECT rev FROM items WHERE pk = ? AND sk = ?", (write.pk, write.sk)
        ).fetchone()
        current = row[0] if row else 0
        if write.expected_rev is not None and current != write.expected_rev:
            raise ConditionFailedError(f"{write.pk}/{write.sk}: revision {current}")
        doc = json.dumps(write.item, separators=(",", ":"), allow_nan=False)
        if len(doc.encode()) > MAX_DOC_BYTES:
            raise TooLargeError(f"{write.pk}/{write.sk} is {len(doc)} bytes")
        db.execute(
            "INSERT INTO items (pk, sk, rev, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (pk, sk) DO UPDATE SET rev = excluded.rev, doc = excluded.doc",
            (write.pk, write.sk, current + 1, doc),
        )
        return int(current + 1)

    def put(self, write: Write) -> int:
        with self._tx() as db:
            return self._apply(db, write)

    def put_many(self, writes: list[Write | Delete]) -> None:
        with self._tx() as db:
            for write in writes:
                if isinstance(write, Delete):
                    self._delete(db, write)
                else:
                    self._apply(db, write)

    def _delete(self, db: sqlite3.Connection, delete: Delete) -> None:
        row = db.execute(
            "SELECT rev FROM items WHERE pk = ? AND sk = ?", (delete.pk, delete.sk)
        ).fetchone()
        if delete.expected_rev is not None and (row[0] if row else 0) != delete.expected_rev:
            raise ConditionFailedError(f"{delete.pk}/{delete.sk}: revision {row}")
        db.execute("DELETE FROM items WHERE pk = ? AND sk = ?", (delete.pk, delete.sk))

    def delete(self, pk: str, sk: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM items WHERE pk = ? AND sk = ?", (pk, sk))


@contextmanager
def _busy() -> Iterator[None]:
    """A database locked by another writer past the timeout is worth retrying: say so in the
    domain's terms (the state machine retries TransientError), not SQLite's."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise TransientError(f"the metadata store is busy: {text}") from exc
        raise
