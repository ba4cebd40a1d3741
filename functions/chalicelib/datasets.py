"""Datasets: ingest from a source, validate, profile, and store an immutable version."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib import tables
from chalicelib.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from chalicelib.ports.metadata import ConditionFailedError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import DatasetCreate, FileSource, InlineSource
from chalicelib.timeutil import now_iso
from mlcontract import columns

if TYPE_CHECKING:
    import pandas as pd

MAX_COLUMNS = 2000
MAX_COLUMN_NAME = 256
TOP_VALUES = 20


def _read_source(ports: Ports, req: DatasetCreate) -> bytes:
    source = req.source
    limit = ports.settings.max_inline_bytes
    if isinstance(source, InlineSource):
        raw = source.data.encode()
        if source.encoding == "base64":
            try:
                raw = base64.b64decode(source.data, validate=True)
            except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
                raise BadRequestError("source.data is not valid base64") from None
        elif req.format == "parquet":
            raise BadRequestError('inline parquet must be sent with "encoding": "base64"')
        if len(raw) > limit:
            raise PayloadTooLargeError(f"inline data is larger than {limit} bytes")
        return raw
    assert isinstance(source, FileSource)
    return _read_file(ports, source.path)


def _read_file(ports: Ports, raw_path: str) -> bytes:
    roots = ports.settings.allowed_file_roots
    if "\x00" in raw_path:
        raise BadRequestError("path contains a NUL character")
    candidate = Path(raw_path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate if roots else candidate
    # Resolve symlinks and '..' first, then require the real path to sit under a root.
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise BadRequestError(
            f"path {raw_path!r} is outside the allowed file roots (MLPIPE_FILE_ROOTS)"
        )
    if not resolved.is_file():
        raise NotFoundError(f"file {raw_path!r} not found")
    return resolved.read_bytes()


def parse_table(raw: bytes, fmt: str) -> pd.DataFrame:
    """Bytes in a declared format -> a DataFrame, or a 400 that says what is wrong."""
    import pandas as pd

    if not raw.strip():
        raise BadRequestError("the dataset is empty")
    try:
        if fmt == "csv":
            _check_csv_header(raw)
            frame = pd.read_csv(io.BytesIO(raw))
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        elif fmt == "json":
            records = json.loads(raw)
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise BadRequestError("JSON datasets must be an array of objects")
            frame = pd.DataFrame.from_records(records)
        else:
            records = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            if not all(isinstance(r, dict) for r in records):
                raise BadRequestError("every JSON Lines row must be an object")
            frame = pd.DataFrame.from_records(records)
    except BadRequestError:
        raise
    except pd.errors.EmptyDataError:
        raise BadRequestError("the dataset is empty") from None
    except pd.errors.ParserError as exc:
        raise BadRequestError(f"malformed {fmt.upper()}: {str(exc).strip()[:300]}") from None
    except UnicodeDecodeError:
        raise BadRequestError(f"the {fmt} data is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"malformed JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, OSError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
        raise BadRequestError(f"could not read the {fmt} data: {str(exc)[:300]}") from None
    validate_frame(frame)
    if fmt != "csv":  # CSV cells are always scalars
        _reject_nested(frame)
    return frame


def _check_csv_header(raw: bytes) -> None:
    # pandas silently renames a repeated header ("a", "a.1"); a user would rather know.
    first = raw[: 1 << 16].decode("utf-8", errors="replace")
    try:
        header = next(csv.reader(io.StringIO(first, newline="")), [])
    except csv.Error as exc:
        raise BadRequestError(f"malformed CSV header: {exc}") from None
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise BadRequestError(f"column names must be unique; repeated: {repeated}")


def validate_frame(frame: pd.DataFrame) -> None:
    if frame.shape[1] == 0:
        raise BadRequestError("the dataset has no columns")
    if frame.shape[0] == 0:
        raise BadRequestError("the dataset has a header but no rows")
    if frame.shape[1] > MAX_COLUMNS:
        raise BadRequestError(f"the dataset has more than {MAX_COLUMNS} columns")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise BadRequestError("column names must be unique")
    for name in names:
        if not name.strip() or len(name) > MAX_COLUMN_NAME:
            raise BadRequestError(f"column name {name[:40]!r} is empty or too long")
    frame.columns = names


def _reject_nested(frame: pd.DataFrame) -> None:
    """JSON and Parquet can carry objects and arrays in a cell; a dataset is a flat table."""
    import numpy as np

    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        nested = column.map(lambda v: isinstance(v, dict | list | tuple | np.ndarray))
        if nested.any():
            row = int(nested.to_numpy().argmax())
            raise BadRequestError(
                f"column {name[:40]!r} holds nested objects or arrays (row {row}); "
                "datasets are flat tables: flatten it first"
            )


def column_type(series: pd.Series) -> str:
    kinds = {type(v) for v in series.dropna()} if series.dtype == object else set()
    return columns.infer(str(series.dtype), kinds)


def profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Schema + per-column statistics: the baseline later drift checks compare against."""
    columns: list[dict[str, Any]] = []
    for name in frame.columns:
        series = frame[name]
        kind = column_type(series)
        col: dict[str, Any] = {
            "name": name,
            "type": kind,
            "missing": int(series.isna().sum()),
            "distinct": int(series.nunique(dropna=True)),
        }
        if kind in ("integer", "number") and series.notna().any():
            values = series.astype("float64")
            q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
            col.update(
                min=q[0],
                p25=q[1],
                median=q[2],
                p75=q[3],
                max=q[4],
                mean=float(values.mean()),
                std=float(values.std(ddof=0)),
            )
        elif kind in ("string", "boolean"):
            top = series.astype("string").value_counts(dropna=True).head(TOP_VALUES)
            col["top"] = {str(k): int(v) for k, v in top.items()}
        columns.append(col)
    return {"rows": int(frame.shape[0]), "columns": columns}


def to_parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


# Media type of an uploaded body -> dataset format.
UPLOAD_FORMATS = {
    "text/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/octet-stream": "parquet",
}


def create(ports: Ports, req: DatasetCreate) -> dict[str, Any]:
    return _store_version(ports, req.name, req.format, req.source.type, _read_source(ports, req))


def upload(ports: Ports, name: str, raw: bytes, content_type: str) -> dict[str, Any]:
    """A new version from a request body (``curl --data-binary @file.csv``)."""
    media = content_type.split(";")[0].strip().lower()
    fmt = UPLOAD_FORMATS.get(media)
    if fmt is None:
        raise UnsupportedMediaTypeError(
            f"content type {media!r} is not a dataset format; use one of "
            + ", ".join(sorted(UPLOAD_FORMATS))
        )
    limit = ports.settings.max_inline_bytes
    if len(raw) > limit:
        raise PayloadTooLargeError(f"the upload is larger than {limit} bytes; use a file source")
    return _store_version(ports, name, fmt, "upload", raw)


def _store_version(
    ports: Ports, name: str, fmt: str, source_type: str, raw: bytes
) -> dict[str, Any]:
    frame = parse_table(raw, fmt)
    stats = profile(frame)
    data = to_parquet(frame)
    meta = ports.metadata
    for _ in range(5):
        head = meta.get(tables.DATASETS, name)
        version = (head.item["latest_version"] if head else 0) + 1
        # A unique object per attempt: a writer that loses the race for this version
        # number deletes only its own bytes, never the winner's.
        key = f"datasets/{name}/{tables.version_sk(version)}/{uuid.uuid4().hex[:12]}.parquet"
        ports.store.put_bytes(key, data)
        now = now_iso()
        record = {
            "name": name,
            "version": version,
            "status": "READY",
            "format": fmt,
            "source": {"type": source_type},
            "key": key,
            "uri": ports.store.uri(key),
            "rows": stats["rows"],
            "schema": [{"name": c["name"], "type": c["type"]} for c in stats["columns"]],
            "profile": stats,
            "bytes": len(data),
            "created_at": now,
        }
        head_item = {
            "name": name,
            "latest_version": version,
            "created_at": head.item["created_at"] if head else now,
            "updated_at": now,
        }
        try:
            meta.put_many(
                [
                    Write(tables.dataset_versions(name), tables.version_sk(version), record, 0),
                    Write(tables.DATASETS, name, head_item, head.rev if head else 0),
                ]
            )
        except ConditionFailedError:
            ports.store.delete_prefix(key)
            continue  # someone else took this version number: take the next one
        return summary(record)
    raise ConflictError(f"dataset {name!r} is being written concurrently; try again")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": record["name"],
        "version": record["version"],
        "status": record["status"],
        "rows": record["rows"],
        "columns": len(record["schema"]),
        "created_at": record["created_at"],
    }


def get_version(ports: Ports, name: str, version: int | None = None) -> dict[str, Any]:
    if version is None:
        head = ports.metadata.get(tables.DATASETS, name)
        if head is None:
            raise NotFoundError(f"dataset {name!r} not found")
        version = int(head.item["latest_version"])
    rec = ports.metadata.get(tables.dataset_versions(name), tables.version_sk(version))
    if rec is None:
        raise NotFoundError(f"dataset {name!r} has no version {version}")
    return rec.item


def describe(ports: Ports, name: str) -> dict[str, Any]:
    head = ports.metadata.get(tables.DATASETS, name)
    if head is None:
        raise NotFoundError(f"dataset {name!r} not found")
    versions = [summary(r.item) for r in ports.metadata.query(tables.dataset_versions(name))]
    return {**head.item, "versions": versions}


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [r.item for r in ports.metadata.query(tables.DATASETS)]


def load_frame(ports: Ports, key: str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(ports.store.get_bytes(key)))
