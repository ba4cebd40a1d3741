"""Which algorithms a pipeline may use, and whether a user's hyperparameters fit them.

The API Lambda cannot carry scikit-learn, so the estimators' real parameter constraints are
read from ``algorithms.json``, generated from the installed scikit-learn by
``python sagemaker_jobs/catalog_gen.py`` (``make catalog``). A unit test regenerates it and fails
on any difference, so a scikit-learn upgrade cannot silently desynchronise the two.

This module must stay stdlib-only: it is imported by the API process.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypedDict, cast

TASKS: Final = ("classification", "regression")

# The single source of truth for algorithm ids: the generator reads it to know what to
# describe, so adding an algorithm here and running `make catalog` is the whole change.
_BY_ALGORITHM: Final[dict[str, dict[str, str]]] = {
    "logistic_regression": {"classification": "sklearn.linear_model.LogisticRegression"},
    "linear_regression": {"regression": "sklearn.linear_model.LinearRegression"},
    "ridge": {"regression": "sklearn.linear_model.Ridge"},
    "lasso": {"regression": "sklearn.linear_model.Lasso"},
    "elastic_net": {"regression": "sklearn.linear_model.ElasticNet"},
    "random_forest": {
        "classification": "sklearn.ensemble.RandomForestClassifier",
        "regression": "sklearn.ensemble.RandomForestRegressor",
    },
    "extra_trees": {
        "classification": "sklearn.ensemble.ExtraTreesClassifier",
        "regression": "sklearn.ensemble.ExtraTreesRegressor",
    },
    "gradient_boosting": {
        "classification": "sklearn.ensemble.GradientBoostingClassifier",
        "regression": "sklearn.ensemble.GradientBoostingRegressor",
    },
    "hist_gradient_boosting": {
        "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
        "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    },
    "linear_svm": {
        "classification": "sklearn.svm.LinearSVC",
        "regression": "sklearn.svm.LinearSVR",
    },
    "kernel_svm": {
        "classification": "sklearn.svm.SVC",
        "regression": "sklearn.svm.SVR",
    },
    "k_nearest_neighbors": {
        "classification": "sklearn.neighbors.KNeighborsClassifier",
        "regression": "sklearn.neighbors.KNeighborsRegressor",
    },
    "gaussian_naive_bayes": {"classification": "sklearn.naive_bayes.GaussianNB"},
    "mlp": {
        "classification": "sklearn.neural_network.MLPClassifier",
        "regression": "sklearn.neural_network.MLPRegressor",
    },
}
ESTIMATORS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {name: MappingProxyType(by_task) for name, by_task in _BY_ALGORITHM.items()}
)

# Estimators that need a dense matrix (no sparse one-hot output) from preprocessing.
DENSE_ONLY: Final = frozenset({"hist_gradient_boosting", "gaussian_naive_bayes"})

ALGORITHMS: Final = tuple(ESTIMATORS)

# Parallelism and logging are sized by the platform for the machine the job runs on; letting
# users set them would let one pipeline oversubscribe a shared worker or flood the logs.
# warm_start and copy_X only matter to callers who refit/reuse objects, which jobs never do.
PLATFORM_PARAMS: Final = frozenset({"n_jobs", "verbose", "warm_start", "copy_X"})

CATALOG_PATH: Final = Path(__file__).with_name("algorithms.json")


class _ConstraintKind(TypedDict):
    kind: str


# typing.Required is Python 3.11+ (the SageMaker image runs 3.10): the required key comes
# from a total base class instead.
class Constraint(_ConstraintKind, total=False):
    """One accepted form of a value; a value is valid if it satisfies any of a param's forms.

    kind "null": JSON null. kind "type": any value of ``type``. kind "options": one of
    ``values`` (of ``type``). kind "interval": a number of ``type`` between ``left`` and
    ``right`` (null = unbounded), ``closed`` as in scikit-learn's Interval.
    ``type`` is one of bool, int, float (ints accepted), float_not_int (an int means
    something else to scikit-learn, e.g. a count rather than a fraction), str, dict, list.
    """

    type: str
    values: list[object]
    left: float | None
    right: float | None
    closed: str


class ParamSpec(TypedDict):
    default: object
    accepts: list[Constraint]
    configurable: bool


class EstimatorSpec(TypedDict):
    estimator: str
    params: dict[str, ParamSpec]


class Catalog(TypedDict):
    sklearn_version: str
    algorithms: dict[str, dict[str, EstimatorSpec]]


class HyperparameterError(ValueError):
    """The request names an algorithm, task or hyperparameter value the platform rejects.

    ``problems`` lists every problem found, so a user can fix them all in one round trip.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


@functools.cache
def _load() -> Catalog:
    return cast(Catalog, json.loads(CATALOG_PATH.read_text(encoding="utf-8")))


def _check_pair(algorithm: str, task: str) -> str:
    """Return the estimator's dotted path, or raise the message a user can act on."""
    if algorithm not in ESTIMATORS:
        raise HyperparameterError(
            f"unknown algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}"
        )
    if task not in TASKS:
        raise HyperparameterError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    by_task = ESTIMATORS[algorithm]
    if task not in by_task:
        raise HyperparameterError(
            f"algorithm {algorithm!r} does not support task {task!r}; "
            f"it supports: {', '.join(by_task)}"
        )
    return by_task[task]


def estimator_path(algorithm: str, task: str) -> str:
    """Dotted path of the scikit-learn class implementing ``algorithm`` for ``task``."""
    return _check_pair(algorithm, task)


def _show(value: object) -> str:
    """Render a value as the JSON user wrote it, except strings keep Python quotes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        text = json.dumps(value, default=repr)
        return text if len(text) <= 60 else text[:57] + "..."
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS: Final = {
    "bool": "a boolean",
    "int": "an int",
    "float": "a number",
    "float_not_int": "a float written with a decimal point",
    "str": "a string",
    "dict": "an object",
    "list": "a list",
}


def _fmt_bound(bound: float | None, number_type: str, *, left: bool) -> str:
    if bound is None:
        return "-inf" if left else "inf"
    return str(int(bound)) if number_type == "int" else repr(float(bound))


def _describe_constraint(c: Constraint) -> str:
    kind = c["kind"]
    if kind == "null":
        return "null"
    if kind == "type":
        return _TYPE_WORDS[c["type"]]
    if kind == "options":
        shown = [_show(v) for v in c["values"]]
        return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
    number_type = c["type"]
    lb = "[" if c["closed"] in ("left", "both") else "("
    rb = "]" if c["closed"] in ("right", "both") else ")"
    left = _fmt_bound(c["left"], number_type, left=True)
    right = _fmt_bound(c["right"], number_type, left=False)
    word = "an int" if number_type == "int" else "a float"
    suffix = " written with a decimal point" if number_type == "float_not_int" else ""
    return f"{word} in {lb}{left}, {right}{rb}{suffix}"


def _describe_accepts(accepts: list[Constraint]) -> str:
    parts = [_describe_constraint(c) for c in accepts]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _is_type(type_name: str, value: object) -> bool:
    # JSON users expect true/false to be booleans only, although Python (and so
    # scikit-learn) treats bool as an int.
    if type_name == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if type_name == "int":
        return isinstance(value, int)
    if type_name == "float":
        return isinstance(value, int | float)
    if type_name == "float_not_int":
        return isinstance(value, float)
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "dict":
        return isinstance(value, dict)
    if type_name == "list":
        return isinstance(value, list)
    raise RuntimeError(f"unknown constraint type {type_name!r} in {CATALOG_PATH.name}")


def _in_interval(c: Constraint, value: float) -> bool:
    # Mirrors scikit-learn's Interval.__contains__ so verdicts agree at the bounds,
    # including infinities (an unbounded but closed side admits inf) and NaN (never).
    if isinstance(value, float) and math.isnan(value):
        return False
    left = -math.inf if c["left"] is None else c["left"]
    right = math.inf if c["right"] is None else c["right"]
    closed = c["closed"]
    if value < left or (value == left and closed not in ("left", "both")):
        return False
    return not (value > right or (value == right and closed not in ("right", "both")))


def _satisfies(c: Constraint, value: object) -> bool:
    kind = c["kind"]
    if kind == "null":
        return value is None
    if not _is_type(c["type"], value):
        return False
    if kind == "type":
        return True
    if kind == "options":
        return value in c["values"]
    if kind == "interval":
        return _in_interval(c, cast(float, value))
    raise RuntimeError(f"unknown constraint kind {kind!r} in {CATALOG_PATH.name}")


def _hint(accepts: list[Constraint], value: object) -> str:
    """Explain the one rejection JSON users find surprising: 100.0 vs 100 and 1 vs 1.0."""
    if isinstance(value, float) and value.is_integer():
        as_int = int(value)
        if any(c.get("type") == "int" and _satisfies(c, as_int) for c in accepts):
            return f" (integers must be written without a decimal point: use {as_int})"
    if isinstance(value, int) and not isinstance(value, bool):
        as_float = float(value)
        if any(c.get("type") == "float_not_int" and _satisfies(c, as_float) for c in accepts):
            return f" (write {as_float!r} for a fraction: an int means a count here)"
    return ""


# List-valued hyperparameters (see catalog_gen._EXTRA_FORMS) and the elements they take.
_LIST_OF_POSITIVE_INTS: Final = frozenset({"hidden_layer_sizes"})


def _check_value(name: str, spec: ParamSpec, value: object) -> str | None:
    if name in PLATFORM_PARAMS:
        return f"hyperparameter {name!r} is set by the platform and cannot be configured"
    if not spec["configurable"]:
        return (
            f"hyperparameter {name!r} cannot be configured through the API: "
            "it only accepts Python objects that JSON cannot express"
        )
    accepts = spec["accepts"]
    if isinstance(value, list) and name in _LIST_OF_POSITIVE_INTS:
        ok = bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
        )
        return (
            None if ok else f"hyperparameter {name!r} must list positive ints, got {_show(value)}"
        )
    if any(_satisfies(c, value) for c in accepts):
        return None
    return (
        f"hyperparameter {name!r} must be {_describe_accepts(accepts)}, "
        f"got {_show(value)}{_hint(accepts, value)}"
    )


def _unknown(name: str, algorithm: str, task: str, params: Mapping[str, ParamSpec]) -> str:
    other_tasks = [
        other
        for other, spec in _load()["algorithms"][algorithm].items()
        if other != task and name in spec["params"]
    ]
    if other_tasks:
        return (
            f"hyperparameter {name!r} of {algorithm} only applies to task "
            f"{', '.join(other_tasks)}, not {task}"
        )
    configurable = sorted(p for p, spec in params.items() if spec["configurable"])
    message = f"unknown hyperparameter {name!r} for {algorithm}"
    # Match against every name, so a typo of a platform-managed one is explained too.
    close = difflib.get_close_matches(name, sorted(params), n=1)
    if close:
        note = "" if close[0] in configurable else ", which cannot be configured"
        return f"{message}; did you mean {close[0]!r}{note}?"
    return f"{message}; configurable hyperparameters are: {', '.join(configurable)}"


def validate_hyperparameters(algorithm: str, task: str, hyperparameters: dict[str, object]) -> None:
    """Raise ``HyperparameterError`` unless scikit-learn would accept these hyperparameters.

    Stricter than scikit-learn where JSON users would be surprised: booleans are not numbers
    and 100.0 is not an int. Cross-parameter rules (e.g. solver vs penalty) are left to the
    training job.
    """
    _check_pair(algorithm, task)
    if not isinstance(hyperparameters, dict):
        raise HyperparameterError(
            f"hyperparameters must be an object mapping names to values, "
            f"got {type(hyperparameters).__name__}"
        )
    params = _load()["algorithms"][algorithm][task]["params"]
    problems: list[str] = []
    for name, value in hyperparameters.items():
        if not isinstance(name, str):
            problems.append(f"hyperparameter names must be strings, got {_show(name)}")
        elif name not in params:
            problems.append(_unknown(name, algorithm, task, params))
        else:
            problem = _check_value(name, params[name], value)
            if problem is not None:
                problems.append(problem)
    if problems:
        raise HyperparameterError(problems)


def _described(spec: ParamSpec) -> dict[str, object]:
    """A parameter as GET /algorithms shows it. A default no user could write (a deprecation
    placeholder such as HistGradientBoosting's categorical_features="warn") is shown as null,
    with scikit-learn's own value in ``default_note``."""
    out: dict[str, object] = {
        "default": spec["default"],
        "accepts": _describe_accepts(spec["accepts"]),
    }
    default = spec["default"]
    a_list = isinstance(default, list) and any(c.get("type") == "list" for c in spec["accepts"])
    if (
        default is not None
        and not a_list
        and not any(_satisfies(c, default) for c in spec["accepts"])
    ):
        out["default"] = None
        out["default_note"] = f"scikit-learn's transitional default {_show(default)}"
    return out


def describe() -> dict[str, dict[str, dict[str, dict[str, object]]]]:
    """algorithm -> task -> configurable hyperparameter -> {"default", "accepts"}
    (and "default_note" where scikit-learn's default is not a value a user may write).

    Built fresh on every call so callers may mutate the result without corrupting the cache.
    """
    catalog = _load()["algorithms"]
    return {
        algorithm: {
            task: {
                name: _described(spec)
                for name, spec in sorted(catalog[algorithm][task]["params"].items())
                if spec["configurable"] and name not in PLATFORM_PARAMS
            }
            for task in TASKS
            if task in ESTIMATORS[algorithm]
        }
        for algorithm in ALGORITHMS
    }


# --- resource caps ------------------------------------------------------------------------

# Hyperparameters that can make a job run for hours or exhaust memory, by the cap that bounds
# them. The API reads each cap from its setting (MLPIPE_MAX_<CAP>, upper-cased) and refuses a
# pipeline past it; None-valued "unlimited" defaults are bounded by the job's wall time.
CAPPED_PARAMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "n_estimators": "n_estimators",
        "max_depth": "depth",
        "max_iter": "iter",
        "hidden_layer_sizes": "hidden_units",
        "cache_size": "cache_mb",
    }
)
# Values that mean "no limit" to scikit-learn for a capped parameter (SVC's max_iter=-1).
_UNLIMITED: Final = {"max_iter": -1}


def cap_setting(cap: str) -> str:
    """The environment variable that sets ``cap``."""
    return f"MLPIPE_MAX_{cap.upper()}"


def _hidden_units(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return sum(value)
    return None


def check_caps(
    hyperparameters: Mapping[str, object], caps: Mapping[str, int], where: str = "hyperparameter"
) -> list[str]:
    """Problems with values past the platform's resource caps (``caps``: cap -> limit)."""
    problems: list[str] = []
    for name, value in hyperparameters.items():
        cap = CAPPED_PARAMS.get(name)
        if cap is None or cap not in caps:
            continue
        limit = caps[cap]
        if name == "hidden_layer_sizes":
            units = _hidden_units(value)
            if units is not None and units > limit:
                problems.append(
                    f"{where} 'hidden_layer_sizes' has {units} hidden units in all, past the cap "
                    f"of {limit} ({cap_setting(cap)})"
                )
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if _UNLIMITED.get(name) == value:
            problems.append(
                f"{where} {name!r} = {value} means no limit; the cap is {limit} "
                f"({cap_setting(cap)})"
            )
        elif value > limit:
            problems.append(
                f"{where} {name!r} = {_show(value)} is past the cap of {limit} ({cap_setting(cap)})"
            )
    return problems
