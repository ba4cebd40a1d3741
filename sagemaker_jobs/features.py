"""The learned preprocessing steps compiled into scikit-learn (the model's own preprocessing).

``build_preprocessing(signature, steps, task=..., dense=...)`` turns the pipeline's learned
steps (``mlcontract.preprocessing``) and the training signature into the part of the model's
sklearn Pipeline before the estimator. What it builds, in order:

1. frame stages, each a DataFrame -> DataFrame transformer, one per step, in the spec's order:
   datetime parts (the default ones first), expressions, imputers, clipping, scalers, power
   and log transforms, binning, ordinal and target encoding, polynomial features;
2. ``assemble``: a ColumnTransformer that applies the defaults to every column the spec left
   as is (numbers: median imputation + standardization; text: most-frequent imputation +
   one-hot with unknown values ignored), imputes the transformed numeric columns, and runs
   the encoders whose output may be sparse (one-hot, binned one-hot, TF-IDF);
3. the selection steps (variance threshold, k-best) on the final feature matrix.

With no learned step and no datetime column this is exactly the ColumnTransformer the
platform always built (ONNX-convertible). Everything is fitted on the training split only and
pickled with the model; train.py copies this file into the model's ``code/`` so it unpickles
where the model is served. Imports: numpy, pandas, scikit-learn and ``mlcontract`` only.

Rows reach the model as ``jobkit.coerce_features`` (training, evaluation) or
``inference.to_frame`` (serving) make them: numbers and booleans as float64 with NaN, text as
objects, datetimes as datetime64 values (training) or ISO 8601 strings (serving) — the
datetime transformer reads both the same way, so the same date gives the same prediction.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import (
    SelectKBest,
    VarianceThreshold,
    chi2,
    f_classif,
    f_regression,
    mutual_info_classif,
    mutual_info_regression,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    KBinsDiscretizer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    PowerTransformer,
    RobustScaler,
    StandardScaler,
    TargetEncoder,
)
from sklearn.utils.validation import check_is_fitted

from mlcontract import columns as column_types
from mlcontract import preprocessing as prep


def _accepts(estimator: type, parameter: str) -> bool:
    """Whether this scikit-learn's estimator takes the parameter (jobs run 1.4.2 on AWS)."""
    return parameter in estimator().get_params()


class FeatureSpecError(ValueError):
    """The steps cannot be applied to this training data (a message for the user)."""


# --- datetimes ---------------------------------------------------------------------------

_NAT = np.datetime64("NaT", "us")


def _one_datetime(value: Any) -> np.datetime64:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return _NAT
    if isinstance(value, str):
        parsed = prep.parse_iso_datetime(value)
        return _NAT if parsed is None else np.datetime64(parsed, "us")
    if isinstance(value, _dt.datetime):  # pd.Timestamp too
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return np.datetime64(value.replace(tzinfo=None), "us")
    if isinstance(value, _dt.date):
        return np.datetime64(_dt.datetime(value.year, value.month, value.day), "us")
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[us]")
    return _NAT


def to_utc_naive(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Datetimes as ``datetime64[us]`` in UTC without a zone (NaT for missing or unreadable).

    One rule for every representation: values with a zone or an offset are converted to UTC;
    values without are taken as UTC. So a parquet timestamp at training and its ISO 8601 text
    at serving (``2024-03-05T10:00:00``, ``...Z``, ``...+00:00``) are the same instant.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.astype("datetime64[us]")
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.to_numpy(dtype="datetime64[us]")
    return np.array([_one_datetime(v) for v in series.tolist()], dtype="datetime64[us]")


_INDEX_ATTRIBUTES = {"weekday": "day_of_week", "dayofyear": "day_of_year"}


def datetime_parts(values: np.ndarray, parts: Sequence[str], cyclical: bool) -> dict[str, Any]:
    """Part name (``year``, ``month_sin``, ...) -> float64 array, NaN where the value is NaT."""
    index = pd.DatetimeIndex(values)
    missing = np.isnat(values)
    out: dict[str, np.ndarray] = {}
    for part in parts:
        if part == "is_weekend":
            raw = (np.asarray(index.day_of_week) >= 5).astype(np.float64)
        elif part == "epoch_days":
            raw = values.astype(np.int64).astype(np.float64) / 86_400_000_000.0
        else:
            raw = np.asarray(getattr(index, _INDEX_ATTRIBUTES.get(part, part)), dtype=np.float64)
        raw = np.where(missing, np.nan, raw)
        if cyclical and part in prep.CYCLICAL_PERIODS:
            angle = 2.0 * np.pi * raw / prep.CYCLICAL_PERIODS[part]
            out[f"{part}_sin"] = np.sin(angle)
            out[f"{part}_cos"] = np.cos(angle)
        else:
            out[part] = raw
    return out


def looks_like_datetime_column(series: pd.Series) -> bool:
    """A text column whose non-missing values are all ISO 8601 dates (see
    ``mlcontract.preprocessing.looks_like_datetime``): it is typed ``datetime``."""
    values = series.dropna()
    if values.empty:
        return False
    if not all(isinstance(v, str) for v in values.head(1000).tolist()):
        return False
    try:
        text = values.astype(str).str.strip()
    except (TypeError, ValueError):
        return False
    return bool(text.str.fullmatch(prep.ISO_DATETIME_PATTERN).all())


def signature_type(series: pd.Series) -> str:
    """A feature column's signature type; ISO 8601 text counts as ``datetime``."""
    kinds = {type(v) for v in series.dropna()} if series.dtype == object else set()
    kind = column_types.infer(str(series.dtype), kinds)
    if kind == "string" and looks_like_datetime_column(series):
        return "datetime"
    return kind


# --- frame transformers (DataFrame in, DataFrame out) -----------------------------------------


class Columns:
    """The table between frame stages: column name -> 1-D numpy array, in order.

    Cheaper than a DataFrame for the many small steps of a spec (a single-row prediction runs
    every stage): no index alignment, no Arrow-backed text copies, and the sklearn
    transformers inside ``ColumnStep`` see plain arrays. Text is an object array with NaN for
    missing; datetimes are datetime64 (UTC, no zone) or, from requests, ISO 8601 text.
    """

    __slots__ = ("arrays", "n_rows")

    def __init__(self, arrays: dict[str, np.ndarray], n_rows: int) -> None:
        self.arrays = arrays
        self.n_rows = n_rows

    @classmethod
    def of(cls, X: Columns | pd.DataFrame) -> Columns:  # noqa: N803
        if isinstance(X, Columns):
            return X
        arrays: dict[str, np.ndarray] = {}
        for name in X.columns:
            series = X[name]
            dtype = series.dtype
            if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
                arrays[str(name)] = to_utc_naive(series)
            elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
                arrays[str(name)] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                arrays[str(name)] = series.to_numpy(dtype=object, na_value=np.nan)
        return cls(arrays, len(X))

    @property
    def columns(self) -> list[str]:
        return list(self.arrays)

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return self.n_rows

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        arrays = [self.arrays[n] for n in names]
        if all(a.dtype.kind == "f" for a in arrays):
            return np.column_stack(arrays).astype(np.float64, copy=False)
        return np.column_stack([a.astype(object) for a in arrays])

    def replace(self, drop: Sequence[str], new: Mapping[str, np.ndarray], what: str) -> Columns:
        """A new table without ``drop``, with ``new`` appended."""
        gone = set(drop)
        arrays = {k: v for k, v in self.arrays.items() if k not in gone}
        clash = [name for name in new if name in arrays]
        if clash:
            raise FeatureSpecError(f"{what} would create {clash[0]!r}, which is already a column")
        arrays.update(new)
        return Columns(arrays, self.n_rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.arrays, columns=self.columns)


class FrameTransformer(TransformerMixin, BaseEstimator):
    """A frame stage: takes a DataFrame or ``Columns``, returns ``Columns``."""

    def _require(self, table: Columns, names: Sequence[str], what: str) -> None:
        missing = [n for n in names if n not in table]
        if missing:
            raise FeatureSpecError(f"{what}: column(s) {', '.join(map(repr, missing))} missing")


class ToFrame(FrameTransformer):
    """The last frame stage: one DataFrame for the ColumnTransformer that follows."""

    def fit(self, X: Columns | pd.DataFrame, y: Any = None) -> ToFrame:  # noqa: N803
        self.columns_ = Columns.of(X).columns
        return self

    def transform(self, X: Columns | pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        check_is_fitted(self)
        return Columns.of(X).frame()


class DatetimeParts(FrameTransformer):
    """Replace datetime columns by numeric parts named ``<column>_<part>``."""

    def __init__(
        self,
        columns: Sequence[str],
        parts: Sequence[str] = prep.DEFAULT_DATETIME_PARTS,
        cyclical: bool = False,
    ) -> None:
        self.columns = columns
        self.parts = parts
        self.cyclical = cyclical

    def fit(self, X: Columns | pd.DataFrame, y: Any = None) -> DatetimeParts:  # noqa: N803
        self._require(Columns.of(X), self.columns, "datetime_parts")
        self.names_out_ = [
            n for c in self.columns for n in prep.datetime_part_names(c, self.parts, self.cyclical)
        ]
        return self

    def transform(self, X: Columns | pd.DataFrame) -> Columns:  # noqa: N803
        check_is_fitted(self)
        table = Columns.of(X)
        new: dict[str, np.ndarray] = {}
        for column in self.columns:
            parts = datetime_parts(to_utc_naive(table[column]), self.parts, self.cyclical)
            new.update({f"{column}_{part}": values for part, values in parts.items()})
        return table.replace(self.columns, new, "datetime_parts")


def _as_float(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def _finite(values: Any) -> Any:
    if isinstance(values, np.ndarray):
        return np.where(np.isfinite(values), values, np.nan)
    return values if math.isfinite(values) else math.nan


def evaluate_expression(tree: prep.Node, table: Columns | pd.DataFrame) -> np.ndarray:
    """Evaluate a parsed formula column-wise. Any non-finite intermediate value (division by
    zero, log of a non-positive number, overflow) is NaN, and NaN propagates."""
    with np.errstate(all="ignore"):
        result = _evaluate(tree, table)
    return np.broadcast_to(np.asarray(result, dtype=np.float64), (len(table),)).copy()


def _evaluate(node: prep.Node, table: Columns | pd.DataFrame) -> Any:
    tag = node[0]
    if tag == "num":
        return float(node[1])
    if tag == "col":
        return _finite(_as_float(table[node[1]]))
    if tag == "neg":
        return -_evaluate(node[1], table)
    if tag == "bin":
        left, right = _evaluate(node[2], table), _evaluate(node[3], table)
        op = node[1]
        if op == "+":
            return _finite(np.add(left, right))
        if op == "-":
            return _finite(np.subtract(left, right))
        if op == "*":
            return _finite(np.multiply(left, right))
        if op == "/":
            return _finite(np.where(np.equal(right, 0.0), np.nan, np.divide(left, right)))
        if op == "**":
            return _finite(np.power(left, right))
    if tag == "call":
        args = [_evaluate(arg, table) for arg in node[2]]
        name = node[1]
        if name == "abs":
            return np.abs(args[0])
        if name == "log":
            return _finite(np.where(np.greater(args[0], 0.0), np.log(args[0]), np.nan))
        if name == "sqrt":
            return _finite(np.sqrt(args[0]))
        if name == "exp":
            return _finite(np.exp(args[0]))
        if name == "min":
            return functools.reduce(np.minimum, args)
        if name == "max":
            return functools.reduce(np.maximum, args)
        if name == "clip":
            return np.minimum(np.maximum(args[0], args[1]), args[2])
    raise FeatureSpecError(f"unknown expression node {tag!r}")


class MissingFlags(FrameTransformer):
    """Add ``missingindicator_<column>``: 1.0 where the value is missing, else 0.0.

    One flag per named column whatever the training rows held (sklearn's add_indicator
    flags only columns that had gaps in training, so the output would depend on the data).
    """

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = columns

    def fit(self, X: Columns | pd.DataFrame, y: Any = None) -> MissingFlags:  # noqa: N803
        self._require(Columns.of(X), self.columns, "impute")
        self.names_out_ = [f"missingindicator_{c}" for c in self.columns]
        return self

    def transform(self, X: Columns | pd.DataFrame) -> Columns:  # noqa: N803
        check_is_fitted(self)
        table = Columns.of(X)
        flags = {
            name: pd.isna(table[column]).astype(np.float64)
            for column, name in zip(self.columns, self.names_out_, strict=True)
        }
        return table.replace([], flags, "impute")


class ExpressionFeature(FrameTransformer):
    """Add the column ``name`` computed by a safe formula (``mlcontract.preprocessing``)."""

    def __init__(self, name: str, expression: str) -> None:
        self.name = name
        self.expression = expression

    def fit(self, X: Columns | pd.DataFrame, y: Any = None) -> ExpressionFeature:  # noqa: N803
        table = Columns.of(X)
        try:
            parsed = prep.parse_expression(self.expression, columns=table.columns)
        except prep.ExpressionError as exc:
            raise FeatureSpecError(f"expression {self.name!r}: {exc}") from None
        for column in parsed.columns:
            if table[column].dtype.kind not in "fiub":
                raise FeatureSpecError(
                    f"expression {self.name!r} uses column {column!r}, which is not numeric"
                )
        if self.name in table:
            raise FeatureSpecError(f"expression would create {self.name!r}, already a column")
        self.tree_ = parsed.tree
        return self

    def transform(self, X: Columns | pd.DataFrame) -> Columns:  # noqa: N803
        check_is_fitted(self)
        table = Columns.of(X)
        values = evaluate_expression(self.tree_, table)
        return table.replace([], {self.name: values}, "expression")


class ColumnStep(FrameTransformer):
    """Fit ``transformer`` on some columns (as a plain array) and put its output in their
    place, named by its ``get_feature_names_out`` (the same names for one-to-one
    transforms), after the untouched columns."""

    def __init__(self, transformer: Any, columns: Sequence[str]) -> None:
        self.transformer = transformer
        self.columns = columns

    def fit(self, X: Columns | pd.DataFrame, y: Any = None) -> ColumnStep:  # noqa: N803
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: Columns | pd.DataFrame, y: Any = None, **_: Any) -> Columns:  # noqa: N803
        table = Columns.of(X)
        self._require(table, self.columns, type(self.transformer).__name__)
        self.transformer_ = clone(self.transformer)
        # fit_transform, not fit().transform(): TargetEncoder cross-fits on the training rows.
        out = self.transformer_.fit_transform(table.matrix(self.columns), y)
        try:
            self.names_out_ = [
                str(n) for n in self.transformer_.get_feature_names_out(list(self.columns))
            ]
        except (AttributeError, ValueError):
            self.names_out_ = list(self.columns)
        return self._merge(table, out)

    def transform(self, X: Columns | pd.DataFrame) -> Columns:  # noqa: N803
        check_is_fitted(self)
        table = Columns.of(X)
        return self._merge(table, self.transformer_.transform(table.matrix(self.columns)))

    def _merge(self, table: Columns, out: Any) -> Columns:
        if hasattr(out, "toarray"):
            out = out.toarray()
        values = np.asarray(out)
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        if values.shape[1] != len(self.names_out_):
            raise FeatureSpecError(
                f"{type(self.transformer).__name__} gave {values.shape[1]} columns for "
                f"{len(self.names_out_)} names"
            )
        new = {name: values[:, i] for i, name in enumerate(self.names_out_)}
        return table.replace(self.columns, new, type(self.transformer).__name__)


# --- array transformers used by ColumnStep ---------------------------------------------------


class _SameShape(TransformerMixin, BaseEstimator):
    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        names = input_features if input_features is not None else self.feature_names_in_
        return np.asarray(list(names), dtype=object)

    def _remember(self, X: Any) -> np.ndarray:  # noqa: N803
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.asarray(X, dtype=np.float64)
        self.feature_names_in_ = np.asarray([f"x{i}" for i in range(values.shape[1])], dtype=object)
        return values


def _values(X: Any) -> np.ndarray:  # noqa: N803
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


class OutlierClipper(_SameShape):
    """Clip to bounds learned on the training rows: quantiles, or Tukey's IQR fences."""

    def __init__(
        self,
        method: str = "quantile",
        lower: float = 0.01,
        upper: float = 0.99,
        factor: float = 1.5,
    ) -> None:
        self.method = method
        self.lower = lower
        self.upper = upper
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:  # noqa: N803
        values = self._remember(X)
        self.n_features_in_ = values.shape[1]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # A column without values has no statistic; that is handled below.
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            if self.method == "iqr":
                q1, q3 = np.nanquantile(values, [0.25, 0.75], axis=0)
                low, high = q1 - self.factor * (q3 - q1), q3 + self.factor * (q3 - q1)
            else:
                low, high = np.nanquantile(values, [self.lower, self.upper], axis=0)
        # A column without values in training has no bounds: leave it alone.
        self.lower_ = np.where(np.isnan(low), -np.inf, low)
        self.upper_ = np.where(np.isnan(high), np.inf, high)
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        check_is_fitted(self)
        return np.clip(_values(X), self.lower_, self.upper_)


class LogTransform(_SameShape):
    """log(x + offset); NaN where x + offset <= 0. Nothing is learned."""

    def __init__(self, offset: float = 1.0) -> None:
        self.offset = offset

    def fit(self, X: Any, y: Any = None) -> LogTransform:  # noqa: N803
        self.n_features_in_ = self._remember(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        check_is_fitted(self)
        shifted = _values(X) + self.offset
        with np.errstate(all="ignore"):
            return np.where(shifted > 0, np.log(np.where(shifted > 0, shifted, 1.0)), np.nan)


class TextColumn(TransformerMixin, BaseEstimator):
    """One text column as a list of strings for a vectorizer ("" for missing)."""

    def fit(self, X: Any, y: Any = None) -> TextColumn:  # noqa: N803
        return self

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray(list(input_features or ["text"]), dtype=object)

    def transform(self, X: Any) -> list[str]:  # noqa: N803
        if isinstance(X, pd.DataFrame):
            X = X.iloc[:, 0]  # noqa: N806
        values = X.tolist() if isinstance(X, pd.Series) else list(np.ravel(X))
        return ["" if _missing(v) else str(v) for v in values]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --- the compiler -----------------------------------------------------------------------------

NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATETIME = "datetime"


@dataclass
class _Column:
    kind: str  # numeric | categorical | datetime
    scaled: bool = False  # a step chose its scale: the defaults only impute it


def _kind(signature_type: str) -> str:
    if signature_type == "string":
        return CATEGORICAL
    if signature_type == "datetime":
        return DATETIME
    return NUMERIC


class _Compiler:
    def __init__(
        self,
        signature: Sequence[Mapping[str, str]],
        task: str,
        seed: int,
        classes: Sequence[Any] | None,
    ) -> None:
        self.classes = None if classes is None else list(classes)
        self.columns: dict[str, _Column] = {f["name"]: _Column(_kind(f["type"])) for f in signature}
        self.consumed: dict[str, str] = {}
        self.task = task
        self.seed = seed
        self.stages: list[tuple[str, Any]] = []
        self.encoders: list[tuple[str, Any, Any]] = []
        self.selection: list[tuple[str, Any]] = []
        self.notes: list[str] = []

    # -- helpers --
    def pick(
        self, where: str, names: Sequence[str] | None, kinds: set[str], what: str
    ) -> list[str]:
        if names is None:
            return [n for n, c in self.columns.items() if c.kind in kinds]
        for name in names:
            column = self.columns.get(name)
            if name in self.consumed:
                problem = f"was replaced by {self.consumed[name]}"
            elif column is None:
                problem = "is not a feature of the training data"
            elif column.kind not in kinds:
                problem = f"is {column.kind}; the step needs {what}"
            else:
                continue
            raise FeatureSpecError(f"{where}: column {name!r} {problem}")
        return list(names)

    def replace(self, old: Sequence[str], new: Sequence[str], scaled: bool, where: str) -> None:
        for name in old:
            self.columns.pop(name, None)
            self.consumed[name] = where
        for name in new:
            self.consumed.pop(name, None)
            self.columns[name] = _Column(NUMERIC, scaled)

    def column_step(self, name: str, transformer: Any, names: Sequence[str]) -> None:
        if names:
            self.stages.append((name, ColumnStep(transformer, list(names))))

    # -- steps --
    def compile(self, steps: Sequence[prep.Step], dense: bool) -> Any:
        named = {c for s in steps if s["op"] == "datetime_parts" for c in s["columns"]}
        default = [n for n, c in self.columns.items() if c.kind == DATETIME and n not in named]
        if default:
            self.expand_datetimes("datetime_defaults", default, prep.DEFAULT_DATETIME_PARTS, False)
            self.notes.append(
                f"datetime column(s) {', '.join(map(repr, default))} expanded into "
                f"{', '.join(prep.DEFAULT_DATETIME_PARTS)} (UTC)"
            )
        for index, step in enumerate(steps):
            op = step["op"]
            if op in prep.LEARNED_OPS:
                getattr(self, f"_{op}")(f"{index}_{op}", step)
        leftover = [n for n, c in self.columns.items() if c.kind == DATETIME]
        if leftover:  # cannot happen after the expansion above; guard the invariant
            raise FeatureSpecError(f"datetime column(s) {leftover} were not expanded")
        assemble = self.assemble(dense)
        if not self.stages and not self.selection:
            return assemble
        frame = [("frame", ToFrame())] if self.stages else []
        return Pipeline([*self.stages, *frame, ("assemble", assemble), *self.selection])

    def assemble(self, dense: bool) -> ColumnTransformer:
        numeric = [n for n, c in self.columns.items() if c.kind == NUMERIC and not c.scaled]
        prepared = [n for n, c in self.columns.items() if c.kind == NUMERIC and c.scaled]
        categorical = [n for n, c in self.columns.items() if c.kind == CATEGORICAL]
        transformers: list[tuple[str, Any, Any]] = []
        if numeric:
            steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
            transformers.append(("numeric", Pipeline(steps), numeric))
        if categorical:
            steps = [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
            transformers.append(("categorical", Pipeline(steps), categorical))
        if prepared:
            imputer = SimpleImputer(strategy="median", keep_empty_features=True)
            transformers.append(("prepared", imputer, prepared))
        transformers += self.encoders
        if not transformers:
            raise FeatureSpecError("no feature is left after the preprocessing steps")
        # HistGradientBoosting rejects sparse input, which one-hot encoding would otherwise produce.
        return ColumnTransformer(
            transformers, remainder="drop", sparse_threshold=0.0 if dense else 0.3
        )

    def expand_datetimes(
        self, where: str, names: Sequence[str], parts: Sequence[str], cyclical: bool
    ) -> None:
        self.stages.append((where, DatetimeParts(list(names), list(parts), cyclical)))
        new = [n for c in names for n in prep.datetime_part_names(c, parts, cyclical)]
        self.replace(names, new, False, where)

    def _datetime_parts(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {DATETIME, CATEGORICAL}, "a datetime")
        self.expand_datetimes(where, names, step["parts"], step["cyclical"])

    def _expression(self, where: str, step: prep.Step) -> None:
        try:
            parsed = prep.parse_expression(step["expression"])
        except prep.ExpressionError as exc:
            raise FeatureSpecError(f"{where}: {exc}") from None
        self.pick(where, list(parsed.columns), {NUMERIC}, "numbers")
        if step["name"] in self.columns:
            raise FeatureSpecError(f"{where}: column {step['name']!r} already exists")
        self.stages.append((where, ExpressionFeature(step["name"], step["expression"])))
        self.replace([], [step["name"]], False, where)

    def _impute(self, where: str, step: prep.Step) -> None:
        strategy, fill = step["strategy"], step["fill_value"]
        if strategy in ("mean", "median") or isinstance(fill, int | float):
            kinds, what = {NUMERIC}, "numbers"
        elif isinstance(fill, str):
            kinds, what = {CATEGORICAL}, "text (the fill value is text)"
        else:
            kinds, what = {NUMERIC, CATEGORICAL}, "numbers or text"
        names = self.pick(where, step["columns"], kinds, what)
        if step["add_indicator"] and names:
            self.stages.append((f"{where}_flags", MissingFlags(names)))
            self.replace([], [f"missingindicator_{n}" for n in names], True, where)
        for kind in (NUMERIC, CATEGORICAL):
            group = [n for n in names if self.columns[n].kind == kind]
            imputer = SimpleImputer(strategy=strategy, fill_value=fill, keep_empty_features=True)
            suffix = "" if kind == NUMERIC else "_text"
            self.column_step(f"{where}{suffix}", imputer, group)

    def _numeric_step(self, where: str, step: prep.Step, transformer: Any, scaled: bool) -> None:
        names = self.pick(where, step["columns"], {NUMERIC}, "numbers")
        self.column_step(where, transformer, names)
        for name in names:
            self.columns[name].scaled = self.columns[name].scaled or scaled

    def _clip_outliers(self, where: str, step: prep.Step) -> None:
        clipper = OutlierClipper(step["method"], step["lower"], step["upper"], step["factor"])
        self._numeric_step(where, step, clipper, scaled=False)

    def _standard_scale(self, where: str, step: prep.Step) -> None:
        self._numeric_step(where, step, StandardScaler(with_mean=step["with_mean"]), True)

    def _minmax_scale(self, where: str, step: prep.Step) -> None:
        scaler = MinMaxScaler(feature_range=tuple(step["feature_range"]))
        self._numeric_step(where, step, scaler, True)

    def _robust_scale(self, where: str, step: prep.Step) -> None:
        scaler = RobustScaler(quantile_range=tuple(step["quantile_range"]))
        self._numeric_step(where, step, scaler, True)

    def _power_transform(self, where: str, step: prep.Step) -> None:
        power = PowerTransformer(method="yeo-johnson", standardize=step["standardize"])
        self._numeric_step(where, step, power, True)

    def _log_transform(self, where: str, step: prep.Step) -> None:
        self._numeric_step(where, step, LogTransform(step["offset"]), scaled=False)

    def _bin(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {NUMERIC}, "numbers")
        # k-bins needs values: the defaults' median imputation, before instead of after.
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        self.column_step(f"{where}_impute", imputer, names)
        kwargs: dict[str, Any] = {
            "n_bins": step["n_bins"],
            "encode": "ordinal",
            "strategy": step["strategy"],
        }
        if step["strategy"] == "quantile" and _accepts(KBinsDiscretizer, "quantile_method"):
            # scikit-learn >= 1.7 asks for the method; 1.4.2 (the image's) has one fixed.
            kwargs["quantile_method"] = "averaged_inverted_cdf"
        if step["strategy"] != "uniform":
            kwargs["random_state"] = self.seed
        self.column_step(where, KBinsDiscretizer(**kwargs), names)
        if step["encode"] == "onehot":
            self.encoders.append((where, OneHotEncoder(handle_unknown="ignore"), names))
            for name in names:
                self.columns.pop(name)
                self.consumed[name] = where
        else:
            for name in names:
                self.columns[name].scaled = True

    def _one_hot(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {NUMERIC, CATEGORICAL}, "numbers or text")
        grouped = step["min_frequency"] is not None or step["max_categories"] is not None
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist" if grouped else "ignore",
            min_frequency=step["min_frequency"],
            max_categories=step["max_categories"],
        )
        steps = [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", encoder)]
        self.encoders.append((where, Pipeline(steps), names))
        self.replace(names, [], False, where)

    def _ordinal_encode(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {NUMERIC, CATEGORICAL}, "numbers or text")
        given = step["categories"] or {}
        ordered = [n for n in names if n in given]
        learned = [n for n in names if n not in given]
        common = {
            "handle_unknown": "use_encoded_value",
            "unknown_value": -1,
            "encoded_missing_value": -2,
            "dtype": np.float64,
        }
        if ordered:
            categories = [self._categories(n, given[n]) for n in ordered]
            encoder = OrdinalEncoder(categories=categories, **common)
            self.column_step(f"{where}_ordered", encoder, ordered)
        self.column_step(where, OrdinalEncoder(**common), learned)
        for name in names:
            self.columns[name] = _Column(NUMERIC, scaled=True)

    def _categories(self, name: str, values: Sequence[Any]) -> np.ndarray:
        if self.columns[name].kind == CATEGORICAL:
            return np.asarray([str(v) for v in values], dtype=object)
        return np.asarray(values, dtype=np.float64)

    def _target_encode(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {NUMERIC, CATEGORICAL}, "numbers or text")
        encoder = TargetEncoder(
            target_type="continuous" if self.task == "regression" else "auto",
            smooth=step["smooth"],
            cv=step["cv"],
        )
        self.column_step(where, encoder, names)
        # A multiclass target gives one column per class, named <column>_<class>.
        outputs = list(names)
        if self.task == "classification":
            if self.classes is None:
                raise FeatureSpecError(f"{where}: the target's classes are needed to encode")
            if len(self.classes) > 2:
                dummy_x = pd.DataFrame({n: ["a"] * len(self.classes) for n in names})
                fitted = clone(encoder).fit(dummy_x, np.asarray(self.classes))
                outputs = [str(n) for n in fitted.get_feature_names_out(names)]
        self.replace(names, outputs, True, where)

    def _tfidf(self, where: str, step: prep.Step) -> None:
        name = self.pick(where, [step["column"]], {CATEGORICAL}, "text")[0]
        vectorizer = TfidfVectorizer(
            max_features=step["max_features"],
            ngram_range=tuple(step["ngram_range"]),
            min_df=step["min_df"],
            lowercase=step["lowercase"],
            stop_words=step["stop_words"],
            sublinear_tf=step["sublinear_tf"],
            dtype=np.float64,
        )
        text = Pipeline([("text", TextColumn()), ("tfidf", vectorizer)])
        self.encoders.append((where, text, name))
        self.replace([name], [], False, where)

    def _polynomial(self, where: str, step: prep.Step) -> None:
        names = self.pick(where, step["columns"], {NUMERIC}, "numbers")
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        self.column_step(f"{where}_impute", imputer, names)
        poly = PolynomialFeatures(
            degree=step["degree"], interaction_only=step["interaction_only"], include_bias=False
        )
        self.column_step(where, poly, names)
        dummy = pd.DataFrame([[0.0] * len(names)], columns=names)
        outputs = [str(n) for n in clone(poly).fit(dummy).get_feature_names_out(names)]
        self.replace(names, outputs, False, where)

    def _keep_columns(self, where: str, step: prep.Step) -> None:
        """Acts on the signature (see ``default_exclusions``), not on the rows."""

    def _variance_threshold(self, where: str, step: prep.Step) -> None:
        self.selection.append((where, VarianceThreshold(threshold=step["threshold"])))

    def _select_k_best(self, where: str, step: prep.Step) -> None:
        classification = self.task == "classification"
        score = step["score"]
        function: Any
        if score == "chi2":
            function = chi2
        elif score == "mutual_info":
            base = mutual_info_classif if classification else mutual_info_regression
            function = functools.partial(base, random_state=self.seed)
        else:
            function = f_classif if classification else f_regression
        self.selection.append((where, SelectKBest(function, k=step["k"])))


def build_preprocessing(
    signature: Sequence[Mapping[str, str]],
    steps: Sequence[prep.Step],
    *,
    task: str,
    dense: bool,
    seed: int = 0,
    classes: Sequence[Any] | None = None,
) -> tuple[Any, list[str]]:
    """The preprocessing estimator for the model (see the module docstring) and notes on what
    the defaults did. ``steps`` are normalized steps (``validate_steps``); row steps are
    skipped (they ran in the Lambda). ``classes`` (the target's sorted classes) is needed by
    target encoding of a multiclass target. Raises ``FeatureSpecError``."""
    compiler = _Compiler(signature, task, seed, classes)
    return compiler.compile(list(steps), dense), compiler.notes


def default_exclusions(
    frame: pd.DataFrame, signature: Sequence[Mapping[str, str]], steps: Sequence[prep.Step]
) -> list[dict[str, str]]:
    """Feature columns left out by default (``mlcontract.preprocessing.exclusion_reason``):
    id-like and constant columns, unless a step names them or ``keep_columns`` keeps them.
    ``[{"name", "reason"}]`` in signature order."""
    spared = prep.referenced_columns(steps)
    out = []
    for field in signature:
        name, kind = field["name"], field["type"]
        if name in spared:
            continue
        values = frame[name].dropna()
        minimum = maximum = None
        if kind in ("integer", "number") and not values.empty:
            numbers = values.to_numpy(dtype=np.float64)
            if kind == "number" and np.all(np.mod(numbers, 1) == 0):
                kind = "integer"  # integers with gaps arrive as floats
            minimum, maximum = float(numbers.min()), float(numbers.max())
        try:
            distinct = int(values.nunique())
        except TypeError:  # unhashable cells: not a key, not constant as far as we can tell
            continue
        reason = prep.exclusion_reason(name, kind, len(values), distinct, minimum, maximum)
        if reason:
            out.append({"name": name, "reason": reason})
    return out


def steps_from_argument(value: str | None, decoded: Any = None) -> list[prep.Step]:
    """The train job's ``--preprocessing`` value: a JSON list of steps (``[]`` when absent).

    The SageMaker training toolkit json-decodes hyperparameters and renders lists lossily on
    the command line; ``decoded`` is the value it put in SM_HPS, used when the CLI text is
    not JSON. Steps are validated again (``FeatureSpecError`` naming the step)."""
    if value is None or value == "":
        return []
    try:
        steps = json.loads(value)
    except ValueError:
        steps = json.loads(decoded) if isinstance(decoded, str) else decoded
    if steps is None:
        raise FeatureSpecError(f"--preprocessing must be a JSON list of steps, got {value[:80]!r}")
    try:
        return prep.validate_steps(steps)
    except prep.StepsError as exc:
        raise FeatureSpecError(str(exc)) from None
