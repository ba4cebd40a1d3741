"""Serving hooks for models written by train.py (MLflow scoring protocol).

Used unchanged by:

* the prebuilt SageMaker scikit-learn serving container: train.py copies this file (with the
  ``mlcontract`` package beside it) into the model artefact as ``code/``; set
  ``SAGEMAKER_PROGRAM=inference.py``. The container calls ``model_fn(model_dir)`` once, then
  ``input_fn(body, content_type)``, ``predict_fn(data, model)`` and ``output_fn(prediction,
  accept)`` per request;
* our own model server (``modelserver.py``), which loads the model through ``model_fn``.

Requests are parsed and checked against the training signature by ``mlcontract.scoring``, the
same parser the API uses, so a body gets the same answer everywhere. A bad request raises
``ValueError`` (``mlcontract.scoring.RequestError``) naming the column and row.

Only the standard library, numpy, pandas, joblib and scikit-learn (for unpickling) are
imported, so ``code/`` serves on its own.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

# The SageMaker container puts code/ on sys.path; a bare import of this file may not.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mlcontract import archive, scoring  # noqa: E402

JSON_CONTENT_TYPE = scoring.JSON
CSV_CONTENT_TYPE = scoring.CSV
SUPPORTED_FORMAT_VERSION = 1
_ACCEPT_JSON = frozenset({"application/json", "application/*", "*/*", "*"})
_NUMERIC = frozenset({"number", "integer", "boolean"})


class LoadedModel:
    """What model_fn returns: the fitted pipeline plus what is needed to check requests."""

    __slots__ = ("classes", "metadata", "pipeline", "signature", "task")

    def __init__(self, pipeline: Any, metadata: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.metadata = metadata
        self.signature = scoring.Signature(metadata["signature"]["inputs"])
        self.task: str = metadata["task"]
        self.classes: list[Any] | None = metadata.get("classes")


# The container's input_fn(body, content_type) has no model argument, so the signature of
# the model loaded in this process is remembered here (one model per serving process).
_current_model: LoadedModel | None = None


def model_fn(model_dir: str) -> LoadedModel:
    """Load model.joblib and metadata.json from ``model_dir``."""
    global _current_model
    directory = Path(model_dir)
    metadata = json.loads((directory / archive.METADATA_FILE).read_text(encoding="utf-8"))
    version = metadata.get("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise ValueError(f"unsupported metadata format_version {version!r}")
    pipeline = joblib.load(directory / archive.MODEL_FILE)
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


def to_frame(batch: scoring.Batch) -> pd.DataFrame:
    """The frame the pipeline was fitted on: float64 for numbers and booleans, object arrays
    with NaN (the imputers' missing marker) for text."""
    arrays: dict[str, Any] = {}
    for name, kind in zip(batch.signature.columns, batch.signature.types, strict=True):
        values = batch.columns[name]
        if kind in _NUMERIC:
            arrays[name] = np.asarray(values, dtype=np.float64)
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = [np.nan if v is None else v for v in values]
            arrays[name] = column
    return pd.DataFrame(arrays, columns=list(batch.signature.columns))


def input_fn(
    request_body: bytes | bytearray | str,
    content_type: str | None,
    model: LoadedModel | None = None,
) -> scoring.Batch:
    """Parse and validate a request against the model's signature."""
    loaded = model if model is not None else _current_model
    if loaded is None:
        raise ValueError("no model is loaded: call model_fn first")
    return scoring.parse(request_body, content_type, loaded.signature)


def _plain(values: np.ndarray) -> list[Any]:
    items: list[Any] = values.tolist()
    if values.dtype == object:
        # Object arrays keep numpy scalars that json cannot serialize.
        return [item.item() if isinstance(item, np.generic) else item for item in items]
    return items


def predict_fn(data: scoring.Batch | pd.DataFrame, model: LoadedModel) -> list[Any]:
    """Predictions as plain Python values (original class labels for classification). A
    DataFrame (a caller skipping input_fn) is checked against the signature first."""
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            raise scoring.RequestError("the input has duplicate column names")
        columns = {str(c): data[c].astype(object).tolist() for c in data.columns}
        data = scoring.conform(model.signature, columns, len(data), max_rows=None)
    if not isinstance(data, scoring.Batch):
        raise ValueError(f"predict_fn expects a parsed request, got {type(data).__name__}")
    return _plain(np.asarray(model.pipeline.predict(to_frame(data))))


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
    str is sent as text/html by the single-model (Flask) server.
    """
    if not _accepts_json(accept):
        raise ValueError(f"unsupported Accept {accept!r}; responses are {JSON_CONTENT_TYPE}")
    if isinstance(prediction, np.ndarray):
        prediction = _plain(prediction)
    try:
        body = json.dumps({"predictions": prediction}, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # NaN/inf are not JSON; null is what clients can parse.
        body = json.dumps({"predictions": _finite_or_none(prediction)}, separators=(",", ":"))
    return body, JSON_CONTENT_TYPE
