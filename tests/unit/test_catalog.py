"""The hyperparameter catalog: in sync with scikit-learn, and agreeing with its verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sklearn.utils._param_validation import InvalidParameterError, make_constraint

import catalog_gen
from mlcontract import catalog
from mlcontract.catalog import HyperparameterError, validate_hyperparameters

REPO = Path(__file__).resolve().parents[2]
PAIRS = [(a, t) for a in catalog.ALGORITHMS for t in catalog.TASKS if t in catalog.ESTIMATORS[a]]


def _sklearn_accepts(algorithm: str, task: str, name: str, value: object) -> bool:
    est = catalog_gen._load_class(catalog.estimator_path(algorithm, task))()
    est.set_params(**{name: value})
    try:
        est._validate_params()
    except InvalidParameterError:
        return False
    return True


def _catalog_accepts(algorithm: str, task: str, name: str, value: object) -> bool:
    try:
        validate_hyperparameters(algorithm, task, {name: value})
    except HyperparameterError:
        return False
    return True


def _error(algorithm: str, task: str, hyperparameters: dict[str, object]) -> str:
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters(algorithm, task, hyperparameters)
    return str(info.value)


# --- the guard -------------------------------------------------------------------------------


def test_committed_catalog_matches_installed_sklearn():
    committed = catalog.CATALOG_PATH.read_text(encoding="utf-8")
    fresh = catalog_gen.build_catalog()
    hint = "algorithms.json is stale for this scikit-learn: run `make catalog` and commit it"
    assert fresh == json.loads(committed), hint
    assert catalog_gen.render(fresh) == committed, hint


def test_catalog_covers_exactly_the_declared_algorithms():
    algorithms = json.loads(catalog.CATALOG_PATH.read_text())["algorithms"]
    assert {a: set(t) for a, t in algorithms.items()} == {
        a: set(t) for a, t in catalog.ESTIMATORS.items()
    }
    assert catalog.ALGORITHMS == (
        "logistic_regression",
        "linear_regression",
        "random_forest",
        "hist_gradient_boosting",
    )


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "task", "hyperparameters"),
    [
        (
            "random_forest",
            "classification",
            {"n_estimators": 50, "max_depth": 5, "criterion": "entropy", "max_features": "sqrt"},
        ),
        ("random_forest", "regression", {"criterion": "absolute_error", "max_depth": None}),
        ("hist_gradient_boosting", "classification", {"learning_rate": 0.1, "max_iter": 50}),
        ("hist_gradient_boosting", "regression", {"loss": "quantile", "quantile": 0.9}),
        ("logistic_regression", "classification", {"C": 0.5, "max_iter": 200}),
        ("logistic_regression", "classification", {"C": 1, "random_state": 0}),  # int as float
        ("linear_regression", "regression", {"fit_intercept": False, "positive": True}),
        ("linear_regression", "regression", {}),
    ],
)
def test_valid_hyperparameters_are_accepted(algorithm, task, hyperparameters):
    validate_hyperparameters(algorithm, task, hyperparameters)


# --- rejected, with a message a user can act on ----------------------------------------------


def test_unknown_algorithm():
    message = _error("xgboost", "classification", {})
    assert message == (
        "unknown algorithm 'xgboost'; choose one of: logistic_regression, linear_regression, "
        "random_forest, hist_gradient_boosting"
    )


def test_unknown_task():
    assert _error("random_forest", "clustering", {}).startswith(
        "unknown task 'clustering'; choose one of: classification, regression"
    )


def test_unsupported_task():
    message = _error("linear_regression", "classification", {})
    assert message.startswith(
        "algorithm 'linear_regression' does not support task 'classification'"
    )
    assert "regression" in message.split(";")[1]
    assert _error("logistic_regression", "regression", {}).startswith(
        "algorithm 'logistic_regression' does not support task 'regression'"
    )


def test_unknown_hyperparameter_suggests_the_close_name():
    assert _error("random_forest", "classification", {"n_estimator": 10}) == (
        "unknown hyperparameter 'n_estimator' for random_forest; did you mean 'n_estimators'?"
    )


def test_typo_of_a_platform_param_says_it_cannot_be_configured():
    assert _error("logistic_regression", "classification", {"n_job": 2}) == (
        "unknown hyperparameter 'n_job' for logistic_regression; "
        "did you mean 'n_jobs', which cannot be configured?"
    )


def test_unknown_hyperparameter_without_close_name_lists_choices():
    message = _error("linear_regression", "regression", {"zzz": 1})
    assert message == (
        "unknown hyperparameter 'zzz' for linear_regression; "
        "configurable hyperparameters are: fit_intercept, positive"
    )


def test_catalog_is_the_sagemaker_images_scikit_learn():
    """The catalog is generated in the job environment pinned to the SageMaker image, so a
    hyperparameter that image's scikit-learn refuses (LinearRegression's ``tol`` arrived in
    1.7) is a 400 at pipeline creation, not a failed training job on AWS."""
    from mlcontract import image

    assert catalog._load()["sklearn_version"] == image.PINS["scikit-learn"]
    assert _error("linear_regression", "regression", {"tol": 1e-6}).startswith(
        "unknown hyperparameter 'tol'"
    )


def test_hyperparameter_of_the_other_task_says_so():
    message = _error("random_forest", "regression", {"class_weight": "balanced"})
    assert message == (
        "hyperparameter 'class_weight' of random_forest only applies to task classification, "
        "not regression"
    )


def test_int_out_of_range():
    assert _error("random_forest", "classification", {"n_estimators": -3}) == (
        "hyperparameter 'n_estimators' must be an int in [1, inf), got -3"
    )


def test_enum():
    assert _error("random_forest", "classification", {"criterion": "foo"}) == (
        "hyperparameter 'criterion' must be one of 'entropy', 'gini', 'log_loss', got 'foo'"
    )


def test_several_forms_are_all_listed():
    assert _error("random_forest", "classification", {"max_features": "auto"}) == (
        "hyperparameter 'max_features' must be an int in [1, inf), "
        "a float in (0.0, 1.0] written with a decimal point, one of 'log2', 'sqrt' or null, "
        "got 'auto'"
    )


@pytest.mark.parametrize("name", sorted(catalog.PLATFORM_PARAMS))
def test_platform_params_cannot_be_configured(name):
    algorithm, task = "linear_regression", "regression"
    if name not in ("copy_X", "n_jobs"):
        algorithm, task = "random_forest", "classification"
    assert _error(algorithm, task, {name: 1}) == (
        f"hyperparameter '{name}' is set by the platform and cannot be configured"
    )


def test_float_with_integral_value_is_not_an_int():
    message = _error("random_forest", "classification", {"n_estimators": 100.0})
    assert message == (
        "hyperparameter 'n_estimators' must be an int in [1, inf), got 100.0 "
        "(integers must be written without a decimal point: use 100)"
    )


def test_int_where_only_a_fraction_fits_explains_the_difference():
    message = _error("random_forest", "classification", {"min_samples_split": 1})
    assert message.startswith("hyperparameter 'min_samples_split' must be an int in [2, inf)")
    assert message.endswith("got 1 (write 1.0 for a fraction: an int means a count here)")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(value):
    # scikit-learn accepts True as n_estimators (bool is an int in Python); JSON users
    # sending true almost certainly made a mistake.
    assert _sklearn_accepts("random_forest", "classification", "n_estimators", True)
    message = _error("random_forest", "classification", {"n_estimators": value})
    assert message.endswith(f"got {'true' if value else 'false'}")
    assert not _catalog_accepts("logistic_regression", "classification", "C", value)


def test_null_only_where_none_is_accepted():
    validate_hyperparameters("random_forest", "classification", {"max_depth": None})
    assert _error("random_forest", "classification", {"n_estimators": None}) == (
        "hyperparameter 'n_estimators' must be an int in [1, inf), got null"
    )


def test_all_problems_are_reported_at_once():
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters(
            "random_forest", "classification", {"n_estimator": 1, "max_depth": 0, "n_jobs": 2}
        )
    assert len(info.value.problems) == 3
    assert str(info.value) == "\n".join(info.value.problems)


def test_hyperparameters_must_be_an_object():
    assert _error("random_forest", "classification", [1]).startswith(  # type: ignore[arg-type]
        "hyperparameters must be an object"
    )


def test_is_a_value_error():
    assert issubclass(HyperparameterError, ValueError)


def test_param_without_json_form_is_not_configurable(monkeypatch):
    fake = json.loads(catalog.CATALOG_PATH.read_text())
    fake["algorithms"]["linear_regression"]["regression"]["params"]["tol"] = {
        "default": None,
        "accepts": [],
        "configurable": False,
    }
    monkeypatch.setattr(catalog, "_load", lambda: fake)
    assert _error("linear_regression", "regression", {"tol": 0.1}).startswith(
        "hyperparameter 'tol' cannot be configured through the API"
    )
    assert "tol" not in catalog.describe()["linear_regression"]["regression"]


# --- agreement with scikit-learn's own validation --------------------------------------------

EXPLICIT_CASES = [
    # (algorithm, task, name, value, expected verdict)
    ("random_forest", "classification", "n_estimators", 50, True),
    ("random_forest", "classification", "n_estimators", 0, False),
    ("random_forest", "classification", "n_estimators", 1.5, False),
    ("random_forest", "classification", "n_estimators", 100.0, False),
    ("random_forest", "classification", "n_estimators", "10", False),
    ("random_forest", "classification", "max_depth", None, True),
    ("random_forest", "classification", "max_depth", 0, False),
    ("random_forest", "classification", "max_features", 0.5, True),
    ("random_forest", "classification", "max_features", 1.5, False),
    ("random_forest", "classification", "max_features", "auto", False),
    ("random_forest", "classification", "min_samples_split", 1, False),
    ("random_forest", "classification", "min_samples_split", 1.0, True),
    ("random_forest", "classification", "class_weight", "balanced_subsample", True),
    ("random_forest", "regression", "criterion", "gini", False),
    ("random_forest", "regression", "criterion", "poisson", True),
    ("random_forest", "classification", "random_state", 2**32 - 1, True),
    ("random_forest", "classification", "random_state", 2**32, False),
    ("random_forest", "classification", "random_state", -1, False),
    ("hist_gradient_boosting", "classification", "learning_rate", 0, False),
    ("hist_gradient_boosting", "classification", "early_stopping", "auto", True),
    ("hist_gradient_boosting", "classification", "max_bins", 256, False),
    ("hist_gradient_boosting", "classification", "max_features", 1, False),
    ("hist_gradient_boosting", "regression", "validation_fraction", 10, True),
    ("logistic_regression", "classification", "C", 1, True),
    ("logistic_regression", "classification", "C", 0.0, False),
    ("logistic_regression", "classification", "C", math.inf, True),
    ("logistic_regression", "classification", "C", math.nan, False),
    ("logistic_regression", "classification", "solver", "saga", True),
    ("logistic_regression", "classification", "l1_ratio", 1.5, False),
    ("linear_regression", "regression", "positive", "yes", False),
]


@pytest.mark.parametrize(("algorithm", "task", "name", "value", "expected"), EXPLICIT_CASES)
def test_explicit_cases_agree_with_sklearn(algorithm, task, name, value, expected):
    assert _sklearn_accepts(algorithm, task, name, value) is expected
    assert _catalog_accepts(algorithm, task, name, value) is expected


PROBES: list[object] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2,
    3,
    255,
    256,
    2**32 - 1,
    2**32,
    -0.5,
    0.0,
    0.5,
    1.0,
    1.5,
    100.0,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "foo",
    "sqrt",
    "auto",
    "balanced",
    "l2",
    {},
    {"0": 1.0},
    [],
    [[0, 1]],
]


def _known_divergence(name: str, raw_constraints: object, spec: dict, value: object) -> bool:
    """Where the catalog is deliberately stricter than scikit-learn."""
    if isinstance(value, bool) and not any(c.get("type") == "bool" for c in spec["accepts"]):
        return True  # booleans are not numbers for JSON users
    # Hidden forms are scikit-learn internals, e.g. LogisticRegression's penalty="deprecated".
    constraints = [make_constraint(raw) for raw in raw_constraints or []]
    if not any(c.is_satisfied_by(value) for c in constraints if not c.hidden):
        return True
    # A JSON list/object is "array-like" to scikit-learn, but the catalog cannot check its
    # elements, so array-like forms are omitted.
    return isinstance(value, list | dict) and "array-like" in list(raw_constraints or [])


@pytest.mark.parametrize(("algorithm", "task"), PAIRS)
def test_catalog_never_accepts_what_sklearn_rejects_and_rarely_the_reverse(algorithm, task):
    cls = catalog_gen._load_class(catalog.estimator_path(algorithm, task))
    params = json.loads(catalog.CATALOG_PATH.read_text())["algorithms"][algorithm][task]["params"]
    checked = 0
    for name, spec in params.items():
        if not spec["configurable"]:
            continue
        options = [v for c in spec["accepts"] if c["kind"] == "options" for v in c["values"]]
        for value in [*PROBES, *options, spec["default"]]:
            ours = _catalog_accepts(algorithm, task, name, value)
            theirs = _sklearn_accepts(algorithm, task, name, value)
            if ours:
                assert theirs, f"catalog accepts {name}={value!r} but scikit-learn rejects it"
            elif theirs and not _known_divergence(
                name, cls._parameter_constraints.get(name), spec, value
            ):
                pytest.fail(f"catalog rejects {name}={value!r} which scikit-learn accepts")
            checked += 1
    assert checked >= len(PROBES)


# --- the other public functions --------------------------------------------------------------


def test_estimator_path():
    assert (
        catalog.estimator_path("random_forest", "regression")
        == "sklearn.ensemble.RandomForestRegressor"
    )
    assert (
        catalog.estimator_path("hist_gradient_boosting", "classification")
        == "sklearn.ensemble.HistGradientBoostingClassifier"
    )
    with pytest.raises(HyperparameterError, match="does not support task"):
        catalog.estimator_path("linear_regression", "classification")


def test_catalog_estimators_match_the_declared_paths():
    algorithms = json.loads(catalog.CATALOG_PATH.read_text())["algorithms"]
    for algorithm, task in PAIRS:
        assert algorithms[algorithm][task]["estimator"] == catalog.estimator_path(algorithm, task)


def test_describe():
    described = catalog.describe()
    assert list(described) == list(catalog.ALGORITHMS)
    assert list(described["random_forest"]) == ["classification", "regression"]
    assert list(described["linear_regression"]) == ["regression"]
    rf = described["random_forest"]["classification"]
    assert rf["n_estimators"] == {"default": 100, "accepts": "an int in [1, inf)"}
    assert rf["criterion"]["default"] == "gini"
    assert not catalog.PLATFORM_PARAMS & set(rf)
    described["random_forest"].clear()  # callers get a copy, never the cache
    assert catalog.describe()["random_forest"]
    json.dumps(described)  # the API returns it as is
