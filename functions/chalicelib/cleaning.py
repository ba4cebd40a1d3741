"""Row steps of a pipeline's preprocessing, in the validate-and-clean Lambda: pandas and numpy
only (scikit-learn does not fit in a Lambda beside pandas).

The steps are the normalized dicts of ``mlcontract.preprocessing.validate_steps``; only the
``row`` ones run here, in their order (drop duplicates, drop columns, drop rows with missing
values, filter rows, cast). Learned steps are compiled into the model by the training job.

``clean`` is the whole validate-and-clean step (row steps, then the checks the training job
relies on); ``type_datetime_columns`` is the ingestion default that types ISO 8601 text
columns as datetimes.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.errors import StepError
from mlcontract import columns as column_types
from mlcontract import preprocessing as prep

if TYPE_CHECKING:
    import pandas as pd

MIN_ROWS = 10

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def column_type(series: pd.Series) -> str:
    kinds = {type(v) for v in series.dropna()} if series.dtype == object else set()
    return column_types.infer(str(series.dtype), kinds)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- row steps ---------------------------------------------------------------------------


def apply_row_steps(
    frame: pd.DataFrame, steps: list[dict[str, Any]]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Run the row steps in order; returns the table and one report entry per step
    (``{"step", "op", "rows_in", "rows_out", ...}``). ``StepError`` names the step."""
    try:
        steps = prep.validate_steps(steps)
    except prep.StepsError as exc:
        raise StepError(str(exc)) from None
    reports = []
    for index, step in enumerate(steps):
        op = step["op"]
        if op not in prep.ROW_OPS:
            continue
        where = f"preprocessing[{index}] ({op})"
        entry: dict[str, Any] = {"step": index, "op": op, "rows_in": len(frame)}
        frame = _APPLY[op](frame, step, where, entry)
        entry["rows_out"] = len(frame)
        reports.append(entry)
    return frame, reports


def _require(frame: pd.DataFrame, names: list[str], where: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise StepError(f"{where}: column(s) {', '.join(map(repr, missing))} are not in the data")


def _drop_duplicates(
    frame: pd.DataFrame, step: dict[str, Any], where: str, entry: dict[str, Any]
) -> pd.DataFrame:
    subset = step["columns"]
    if subset:
        _require(frame, subset, where)
    keep = {"first": "first", "last": "last", "none": False}[step["keep"]]
    return frame.drop_duplicates(subset=subset, keep=keep)  # type: ignore[call-overload]


def _drop_columns(
    frame: pd.DataFrame, step: dict[str, Any], where: str, entry: dict[str, Any]
) -> pd.DataFrame:
    # A column already gone needs no dropping (the dataset version may differ from the one
    # the pipeline was checked against).
    present = [c for c in step["columns"] if c in frame.columns]
    entry["columns_dropped"] = present
    return frame.drop(columns=present)


def _drop_missing(
    frame: pd.DataFrame, step: dict[str, Any], where: str, entry: dict[str, Any]
) -> pd.DataFrame:
    subset = step["columns"]
    if subset:
        _require(frame, subset, where)
    return frame.dropna(subset=subset, how=step["how"])


def _filter_rows(
    frame: pd.DataFrame, step: dict[str, Any], where: str, entry: dict[str, Any]
) -> pd.DataFrame:
    import pandas as pd

    name, op = step["column"], step["operator"]
    _require(frame, [name], where)
    series = frame[name]
    present = series.notna()
    if op == "is_null":
        return frame[~present]
    if op == "not_null":
        return frame[present]
    kind = column_type(series)
    raw = step["value"] if isinstance(step["value"], list) else [step["value"]]
    values = [_comparable(series, kind, v, where) for v in raw]
    try:
        if op in ("in", "not_in"):
            hit = series.isin(values)
            mask = hit if op == "in" else ~hit
        else:
            mask = _COMPARE[op](series, values[0])
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool) & present
    except TypeError as exc:
        raise StepError(f"{where}: cannot compare column {name!r} ({kind}): {exc}") from None
    return frame[mask]


def _comparable(series: pd.Series, kind: str, value: Any, where: str) -> Any:
    """The filter value in the column's terms (a Timestamp for datetimes)."""
    import pandas as pd

    name = series.name
    if kind in column_types.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise StepError(f"{where}: column {name!r} is {kind}; got the value {_show(value)}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise StepError(f"{where}: column {name!r} is boolean; got the value {_show(value)}")
    elif kind == "datetime":
        parsed = prep.parse_iso_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            raise StepError(
                f"{where}: column {name!r} is a datetime; the value must be an ISO 8601 "
                f"string, got {_show(value)}"
            )
        stamp = pd.Timestamp(parsed)
        return stamp.tz_localize("UTC") if getattr(series.dt, "tz", None) is not None else stamp
    elif not isinstance(value, str):
        raise StepError(f"{where}: column {name!r} is text; got the value {_show(value)}")
    return value


def _cast(
    frame: pd.DataFrame, step: dict[str, Any], where: str, entry: dict[str, Any]
) -> pd.DataFrame:
    _require(frame, step["columns"], where)
    frame = frame.copy()
    nulled: dict[str, int] = {}
    for name in step["columns"]:
        series = frame[name]
        converted = cast_series(series, step["to"])
        bad = converted.isna() & series.notna()
        count = int(bad.sum())
        if count and step["errors"] == "fail":
            example = series[bad].iloc[0]
            raise StepError(
                f"{where}: {count} value(s) of column {name!r} are not {step['to']} "
                f"(e.g. {_show(example)})"
            )
        nulled[name] = count
        frame[name] = converted
    entry["nulled"] = nulled
    return frame


_APPLY: dict[str, Callable[[pd.DataFrame, dict[str, Any], str, dict[str, Any]], pd.DataFrame]] = {
    "drop_duplicates": _drop_duplicates,
    "drop_columns": _drop_columns,
    "drop_missing": _drop_missing,
    "filter_rows": _filter_rows,
    "cast": _cast,
}


# --- type conversion -----------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    import pandas as pd

    return value is None or value is pd.NA or value is pd.NaT or value != value


def cast_series(series: pd.Series, to: str) -> pd.Series:
    """The column converted to ``to`` (a ``cast`` type); what does not convert is missing."""
    import numpy as np
    import pandas as pd

    if to == "datetime":
        return to_datetime(series)
    if to == "string":
        return series.map(_as_text).astype("string")
    if to == "boolean":
        return series.map(_as_bool).astype("boolean")
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        numbers = series.astype("float64")
    else:
        text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
        numbers = pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")
    numbers = numbers.where(np.isfinite(numbers))
    if to == "integer":
        whole = numbers.where(np.mod(numbers, 1) == 0)
        return whole.astype("Int64")
    return numbers


def _as_text(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # integers with gaps arrive as floats: 12345, not 12345.0
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    return str(value)


def _as_bool(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def to_datetime(series: pd.Series) -> pd.Series:
    """Datetimes in UTC without a zone (the rule the model applies: values with an offset
    are converted, values without are taken as UTC); text is read as ISO 8601
    (``mlcontract.preprocessing.parse_iso_datetime``), anything else becomes missing."""
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series
    present = series.dropna()
    parsed: dict[Any, Any] = {}
    for value in present.unique():
        if isinstance(value, str):
            parsed[value] = prep.parse_iso_datetime(value)
        elif isinstance(value, _dt.datetime):
            aware = value.tzinfo is not None
            parsed[value] = value.astimezone(_dt.UTC).replace(tzinfo=None) if aware else value
        elif isinstance(value, _dt.date):
            parsed[value] = _dt.datetime(value.year, value.month, value.day)
    # A dict lookup per value (vectorized by pandas), not a Python call per row.
    mapped = series.map(parsed) if parsed else pd.Series(None, index=series.index, dtype=object)
    return pd.to_datetime(mapped, errors="coerce").astype("datetime64[us]")


def datetime_columns(frame: pd.DataFrame) -> list[str]:
    """Text columns whose every non-missing value is an ISO 8601 date or time
    (``mlcontract.preprocessing.looks_like_datetime``; at least one value)."""
    import pandas as pd

    found = []
    for name in frame.columns:
        series = frame[name]
        if not (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
            continue
        values = series.dropna()
        if values.empty or not all(isinstance(v, str) for v in values.head(1000).tolist()):
            continue
        values = pd.Series(values.unique())  # the same verdict, once per distinct value
        try:
            text = values.astype(str).str.strip()
        except (TypeError, ValueError):
            continue
        if bool(text.str.fullmatch(prep.ISO_DATETIME_PATTERN).all()):
            found.append(str(name))
    return found


def type_datetime_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The ingestion default: ISO 8601 text columns become datetime columns (when every
    value converts), so the schema says ``datetime`` and training expands them into parts
    instead of one-hot encoding dates. Returns the table and the names converted."""
    converted: list[str] = []
    for name in datetime_columns(frame):
        as_datetime = to_datetime(frame[name])
        # Only when every value converts: an impossible date (2024-02-30) keeps it text.
        if int(as_datetime.isna().sum()) == int(frame[name].isna().sum()):
            if not converted:
                frame = frame.copy()
            frame[name] = as_datetime
            converted.append(name)
    return frame, converted


# --- the validate-and-clean step -------------------------------------------------------------


def target_profile(series: pd.Series) -> dict[str, Any]:
    """The target's entry of a dataset profile, as much as ``check_target`` reads."""
    import numpy as np

    values = series.dropna()
    kind = column_type(series)
    entry: dict[str, Any] = {
        "name": str(series.name),
        "type": kind,
        "count": len(values),
        "distinct": int(values.nunique()),
    }
    if kind in column_types.NUMERIC and len(values):
        numbers = values.to_numpy(dtype=np.float64)
        fractional = numbers[np.mod(numbers, 1) != 0]
        entry["min"], entry["max"] = float(numbers.min()), float(numbers.max())
        entry["sample"] = [float(v) for v in fractional[:1]]
    return entry


def clean(
    frame: pd.DataFrame, target: str, task: str, steps: list[dict[str, Any]]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The validate-and-clean step: row steps, then rows without a target and all-empty
    columns dropped, and what training needs checked (enough rows, a feature, a target that
    fits the task). Report: ``rows_in``, ``steps``, ``duplicates_dropped``,
    ``missing_rows_dropped``, ``missing_target_dropped``, ``empty_columns_dropped``,
    ``rows_out``, ``columns_out``, ``warnings``."""
    report: dict[str, Any] = {"rows_in": len(frame)}
    if target not in frame.columns:
        raise StepError(f"target column {target!r} is not in the dataset")
    frame, step_reports = apply_row_steps(frame, steps)
    report["steps"] = step_reports
    report["duplicates_dropped"] = sum(
        r["rows_in"] - r["rows_out"] for r in step_reports if r["op"] == "drop_duplicates"
    )
    report["missing_rows_dropped"] = sum(
        r["rows_in"] - r["rows_out"] for r in step_reports if r["op"] == "drop_missing"
    )
    if target not in frame.columns:
        raise StepError(f"target column {target!r} was removed by the preprocessing steps")
    before = len(frame)
    frame = frame[frame[target].notna()]
    report["missing_target_dropped"] = before - len(frame)
    empty = [c for c in frame.columns if c != target and frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    report["empty_columns_dropped"] = empty
    if len(frame) < MIN_ROWS:
        raise StepError(f"only {len(frame)} usable rows after cleaning; at least {MIN_ROWS} needed")
    if frame.shape[1] < 2:
        raise StepError("no feature columns are left after cleaning")
    try:
        report["warnings"] = prep.check_target(task, target_profile(frame[target]))
    except prep.TargetTaskError as exc:
        raise StepError(str(exc)) from None
    report["rows_out"] = len(frame)
    report["columns_out"] = int(frame.shape[1])
    return frame.reset_index(drop=True), report
