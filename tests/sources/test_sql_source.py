"""``sql`` sources against the REAL PostgreSQL and MariaDB servers of this machine (each
test in its own fresh database) and SQLite: tables and queries, chunked server-side reads,
types, credentials by reference that never show up in metadata, answers or logs."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib import datasets
from chalicelib.errors import BadRequestError
from chalicelib.schemas import DatasetCreate
from tests.fakes import make_ports
from tests.sources import servers

PASSWORD = "s3cr3t-Pa55-never-shown"


@pytest.fixture(params=["postgresql", "mysql"])
def db(request: pytest.FixtureRequest) -> Iterator[servers.Database]:
    yield from servers.fresh_database(request.param)


def _request(body: dict[str, Any]) -> DatasetCreate:
    return DatasetCreate.model_validate(body)


def _fill(db: servers.Database, rows: int) -> None:
    db.execute(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40), age NUMERIC(5,1), "
        "joined DATE, active BOOLEAN, note VARCHAR(40))"
    )
    params = [
        {"i": i, "n": f"p{i}", "a": 20 + i % 50, "j": f"2024-01-{1 + i % 28:02d}",
         "b": i % 2 == 0, "x": None if i % 3 else "n"}
        for i in range(rows)
    ]  # fmt: skip
    from sqlalchemy import text

    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO people VALUES (:i, :n, :a, :j, :b, :x)"), params)
    engine.dispose()


def test_table_in_chunks_to_a_ready_version(db: servers.Database, tmp_path: Path) -> None:
    _fill(db, 2_345)
    ports = make_ports(tmp_path)
    req = _request(
        {"name": "people", "source": {"type": "sql", "url": db.url, "table": "people",
                                      "chunk_rows": 500}}
    )  # fmt: skip
    summary = datasets.create(ports, req)
    assert summary["rows"] == 2_345 and summary["columns"] == 6
    record = datasets.get_version(ports, "people", 1)
    assert record["status"] == "READY"
    assert record["source"]["type"] == "sql" and record["source"]["table"] == "people"
    assert record["source"]["chunks"] == 5  # 2,345 rows at 500 a round trip
    types = {c["name"]: c["type"] for c in record["schema"]}
    assert types["id"] == "integer" and types["age"] == "number"  # NUMERIC -> float
    assert types["name"] == "string" and types["joined"] == "datetime"  # DATE -> datetime
    frame = datasets.load_frame(ports, record["key"]).sort_values("id")
    assert frame["id"].tolist() == list(range(2_345))
    assert frame["note"].isna().sum() == 2_345 - len(range(0, 2_345, 3))


def test_query_with_a_password_by_reference(
    db: servers.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    _fill(db, 50)
    user = f"reader_{db.name[-6:]}"
    if db.kind == "postgresql":
        servers.admin_execute(db.server_url, f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
        db.execute(f"GRANT SELECT ON people TO {user}")
    else:
        servers.admin_execute(db.server_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
        servers.admin_execute(db.server_url, f"GRANT SELECT ON {db.name}.* TO '{user}'@'%'")
    try:
        monkeypatch.setenv("MLPIPE_TEST_DB_PASSWORD", PASSWORD)
        host = db.server_url.split("@", 1)[1]
        scheme = db.server_url.split("://", 1)[0]
        url = f"{scheme}://{user}@{host}/{db.name}"
        ports = make_ports(tmp_path)
        caplog.set_level(logging.DEBUG)
        body = {"name": "adults", "source": {
            "type": "sql", "url": url, "credentials": {"env": "MLPIPE_TEST_DB_PASSWORD"},
            "query": "SELECT id, age FROM people WHERE age >= 40"}}  # fmt: skip
        summary = datasets.create(ports, _request(body))
        assert summary["rows"] == sum(1 for i in range(50) if 20 + i % 50 >= 40)
        record = datasets.get_version(ports, "adults", 1)
        assert record["source"]["credentials"] == {"env": "MLPIPE_TEST_DB_PASSWORD"}
        assert record["source"]["query"].startswith("SELECT id, age")
        # A wrong password (another variable) fails with a 400 that names no secret.
        monkeypatch.setenv("MLPIPE_TEST_DB_PASSWORD", PASSWORD + "-wrong")
        if db.kind == "mysql":  # PostgreSQL here trusts 127.0.0.1: any password passes
            with pytest.raises(BadRequestError) as caught:
                datasets.create(ports, _request(body))
            assert "could not read from the database" in caught.value.message
            assert PASSWORD not in caught.value.message
        # A query error, too.
        monkeypatch.setenv("MLPIPE_TEST_DB_PASSWORD", PASSWORD)
        bad = {**body, "source": {**body["source"], "query": "SELECT nope FROM people"}}
        with pytest.raises(BadRequestError) as caught:
            datasets.create(ports, _request(bad))
        assert "nope" in caught.value.message and PASSWORD not in caught.value.message
        # Nowhere: metadata, object store, logs.
        everything = json.dumps([doc for _, doc in ports.metadata.items.values()])  # type: ignore[attr-defined]
        assert "adults" in everything and PASSWORD not in everything
        assert all(PASSWORD.encode() not in b for b in ports.store.objects.values())  # type: ignore[attr-defined]
        assert caplog.records and PASSWORD not in caplog.text
    finally:
        drop = f"DROP ROLE IF EXISTS {user}" if db.kind == "postgresql" else (
            f"DROP USER IF EXISTS '{user}'@'%'")  # fmt: skip
        if db.kind == "postgresql":
            db.execute(f"DROP OWNED BY {user}")
        servers.admin_execute(db.server_url, drop)


def test_missing_table_and_unset_variable_are_400s(db: servers.Database, tmp_path: Path) -> None:
    ports = make_ports(tmp_path)
    with pytest.raises(BadRequestError, match="could not read from the database"):
        datasets.create(ports, _request(
            {"name": "x", "source": {"type": "sql", "url": db.url, "table": "absent"}}))  # fmt: skip
    with pytest.raises(BadRequestError, match="'MLPIPE_UNSET_VARIABLE' is not set"):
        datasets.create(ports, _request({"name": "x", "source": {
            "type": "sql", "url": db.url, "table": "absent",
            "credentials": {"env": "MLPIPE_UNSET_VARIABLE"}}}))  # fmt: skip
    assert ports.metadata.get("DATASETS", "x") is None  # nothing half-written


def test_sqlite_under_the_file_roots(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    path = root / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sales (region TEXT, amount REAL)")
        conn.executemany("INSERT INTO sales VALUES (?, ?)", [("n", 1.5), ("s", 2.0)] * 100)
    ports = make_ports(tmp_path, file_roots=str(root))
    summary = datasets.create(ports, _request({"name": "sales", "source": {
        "type": "sql", "url": f"sqlite:///{path}", "table": "sales"}}))  # fmt: skip
    assert summary["rows"] == 200
    with pytest.raises(BadRequestError, match="outside the allowed file roots"):
        datasets.create(ports, _request({"name": "etc", "source": {
            "type": "sql", "url": "sqlite:////etc/passwd.db", "table": "t"}}))  # fmt: skip


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"url": "postgresql://u:pw@h/db", "table": "t"}, "must not contain a password"),
        ({"url": "postgresql://u@h/db"}, "exactly one of 'table' or 'query'"),
        ({"url": "postgresql://u@h/db", "table": "t; DROP TABLE x"}, "table must be a name"),
        ({"url": "postgresql://u@h/db", "query": "DELETE FROM t"}, "one SELECT"),
        ({"url": "oracle://u@h/db", "table": "t"}, "url must start with one of"),
        ({"url": "postgresql://u@h/db", "table": "t", "credentials": {"password": "x"}}, ""),
    ],
)
def test_bad_sql_sources_are_refused_without_echoing_secrets(
    source: dict[str, Any], message: str
) -> None:
    from chalicelib.api import describe_validation

    with pytest.raises(ValidationError) as caught:
        _request({"name": "x", "source": {"type": "sql", **source}})
    answer = describe_validation(caught.value)  # the 400's message
    assert message in answer
    assert "pw" not in answer


def test_chunks_with_different_types_unify(db: servers.Database, tmp_path: Path) -> None:
    """A column that is all NULL in the first chunk and typed later, an integer column
    with NULLs only in a later chunk: one schema for the whole table."""
    db.execute("CREATE TABLE t (id INTEGER, late VARCHAR(10), gaps INTEGER)")
    rows = [
        {"i": i, "l": None if i < 300 else f"v{i}", "g": None if i >= 450 and i % 2 else i}
        for i in range(600)
    ]
    from sqlalchemy import text

    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:i, :l, :g)"), rows)
    engine.dispose()
    ports = make_ports(tmp_path)
    body = {"name": "mixed", "source": {"type": "sql", "url": db.url, "chunk_rows": 150,
                                        "query": "SELECT * FROM t ORDER BY id"}}  # fmt: skip
    assert datasets.create(ports, _request(body))["rows"] == 600
    record = datasets.get_version(ports, "mixed", 1)
    assert record["source"]["chunks"] == 4
    types = {c["name"]: c["type"] for c in record["schema"]}
    assert types == {"id": "integer", "late": "string", "gaps": "number"}
    frame = datasets.load_frame(ports, record["key"])
    assert frame["late"].isna().sum() == 300 and frame["gaps"].isna().sum() == 75
    profile = datasets.get_profile(ports, record)
    late = next(c for c in profile["columns"] if c["name"] == "late")
    assert late["missing"] == 300 and late["distinct"] == 300


def test_sql_with_a_contract(db: servers.Database, tmp_path: Path) -> None:
    _fill(db, 100)
    ports = make_ports(tmp_path)
    body = {
        "name": "checked",
        "source": {"type": "sql", "url": db.url, "table": "people"},
        "contract": {"policy": "quarantine", "columns": {"age": {"type": "float", "max": 60}}},
    }
    summary = datasets.create(ports, _request(body))
    over = sum(1 for i in range(100) if 20 + i % 50 > 60)
    assert summary["rows"] == 100 - over and summary["quarantined_rows"] == over


def test_types_the_drivers_return(db: servers.Database, tmp_path: Path) -> None:
    """Decimal, zoned timestamps, UUID-like text, binary (refused) from each driver."""
    if db.kind == "postgresql":
        db.execute(
            "CREATE TABLE t (amount NUMERIC(10,2), at TIMESTAMPTZ, u UUID, b BYTEA)",
            "INSERT INTO t VALUES (12.50, '2024-03-01 10:00:00+02', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'x'), (NULL, NULL, NULL, NULL)",
        )
    else:
        db.execute(
            "CREATE TABLE t (amount DECIMAL(10,2), at DATETIME, u CHAR(36), b BLOB)",
            "INSERT INTO t VALUES (12.50, '2024-03-01 08:00:00', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'x'), (NULL, NULL, NULL, NULL)",
        )
    ports = make_ports(tmp_path)
    source = {"type": "sql", "url": db.url, "query": "SELECT amount, at, u FROM t"}
    datasets.create(ports, _request({"name": "typed", "source": source}))
    record = datasets.get_version(ports, "typed", 1)
    types = {c["name"]: c["type"] for c in record["schema"]}
    assert types == {"amount": "number", "at": "datetime", "u": "string"}
    frame = datasets.load_frame(ports, record["key"])
    assert frame["amount"].iloc[0] == 12.5
    assert str(frame["at"].iloc[0]) == "2024-03-01 08:00:00"  # UTC, without a zone
    assert frame["u"].iloc[0] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    with pytest.raises(BadRequestError, match="'b' holds binary data"):
        datasets.create(ports, _request({"name": "typed", "source": {**source,
                                                                    "query": "SELECT b FROM t"}}))  # fmt: skip
