"""Declarative preprocessing: the catalog of steps, their parameters, and the validator.

Standard library only: the API validates a pipeline's ``preprocessing`` list here when the
pipeline is created (an unknown step or parameter is a 400 then, never a failed run), the
Lambda cleaning step and the training job read the same normalized dicts.

A step is a JSON object ``{"op": <name>, <parameter>: <value>, ...}``. Two kinds:

- ``row`` steps change the raw table (which rows, which columns, which types) and run in the
  pipeline's validate-and-clean Lambda with pandas, before the data is split;
- ``learned`` steps are compiled into the model's scikit-learn Pipeline (``features.py``):
  whatever they learn (means, quantiles, categories, vocabularies, selections) is fitted on
  the training split only and applied unchanged to the raw rows sent for prediction.

Row steps run first, in their order; learned steps then run inside the model, in theirs.
Columns the spec does not mention get the defaults: numbers median-imputed and standardized,
text most-frequent-imputed and one-hot encoded (unknown values ignored), datetimes expanded
into parts; id-like and constant columns are left out (see ``exclusion_reason``).

Also here, because the API decides them from a dataset's profile before any job runs:
``check_target`` (does the target fit the task?) and ``default_exclusions``.
"""

from __future__ import annotations

import ast
import copy
import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from mlcontract import columns

Kind = Literal["row", "learned"]
Group = Literal["cleaning", "transform", "feature", "selection"]
Step = dict[str, Any]

MAX_STEPS: Final = 100
MAX_COLUMNS_PER_STEP: Final = 1000
MAX_NAME_CHARS: Final = 1000
MAX_FILTER_VALUES: Final = 1000

# --- the step catalog ------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    schema: Mapping[str, Any]
    description: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class StepSpec:
    op: str
    kind: Kind
    group: Group
    description: str
    params: tuple[Param, ...]
    example: Mapping[str, Any]
    # Cross-parameter rules; raises _ParamError. Gets the normalized step and the task.
    check: Callable[[Step, str | None], None] | None = field(default=None, compare=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


class _ParamError(ValueError):
    """A bad parameter value; ``param`` names it (None: the step as a whole)."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param


_NAME: Final = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}
_COLUMNS: Final = {
    "type": "array",
    "items": _NAME,
    "minItems": 1,
    "maxItems": MAX_COLUMNS_PER_STEP,
    "uniqueItems": True,
}


def _columns(required: bool, when_omitted: str = "") -> Param:
    if required:
        return Param("columns", _COLUMNS, "The columns this step applies to.", required=True)
    return Param("columns", _COLUMNS, f"The columns this step applies to; omit for {when_omitted}.")


def _numeric_columns() -> Param:
    return _columns(False, "every numeric feature column")


FILTER_OPERATORS: Final = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "not_null")
CAST_TYPES: Final = ("number", "integer", "boolean", "string", "datetime")
IMPUTE_STRATEGIES: Final = ("mean", "median", "most_frequent", "constant")
DATETIME_PARTS: Final = (
    "year",
    "quarter",
    "month",
    "day",
    "weekday",
    "dayofyear",
    "hour",
    "minute",
    "second",
    "is_weekend",
    "epoch_days",
)
# Period of each part that has a cyclical (sin/cos) encoding.
CYCLICAL_PERIODS: Final[Mapping[str, float]] = {
    "quarter": 4.0,
    "month": 12.0,
    "day": 31.0,
    "weekday": 7.0,
    "dayofyear": 366.0,
    "hour": 24.0,
    "minute": 60.0,
    "second": 60.0,
}
DEFAULT_DATETIME_PARTS: Final = ("year", "month", "day", "weekday", "hour")
SCORE_FUNCTIONS: Final = ("auto", "f_test", "mutual_info", "chi2")


def _check_filter(step: Step, task: str | None) -> None:
    operator, value = step["operator"], step["value"]
    if operator in ("is_null", "not_null"):
        if value is not None:
            raise _ParamError("value", f"must be omitted for operator {operator!r}")
        return
    if operator in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise _ParamError("value", f"must be a non-empty list for operator {operator!r}")
        if len(value) > MAX_FILTER_VALUES:
            raise _ParamError("value", f"may list at most {MAX_FILTER_VALUES} values")
        for item in value:
            _check_scalar(item)
        return
    if value is None or isinstance(value, list):
        raise _ParamError("value", f"must be one number, string or boolean for {operator!r}")
    _check_scalar(value)
    if isinstance(value, bool) and operator not in ("==", "!="):
        raise _ParamError("value", f"a boolean can only be compared with == or !=, not {operator}")


def _check_scalar(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _ParamError("value", f"must be finite, got {value!r}")
    if not isinstance(value, bool | int | float | str):
        raise _ParamError("value", f"must hold numbers, strings or booleans, got {_show(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and not _is_int(value):
        raise _ParamError("value", f"must be within 64-bit range, got {_show(value)}")


def _check_impute(step: Step, task: str | None) -> None:
    if step["strategy"] == "constant":
        if step["fill_value"] is None:
            raise _ParamError("fill_value", "is required when strategy is 'constant'")
    elif step["fill_value"] is not None:
        raise _ParamError("fill_value", "is only used with strategy 'constant'")


def _check_clip(step: Step, task: str | None) -> None:
    if step["lower"] >= step["upper"]:
        raise _ParamError("upper", f"must be greater than lower ({step['lower']})")


def _check_range(name: str) -> Callable[[Step, str | None], None]:
    def check(step: Step, task: str | None) -> None:
        low, high = step[name]
        if low >= high:
            raise _ParamError(name, f"must be [low, high] with low < high, got {step[name]}")

    return check


def _check_ngrams(step: Step, task: str | None) -> None:
    low, high = step["ngram_range"]
    if low > high:
        raise _ParamError(
            "ngram_range", f"must be [min_n, max_n] with min_n <= max_n, got {[low, high]}"
        )


def _check_ordinal(step: Step, task: str | None) -> None:
    extra = sorted(set(step["categories"] or {}) - set(step["columns"]))
    if extra:
        raise _ParamError(
            "categories", f"names column(s) not in columns: {', '.join(map(repr, extra))}"
        )


def _check_expression(step: Step, task: str | None) -> None:
    try:
        parse_expression(step["expression"])
    except ExpressionError as exc:
        raise _ParamError("expression", str(exc)) from None


def _check_k_best(step: Step, task: str | None) -> None:
    if step["score"] == "chi2" and task == "regression":
        raise _ParamError(
            "score", "'chi2' scores classification targets; use f_test or mutual_info"
        )


def _check_one_hot(step: Step, task: str | None) -> None:
    value = step["min_frequency"]
    if isinstance(value, float) and not 0 < value < 1:
        raise _ParamError("min_frequency", f"a fraction must be between 0 and 1, got {value}")


STEPS: Final[tuple[StepSpec, ...]] = (
    # --- cleaning, on the raw table ---------------------------------------------------------
    StepSpec(
        "drop_duplicates",
        "row",
        "cleaning",
        "Drop repeated rows (equal in every column, or in the given columns).",
        (
            _columns(False, "every column"),
            Param(
                "keep",
                {"enum": ["first", "last", "none"]},
                "Which copy to keep; 'none' drops every copy.",
                default="first",
            ),
        ),
        {"op": "drop_duplicates"},
    ),
    StepSpec(
        "drop_columns",
        "row",
        "cleaning",
        "Remove columns from the table (they are not features and not needed to predict).",
        (_columns(True),),
        {"op": "drop_columns", "columns": ["customer_name"]},
    ),
    StepSpec(
        "drop_missing",
        "row",
        "cleaning",
        "Drop rows with missing values (in any column, or in the given columns).",
        (
            _columns(False, "every column"),
            Param(
                "how",
                {"enum": ["any", "all"]},
                "Drop a row when any of the columns is missing, or only when all are.",
                default="any",
            ),
        ),
        {"op": "drop_missing", "columns": ["age"]},
    ),
    StepSpec(
        "filter_rows",
        "row",
        "cleaning",
        "Keep the rows where `column operator value` holds. A missing value never satisfies a "
        "comparison (use is_null / not_null for those).",
        (
            Param("column", _NAME, "The column to test.", required=True),
            Param("operator", {"enum": list(FILTER_OPERATORS)}, "The comparison.", required=True),
            Param(
                "value",
                {"type": ["number", "string", "boolean", "array", "null"]},
                "A number, string or boolean; a list for in / not_in; omitted for is_null / "
                "not_null. Datetime columns compare with ISO 8601 strings.",
            ),
        ),
        {"op": "filter_rows", "column": "age", "operator": ">=", "value": 18},
        _check_filter,
    ),
    StepSpec(
        "cast",
        "row",
        "cleaning",
        "Convert columns to another type (e.g. numbers stored as text). The model's signature, "
        "hence what predictions must send, follows the new type.",
        (
            _columns(True),
            Param("to", {"enum": list(CAST_TYPES)}, "The new type.", required=True),
            Param(
                "errors",
                {"enum": ["null", "fail"]},
                "A value that does not convert becomes missing ('null') or fails the run.",
                default="null",
            ),
        ),
        {"op": "cast", "columns": ["price"], "to": "number"},
    ),
    # --- cleaning, learned from the training split ----------------------------------------------
    StepSpec(
        "impute",
        "learned",
        "cleaning",
        "Fill missing values with a statistic of the training split (or a constant). Applied "
        "to prediction rows too.",
        (
            _columns(False, "every feature column the strategy applies to"),
            Param(
                "strategy", {"enum": list(IMPUTE_STRATEGIES)}, "What fills a gap.", default="median"
            ),
            Param(
                "fill_value",
                {"type": ["number", "string", "null"]},
                "The constant, for strategy 'constant'.",
            ),
            Param(
                "add_indicator",
                {"type": "boolean"},
                "Also add a 0/1 column per imputed column marking where values were missing.",
                default=False,
            ),
        ),
        {"op": "impute", "columns": ["income"], "strategy": "median"},
        _check_impute,
    ),
    StepSpec(
        "clip_outliers",
        "learned",
        "cleaning",
        "Clip numeric values to bounds learned on the training split: quantiles, or the IQR "
        "fences Q1 - factor*IQR and Q3 + factor*IQR.",
        (
            _numeric_columns(),
            Param(
                "method",
                {"enum": ["quantile", "iqr"]},
                "How the bounds are found.",
                default="quantile",
            ),
            Param(
                "lower",
                {"type": "number", "minimum": 0, "maximum": 1},
                "Lower quantile (method 'quantile').",
                default=0.01,
            ),
            Param(
                "upper",
                {"type": "number", "minimum": 0, "maximum": 1},
                "Upper quantile (method 'quantile').",
                default=0.99,
            ),
            Param(
                "factor",
                {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "IQR multiplier (method 'iqr').",
                default=1.5,
            ),
        ),
        {"op": "clip_outliers", "columns": ["income"], "method": "iqr"},
        _check_clip,
    ),
    # --- transforms ------------------------------------------------------------------------------
    StepSpec(
        "standard_scale",
        "learned",
        "transform",
        "Standardize: subtract the training mean, divide by the training standard deviation.",
        (
            _numeric_columns(),
            Param("with_mean", {"type": "boolean"}, "Center the values.", default=True),
        ),
        {"op": "standard_scale", "columns": ["age", "income"]},
    ),
    StepSpec(
        "minmax_scale",
        "learned",
        "transform",
        "Scale to a range using the training minimum and maximum.",
        (
            _numeric_columns(),
            Param(
                "feature_range",
                {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                "[low, high] of the output.",
                default=[0, 1],
            ),
        ),
        {"op": "minmax_scale", "columns": ["age"]},
        _check_range("feature_range"),
    ),
    StepSpec(
        "robust_scale",
        "learned",
        "transform",
        "Subtract the training median, divide by an inter-quantile range (robust to outliers).",
        (
            _numeric_columns(),
            Param(
                "quantile_range",
                {
                    "type": "array",
                    "items": {"type": "number", "minimum": 0, "maximum": 100},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "[low, high] percentiles of the range.",
                default=[25, 75],
            ),
        ),
        {"op": "robust_scale", "columns": ["income"]},
        _check_range("quantile_range"),
    ),
    StepSpec(
        "log_transform",
        "learned",
        "transform",
        "Natural log of (value + offset); a value where that is not positive becomes missing "
        "(then imputed).",
        (
            _columns(True),
            Param(
                "offset",
                {"type": "number", "minimum": 0, "maximum": 1e12},
                "Added before the log (1: log1p).",
                default=1.0,
            ),
        ),
        {"op": "log_transform", "columns": ["income"]},
    ),
    StepSpec(
        "power_transform",
        "learned",
        "transform",
        "Yeo-Johnson power transform fitted on the training split (makes skewed data more "
        "Gaussian; accepts zero and negative values).",
        (
            _numeric_columns(),
            Param("standardize", {"type": "boolean"}, "Standardize the output.", default=True),
        ),
        {"op": "power_transform", "columns": ["income"]},
    ),
    StepSpec(
        "bin",
        "learned",
        "transform",
        "Discretize numeric columns into bins learned on the training split (k-bins).",
        (
            _columns(True),
            Param(
                "n_bins",
                {"type": "integer", "minimum": 2, "maximum": 100},
                "Number of bins.",
                default=5,
            ),
            Param(
                "strategy",
                {"enum": ["uniform", "quantile", "kmeans"]},
                "Equal widths, equal counts, or 1-d k-means.",
                default="quantile",
            ),
            Param(
                "encode",
                {"enum": ["onehot", "ordinal"]},
                "One 0/1 column per bin, or the bin's index.",
                default="onehot",
            ),
        ),
        {"op": "bin", "columns": ["age"], "n_bins": 4},
    ),
    StepSpec(
        "one_hot",
        "learned",
        "transform",
        "One 0/1 column per category seen in training; unseen (or infrequent) values at "
        "prediction time are encoded as all zeros (or as the 'infrequent' column).",
        (
            _columns(True),
            Param(
                "min_frequency",
                {
                    "anyOf": [
                        {"type": "integer", "minimum": 1},
                        {"type": "number"},
                        {"type": "null"},
                    ]
                },
                "Rarer categories (a count, or a fraction of rows) are grouped as infrequent.",
            ),
            Param(
                "max_categories",
                {"type": ["integer", "null"], "minimum": 2, "maximum": 10000},
                "At most this many columns per feature (the rest grouped as infrequent).",
            ),
        ),
        {"op": "one_hot", "columns": ["city"], "min_frequency": 5},
        _check_one_hot,
    ),
    StepSpec(
        "ordinal_encode",
        "learned",
        "transform",
        "Replace each category with its index (in the given order, else sorted); unknown values "
        "become -1 and missing ones -2.",
        (
            _columns(True),
            Param(
                "categories",
                {
                    "type": ["object", "null"],
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": ["string", "number", "boolean"]},
                        "minItems": 1,
                        "uniqueItems": True,
                    },
                },
                "Optional order per column: {column: [first, second, ...]}.",
            ),
        ),
        {"op": "ordinal_encode", "columns": ["size"], "categories": {"size": ["S", "M", "L"]}},
        _check_ordinal,
    ),
    StepSpec(
        "target_encode",
        "learned",
        "transform",
        "Replace each category with a smoothed mean of the target for it (one column per class "
        "for a multiclass target), cross-fitted on the training split to avoid leakage.",
        (
            _columns(True),
            Param(
                "smooth",
                {"anyOf": [{"enum": ["auto"]}, {"type": "number", "minimum": 0}]},
                "Shrinkage towards the global mean ('auto': empirical Bayes).",
                default="auto",
            ),
            Param(
                "cv",
                {"type": "integer", "minimum": 2, "maximum": 20},
                "Cross-fitting folds.",
                default=5,
            ),
        ),
        {"op": "target_encode", "columns": ["zip_code"]},
    ),
    StepSpec(
        "tfidf",
        "learned",
        "transform",
        "TF-IDF of a text column with a vocabulary learned on the training split.",
        (
            Param("column", _NAME, "The text column.", required=True),
            Param(
                "max_features",
                {"type": "integer", "minimum": 1, "maximum": 100000},
                "Vocabulary size (most frequent terms).",
                default=1000,
            ),
            Param(
                "ngram_range",
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1, "maximum": 5},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "[min_n, max_n] word n-grams.",
                default=[1, 1],
            ),
            Param(
                "min_df",
                {"type": "integer", "minimum": 1},
                "Ignore rarer terms (document count).",
                default=1,
            ),
            Param("lowercase", {"type": "boolean"}, "Lowercase before tokenizing.", default=True),
            Param(
                "stop_words", {"enum": ["english", None]}, "Drop English stop words.", default=None
            ),
            Param("sublinear_tf", {"type": "boolean"}, "Use 1 + log(tf).", default=False),
        ),
        {"op": "tfidf", "column": "review", "max_features": 500, "ngram_range": [1, 2]},
        _check_ngrams,
    ),
    # --- feature engineering ---------------------------------------------------------------------
    StepSpec(
        "datetime_parts",
        "learned",
        "feature",
        "Replace datetime columns (ISO 8601 text at prediction time) by numeric parts, in UTC "
        "(values without an offset are taken as UTC). cyclical replaces periodic parts by a "
        "sin/cos pair. Datetime columns that no step names get the default parts "
        f"{list(DEFAULT_DATETIME_PARTS)}.",
        (
            _columns(True),
            Param(
                "parts",
                {
                    "type": "array",
                    "items": {"enum": list(DATETIME_PARTS)},
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "Which parts; new columns are named <column>_<part> (_sin/_cos if cyclical).",
                default=list(DEFAULT_DATETIME_PARTS),
            ),
            Param("cyclical", {"type": "boolean"}, "Sin/cos encode periodic parts.", default=False),
        ),
        {"op": "datetime_parts", "columns": ["signup"], "parts": ["year", "month", "weekday"]},
    ),
    StepSpec(
        "expression",
        "learned",
        "feature",
        "A new numeric column computed from numeric columns: numbers, column names (or "
        'col("any name")), + - * / ** (constant exponent, |e| <= 10), unary minus, abs, log, '
        "sqrt, exp, min, max, clip(x, low, high). Division by zero, log of <= 0 and overflow "
        "give a missing value (then imputed). Never evaluated by Python.",
        (
            Param("name", _NAME, "The new column's name.", required=True),
            Param(
                "expression",
                {"type": "string", "minLength": 1, "maxLength": 500},
                "The formula.",
                required=True,
            ),
        ),
        {"op": "expression", "name": "bmi", "expression": "weight / (height / 100) ** 2"},
        _check_expression,
    ),
    StepSpec(
        "polynomial",
        "learned",
        "feature",
        "Add powers and products of numeric columns (a^2, a b, ...).",
        (
            Param(
                "columns", {**_COLUMNS, "maxItems": 20}, "The columns to combine.", required=True
            ),
            Param(
                "degree",
                {"type": "integer", "minimum": 2, "maximum": 3},
                "Highest degree.",
                default=2,
            ),
            Param(
                "interaction_only",
                {"type": "boolean"},
                "Only products of distinct columns (no a^2).",
                default=False,
            ),
        ),
        {"op": "polynomial", "columns": ["width", "height"], "interaction_only": True},
    ),
    # --- selection --------------------------------------------------------------------------------
    StepSpec(
        "keep_columns",
        "learned",
        "selection",
        "Use these columns as features even where the defaults would leave them out "
        "(id-like or constant columns).",
        (_columns(True),),
        {"op": "keep_columns", "columns": ["store_number"]},
    ),
    StepSpec(
        "variance_threshold",
        "learned",
        "selection",
        "Drop final features whose training variance is at most the threshold. Selection steps "
        "come after every other learned step: they act on the final feature matrix.",
        (
            Param(
                "threshold",
                {"type": "number", "minimum": 0},
                "Variance at or below which a feature goes.",
                default=0.0,
            ),
        ),
        {"op": "variance_threshold", "threshold": 0.01},
    ),
    StepSpec(
        "select_k_best",
        "learned",
        "selection",
        "Keep the k final features that score best against the target on the training split "
        "('auto': ANOVA F for classification, F-regression for regression; 'chi2' needs "
        "non-negative features).",
        (
            Param(
                "k",
                {"type": "integer", "minimum": 1, "maximum": 100000},
                "How many features to keep.",
                default=10,
            ),
            Param("score", {"enum": list(SCORE_FUNCTIONS)}, "The score function.", default="auto"),
        ),
        {"op": "select_k_best", "k": 20},
        _check_k_best,
    ),
)

BY_OP: Final[Mapping[str, StepSpec]] = {spec.op: spec for spec in STEPS}
ROW_OPS: Final = frozenset(s.op for s in STEPS if s.kind == "row")
LEARNED_OPS: Final = frozenset(s.op for s in STEPS if s.kind == "learned")
SELECTION_OPS: Final = frozenset({"variance_threshold", "select_k_best"})


def describe() -> list[dict[str, Any]]:
    """Every step with its kind, description, parameters as a JSON Schema, and an example:
    the body of ``GET /preprocessing/steps``."""
    out = []
    for spec in STEPS:
        properties: dict[str, Any] = {}
        for param in spec.params:
            prop = {**copy.deepcopy(dict(param.schema)), "description": param.description}
            if not param.required:
                prop["default"] = copy.deepcopy(param.default)
                _allow_null(prop)
            properties[param.name] = prop
        out.append(
            {
                "name": spec.op,
                "kind": spec.kind,
                "group": spec.group,
                "description": spec.description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": [p.name for p in spec.params if p.required],
                    "additionalProperties": False,
                },
                "example": copy.deepcopy(dict(spec.example)),
            }
        )
    return out


def json_schema() -> dict[str, Any]:
    """JSON Schema of a pipeline's ``preprocessing`` list (for the OpenAPI document): an
    array of objects, one shape per step, told apart by ``op``."""
    shapes = []
    for entry in describe():
        parameters = entry["parameters"]
        shapes.append(
            {
                "type": "object",
                "title": entry["name"],
                "description": f"[{entry['kind']}] {entry['description']}",
                "properties": {"op": {"const": entry["name"]}, **parameters["properties"]},
                "required": ["op", *parameters["required"]],
                "additionalProperties": False,
            }
        )
    return {
        "type": "array",
        "maxItems": MAX_STEPS,
        "description": "Preprocessing steps; GET /preprocessing/steps lists them.",
        "items": {"oneOf": shapes, "discriminator": {"propertyName": "op"}},
    }


def _allow_null(prop: dict[str, Any]) -> None:
    """null is accepted for every optional parameter (it means the default): say so."""
    kinds = prop.get("type")
    if isinstance(kinds, str) and kinds != "null":
        prop["type"] = [kinds, "null"]
    elif isinstance(kinds, list) and "null" not in kinds:
        prop["type"] = [*kinds, "null"]
    elif "enum" in prop and None not in prop["enum"]:
        prop["enum"] = [*prop["enum"], None]
    elif "anyOf" in prop and {"type": "null"} not in prop["anyOf"]:
        prop["anyOf"] = [*prop["anyOf"], {"type": "null"}]


# --- checking values against the small JSON-schema subset used above ------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The option a misspelt ``word`` most likely meant: one it contains ("one_hot_encode"
    -> "one_hot"), else the closest by spelling."""
    options = list(options)
    inside = [o for o in options if len(o) > 2 and o in word]
    if inside:
        return max(inside, key=len)
    close = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return close[0] if close else None


_TYPE_WORDS: Final = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer()
        return _is_int(value)
    if kind == "number":
        if isinstance(value, float):
            return math.isfinite(value)
        return _is_int(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(kind)


def _is_int(value: Any) -> bool:
    # Python's ints are unbounded; numpy, pandas and scikit-learn stop at 64 bits.
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _conform(value: Any, schema: Mapping[str, Any], where: str) -> Any:
    """``value`` if it satisfies ``schema`` (ints for whole-number integers, a deep copy),
    else ``ValueError`` whose text starts with "must"."""
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return _conform(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        wanted = dict.fromkeys(e.removeprefix("must be ").split(", got ")[0] for e in errors)
        raise ValueError(f"must be {' or '.join(wanted)}, got {_show(value)}")
    if "enum" in schema:
        options = list(schema["enum"])
        if value not in options or isinstance(value, bool) != any(
            isinstance(o, bool) for o in options if o == value
        ):
            shown = ", ".join("null" if o is None else repr(o) for o in options)
            hint = ""
            if isinstance(value, str):
                close = _suggest(value, [o for o in options if isinstance(o, str)])
                hint = f" (did you mean {close!r}?)" if close else ""
            raise ValueError(f"must be one of {shown}, got {_show(value)}{hint}")
        return value
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        matched = next((k for k in allowed if _is_type(value, k)), None)
        if matched is None:
            words = " or ".join(_TYPE_WORDS[k] for k in allowed)
            raise ValueError(f"must be {words}, got {_show(value)}")
        if matched == "null":
            return None
        if matched == "integer":
            value = int(value)
        if matched in ("number", "integer"):
            _bounds(value, schema)
        elif matched == "string":
            if len(value) < schema.get("minLength", 0):
                raise ValueError("must not be empty")
            if len(value) > schema.get("maxLength", math.inf):
                raise ValueError(f"must be at most {schema['maxLength']} characters")
        elif matched == "array":
            return _array(value, schema, where)
        elif matched == "object":
            item_schema = schema.get("additionalProperties", {})
            return {k: _conform(v, item_schema, f"{where}.{k}") for k, v in value.items()}
    return value


def _bounds(value: float, schema: Mapping[str, Any]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise ValueError(f"must be >= {schema['minimum']}, got {_show(value)}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ValueError(f"must be <= {schema['maximum']}, got {_show(value)}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise ValueError(f"must be > {schema['exclusiveMinimum']}, got {_show(value)}")


def _array(value: list[Any], schema: Mapping[str, Any], where: str) -> list[Any]:
    if len(value) < schema.get("minItems", 0):
        least = schema["minItems"]
        raise ValueError(
            f"must be a list of {least} or more items, got {_show(value)}"
            if least > 1
            else "must not be empty"
        )
    if len(value) > schema.get("maxItems", math.inf):
        raise ValueError(f"must have at most {schema['maxItems']} items")
    items = schema.get("items", {})
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_conform(item, items, f"{where}[{i}]"))
        except ValueError as exc:
            raise ValueError(f"item {i} {exc}") from None
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in out:
            if item in seen:
                raise ValueError(f"must not repeat {_show(item)}")
            seen.append(item)
    return out


# --- the validator --------------------------------------------------------------------------


class StepsError(ValueError):
    """A preprocessing list that cannot run; the message names the step index, the step and
    the parameter (``preprocessing[2] (clip_outliers): parameter 'upper' ...``)."""


def _where(index: int, op: str | None = None) -> str:
    return f"preprocessing[{index}]" + (f" ({op})" if op else "")


def validate_steps(
    steps: Any,
    *,
    task: str | None = None,
    target: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[Step]:
    """Normalize a user's steps: every parameter present (defaults filled in), values checked.

    With ``task``, task-specific parameters are checked; with ``target``, no step may drop the
    target or use it as a feature; with ``columns`` (the dataset schema: name -> column type),
    every column a step names must exist at that point, with a type the step accepts
    (row steps run first, on the raw table; learned steps then, in the model). Raises
    ``StepsError`` (a ``ValueError``) naming the step index, the step and the parameter.
    """
    if not isinstance(steps, list):
        raise StepsError("preprocessing must be a list of steps")
    if len(steps) > MAX_STEPS:
        raise StepsError(f"preprocessing has {len(steps)} steps; at most {MAX_STEPS} are allowed")
    normalized = [_normalize(i, raw, task) for i, raw in enumerate(steps)]
    _check_order(normalized)
    _Simulation(target, columns).run(normalized)
    return normalized


def _normalize(index: int, raw: Any, task: str | None) -> Step:
    if not isinstance(raw, dict):
        raise StepsError(
            f"{_where(index)}: a step must be an object with an 'op', got {_show(raw)}"
        )
    op = raw.get("op")
    if not isinstance(op, str):
        raise StepsError(
            f"{_where(index)}: every step needs an 'op' naming it (one of {', '.join(BY_OP)})"
        )
    spec = BY_OP.get(op)
    if spec is None:
        close = _suggest(op, BY_OP, cutoff=0.5)
        hint = f"; did you mean {close!r}?" if close else ""
        raise StepsError(
            f"{_where(index)}: unknown step {_show(op)}{hint} (steps: {', '.join(BY_OP)})"
        )
    where = _where(index, op)
    unknown = [k for k in raw if k != "op" and k not in spec.param_names]
    if unknown:
        name = unknown[0]
        close = _suggest(str(name), spec.param_names, cutoff=0.5)
        hint = f"; did you mean {close!r}?" if close else ""
        known = ", ".join(spec.param_names) or "none"
        raise StepsError(f"{where}: unknown parameter {_show(name)}{hint} (parameters: {known})")
    step: Step = {"op": op}
    for param in spec.params:
        value = raw.get(param.name)
        if value is None:
            if param.required:
                raise StepsError(
                    f"{where}: parameter {param.name!r} is required ({param.description})"
                )
            step[param.name] = copy.deepcopy(param.default)
            continue
        try:
            step[param.name] = _conform(value, param.schema, param.name)
        except ValueError as exc:
            raise StepsError(f"{where}: parameter {param.name!r} {exc}") from None
    if spec.check is not None:
        try:
            spec.check(step, task)
        except _ParamError as exc:
            what = f"parameter {exc.param!r} " if exc.param else ""
            raise StepsError(f"{where}: {what}{exc}") from None
    return step


def _check_order(steps: list[Step]) -> None:
    seen_selection: tuple[int, str] | None = None
    for i, step in enumerate(steps):
        op = step["op"]
        if op in SELECTION_OPS:
            seen_selection = seen_selection or (i, op)
        elif op in LEARNED_OPS and op != "keep_columns" and seen_selection is not None:
            j, selection = seen_selection
            raise StepsError(
                f"{_where(i, op)}: must come before {_where(j, selection)}: selection steps act "
                "on the final feature matrix, after every other learned step"
            )


_NUMERIC_TYPES: Final = frozenset({"integer", "number", "boolean", "derived"})
_FILTER_VALUE_OK: Final[Mapping[str, Callable[[Any], bool]]] = {
    "integer": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "datetime": lambda v: isinstance(v, str) and parse_iso_datetime(v) is not None,
}
_FILTER_VALUE_WORDS: Final = {
    "integer": "numbers",
    "number": "numbers",
    "boolean": "true or false",
    "string": "strings",
    "datetime": "ISO 8601 strings",
}


class _Simulation:
    """Walks the steps over the table's columns to find references that cannot work."""

    def __init__(self, target: str | None, columns: Mapping[str, str] | None) -> None:
        self.target = target
        self.known = columns is not None
        self.types: dict[str, str] = dict(columns or {})
        self.consumed: dict[str, str] = {}

    def run(self, steps: list[Step]) -> None:
        order = [i for i, s in enumerate(steps) if s["op"] in ROW_OPS]
        for i in order:
            self._row(i, steps[i])
        named_datetimes = {c for s in steps if s["op"] == "datetime_parts" for c in s["columns"]}
        for name, kind in list(self.types.items()):
            if kind == "datetime" and name not in named_datetimes and name != self.target:
                where = f"preprocessing (default parts of datetime column {name!r})"
                self._expand(name, DEFAULT_DATETIME_PARTS, False, where)
                parts = ", ".join(datetime_part_names(name, DEFAULT_DATETIME_PARTS, False))
                self.consumed[name] = f"its default datetime parts ({parts})"
        for i, step in enumerate(steps):
            if step["op"] in LEARNED_OPS:
                self._learned(i, step)

    # Each check raises StepsError naming the step and the parameter.
    def _need(
        self,
        i: int,
        step: Step,
        param: str,
        name: str,
        accept: Collection[str] | None = None,
        what: str = "",
    ) -> None:
        where = f"{_where(i, step['op'])}: parameter {param!r}"
        if name in self.consumed:
            raise StepsError(
                f"{where}: column {name!r} was already replaced by {self.consumed[name]}"
            )
        if self.known and name not in self.types:
            raise StepsError(
                f"{where}: column {name!r} is not in the dataset"
                + (
                    " (row steps run on the raw table, before any learned step)"
                    if step["op"] in ROW_OPS
                    else ""
                )
            )
        if self.target is not None and name == self.target and step["op"] in LEARNED_OPS:
            raise StepsError(f"{where}: {name!r} is the target, not a feature")
        kind = self.types.get(name)
        if accept is not None and kind is not None and kind not in accept:
            shown = "derived number" if kind == "derived" else kind
            hint = " (datetime columns take datetime_parts first)" if kind == "datetime" else ""
            raise StepsError(f"{where}: column {name!r} is {shown}; this step needs {what}{hint}")

    def _row(self, i: int, step: Step) -> None:
        op = step["op"]
        if op == "drop_columns":
            for name in step["columns"]:
                if name == self.target:
                    where = f"{_where(i, op)}: parameter 'columns'"
                    raise StepsError(f"{where}: cannot drop the target column {name!r}")
                self._need(i, step, "columns", name)
                self.types.pop(name, None)
        elif op in ("drop_duplicates", "drop_missing"):
            for name in step["columns"] or []:
                self._need(i, step, "columns", name)
        elif op == "filter_rows":
            self._need(i, step, "column", step["column"])
            self._filter_value(i, step, self.types.get(step["column"]))
        elif op == "cast":
            for name in step["columns"]:
                self._need(i, step, "columns", name)
                self.types[name] = step["to"]

    def _filter_value(self, i: int, step: Step, kind: str | None) -> None:
        if kind is None or step["operator"] in ("is_null", "not_null"):
            return
        values = step["value"] if isinstance(step["value"], list) else [step["value"]]
        for value in values:
            if kind not in _FILTER_VALUE_OK or _FILTER_VALUE_OK[kind](value):
                continue
            raise StepsError(
                f"{_where(i, 'filter_rows')}: parameter 'value': column {step['column']!r} is "
                f"{kind}; compare it with {_FILTER_VALUE_WORDS[kind]}, got {_show(value)}"
            )

    def _learned(self, i: int, step: Step) -> None:
        op = step["op"]
        numeric = (_NUMERIC_TYPES, "numbers")
        anything = (
            frozenset({"integer", "number", "boolean", "string", "derived"}),
            "numbers or text",
        )
        if op in (
            "clip_outliers",
            "standard_scale",
            "minmax_scale",
            "robust_scale",
            "power_transform",
            "log_transform",
            "bin",
            "polynomial",
        ):
            for name in step["columns"] or []:
                self._need(i, step, "columns", name, *numeric)
            if op == "bin" and step["encode"] == "onehot":
                self._consume(step["columns"], i, op)
        elif op == "impute":
            needs = (
                numeric
                if step["strategy"] in ("mean", "median")
                or isinstance(step["fill_value"], int | float)
                else anything
            )
            if step["strategy"] == "constant" and isinstance(step["fill_value"], str):
                needs = (frozenset({"string"}), "text (the fill value is a string)")
            for name in step["columns"] or []:
                self._need(i, step, "columns", name, *needs)
        elif op in ("one_hot", "ordinal_encode", "target_encode"):
            for name in step["columns"]:
                self._need(i, step, "columns", name, *anything)
            if op != "ordinal_encode":
                self._consume(step["columns"], i, op)
            else:
                for name in step["columns"]:
                    self.types[name] = "derived"
        elif op == "tfidf":
            self._need(i, step, "column", step["column"], frozenset({"string"}), "text")
            self._consume([step["column"]], i, op)
        elif op == "datetime_parts":
            for name in step["columns"]:
                self._need(
                    i, step, "columns", name, frozenset({"datetime", "string"}), "a datetime"
                )
                self._expand(name, step["parts"], step["cyclical"], _where(i, op))
                self.consumed[name] = _where(i, op)
        elif op == "expression":
            name = step["name"]
            if (
                name in self.types
                or name in self.consumed
                or (self.target is not None and name == self.target)
            ):
                raise StepsError(
                    f"{_where(i, op)}: parameter 'name': column {name!r} already exists"
                )
            expr = parse_expression(step["expression"])
            for ref in expr.columns:
                self._need(i, step, "expression", ref, *numeric)
            self.types[name] = "derived"
        elif op == "keep_columns":
            for name in step["columns"]:
                self._need(i, step, "columns", name)

    def _consume(self, names: Iterable[str], i: int, op: str) -> None:
        for name in names:
            self.types.pop(name, None)
            self.consumed[name] = _where(i, op)

    def _expand(self, name: str, parts: Sequence[str], cyclical: bool, where: str) -> None:
        self.types.pop(name, None)
        for column in datetime_part_names(name, parts, cyclical):
            if column in self.types:
                raise StepsError(f"{where}: the datetime part {column!r} is already a column")
            self.types[column] = "derived"


def datetime_part_names(column: str, parts: Sequence[str], cyclical: bool) -> list[str]:
    """The columns ``datetime_parts`` makes from ``column``, in order."""
    names = []
    for part in parts:
        if cyclical and part in CYCLICAL_PERIODS:
            names += [f"{column}_{part}_sin", f"{column}_{part}_cos"]
        else:
            names.append(f"{column}_{part}")
    return names


def row_steps(steps: Iterable[Step]) -> list[Step]:
    return [s for s in steps if s["op"] in ROW_OPS]


def learned_steps(steps: Iterable[Step]) -> list[Step]:
    return [s for s in steps if s["op"] in LEARNED_OPS]


def referenced_columns(steps: Iterable[Step]) -> set[str]:
    """Input columns that learned steps name: they are never left out by the defaults."""
    names: set[str] = set()
    for step in learned_steps(steps):
        names.update(step.get("columns") or [])
        if step.get("column"):
            names.add(step["column"])
        if step["op"] == "expression":
            names.update(parse_expression(step["expression"]).columns)
    return names


# --- datetimes ------------------------------------------------------------------------------

# A calendar date with dashes, optionally a time and a UTC offset (no anchors: use fullmatch).
ISO_DATETIME_PATTERN: Final = columns.ISO_DATETIME_PATTERN
_ISO_DATE: Final = re.compile(ISO_DATETIME_PATTERN)


def parse_iso_datetime(text: str) -> Any:
    """What mlcontract.scoring accepts as a datetime value: a naive UTC datetime, or None."""
    return columns.parse_iso_datetime(text)


def looks_like_datetime(text: str) -> bool:
    """A conservative test for typing a text column as datetime: a calendar date with dashes
    (``2024-03-05``, optionally a time and an offset). Compact forms such as ``20240305``
    are valid ISO 8601 but usually codes, so they do not count."""
    return bool(_ISO_DATE.fullmatch(text.strip())) and parse_iso_datetime(text) is not None


# --- the expression language ------------------------------------------------------------------

MAX_EXPRESSION_CHARS: Final = 500
MAX_EXPRESSION_DEPTH: Final = 12
MAX_EXPRESSION_NODES: Final = 100
MAX_EXPONENT: Final = 10.0
# name -> (min args, max args)
FUNCTIONS: Final[Mapping[str, tuple[int, int]]] = {
    "abs": (1, 1),
    "log": (1, 1),
    "sqrt": (1, 1),
    "exp": (1, 1),
    "min": (2, 8),
    "max": (2, 8),
    "clip": (3, 3),
}
_BINARY: Final = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}

# The parsed form: ("num", float) | ("col", name) | ("neg", node) | ("bin", op, left, right)
# | ("call", function, (args...)). Plain tuples: picklable, no code.
Node = tuple[Any, ...]


class ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class Expression:
    text: str
    tree: Node
    columns: tuple[str, ...]


def parse_expression(text: str, columns: Collection[str] | None = None) -> Expression:
    """Parse and check a formula (see the ``expression`` step). ``columns``, if given, are the
    only names it may use. Never evaluates anything."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("must be a non-empty formula")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        parsed = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise ExpressionError(f"is not a valid formula: {detail}") from None
    builder = _ExpressionBuilder(columns)
    tree = builder.build(parsed.body, 1)
    return Expression(text, tree, tuple(dict.fromkeys(builder.columns)))


class _ExpressionBuilder:
    def __init__(self, columns: Collection[str] | None) -> None:
        self.allowed = None if columns is None else set(columns)
        self.columns: list[str] = []
        self.nodes = 0

    def build(self, node: ast.AST, depth: int) -> Node:
        self.nodes += 1
        if depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(f"is nested more than {MAX_EXPRESSION_DEPTH} levels deep")
        if self.nodes > MAX_EXPRESSION_NODES:
            raise ExpressionError(f"has more than {MAX_EXPRESSION_NODES} terms")
        if isinstance(node, ast.Constant):
            return ("num", self._number(node.value))
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise ExpressionError(f"uses the function {node.id!r} without calling it")
            return self._column(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.build(node.operand, depth + 1)
            return ("neg", operand) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            symbol = _BINARY[type(node.op)]
            left = self.build(node.left, depth + 1)
            if symbol == "**":
                return ("bin", symbol, left, ("num", self._exponent(node.right)))
            return ("bin", symbol, left, self.build(node.right, depth + 1))
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise ExpressionError(f"uses {_construct(node)}, which is not allowed")

    def _number(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExpressionError(f"uses the constant {_show(value)}; only numbers are allowed")
        try:
            number = float(value)
        except OverflowError:
            raise ExpressionError("uses a number that is too large") from None
        if not math.isfinite(number):
            raise ExpressionError("uses a number that is too large")
        return number

    def _exponent(self, node: ast.AST) -> float:
        sign = 1.0
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            node = node.operand
        if not isinstance(node, ast.Constant):
            raise ExpressionError("'**' needs a constant exponent (e.g. x ** 2)")
        value = sign * self._number(node.value)
        if abs(value) > MAX_EXPONENT:
            raise ExpressionError(f"uses the exponent {value:g}; at most {MAX_EXPONENT:g} in size")
        self.nodes += 1
        return value

    def _column(self, name: str) -> Node:
        if self.allowed is not None and name not in self.allowed:
            close = difflib.get_close_matches(name, sorted(self.allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExpressionError(f"uses the unknown column {name!r}{hint}")
        self.columns.append(name)
        return ("col", name)

    def _call(self, node: ast.Call, depth: int) -> Node:
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"calls {_construct(node.func)}; only {', '.join(FUNCTIONS)} and col() are allowed"
            )
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"calls {name}() with keyword or starred arguments")
        if name == "col":
            arg = node.args[0] if len(node.args) == 1 else None
            if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
                raise ExpressionError('col() takes one quoted column name: col("petal/length")')
            return self._column(arg.value)
        if name not in FUNCTIONS:
            raise ExpressionError(
                f"calls {name}(); only {', '.join(FUNCTIONS)} and col() are allowed"
            )
        least, most = FUNCTIONS[name]
        if not least <= len(node.args) <= most:
            count = str(least) if least == most else f"{least} to {most}"
            raise ExpressionError(
                f"calls {name}() with {len(node.args)} arguments; it takes {count}"
            )
        return ("call", name, tuple(self.build(a, depth + 1) for a in node.args))


def _construct(node: ast.AST) -> str:
    words = {
        "Attribute": "attribute access",
        "Subscript": "indexing",
        "Compare": "a comparison",
        "BoolOp": "and/or",
        "IfExp": "if/else",
        "Lambda": "lambda",
        "Call": "a call",
        "Starred": "unpacking",
        "JoinedStr": "an f-string",
        "NamedExpr": ":=",
    }
    name = type(node).__name__
    if isinstance(node, ast.BinOp):
        return f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return words.get(name, name)


# --- defaults: columns left out, and does the target fit the task? ----------------------------

MIN_ROWS_FOR_ID: Final = 20
MAX_CLASSES: Final = 1000
_ID_NAME: Final = re.compile(
    r"(^|[^a-z0-9])(id|uuid|guid|idx|key|pk)$|^(id|uuid|guid)([^a-z0-9]|$)|[a-z]Id$"
)


def looks_like_id_name(name: str) -> bool:
    return bool(_ID_NAME.search(name) or _ID_NAME.search(name.lower()))


def exclusion_reason(
    name: str,
    kind: str,
    count: int,
    distinct: int,
    minimum: float | None = None,
    maximum: float | None = None,
) -> str | None:
    """Why a feature column is left out by default (None: it is used).

    ``count`` non-missing values, ``distinct`` of them distinct. Constant columns (one value)
    carry nothing. Id-like columns (every value distinct, at least MIN_ROWS_FOR_ID of them)
    are keys, not features: text always; integers when the name says so or the values are a
    dense run (at most 2 * count wide: a row number). Numbers with fractions never are.
    """
    if count > 0 and distinct <= 1:
        return "constant: a single value in every row"
    if count < MIN_ROWS_FOR_ID or distinct < count:
        return None
    if kind == "string":
        return f"id-like: all {count} values are distinct"
    if kind == "integer":
        dense = minimum is not None and maximum is not None and maximum - minimum + 1 <= 2 * count
        if looks_like_id_name(name) or dense:
            why = "its name says id" if looks_like_id_name(name) else "a run of row numbers"
            return f"id-like: all {count} values are distinct ({why})"
    return None


def _stat(column: Mapping[str, Any], key: str) -> float | None:
    value = column.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def default_exclusions(
    profile: Mapping[str, Any], target: str, steps: Iterable[Step] = ()
) -> list[dict[str, str]]:
    """The columns training will leave out by default, from a dataset profile (``GET
    /datasets/{name}/versions/{v}``): ``[{"name", "reason"}]``. Columns that steps name, or
    that ``keep_columns`` keeps, are never left out."""
    steps = list(steps)
    spared = referenced_columns(steps)
    dropped = {c for s in steps if s["op"] == "drop_columns" for c in s["columns"]}
    rows = profile.get("rows")
    out = []
    for column in profile.get("columns", []):
        name = column.get("name")
        if name == target or name in spared or name in dropped:
            continue
        count = column.get("count")
        if count is None and isinstance(rows, int):
            count = rows - int(column.get("missing") or 0)
        if not isinstance(count, int) or not isinstance(column.get("distinct"), int):
            continue
        reason = exclusion_reason(
            name,
            column.get("type", ""),
            count,
            column["distinct"],
            _stat(column, "min"),
            _stat(column, "max"),
        )
        if reason:
            out.append({"name": name, "reason": reason})
    return out


class TargetTaskError(ValueError):
    """The target column cannot be learned with the pipeline's task (an HTTP 400)."""


def _observed_numbers(column: Mapping[str, Any]) -> list[float]:
    values: list[Any] = []
    for key in ("min", "max", "p25", "median", "p75"):
        values.append(column.get(key))
    quantiles = column.get("quantiles")
    if isinstance(quantiles, Mapping):
        values += list(quantiles.values())
    sample = column.get("sample")
    if isinstance(sample, list):
        values += sample
    histogram = column.get("histogram")
    if isinstance(histogram, Mapping) and isinstance(histogram.get("edges"), list):
        # Edges are quantiles of the data, hence data values at p0 and p100 only.
        edges = histogram["edges"]
        values += edges[:1] + edges[-1:]
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def check_target(
    task: str, column_profile: Mapping[str, Any], rows: int | None = None
) -> list[str]:
    """Refuse a target that cannot work with ``task`` (``TargetTaskError``); return warnings.

    ``column_profile`` is the target's entry in the dataset profile. Classification refuses a
    datetime, a number with fractional values (continuous: use regression), a single class,
    and more than half as many classes as rows (beyond 20) or more than MAX_CLASSES.
    Regression refuses a non-numeric or constant target, and warns about one with two values.
    """
    name = column_profile.get("name", "target")
    kind = column_profile.get("type")
    distinct = column_profile.get("distinct")
    count = column_profile.get("count")
    if count is None and rows is not None:
        count = rows - int(column_profile.get("missing") or 0)
    warnings: list[str] = []
    if task == "classification":
        if kind == "datetime":
            raise TargetTaskError(f"target {name!r} is a datetime; classification needs classes")
        if kind == "number":
            fractional = next(
                (v for v in _observed_numbers(column_profile) if not v.is_integer()), None
            )
            if fractional is not None:
                raise TargetTaskError(
                    f"target {name!r} looks continuous ({fractional:g} is not a whole number): "
                    "use task 'regression', or bin the target into classes first"
                )
        if isinstance(distinct, int):
            if distinct < 2:
                raise TargetTaskError(
                    f"target {name!r} has {distinct} class; classification needs two or more"
                )
            many = isinstance(count, int) and distinct > 20 and distinct > count / 2
            if many or distinct > MAX_CLASSES:
                hint = (
                    " use task 'regression'" if kind in ("integer", "number") else " is it an id?"
                )
                raise TargetTaskError(
                    f"target {name!r} has {distinct} distinct values"
                    + (f" in {count} rows" if isinstance(count, int) else "")
                    + f": too many classes to learn;{hint}"
                )
    elif task == "regression":
        if kind not in ("integer", "number"):
            raise TargetTaskError(f"target {name!r} is {kind}; regression needs a numeric target")
        if isinstance(distinct, int):
            if distinct < 2:
                raise TargetTaskError(f"target {name!r} is constant; there is nothing to learn")
            if distinct == 2:
                warnings.append(
                    f"target {name!r} has only two values: is this a classification task?"
                )
    return warnings
