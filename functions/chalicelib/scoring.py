"""The MLflow scoring protocol, parsed and checked against a model's signature.

Pure Python (no pandas): this runs in the API Lambda on every prediction. The result is one
canonical ``dataframe_split`` body, which the model's own ``inference.input_fn`` also accepts.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from chalicelib.errors import BadRequestError, UnsupportedMediaTypeError

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_ROWS = 10_000


def _rows_from_json(payload: Any, columns: list[str]) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise BadRequestError(f"the JSON body must be an object with one of: {', '.join(FORMATS)}")
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        raise BadRequestError(
            f"the JSON body must have exactly one of {', '.join(FORMATS)}; found "
            + (", ".join(keys) if keys else "none")
        )
    key = keys[0]
    data = payload[key]
    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BadRequestError('dataframe_split needs {"columns": [...], "data": [[...]]}')
        cols = data.get("columns", columns)
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise BadRequestError("dataframe_split.columns must be a list of column names")
        return [_zip_row(cols, row, i) for i, row in enumerate(data["data"])]
    if key == "inputs" and isinstance(data, dict):
        lists = list(data.values())
        if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) > 1:
            raise BadRequestError(
                "inputs as an object must map each column to a list of equal length"
            )
        n = len(lists[0]) if lists else 0
        return [{c: data[c][i] for c in data} for i in range(n)]
    if not isinstance(data, list):
        raise BadRequestError(f"{key} must be a list of rows")
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(data):
        if isinstance(row, dict):
            rows.append(row)
        elif isinstance(row, list) and key != "dataframe_records":
            rows.append(_zip_row(columns, row, i))
        else:
            raise BadRequestError(f"{key}[{i}] must be an object of column -> value")
    return rows


def _zip_row(columns: list[str], row: Any, i: int) -> dict[str, Any]:
    if not isinstance(row, list) or len(row) != len(columns):
        raise BadRequestError(f"row {i} must be a list of {len(columns)} values")
    return dict(zip(columns, row, strict=True))


def _rows_from_csv(text: str) -> list[dict[str, Any]]:
    # newline="" is what the csv module expects: quoted fields may hold line breaks.
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        if header is None:
            raise BadRequestError("the CSV body is empty; a header row is required")
        for i, values in enumerate(reader):
            if not values:
                continue
            if len(values) != len(header):
                raise BadRequestError(
                    f"CSV row {i + 1} has {len(values)} fields, expected {len(header)}"
                )
            rows.append({h: (v if v != "" else None) for h, v in zip(header, values, strict=True)})
    except csv.Error as exc:
        raise BadRequestError(f"malformed CSV: {exc}") from None
    return rows


def _coerce(value: Any, kind: str, column: str, i: int, from_text: bool) -> Any:
    if value is None:
        return None
    if from_text and isinstance(value, str):
        try:
            if kind == "integer":
                number = float(value)
                return int(number) if number.is_integer() else number
            if kind == "number":
                return float(value)
            if kind == "boolean":
                lowered = value.strip().lower()
                if lowered in ("true", "1"):
                    return True
                if lowered in ("false", "0"):
                    return False
                raise ValueError(value)
        except ValueError:
            raise BadRequestError(
                f"row {i}: column {column!r} expects {kind}, got {value!r}"
            ) from None
        return value
    ok = (
        (kind in ("integer", "number") and isinstance(value, int | float)
         and not isinstance(value, bool))
        or (kind == "boolean" and isinstance(value, bool))
        or (kind not in ("integer", "number", "boolean") and isinstance(value, str))
    )  # fmt: skip
    if not ok:
        raise BadRequestError(
            f"row {i}: column {column!r} expects {kind}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequestError(f"row {i}: column {column!r} must be a finite number")
    return value


def parse(body: bytes, content_type: str, signature: list[dict[str, str]]) -> dict[str, Any]:
    """A request body -> canonical ``{"dataframe_split": {"columns", "data"}}``, or a 4xx."""
    columns = [c["name"] for c in signature]
    kinds = {c["name"]: c["type"] for c in signature}
    media = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("the body is not valid UTF-8") from None
    if media == "application/json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc.msg}") from None
        rows, from_text = _rows_from_json(payload, columns), False
    elif media == "text/csv":
        rows, from_text = _rows_from_csv(text), True
    else:
        raise UnsupportedMediaTypeError(
            f"content type {media!r} is not supported; use application/json or text/csv"
        )
    if not rows:
        raise BadRequestError("the request has no rows")
    if len(rows) > MAX_ROWS:
        raise BadRequestError(f"at most {MAX_ROWS} rows per request; send a batch job instead")
    data = []
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise BadRequestError(f"row {i} is missing columns: {missing}")
        data.append([_coerce(row[c], kinds[c], c, i, from_text) for c in columns])
    return {"dataframe_split": {"columns": columns, "data": data}}
