"""What the SageMaker job scripts (train.py, evaluate.py) share.

The scripts run as top-level programs with this file next to them: in a training container
from the extracted sourcedir.tar.gz, in a processing container from the code input directory,
and locally as ``python sagemaker_jobs/<script>.py``. So they import it as the sibling module
``jobkit``. Like them, it needs only the standard library, numpy and pandas (+ pyarrow).

inference.py does not use it: it is shipped alone inside model.tar.gz.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd

# Where the failure reason goes differs between the two kinds of SageMaker job.
JobKind = Literal["training", "processing"]

# SageMaker truncates FailureReason to 1 KiB; keep ours below that so the end is not cut.
_MAX_FAILURE_CHARS = 1000


class JobError(Exception):
    """A failure whose message is meant for the user (written to the failure file)."""


class JobArgumentParser(argparse.ArgumentParser):
    # argparse would print usage and exit(2) without ever writing the failure file.
    def error(self, message: str) -> NoReturn:
        raise JobError(f"Invalid arguments: {message}.")


def read_parquet_dir(directory: Path, *, label: str, channel: str | None = None) -> pd.DataFrame:
    """Every ``*.parquet`` file below ``directory`` (in name order) as one frame.

    ``label`` names the data in errors ("Training data directory ... does not exist");
    ``channel``, if given, names the directory when it holds no parquet file.
    """
    if not directory.is_dir():
        raise JobError(f"{label} directory {str(directory)!r} does not exist.")
    files = sorted(p for p in directory.rglob("*.parquet") if p.is_file())
    if not files:
        where = f"{channel} {str(directory)!r}" if channel else repr(str(directory))
        raise JobError(f"No *.parquet files found in {where}.")
    frames = []
    for path in files:
        try:
            frames.append(pd.read_parquet(path))
        except Exception as exc:
            raise JobError(f"Could not read parquet file {path.name!r}: {exc}") from exc
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def coerce_features(frame: pd.DataFrame, signature: list[dict[str, str]]) -> pd.DataFrame:
    """Give every feature the representation the pipeline is fitted on (and served with).

    Numeric and boolean columns become float64 with NaN for missing, because nullable or
    object-typed booleans/integers (what parquet nulls turn into) break the median imputer.
    String columns become text with NaN for missing so mixed or categorical values are
    encoded consistently with what inference.py sends; datetime columns keep their values.
    Every signature column must exist.
    """
    columns: dict[str, Any] = {}
    for field in signature:
        name, kind = field["name"], field["type"]
        series = frame[name]
        if kind == "datetime":
            # Kept as they are (datetime64 or ISO 8601 text); features.DatetimeParts reads
            # both the way it reads the ISO strings sent for prediction.
            if pd.api.types.is_datetime64_any_dtype(series.dtype):
                columns[name] = series
            else:
                as_object = series.astype(object)
                columns[name] = as_object.where(as_object.notna(), np.nan).to_numpy()
        elif kind == "string":
            as_object = series.astype(object)
            missing = as_object.isna().to_numpy()
            values = np.array([str(value) for value in as_object], dtype=object)
            values[missing] = np.nan
            columns[name] = values
        else:
            try:
                columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise JobError(f"Column {name!r} ({kind}) has a non-numeric value: {exc}") from exc
    return pd.DataFrame(columns, index=frame.index, columns=[f["name"] for f in signature])


def normalize_labels(labels: pd.Series) -> np.ndarray:
    """Class labels as a plain numpy array that keeps the target's original values.

    Float labels stay floats: a 0.0/1.0 target comes back as 0.0/1.0, never as 0/1 (a target
    of integers with gaps arrives as floats; a ``cast`` to integer makes its labels ints).
    Training and evaluation both use this, so test labels compare equal to the model's classes.
    """
    dtype = labels.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return labels.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return labels.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return labels.to_numpy(dtype=np.float64)
    values = labels.astype(object).to_numpy()
    if len({type(value) for value in values}) > 1:
        # sklearn cannot order e.g. 1 and "a"; text is the only common form.
        return np.array([str(value) for value in values], dtype=object)
    return values


def target_values(data: pd.DataFrame, target: str, task: str) -> np.ndarray:
    """The target column as the pipeline is fitted and scored on: class labels (see
    normalize_labels) for classification, float64 for regression."""
    if task == "classification":
        return normalize_labels(data[target])
    try:
        return data[target].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise JobError(f"Regression target {target!r} must be numeric: {exc}") from exc


def json_value(value: Any) -> Any:
    """A JSON-serializable Python value for a numpy scalar (or the value itself)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def report_failure(exc: Exception, prefix: str, job: JobKind) -> int:
    """Report why the job failed, as SageMaker expects; returns the exit code (1).

    The reason (``"<prefix>: <message>"``, one paragraph) goes to stderr and to the failure
    file; an unexpected exception (not a JobError) also gets its traceback on stderr.
    """
    if isinstance(exc, JobError):
        message = _one_paragraph(f"{prefix}: {exc}")
    else:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        message = _one_paragraph(f"{prefix}: {type(exc).__name__}: {exc}")
    print(message, file=sys.stderr, flush=True)
    _write_failure(message, job)
    return 1


def _one_paragraph(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _MAX_FAILURE_CHARS:
        flat = flat[: _MAX_FAILURE_CHARS - 3] + "..."
    return flat


def _failure_file(job: JobKind) -> Path | None:
    """Where the failure reason must go for this kind of job (None: nowhere)."""
    if job == "training":
        # SageMaker shows $SM_OUTPUT_DIR/failure as the training job's FailureReason.
        return Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
    # Only the local runner sets SM_OUTPUT_DIR for a processing job.
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    if output_dir:
        return Path(output_dir) / "failure"
    if Path("/opt/ml/processing").is_dir():
        # Inside a SageMaker processing job this file becomes the job's ExitMessage.
        return Path("/opt/ml/output/message")
    return None


def _write_failure(message: str, job: JobKind) -> None:
    path = _failure_file(job)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message, encoding="utf-8")
    except OSError as exc:
        where = f"failure file in {path.parent}" if job == "training" else str(path)
        print(f"Could not write {where}: {exc}", file=sys.stderr)
