"""The MLflow scoring protocol (and Vertex AI's ``instances``), parsed and checked against a
model's signature. Standard library only; the API, the inference hooks and the model server
all parse requests here, so a body is accepted or refused with the same words everywhere.

Accepted bodies:

- ``application/json`` with exactly one of ``dataframe_split`` (``{"columns"?, "data",
  "index"?}``), ``dataframe_records`` (a list of objects), ``instances`` (a list of objects, a
  list of positional lists, or of scalars for a one-column model) or ``inputs`` (the same as
  ``instances``, or an object of column -> list of values, or column -> one value for a single
  row). ``params`` (MLflow) and ``parameters`` (Vertex AI) may sit beside it and are ignored.
- ``text/csv`` with a header row.

Values, per signature type (JSON; CSV cells are text and parsed):

- ``number``/``integer``: a JSON number (not a boolean) that is finite and within the float32
  range (tree models and ONNX compute in float32); ``integer`` also needs a whole number.
  ``null`` and ``NaN`` (which MLflow's own client writes for missing values) are missing.
- ``boolean``: ``true``/``false`` (CSV: true/false/1/0, any case).
- ``string``: a JSON string. ``datetime``: an ISO 8601 string.
- Missing values are allowed everywhere (the model imputes them). Columns the model does not
  know are ignored; a column it needs but the request lacks is an error.

The result is column-oriented and typed for the model: numbers and booleans as floats with NaN
for missing, text as ``str`` or ``None``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Final

from mlcontract import columns, jsonlimits

JSON: Final = "application/json"
CSV: Final = "text/csv"
FORMATS: Final = ("dataframe_split", "dataframe_records", "instances", "inputs")
IGNORED_KEYS: Final = frozenset({"params", "parameters"})
MAX_ROWS: Final = 10_000
# float32's largest finite value: beyond it a tree model or ONNX sees infinity.
MAX_ABS: Final = 3.4028234663852886e38
NAN: Final = math.nan

Columns = dict[str, list[Any]]


class RequestError(ValueError):
    """The request is malformed or does not fit the model's signature (HTTP 400)."""

    status = 400


class UnsupportedMediaTypeRequestError(RequestError):
    status = 415


class Signature:
    """A model's input columns, in training order, with their types."""

    __slots__ = ("_known", "columns", "types")

    def __init__(self, inputs: Sequence[Mapping[str, str]]) -> None:
        self.columns: tuple[str, ...] = tuple(f["name"] for f in inputs)
        self.types: tuple[str, ...] = tuple(f["type"] for f in inputs)
        for name, kind in zip(self.columns, self.types, strict=True):
            if kind not in _CONVERTERS:
                raise ValueError(f"unknown type {kind!r} for column {name!r} in the signature")
        self._known = frozenset(self.columns)

    @classmethod
    def of(cls, signature: Signature | Sequence[Mapping[str, str]]) -> Signature:
        return signature if isinstance(signature, Signature) else cls(signature)

    def as_list(self) -> list[dict[str, str]]:
        return [{"name": n, "type": t} for n, t in zip(self.columns, self.types, strict=True)]


class Batch:
    """Validated rows, column-oriented, in signature order."""

    __slots__ = ("columns", "n_rows", "signature")

    def __init__(self, signature: Signature, columns: Columns, n_rows: int) -> None:
        self.signature = signature
        self.columns = columns
        self.n_rows = n_rows

    def rows(self) -> list[list[Any]]:
        cols = [self.columns[name] for name in self.signature.columns]
        return [list(row) for row in zip(*cols, strict=True)]

    def to_split(self) -> dict[str, Any]:
        """The canonical JSON body (``dataframe_split``, JSON-native values, ``null`` for
        missing): what the API forwards to an endpoint, and parses back to this batch."""
        cols = [
            [_json_native(v, kind) for v in self.columns[name]]
            for name, kind in zip(self.signature.columns, self.signature.types, strict=True)
        ]
        data = [list(row) for row in zip(*cols, strict=True)]
        return {"dataframe_split": {"columns": list(self.signature.columns), "data": data}}


def _json_native(value: Any, kind: str) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if kind == "boolean":
        return value == 1.0
    if kind == "integer":
        return int(value)
    return value


# --- values -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(name: str, row: int, expected: str, value: Any) -> RequestError:
    return RequestError(f"row {row}: column {name!r} expects {expected}, got {_show(value)}")


def _number(name: str, row: int, value: Any, integral: bool, text: bool) -> float:
    if value is None:
        return NAN
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _bad(name, row, "an integer" if integral else "a number", value)
    if isinstance(value, float):
        number = float(value)
    elif isinstance(value, numbers.Integral):
        as_int = int(value)
        number = float(as_int) if -MAX_ABS <= as_int <= MAX_ABS else math.inf
    elif isinstance(value, numbers.Real):  # e.g. numpy's float32 from a typed frame
        number = float(value)
    elif text and isinstance(value, str):
        stripped = value.strip()
        if stripped == "":
            return NAN
        try:
            number = float(stripped)
        except ValueError:
            raise _bad(name, row, "an integer" if integral else "a number", value) from None
    else:
        raise _bad(name, row, "an integer" if integral else "a number", value)
    if number != number:  # NaN: MLflow's client writes missing values this way
        return NAN
    if not -MAX_ABS <= number <= MAX_ABS:
        raise RequestError(
            f"row {row}: column {name!r} must be a finite number within ±3.4e38, got {_show(value)}"
        )
    if integral and not number.is_integer():
        raise _bad(name, row, "an integer", value)
    return number


def _to_number(name: str, row: int, value: Any, text: bool) -> float:
    return _number(name, row, value, False, text)


def _to_integer(name: str, row: int, value: Any, text: bool) -> float:
    return _number(name, row, value, True, text)


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def _to_boolean(name: str, row: int, value: Any, text: bool) -> float:
    if value is None:
        return NAN
    if value is True or (type(value).__name__ == "bool_" and value):
        return 1.0
    if value is False or type(value).__name__ == "bool_":
        return 0.0
    if text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return 1.0
        if lowered in _FALSE:
            return 0.0
        if lowered == "":
            return NAN
    if isinstance(value, float) and value != value:
        return NAN
    raise _bad(name, row, "a boolean", value)


def _to_string(name: str, row: int, value: Any, text: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if not (text and value == "") else None
    if isinstance(value, float) and value != value:
        return None
    raise _bad(name, row, "a string", value)


def _to_datetime(name: str, row: int, value: Any, text: bool) -> str | None:
    parsed = _to_string(name, row, value, text)
    if parsed is None:
        return None
    if columns.parse_iso_datetime(parsed) is None:
        raise _bad(name, row, "an ISO 8601 date or time", value)
    return parsed


_CONVERTERS: Final = {
    "number": _to_number,
    "integer": _to_integer,
    "boolean": _to_boolean,
    "string": _to_string,
    "datetime": _to_datetime,
}


# --- shapes -------------------------------------------------------------------------------


def _records(records: list[Any], where: str) -> tuple[Columns, int]:
    present: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"{where}[{i}] must be an object of column: value")
        present.update(dict.fromkeys(record))
    # A key absent from one record is a missing value there.
    return {name: [r.get(name) for r in records] for name in present}, len(records)


def _positional(names: Sequence[str], rows: list[Any], where: str) -> tuple[Columns, int]:
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise RequestError(
                f"{where}: row {i} must be a list of {width} values "
                f"(columns {', '.join(map(repr, names))})"
            )
    if not rows:
        return {}, 0
    return {n: list(v) for n, v in zip(names, zip(*rows, strict=True), strict=True)}, len(rows)


def _split(value: Any, signature: Signature) -> tuple[Columns, int]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise RequestError('dataframe_split needs {"columns": [...], "data": [[...], ...]}')
    names = value.get("columns")
    if names is None:
        names = list(signature.columns)
    elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError("dataframe_split.columns must be a list of column names")
    elif len(set(names)) != len(names):
        raise RequestError("dataframe_split.columns has duplicate names")
    return _positional(names, value["data"], "dataframe_split")


def _rows(value: Any, signature: Signature, where: str) -> tuple[Columns, int]:
    if not isinstance(value, list):
        raise RequestError(f"{where} must be a list of rows")
    if not value:
        return {}, 0
    first = value[0]
    if isinstance(first, dict):
        return _records(value, where)
    if isinstance(first, list):
        return _positional(signature.columns, value, where)
    if len(signature.columns) == 1 and not any(isinstance(v, dict | list) for v in value):
        return {signature.columns[0]: list(value)}, len(value)
    raise RequestError(f"{where} must be a list of objects or a list of lists")


def _inputs(value: Any, signature: Signature) -> tuple[Columns, int]:
    if isinstance(value, list):
        return _rows(value, signature, "inputs")
    if not isinstance(value, dict):
        raise RequestError("inputs must be an object of column -> values, or a list of rows")
    columns = list(value.values())
    if columns and all(isinstance(c, list) for c in columns):
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise RequestError("inputs: every column must have the same number of values")
        return {k: list(v) for k, v in value.items()}, lengths.pop()
    if not any(isinstance(c, list | dict) for c in columns):
        return {k: [v] for k, v in value.items()}, 1 if value else 0
    raise RequestError("inputs: give every column a list of values (or every column one value)")


def _from_json(text: str | bytes, signature: Signature) -> tuple[Columns, int]:
    if jsonlimits.too_deep(text):  # before json.loads recurses into it
        raise RequestError(
            f"the JSON body is nested too deeply (more than {jsonlimits.MAX_DEPTH} levels)"
        )
    try:
        payload = json.loads(text)
    except RecursionError:
        raise RequestError("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError("the JSON body must be an object with one of: " + ", ".join(FORMATS))
    found = [k for k in FORMATS if k in payload]
    if len(found) != 1:
        raise RequestError(
            f"the JSON body must have exactly one of {', '.join(FORMATS)}; found "
            + (", ".join(found) if found else "none")
        )
    unexpected = [k for k in payload if k not in FORMATS and k not in IGNORED_KEYS]
    if unexpected:
        raise RequestError(
            "unexpected key(s) in the JSON body: " + ", ".join(map(repr, unexpected))
        )
    key = found[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value, signature)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise RequestError("dataframe_records must be a list of objects")
        return _records(value, key)
    if key == "instances":
        return _rows(value, signature, key)
    return _inputs(value, signature)


def _from_csv(text: str) -> tuple[Columns, int]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise RequestError("the CSV body is empty; a header row is required")
        if len(set(header)) != len(header):
            raise RequestError("the CSV header has duplicate column names")
        rows = []
        for i, values in enumerate(reader):
            if not values:
                continue
            if len(values) != len(header):
                raise RequestError(
                    f"CSV row {i + 1} has {len(values)} fields, the header {len(header)}"
                )
            rows.append(values)
    except csv.Error as exc:
        raise RequestError(f"malformed CSV: {exc}") from None
    return _positional(header, rows, "CSV") if rows else ({}, 0)


def media_type(content_type: str | None) -> str:
    # SageMaker's default when a client sends no Content-Type is JSON.
    return (content_type or JSON).split(";", 1)[0].strip().lower() or JSON


def parse(
    body: bytes | bytearray | str,
    content_type: str | None,
    signature: Signature | Sequence[Mapping[str, str]],
    *,
    max_rows: int | None = MAX_ROWS,
) -> Batch:
    """A request body -> validated, typed columns in signature order; or ``RequestError``."""
    sig = Signature.of(signature)
    media = media_type(content_type)
    if media not in (JSON, CSV):
        raise UnsupportedMediaTypeRequestError(
            f"content type {media!r} is not supported; send {JSON} or {CSV}"
        )
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RequestError("the body is not valid UTF-8") from None
    else:
        text = body
    columns, n_rows = _from_json(text, sig) if media == JSON else _from_csv(text)
    return conform(sig, columns, n_rows, from_text=media == CSV, max_rows=max_rows)


def conform(
    signature: Signature,
    columns: Mapping[str, Sequence[Any]],
    n_rows: int,
    *,
    from_text: bool = False,
    max_rows: int | None = MAX_ROWS,
) -> Batch:
    """Check column-oriented values against the signature and type them."""
    if n_rows == 0:
        raise RequestError("the request has no rows")
    if max_rows is not None and n_rows > max_rows:
        raise RequestError(
            f"at most {max_rows} rows per request; score larger data with a batch prediction"
        )
    missing = [name for name in signature.columns if name not in columns]
    if missing:
        raise RequestError(
            f"missing column(s) {', '.join(map(repr, missing))}; the model expects "
            + ", ".join(map(repr, signature.columns))
        )
    out: Columns = {}
    for name, kind in zip(signature.columns, signature.types, strict=True):
        convert = _CONVERTERS[kind]
        values = columns[name]
        out[name] = [convert(name, i, v, from_text) for i, v in enumerate(values)]
    return Batch(signature, out, n_rows)
