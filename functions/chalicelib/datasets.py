"""Datasets: ingest from a source, validate, profile, and store an immutable version."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import math
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chalicelib import concurrency, offload, tables
from chalicelib.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from chalicelib.ports import ConditionFailedError, Delete, TooLargeError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import DatasetCreate, FileSource, InlineSource
from chalicelib.sources.models import SqlSource, UploadSource
from chalicelib.timeutil import now_iso
from mlcontract import columns, jsonlimits

if TYPE_CHECKING:
    import pandas as pd

    from chalicelib.contracts import Contract

log = logging.getLogger("mlpipe.datasets")

MAX_COLUMNS = 2000
MAX_COLUMN_NAME = 256
TOP_VALUES = 20
INT64 = (-(2**63), 2**63 - 1)


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
    raw = _read_file(ports, source.path)
    from chalicelib.sources import s3

    for suffix, kind in s3.COMPRESSED.items():  # data.csv.gz, data.jsonl.zst
        if source.path.lower().endswith(suffix):
            return s3.decompress(raw, kind, source.path)
    return raw


def _read_file(ports: Ports, raw_path: str) -> bytes:
    roots = ports.settings.allowed_file_roots
    if "\x00" in raw_path:
        raise BadRequestError("path contains a NUL character")
    candidate = Path(raw_path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    # Resolve symlinks and '..' first, then require the real path to sit under a root.
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise BadRequestError(
            f"path {raw_path!r} is outside the allowed file roots "
            f"({', '.join(map(str, roots))}; set MLPIPE_FILE_ROOTS to widen them)"
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
            _check_csv_rows(raw)
            # index_col=False: a row with an extra field is an error, never a shifted index.
            frame = pd.read_csv(io.BytesIO(raw), index_col=False)
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        elif fmt == "json":
            records = _json_loads(raw)
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise BadRequestError("JSON datasets must be an array of objects")
            frame = _from_records(records)
        else:
            lines = [line for line in raw.decode().splitlines() if line.strip()]
            records = [_json_loads(line.encode(), i + 1) for i, line in enumerate(lines)]
            if not all(isinstance(r, dict) for r in records):
                raise BadRequestError("every JSON Lines row must be an object")
            frame = _from_records(records)
    except BadRequestError:
        raise
    except pd.errors.EmptyDataError:
        raise BadRequestError("the dataset is empty") from None
    except pd.errors.ParserError as exc:
        raise BadRequestError(f"malformed {fmt.upper()}: {str(exc).strip()[:300]}") from None
    except UnicodeDecodeError:
        raise BadRequestError(
            f"the {fmt} data is not valid UTF-8"
            + ('; for Parquet say "format": "parquet"' if fmt == "csv" else "")
        ) from None
    except (ValueError, OSError, OverflowError, TypeError) as exc:
        # pyarrow raises ArrowInvalid (a ValueError) and ArrowTypeError (a TypeError)
        raise BadRequestError(f"could not read the {fmt} data: {str(exc)[:300]}") from None
    validate_frame(frame)
    if fmt != "csv":  # CSV cells are always scalars
        _reject_nested(frame)
    _check_numbers(frame)
    return frame


def _check_numbers(frame: pd.DataFrame) -> None:
    """Every number is finite and fits a column type: an infinity (``inf``, ``1e999``) is a
    400 naming the column and row (no model can learn from it, and strict JSON cannot carry
    it), as is an integer beyond 64 bits (CSV ``10000000000000000000000``); a text column
    holding other scalars too (``true``, ``"x"``, ``3``) becomes a text column."""
    import numpy as np
    import pandas as pd

    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind == "f":
            bad = np.isinf(column.to_numpy())
            if bad.any():
                raise BadRequestError(
                    f"column {str(name)[:40]!r} holds an infinite number (row "
                    f"{int(bad.argmax()) + 1}); datasets hold finite numbers only"
                )
        elif column.dtype == object:
            if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
                continue  # text only (the common case), checked in C
            kinds: set[type] = set()
            for row, value in enumerate(column.tolist(), start=1):
                if value is None:
                    continue
                kinds.add(type(value))
                if isinstance(value, float) and math.isinf(value):
                    raise BadRequestError(
                        f"column {str(name)[:40]!r} holds an infinite number (row {row}); "
                        "datasets hold finite numbers only"
                    )
                if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
                    raise BadRequestError(
                        f"column {str(name)[:40]!r} holds the integer {str(value)[:30]} (row "
                        f"{row}), beyond 64 bits; send it as text or as a float"
                    )
            if len(kinds) > 1 and str in kinds:
                frame[name] = column.map(
                    lambda v: v if v is None or isinstance(v, str) or v != v else str(v)
                )


def _json_loads(raw: bytes, line: int | None = None) -> Any:
    where = f" (line {line})" if line else ""
    if jsonlimits.too_deep(raw):  # before json.loads recurses into it
        raise BadRequestError(
            f"the JSON is nested too deeply (more than {jsonlimits.MAX_DEPTH} levels){where}"
        )
    try:
        return json.loads(raw, parse_constant=_json_constant)
    except RecursionError:
        raise BadRequestError(f"the JSON is nested too deeply{where}") from None
    except json.JSONDecodeError as exc:
        at = f"line {line}" if line else f"line {exc.lineno}"
        raise BadRequestError(f"malformed JSON: {exc.msg} at {at}") from None
    except ValueError as exc:
        raise BadRequestError(f"{exc}{where}") from None


def _json_constant(name: str) -> Any:
    if name == "NaN":
        return None  # a missing value
    raise ValueError(f"{name} is not a finite number; datasets hold finite numbers only")


def _from_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame from JSON objects: a column of mixed scalar types (true, "x", 3) becomes text;
    an integer beyond 64 bits is refused (no column type holds it exactly)."""
    import pandas as pd

    columns: dict[str, list[Any]] = {}
    for i, record in enumerate(records):
        for name in record:
            columns.setdefault(name, [None] * i)
        for name, values in columns.items():
            values.append(record.get(name))
    data: dict[str, Any] = {}
    for name, values in columns.items():
        kinds = {type(v) for v in values if v is not None and not isinstance(v, dict | list)}
        for v in values:
            if type(v) is int and not INT64[0] <= v <= INT64[1]:
                raise BadRequestError(
                    f"column {name[:40]!r} holds the integer {str(v)[:30]}, beyond 64 bits; "
                    "send it as a string or a float"
                )
        numeric = kinds <= {int, float}
        if len(kinds) > 1 and not numeric:
            values = [
                v if v is None or isinstance(v, str | dict | list) else json.dumps(v)
                for v in values
            ]
        data[name] = values
    return pd.DataFrame(data)


def _check_csv_rows(raw: bytes) -> None:
    """Unique header names, and every row as wide as the header (pandas would shift a row
    with an extra field into the index, and fill a short row with missing values).

    Fast path: pyarrow's multi-threaded CSV parser checks every row's width while it
    converts one column only; on any complaint, the line-by-line check below finds the
    line and says what is wrong (or lets through what only pyarrow disliked)."""
    if len(raw) > FAST_CHECK_BYTES and _csv_rows_fit(raw):
        return
    _check_csv_rows_slowly(raw)


FAST_CHECK_BYTES = 1 << 20


def _csv_rows_fit(raw: bytes) -> bool:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    first_line = raw.split(b"\n", 1)[0]
    try:
        header = next(csv.reader([first_line.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return False
    if not header or len(set(header)) != len(header) or '"' in first_line.decode():
        return False  # repeated or quoted names: the slow check says it precisely
    try:
        pcsv.read_csv(
            pa.py_buffer(raw),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                include_columns=[header[0]], column_types={header[0]: pa.binary()}
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError, ValueError):
        return False
    return True


def _check_csv_rows_slowly(raw: bytes) -> None:
    text = raw.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise BadRequestError(f"column names must be unique; repeated: {repeated}")
        width = len(header)
        for values in reader:
            if values and len(values) != width:
                raise BadRequestError(
                    f"CSV line {reader.line_num} has {len(values)} fields, the header has "
                    f"{width}; every row must have one value per column"
                )
    except csv.Error as exc:
        raise BadRequestError(f"malformed CSV at line {reader.line_num}: {exc}") from None


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


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Schema + per-column statistics: the baseline later drift checks compare against."""
    import numpy as np

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
            values = values[np.isfinite(values)]
            q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist() if len(values) else []
            col.update(
                min=_finite(q[0] if q else None),
                p25=_finite(q[1] if q else None),
                median=_finite(q[2] if q else None),
                p75=_finite(q[3] if q else None),
                max=_finite(q[4] if q else None),
                mean=_finite(float(values.mean()) if len(values) else None),
                std=_finite(float(values.std(ddof=0)) if len(values) else None),
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
    if isinstance(req.source, InlineSource | FileSource):
        frame = parse_table(_read_source(ports, req), req.format)
        lineage: dict[str, Any] = {"type": req.source.type}
        if isinstance(req.source, FileSource):
            lineage["path"] = req.source.path
    elif isinstance(req.source, UploadSource):
        from chalicelib import uploads

        raw, lineage = uploads.take(ports, req.name, req.source.upload_id, req.format)
        frame = parse_table(raw, req.format)
        summary = _store_frame(ports, req.name, req.format, lineage, frame, req.contract)
        uploads.finish(ports, req.name, req.source.upload_id)
        return summary
    elif isinstance(req.source, SqlSource) and not _has_contract(ports, req):
        import tempfile

        from chalicelib.sources import sql

        with tempfile.TemporaryDirectory(prefix="mlpipe-ingest-") as tmp:
            path = Path(tmp) / "data.parquet"
            _, lineage = sql.read_to_file(ports.settings, req.source, path)
            return _store_parquet_file(ports, req.name, req.format, lineage, path)
    else:
        from chalicelib import sources

        frame, lineage = sources.read(ports.settings, req.source, req.format, parse_table)
        validate_frame(frame)
        _reject_nested(frame)
    return _store_frame(ports, req.name, req.format, lineage, frame, req.contract)


def _has_contract(ports: Ports, req: DatasetCreate) -> bool:
    if req.contract is not None:
        return True
    head = ports.metadata.get(tables.DATASETS, req.name)
    return head is not None and bool(head.item.get("contract"))


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


def store_version(
    ports: Ports, name: str, fmt: str, source_type: str, raw: bytes
) -> dict[str, Any]:
    """A new version of ``name`` from bytes in a known format (the retraining trigger)."""
    return _store_version(ports, name, fmt, source_type, raw)


def _store_version(
    ports: Ports, name: str, fmt: str, source_type: str, raw: bytes
) -> dict[str, Any]:
    return _store_frame(ports, name, fmt, {"type": source_type}, parse_table(raw, fmt), None)


def _store_frame(
    ports: Ports,
    name: str,
    fmt: str,
    lineage: dict[str, Any],
    frame: pd.DataFrame,
    contract: Contract | Literal["inferred"] | None,
) -> dict[str, Any]:
    """Check the contract (the one given, else the dataset's), profile, and write the
    version. Nothing is written before every check passed; a failed write leaves no
    version and no bytes."""
    from chalicelib import cleaning, contracts

    frame, _ = cleaning.type_datetime_columns(frame)  # ISO 8601 text columns are datetimes
    if contract == "inferred":
        contract = contracts.inferred(frame)
    if contract is None:
        stored = ports.metadata.get(tables.DATASETS, name)
        if stored is not None and stored.item.get("contract"):
            contract = contracts.Contract.model_validate(stored.item["contract"])
    quarantined = None
    if contract is not None:
        frame, quarantined = contracts.check(frame, contract)
    stats = profile(frame)
    data = to_parquet(frame)
    bad_rows = to_parquet(quarantined) if quarantined is not None and len(quarantined) else None
    return _write_version(
        ports,
        name,
        fmt,
        lineage,
        stats,
        lambda key: ports.store.put_bytes(key, data),
        len(data),
        _arrow_columns(io.BytesIO(data)),
        contract,
        bad_rows,
        0 if quarantined is None else len(quarantined),
    )


def _store_parquet_file(
    ports: Ports, name: str, fmt: str, lineage: dict[str, Any], path: Path
) -> dict[str, Any]:
    """A version from a Parquet file that need not fit in memory (the sql source streams
    into one): profiled one column at a time, uploaded from the file."""
    import pandas as pd
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    validate_frame(pd.DataFrame({n: [None] for n in parquet.schema_arrow.names}))
    if parquet.metadata.num_rows == 0:
        raise BadRequestError("the dataset has a header but no rows")
    stats = profile_parquet(path)
    return _write_version(
        ports,
        name,
        fmt,
        lineage,
        stats,
        lambda key: ports.store.put_file(key, path),
        path.stat().st_size,
        _arrow_columns(path),
        None,
        None,
        0,
    )


def _arrow_columns(source: Any) -> dict[str, str]:
    import pyarrow.parquet as pq

    return {field.name: str(field.type) for field in pq.read_schema(source)}


def _write_version(
    ports: Ports,
    name: str,
    fmt: str,
    lineage: dict[str, Any],
    stats: dict[str, Any],
    put_data: Any,
    size: int,
    arrow_columns: dict[str, str],
    contract: Contract | None,
    bad_rows: bytes | None,
    quarantined_rows: int,
) -> dict[str, Any]:
    profile_bytes = json.dumps(stats, allow_nan=False).encode()
    written: list[str] = []

    def attempt() -> dict[str, Any]:
        head = ports.metadata.get(tables.DATASETS, name)
        # Numbers are never reused: a deleted version's number stays taken (``last_version``),
        # so what a run or a model's lineage recorded as "v2" always meant the same data.
        version = (_last_version(head.item) if head else 0) + 1
        # A unique folder per attempt: a writer that loses the race for this version
        # number deletes only its own bytes, never the winner's.
        folder = f"datasets/{name}/{tables.version_sk(version)}/{uuid.uuid4().hex[:12]}"
        written.append(folder)
        # The Parquet file alone under data/: the Glue table of this version reads the prefix.
        key = f"{folder}/data/data.parquet"
        put_data(key)
        # The profile lives beside the data: with many columns it outgrows a metadata item.
        ports.store.put_bytes(f"{folder}/profile.json", profile_bytes)
        extra: dict[str, Any] = {}
        if contract is not None:
            extra["contract"] = {"policy": contract.policy, "quarantined_rows": 0}
        if bad_rows is not None:
            ports.store.put_bytes(f"{folder}/quarantine.parquet", bad_rows)
            extra["quarantine_key"] = f"{folder}/quarantine.parquet"
            extra["contract"]["quarantined_rows"] = quarantined_rows
        now = now_iso()
        record = {
            "name": name,
            "version": version,
            "status": "READY",
            "format": fmt,
            "source": lineage,
            **extra,
            "key": key,
            "folder": folder,
            "profile_key": f"{folder}/profile.json",
            "uri": ports.store.uri(key),
            "rows": stats["rows"],
            "columns": len(stats["columns"]),
            "schema": [{"name": c["name"], "type": c["type"]} for c in stats["columns"]],
            "bytes": size,
            "created_at": now,
        }
        record = offload.offload(ports.store, record, "schema", f"{folder}/schema.json")
        head_item = {
            "name": name,
            "latest_version": version,
            "last_version": version,
            "created_at": head.item["created_at"] if head else now,
            "updated_at": now,
        }
        if contract is not None:
            head_item["contract"] = contract.model_dump(exclude_none=True)
        ports.metadata.put_many(
            [
                Write(tables.dataset_versions(name), tables.version_sk(version), record, 0),
                Write(tables.DATASETS, name, head_item, head.rev if head else 0),
            ]
        )
        written.pop()
        return record

    try:
        record: dict[str, Any] = offload.hydrate(
            ports.store, concurrency.retry(attempt, what=f"dataset {name!r}"), "schema"
        )
    except TooLargeError:
        raise PayloadTooLargeError(
            "the dataset's schema is too large to record; use fewer or shorter column names"
        ) from None
    finally:
        for folder in written:  # attempts that lost a race, or failed: no orphan bytes
            ports.store.delete_prefix(folder)
    _catalog(ports, record, arrow_columns)
    return summary(record)


def _catalog(ports: Ports, record: dict[str, Any], columns: dict[str, str]) -> None:
    """Register the version as a table (Glue on AWS). The version is READY either way: a
    catalog failure is logged, and the next version or a re-registration fixes it."""
    if ports.catalog is None:
        return
    location = ports.store.uri(record["key"].rsplit("/", 1)[0])
    try:
        ports.catalog.register(record["name"], record["version"], location, columns)
    except Exception:
        log.exception("could not catalog dataset %s v%s", record["name"], record["version"])


def get_profile(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    if "profile" in record:  # versions written before profiles moved to the object store
        return dict(record["profile"])
    return dict(json.loads(ports.store.get_bytes(record["profile_key"])))


def delete(ports: Ports, name: str, version: int | None = None) -> dict[str, Any]:
    """Delete one version, or the whole dataset. Refused while a pipeline reads it (the
    whole dataset, or that exact version)."""
    from chalicelib import pipelines

    head = ports.metadata.get(tables.DATASETS, name)
    if head is None:
        raise NotFoundError(f"dataset {name!r} not found")
    records = list(ports.metadata.query(tables.dataset_versions(name)))
    if version is not None:
        records = [r for r in records if r.item["version"] == version]
        if not records:
            raise NotFoundError(f"dataset {name!r} has no version {version}")
    users = pipelines.using_dataset(ports, name, version, int(head.item["latest_version"]))
    if users:
        raise ConflictError(
            f"pipeline(s) {', '.join(sorted(users))} read {name!r}"
            + (f" v{version}" if version is not None else "")
            + "; delete or change them first"
        )
    remaining = ports.metadata.query(tables.dataset_versions(name))
    writes: list[Write | Delete] = [
        Delete(tables.dataset_versions(name), r.sk, r.rev) for r in records
    ]
    if len(records) == len(remaining):
        writes.append(Delete(tables.DATASETS, name, head.rev))
    else:
        latest = max(r.item["version"] for r in remaining if r not in records)
        writes.append(
            Write(
                tables.DATASETS,
                name,
                {
                    **head.item,
                    "latest_version": latest,
                    "last_version": _last_version(head.item),
                    "updated_at": now_iso(),
                },
                head.rev,
            )
        )
    try:
        ports.metadata.put_many(writes)
    except ConditionFailedError:
        raise ConflictError(f"dataset {name!r} changed meanwhile; try again") from None
    for r in records:
        ports.store.delete_prefix(r.item.get("folder") or r.item["key"].rsplit("/", 1)[0])
        if ports.catalog is not None:
            ports.catalog.unregister(name, int(r.item["version"]))
    return {"name": name, "deleted_versions": sorted(r.item["version"] for r in records)}


def _last_version(head: dict[str, Any]) -> int:
    """The highest version number ever given to the dataset (deleted ones included)."""
    return max(int(head["latest_version"]), int(head.get("last_version", 0)))


def summary(record: dict[str, Any]) -> dict[str, Any]:
    out = {
        "name": record["name"],
        "version": record["version"],
        "status": record["status"],
        "rows": record["rows"],
        "columns": record["columns"] if "columns" in record else len(record["schema"]),
        "created_at": record["created_at"],
    }
    if "contract" in record:
        out["quarantined_rows"] = record["contract"]["quarantined_rows"]
    return out


def quarantine(ports: Ports, name: str, version: int) -> bytes:
    """The rows of a version that broke its contract, as Parquet."""
    record = get_version(ports, name, version)
    key = record.get("quarantine_key")
    if not key:
        raise NotFoundError(f"dataset {name!r} v{version} has no quarantined rows")
    return ports.store.get_bytes(key)


def get_version(ports: Ports, name: str, version: int | None = None) -> dict[str, Any]:
    if version is None:
        head = ports.metadata.get(tables.DATASETS, name)
        if head is None:
            raise NotFoundError(f"dataset {name!r} not found")
        version = int(head.item["latest_version"])
    rec = ports.metadata.get(tables.dataset_versions(name), tables.version_sk(version))
    if rec is None:
        raise NotFoundError(f"dataset {name!r} has no version {version}")
    return offload.hydrate(ports.store, rec.item, "schema")


def describe(ports: Ports, name: str) -> dict[str, Any]:
    head = ports.metadata.get(tables.DATASETS, name)
    if head is None:
        raise NotFoundError(f"dataset {name!r} not found")
    versions = [summary(r.item) for r in ports.metadata.query(tables.dataset_versions(name))]
    shown = {k: v for k, v in head.item.items() if k != "last_version"}
    return {**shown, "versions": versions}


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.item.items() if k != "last_version"}
        for r in ports.metadata.query(tables.DATASETS)
    ]


def load_frame(ports: Ports, key: str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(ports.store.get_bytes(key)))


# --- versions written by the service (batch predictions) -----------------------------------


def profile_parquet(path: Path) -> dict[str, Any]:
    """``profile`` of a Parquet file read one column at a time: memory holds one column, not
    the table (the scored output of a batch prediction can be larger than memory allows)."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    columns = []
    for name in source.schema_arrow.names:
        frame = source.read(columns=[name]).to_pandas()
        columns.extend(profile(frame)["columns"])
    return {"rows": int(source.metadata.num_rows), "columns": columns}


def store_parquet_version(
    ports: Ports, name: str, path: Path, source: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """A new version of ``name`` from a Parquet file the service wrote (not user input: it
    is profiled, not re-parsed). Idempotent per ``run_id``: a retried step gets the version
    its first attempt recorded."""
    import pyarrow.parquet as pq

    stats = profile_parquet(path)
    profile_bytes = json.dumps(stats, allow_nan=False).encode()
    size = path.stat().st_size
    written: list[str] = []

    def attempt() -> dict[str, Any]:
        claim = ports.metadata.get(tables.dataset_runs(name), run_id)
        if claim is not None:
            return get_version(ports, name, int(claim.item["version"]))
        head = ports.metadata.get(tables.DATASETS, name)
        # Never a deleted version's number again (as for every other version).
        version = (_last_version(head.item) if head else 0) + 1
        folder = f"datasets/{name}/{tables.version_sk(version)}/{uuid.uuid4().hex[:12]}"
        written.append(folder)
        key = f"{folder}/data/data.parquet"
        ports.store.put_file(key, path)
        ports.store.put_bytes(f"{folder}/profile.json", profile_bytes)
        now = now_iso()
        record = {
            "name": name,
            "version": version,
            "status": "READY",
            "format": "parquet",
            "source": source,
            "key": key,
            "folder": folder,
            "profile_key": f"{folder}/profile.json",
            "uri": ports.store.uri(key),
            "rows": stats["rows"],
            "columns": len(stats["columns"]),
            "schema": [{"name": c["name"], "type": c["type"]} for c in stats["columns"]],
            "bytes": size,
            "created_at": now,
        }
        record = offload.offload(ports.store, record, "schema", f"{folder}/schema.json")
        head_item = {
            "name": name,
            "latest_version": version,
            "last_version": version,
            "created_at": head.item["created_at"] if head else now,
            "updated_at": now,
        }
        if head is not None and head.item.get("contract"):  # the dataset's contract stays
            head_item["contract"] = head.item["contract"]
        ports.metadata.put_many(
            [
                Write(tables.dataset_versions(name), tables.version_sk(version), record, 0),
                Write(tables.DATASETS, name, head_item, head.rev if head else 0),
                Write(tables.dataset_runs(name), run_id, {"version": version}, 0),
            ]
        )
        written.pop()
        return record

    try:
        record: dict[str, Any] = offload.hydrate(
            ports.store, concurrency.retry(attempt, what=f"dataset {name!r}"), "schema"
        )
    finally:
        for folder in written:
            ports.store.delete_prefix(folder)
    if ports.catalog is not None:
        columns = {f.name: str(f.type) for f in pq.read_schema(path)}
        location = ports.store.uri(record["key"].rsplit("/", 1)[0])
        try:
            ports.catalog.register(name, record["version"], location, columns)
        except Exception:
            log.exception("could not catalog dataset %s v%s", name, record["version"])
    return record
