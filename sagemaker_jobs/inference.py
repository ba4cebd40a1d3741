"""Serving hooks for models written by train.py (MLflow scoring protocol).

Used in two places, unchanged:

* the prebuilt SageMaker scikit-learn serving container: train.py copies this file into the
  model artifact as ``code/inference.py``; set ``SAGEMAKER_PROGRAM=inference.py``. The container
  calls ``model_fn(model_dir)`` once, then ``input_fn(body, content_type)``,
  ``predict_fn(data, model)`` and ``output_fn(prediction, accept)`` per request;
* in-process by the local endpoint server, which should pass the loaded model as the third
  argument of ``input_fn`` (the container cannot, see ``input_fn``).

Requests (``application/json``) carry exactly one of ``dataframe_split``,
``dataframe_records``, ``instances`` or ``inputs``; ``text/csv`` needs a header row. Every
request is checked against the training signature in metadata.json: missing columns and
values of the wrong type raise ValueError with the column and row, extra columns are dropped,
null values are allowed (the pipeline imputes them).

Only the standard library, numpy, pandas and joblib (plus scikit-learn for unpickling) are
imported so the file can be shipped on its own.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
SUPPORTED_FORMAT_VERSION = 1

# Marks a frame built for one signature so predict_fn does not validate it a second time.
_CONFORMED_ATTR = "mlpipe_signature"
# MLflow allows inference parameters next to the data; these models take none.
_IGNORED_KEYS = frozenset({"params"})
_ACCEPT_JSON = frozenset({"application/json", "application/*", "*/*", "*"})
_BOOLEAN_TEXT = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}

Columns = dict[str, Sequence[Any]]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _wrong_type(name: str, row: int, expected: str, value: Any) -> ValueError:
    return ValueError(f"column {name!r}, row {row}: expected {expected}, got {_describe(value)}")


def _float_values(name: str, values: Sequence[Any], expected: str) -> np.ndarray:
    """Per-value conversion; only reached when the vectorised one failed, to name the row."""
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        if _is_missing(value):
            out[row] = np.nan
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, str, np.integer, np.floating)
        ):
            raise _wrong_type(name, row, expected, value)
        try:
            out[row] = float(value)
        except (TypeError, ValueError, OverflowError):
            raise _wrong_type(name, row, expected, value) from None
    return out


def _numeric_column(name: str, values: Sequence[Any], integral: bool) -> np.ndarray:
    expected = "an integer" if integral else "a number"
    converted: np.ndarray | None = None
    # numpy would silently read True as 1.0; a boolean sent for a number is a client bug.
    if not any(isinstance(value, (bool, np.bool_)) for value in values):
        try:
            converted = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            converted = None
        if converted is not None and converted.ndim != 1:
            converted = None
    if converted is None:
        converted = _float_values(name, values, expected)
    infinite = np.isinf(converted)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise _wrong_type(name, row, f"{expected} (finite)", values[row])
    if integral:
        fractional = ~np.isnan(converted) & (converted != np.trunc(converted))
        if fractional.any():
            row = int(np.argmax(fractional))
            raise _wrong_type(name, row, expected, values[row])
    return converted


def _number_column(name: str, values: Sequence[Any]) -> np.ndarray:
    return _numeric_column(name, values, integral=False)


def _integer_column(name: str, values: Sequence[Any]) -> np.ndarray:
    return _numeric_column(name, values, integral=True)


def _boolean_column(name: str, values: Sequence[Any]) -> np.ndarray:
    # Booleans were fitted as 1.0/0.0 (train.py), so that is what the pipeline gets here too.
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)):
            out[row] = 1.0 if value else 0.0
        elif _is_missing(value):
            out[row] = np.nan
        elif isinstance(value, str):
            parsed = _BOOLEAN_TEXT.get(value.strip().lower())
            if parsed is None:
                raise _wrong_type(name, row, "a boolean", value)
            out[row] = parsed
        elif isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
            out[row] = float(value)
        else:
            raise _wrong_type(name, row, "a boolean", value)
    return out


def _string_column(name: str, values: Sequence[Any]) -> np.ndarray:
    if all(type(value) is str for value in values):
        return np.array(values, dtype=object)
    out = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        if isinstance(value, str):
            out[row] = value
        elif _is_missing(value):
            # The imputer was fitted with NaN as the missing marker, not None.
            out[row] = np.nan
        else:
            raise _wrong_type(name, row, "a string", value)
    return out


_CONVERTERS: dict[str, Callable[[str, Sequence[Any]], np.ndarray]] = {
    "number": _number_column,
    "integer": _integer_column,
    "boolean": _boolean_column,
    "string": _string_column,
}


class Signature:
    """The model's input columns (training order) and their types, ready for fast checks."""

    __slots__ = ("_converters", "_names", "columns", "token", "types")

    def __init__(self, inputs: Sequence[Mapping[str, str]]) -> None:
        columns: list[str] = []
        types: list[str] = []
        for field in inputs:
            name, kind = field["name"], field["type"]
            if kind not in _CONVERTERS:
                raise ValueError(f"unknown type {kind!r} for column {name!r} in the signature")
            columns.append(name)
            types.append(kind)
        self.columns: tuple[str, ...] = tuple(columns)
        self.types: tuple[str, ...] = tuple(types)
        self._names = frozenset(columns)
        self._converters = tuple(_CONVERTERS[kind] for kind in types)
        self.token = json.dumps([columns, types])

    @classmethod
    def of(cls, signature: Signature | Sequence[Mapping[str, str]]) -> Signature:
        return signature if isinstance(signature, Signature) else cls(signature)

    def build(self, data: Mapping[str, Sequence[Any]], n_rows: int) -> pd.DataFrame:
        """Validate column-oriented values and build the frame the pipeline expects."""
        if n_rows == 0:
            raise ValueError("the request contains no rows")
        missing = [name for name in self.columns if name not in data]
        if missing:
            raise ValueError(
                f"missing required column(s): {', '.join(map(repr, missing))}; "
                f"the model expects {', '.join(map(repr, self.columns))}"
            )
        arrays = {
            name: convert(name, data[name])
            for name, convert in zip(self.columns, self._converters, strict=True)
        }
        frame = pd.DataFrame(arrays)
        frame.attrs[_CONFORMED_ATTR] = self.token
        return frame

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Validate a frame built elsewhere (e.g. by a caller skipping input_fn)."""
        if not frame.columns.is_unique:
            raise ValueError("the input has duplicate column names")
        kinds = dict(zip(self.columns, self.types, strict=True))
        data: dict[str, Sequence[Any]] = {}
        for name in frame.columns:
            if name not in self._names:
                continue
            values = frame[name].tolist()
            if kinds[name] == "string":
                # A typed frame (category, datetime, ...) is text the way train.py made it so,
                # unlike JSON where a number in a text column is a client error.
                values = [
                    value if isinstance(value, str) or _is_missing(value) else str(value)
                    for value in values
                ]
            data[name] = values
        return self.build(data, len(frame))


def to_frame(
    rows: Sequence[Mapping[str, Any]], signature: Signature | Sequence[Mapping[str, str]]
) -> pd.DataFrame:
    """Records (one dict per row) -> validated DataFrame in signature order."""
    sig = Signature.of(signature)
    data, n_rows = _from_records(list(rows), sig, "rows")
    return sig.build(data, n_rows)


class LoadedModel:
    """What model_fn returns: the fitted pipeline plus what is needed to check requests."""

    __slots__ = ("classes", "metadata", "pipeline", "signature", "task")

    def __init__(self, pipeline: Any, metadata: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.metadata = metadata
        self.signature = Signature(metadata["signature"]["inputs"])
        self.task: str = metadata["task"]
        self.classes: list[Any] | None = metadata.get("classes")


# The container's input_fn(body, content_type) has no model argument, so the signature of
# the model loaded in this process is remembered here. One model per serving process holds for
# single-model endpoints and for multi-model endpoints (one worker process per model).
_current_model: LoadedModel | None = None


def model_fn(model_dir: str) -> LoadedModel:
    """Load model.joblib and metadata.json from ``model_dir``."""
    global _current_model
    directory = Path(model_dir)
    metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    version = metadata.get("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise ValueError(f"unsupported metadata format_version {version!r}")
    pipeline = joblib.load(directory / "model.joblib")
    trained_with = metadata.get("sklearn_version")
    if trained_with and trained_with != sklearn.__version__:
        # Pickles are only guaranteed to work with the version that wrote them.
        print(
            f"warning: model trained with scikit-learn {trained_with}, "
            f"serving with {sklearn.__version__}",
            file=sys.stderr,
        )
    model = LoadedModel(pipeline, metadata)
    _current_model = model
    return model


def _media_type(content_type: str | None) -> str:
    if not content_type:
        # SageMaker's own default when the client sends no Content-Type.
        return JSON_CONTENT_TYPE
    return content_type.split(";", 1)[0].strip().lower()


def _decode(body: bytes | bytearray | memoryview | str) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the request body is not valid UTF-8: {exc}") from None
    raise ValueError(f"unsupported request body type {type(body).__name__}")


def _positional(rows: list[Any], signature: Signature | None, where: str) -> tuple[Columns, int]:
    if signature is None:
        raise ValueError(f"{where}: rows without column names need a loaded model signature")
    return _named_rows(list(signature.columns), rows, where)


def _named_rows(names: list[str], rows: list[Any], where: str) -> tuple[Columns, int]:
    width = len(names)
    for row, values in enumerate(rows):
        if not isinstance(values, list) or len(values) != width:
            raise ValueError(
                f"{where}: row {row} must be a list of {width} values "
                f"(columns {', '.join(map(repr, names))})"
            )
    if not rows:
        return {}, 0
    return dict(zip(names, zip(*rows, strict=True), strict=True)), len(rows)


def _from_records(
    records: list[Any], signature: Signature | None, where: str
) -> tuple[Columns, int]:
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: row {row} must be an object of column: value")
    present: set[str] = set().union(*records) if records else set()
    wanted = present if signature is None else [c for c in signature.columns if c in present]
    # A key absent from one record is a null there; absent from all, it is a missing column.
    return {name: [record.get(name) for record in records] for name in wanted}, len(records)


def _from_split(value: Any, signature: Signature | None) -> tuple[Columns, int]:
    where = "dataframe_split"
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise ValueError(f'{where} must be an object with "columns" and "data" (a list of rows)')
    rows: list[Any] = value["data"]
    names = value.get("columns")
    if names is None:
        return _positional(rows, signature, where)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f'{where}: "columns" must be a list of column names')
    if len(set(names)) != len(names):
        raise ValueError(f'{where}: "columns" contains duplicate names')
    return _named_rows(names, rows, where)


def _from_rows(value: Any, signature: Signature | None, where: str) -> tuple[Columns, int]:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of rows")
    if not value:
        return {}, 0
    if all(isinstance(item, dict) for item in value):
        return _from_records(value, signature, where)
    if all(isinstance(item, list) for item in value):
        return _positional(value, signature, where)
    if (
        signature is not None
        and len(signature.columns) == 1
        and not any(isinstance(item, (dict, list)) for item in value)
    ):
        return {signature.columns[0]: value}, len(value)
    raise ValueError(f"{where} must be a list of objects or a list of lists")


def _from_inputs(value: Any, signature: Signature | None) -> tuple[Columns, int]:
    if isinstance(value, list):
        return _from_rows(value, signature, "inputs")
    if not isinstance(value, dict):
        raise ValueError("inputs must be an object of column: values or a list of rows")
    if all(isinstance(column, list) for column in value.values()):
        lengths = {len(column) for column in value.values()}
        if len(lengths) > 1:
            raise ValueError("inputs: all columns must have the same number of values")
        return dict(value), lengths.pop() if lengths else 0
    if not any(isinstance(column, (list, dict)) for column in value.values()):
        return {name: [scalar] for name, scalar in value.items()}, 1
    raise ValueError("inputs: give every column a list of values (or every column one value)")


def _parse_json(text: str, signature: Signature | None) -> tuple[Columns, int]:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"the JSON request must be an object with one of the keys {FORMATS}")
    found = [key for key in FORMATS if key in payload]
    if len(found) != 1:
        detail = "none" if not found else ", ".join(found)
        raise ValueError(f"the JSON request must have exactly one of {FORMATS}; found: {detail}")
    unexpected = [key for key in payload if key not in FORMATS and key not in _IGNORED_KEYS]
    if unexpected:
        raise ValueError(f"unexpected key(s) in the JSON request: {', '.join(unexpected)}")
    key = found[0]
    value = payload[key]
    if key == "dataframe_split":
        return _from_split(value, signature)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise ValueError("dataframe_records must be a list of objects")
        return _from_records(value, signature, key)
    if key == "instances":
        return _from_rows(value, signature, key)
    return _from_inputs(value, signature)


def _parse_csv(text: str) -> tuple[Columns, int]:
    try:
        lines = [line for line in csv.reader(io.StringIO(text)) if line]
    except csv.Error as exc:
        raise ValueError(f"the request body is not valid CSV: {exc}") from None
    if not lines:
        raise ValueError("the CSV request is empty; it needs a header row of column names")
    header, rows = lines[0], lines[1:]
    if len(set(header)) != len(header):
        raise ValueError("the CSV header contains duplicate column names")
    width = len(header)
    for row, values in enumerate(rows):
        if len(values) != width:
            raise ValueError(f"CSV data row {row} has {len(values)} fields, the header {width}")
    if not rows:
        return {}, 0
    # An empty field is a missing value; the signature converters parse the text.
    columns = zip(*rows, strict=True)
    return {
        name: [field if field != "" else None for field in column]
        for name, column in zip(header, columns, strict=True)
    }, len(rows)


def input_fn(
    request_body: bytes | bytearray | str,
    content_type: str | None,
    model: LoadedModel | None = None,
) -> pd.DataFrame:
    """Deserialize a request into a validated DataFrame in signature order.

    ``model`` defaults to the model most recently loaded by model_fn in this process (the
    SageMaker container never passes one). Raises ValueError describing what is wrong.
    """
    loaded = model if model is not None else _current_model
    signature = loaded.signature if loaded is not None else None
    media = _media_type(content_type)
    if media == JSON_CONTENT_TYPE:
        data, n_rows = _parse_json(_decode(request_body), signature)
    elif media == CSV_CONTENT_TYPE:
        data, n_rows = _parse_csv(_decode(request_body))
    else:
        raise ValueError(
            f"unsupported content type {content_type!r}; send {JSON_CONTENT_TYPE} or "
            f"{CSV_CONTENT_TYPE}"
        )
    if signature is None:
        if n_rows == 0:
            raise ValueError("the request contains no rows")
        # Without a model to check against, predict_fn validates the frame instead.
        return pd.DataFrame({name: list(values) for name, values in data.items()})
    return signature.build(data, n_rows)


def _plain(values: np.ndarray) -> list[Any]:
    items: list[Any] = values.tolist()
    if values.dtype == object:
        # Object arrays keep numpy scalars that json cannot serialize.
        return [item.item() if isinstance(item, np.generic) else item for item in items]
    return items


def predict_fn(data: pd.DataFrame, model: LoadedModel) -> list[Any]:
    """Predictions as plain Python values (original class labels for classification)."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"predict_fn expects a pandas DataFrame, got {type(data).__name__}")
    if data.attrs.get(_CONFORMED_ATTR) != model.signature.token:
        data = model.signature.conform(data)
    return _plain(np.asarray(model.pipeline.predict(data)))


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    return any(part.split(";", 1)[0].strip().lower() in _ACCEPT_JSON for part in accept.split(","))


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def output_fn(prediction: Any, accept: str | None = JSON_CONTENT_TYPE) -> tuple[str, str]:
    """Serialize to ``{"predictions": [...]}`` and return ``(body, "application/json")``.

    A (body, content type) tuple rather than a bare body: both serving stacks of the SageMaker
    scikit-learn container turn a tuple into a response with that content type, whereas a bare
    str is sent as text/html by the single-model (Flask) server. Callers wanting only the body
    take element 0.
    """
    if not _accepts_json(accept):
        raise ValueError(f"unsupported Accept {accept!r}; responses are {JSON_CONTENT_TYPE}")
    if isinstance(prediction, np.ndarray):
        prediction = _plain(prediction)
    try:
        body = json.dumps({"predictions": prediction}, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # NaN/inf are not JSON; null is what clients can parse.
        cleaned = _finite_or_none(prediction)
        body = json.dumps({"predictions": cleaned}, separators=(",", ":"))
    return body, JSON_CONTENT_TYPE
