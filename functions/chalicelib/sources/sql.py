"""``sql`` sources: a table or a SELECT from SQLite, PostgreSQL (psycopg) or MySQL/MariaDB
(PyMySQL), read in chunks through a server-side cursor and streamed to Parquet part files,
so the database result never sits whole in Python objects.

The password comes from the credentials reference at connect time and is scrubbed from any
error message; the URL recorded in the lineage is the one the caller sent (no password).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib.errors import BadRequestError
from chalicelib.settings import Settings
from chalicelib.sources import credentials
from chalicelib.sources.models import SQL_DIALECTS, SqlSource

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("mlpipe.sources.sql")

CONNECT_TIMEOUT = 10


def read_to_file(
    settings: Settings, source: SqlSource, dest: Path
) -> tuple[pa.Schema, dict[str, Any]]:
    """Stream the result into one Parquet file at ``dest``, a chunk at a time (memory: one
    chunk, whatever the table's size). Returns its schema and the lineage to record."""
    import pyarrow.parquet as pq

    url, lineage, secret = _connect_url(settings, source)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpipe-sql-") as tmp:
            parts = _stream(url, source, Path(tmp))
            if not parts:
                raise BadRequestError("the query returned no rows")
            schema = _unified_schema(parts)
            with pq.ParquetWriter(dest, schema) as writer:
                for part in parts:
                    writer.write_table(_conform(pq.read_table(part), schema))
    except BadRequestError:
        raise
    except Exception as exc:  # driver and SQLAlchemy errors: their text, scrubbed
        message = _scrub(_message(exc), secret)
        log.info("sql source %s failed: %s", lineage["url"], message)
        raise BadRequestError(f"could not read from the database: {message}") from None
    lineage["chunks"] = len(parts)
    return schema, lineage


def read(settings: Settings, source: SqlSource) -> tuple[pa.Table, dict[str, Any]]:
    """The whole result as one Arrow table (for contract checks, which see every row)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="mlpipe-sql-") as tmp:
        path = Path(tmp) / "result.parquet"
        _, lineage = read_to_file(settings, source, path)
        return pq.read_table(path), lineage


def _connect_url(settings: Settings, source: SqlSource) -> tuple[Any, dict[str, Any], str | None]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(source.url)
    except (ArgumentError, ValueError):
        raise BadRequestError("source.url is not a valid SQLAlchemy URL") from None
    if url.password is not None:
        raise BadRequestError("source.url must not contain a password; use credentials")
    lineage: dict[str, Any] = {
        "type": "sql",
        "url": url.render_as_string(hide_password=True),
        **({"table": source.table} if source.table else {"query": source.query}),
        **(
            {"credentials": source.credentials.model_dump()}  # the reference, not the value
            if source.credentials
            else {}
        ),
    }
    url = url.set(drivername=SQL_DIALECTS[url.drivername])
    secret: str | None = None
    if source.credentials is not None:
        user, secret = credentials.resolve(settings, source.credentials)
        url = url.set(password=secret)
        if user:
            url = url.set(username=user)
    if url.drivername == "sqlite":
        _check_sqlite(settings, url.database)
    return url, lineage, secret


def _target_type(field: pa.Field) -> pa.DataType:
    """Dates become timestamps (the platform's datetime), times text."""
    import pyarrow as pa

    if pa.types.is_date(field.type):
        return pa.timestamp("us")
    if pa.types.is_time(field.type):
        return pa.string()
    return field.type


def _unified_schema(parts: list[Path]) -> pa.Schema:
    """One schema for every chunk: a column that is all null in one chunk and typed in
    another takes the type; integers with nulls in some chunk become floats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p).remove_metadata() for p in parts]
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    fields = []
    for field in unified:
        kinds = {s.field(field.name).type for s in schemas}
        target = _target_type(field)
        if pa.types.is_integer(target) and any(pa.types.is_floating(k) for k in kinds):
            target = pa.float64()
        fields.append(pa.field(field.name, target))
    return pa.schema(fields)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema)


def _check_sqlite(settings: Settings, database: str | None) -> None:
    """A SQLite file is a file: the same allowed roots as the ``file`` source."""
    if not database or database == ":memory:":
        raise BadRequestError("a sqlite url must name a database file (sqlite:////path/db)")
    resolved = Path(database).resolve()
    roots = settings.allowed_file_roots
    if not any(resolved.is_relative_to(root) for root in roots):
        raise BadRequestError(
            f"sqlite database {database!r} is outside the allowed file roots "
            f"({', '.join(map(str, roots))}; set MLPIPE_FILE_ROOTS to widen them)"
        )
    if not resolved.is_file():
        raise BadRequestError(f"sqlite database {database!r} not found")


def _stream(url: Any, source: SqlSource, folder: Path) -> list[Path]:
    """Fetch ``chunk_rows`` at a time from a server-side cursor (psycopg: a named cursor;
    PyMySQL: SSCursor; SQLite reads lazily anyway) and write each chunk as a Parquet part."""
    import pyarrow.parquet as pq
    from sqlalchemy import create_engine, select, table, text
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.drivername.startswith("postgresql") or "pymysql" in url.drivername:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    if source.table is not None:
        schema, _, name = source.table.rpartition(".")
        stmt: Any = select(text("*")).select_from(table(name, schema=schema or None))
    else:
        stmt = text(source.query or "")
    parts: list[Path] = []
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(stream_results=True, max_row_buffer=source.chunk_rows)
            result = conn.execute(stmt)
            keys = list(result.keys())
            if len(set(keys)) != len(keys):
                raise BadRequestError(f"the result's column names repeat: {keys}")
            while True:
                rows = result.fetchmany(source.chunk_rows)
                if not rows:
                    break
                path = folder / f"part-{len(parts):05d}.parquet"
                pq.write_table(_chunk_table(keys, rows), path)
                parts.append(path)
            result.close()
    finally:
        engine.dispose()
    return parts


def _chunk_table(keys: list[str], rows: Sequence[Any]) -> pa.Table:
    """Driver rows -> an Arrow table, column by column in C (no per-row Python objects
    beyond the driver's): Decimal -> float, zoned timestamps -> UTC without a zone, values
    Arrow cannot type (UUID, ...) -> text, binary -> refused."""
    import pyarrow as pa

    arrays = []
    for name, values in zip(keys, zip(*rows, strict=True), strict=True):
        try:
            array = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if any(isinstance(v, bytes | bytearray | memoryview) for v in values):
                raise BadRequestError(
                    f"column {name[:40]!r} holds binary data; cast or drop it"
                ) from None
            array = pa.array([None if v is None else str(v) for v in values], pa.string())
        kind = array.type
        if isinstance(kind, pa.BaseExtensionType) or pa.types.is_fixed_size_binary(kind):
            if any(isinstance(v, bytes | bytearray | memoryview) for v in values):
                raise BadRequestError(f"column {name[:40]!r} holds binary data; cast or drop it")
            # UUID (Arrow's uuid type): as its text
            array = pa.array([None if v is None else str(v) for v in values], pa.string())
            kind = array.type
        if pa.types.is_decimal(kind):
            array = array.cast(pa.float64())
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            array = array.cast(pa.timestamp(kind.unit, "UTC")).cast(pa.timestamp(kind.unit))
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise BadRequestError(f"column {name[:40]!r} holds binary data; cast or drop it")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=keys)


def _message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    text = text.split("[SQL:")[0]
    text = re.sub(r"\s+", " ", text).strip()
    return text[:300] or type(exc).__name__


def _scrub(message: str, secret: str | None) -> str:
    if secret:
        message = message.replace(secret, "***")
    return message
