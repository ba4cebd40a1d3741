"""The model parts of a pipeline spec: the catalog's defects fixed, resource caps, training
options and the tuning block (issue "Models")."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib import modelspec
from chalicelib.schemas import PipelineCreate
from chalicelib.settings import Settings
from mlcontract import catalog, metrics


def _spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "p",
        "dataset": {"name": "d"},
        "target": "y",
        "task": "classification",
        "model": {"algorithm": "random_forest"},
    }
    base.update(over)
    return base


def _error(**over: Any) -> str:
    with pytest.raises(ValidationError) as info:
        PipelineCreate.model_validate(_spec(**over))
    return str(info.value)


def test_every_described_default_is_a_value_the_parameter_accepts() -> None:
    for algorithm, by_task in catalog.describe().items():
        for task, params in by_task.items():
            for name, param in params.items():
                assert param["default"] != "deprecated", (algorithm, task, name)
                if param["default"] is not None:
                    catalog.validate_hyperparameters(algorithm, task, {name: param["default"]})


def test_hidden_layer_sizes_take_a_list_of_positive_ints() -> None:
    catalog.validate_hyperparameters("mlp", "classification", {"hidden_layer_sizes": [32, 16]})
    with pytest.raises(catalog.HyperparameterError, match="positive ints"):
        catalog.validate_hyperparameters("mlp", "regression", {"hidden_layer_sizes": [0, "a"]})


def test_binary_default_metrics_include_roc_auc_for_models_without_probabilities() -> None:
    assert "roc_auc" in metrics.defaults("classification", 2, has_proba=False)
    assert "roc_auc" not in metrics.defaults("classification", 3)


def test_threshold_on_a_metric_not_listed_is_refused() -> None:
    message = _error(evaluation={"metrics": ["accuracy"], "thresholds": {"f1_macro": 0.5}})
    assert "'f1_macro'" in message and "evaluation.metrics does not list" in message
    # With no metrics listed, every metric is computed: any threshold is fine.
    PipelineCreate.model_validate(_spec(evaluation={"thresholds": {"f1_macro": 0.5}}))


def test_caps_name_the_parameter_and_the_cap() -> None:
    settings = Settings(max_n_estimators=100, max_depth=10, max_hidden_units=64, max_trials=5)
    spec = PipelineCreate.model_validate(
        _spec(model={"algorithm": "random_forest",
                     "hyperparameters": {"n_estimators": 500, "max_depth": 8}})
    )  # fmt: skip
    assert modelspec.cap_problems(spec, settings) == [
        "hyperparameter 'n_estimators' = 500 is past the cap of 100 (MLPIPE_MAX_N_ESTIMATORS)"
    ]
    mlp = PipelineCreate.model_validate(
        _spec(model={"algorithm": "mlp", "hyperparameters": {"hidden_layer_sizes": [50, 50]}})
    )
    [problem] = modelspec.cap_problems(mlp, settings)
    assert "100 hidden units" in problem and "MLPIPE_MAX_HIDDEN_UNITS" in problem
    tuned = PipelineCreate.model_validate(
        _spec(tuning={"strategy": "random", "max_trials": 9,
                      "space": {"max_depth": {"type": "int", "low": 2, "high": 40}}})
    )  # fmt: skip
    problems = modelspec.cap_problems(tuned, settings)
    assert any("'max_depth' = 40 is past the cap of 10 (MLPIPE_MAX_DEPTH)" in p for p in problems)
    assert any("MLPIPE_MAX_TRIALS" in p for p in problems)


def test_svc_unlimited_iterations_are_refused() -> None:
    spec = PipelineCreate.model_validate(
        _spec(model={"algorithm": "kernel_svm", "hyperparameters": {"max_iter": -1}})
    )
    [problem] = modelspec.cap_problems(spec, Settings())
    assert "means no limit" in problem and "MLPIPE_MAX_ITER" in problem


def test_tuning_space_is_checked_against_the_catalog() -> None:
    message = _error(
        tuning={"strategy": "grid", "space": {"n_estimatorz": {"type": "int", "low": 1, "high": 2}}}
    )
    assert "n_estimatorz" in message and "did you mean 'n_estimators'" in message
    message = _error(
        tuning={"strategy": "bayesian", "objective": {"metric": "rmse"},
                "space": {"max_depth": {"type": "int", "low": 2, "high": 4}}}
    )  # fmt: skip
    assert "'rmse' is not available for classification" in message
    message = _error(
        tuning={"strategy": "random", "objective": {"metric": "accuracy", "direction": "minimize"},
                "space": {"max_depth": {"type": "int", "low": 2, "high": 4}}}
    )  # fmt: skip
    assert "accuracy is better maximized" in message


def test_training_options() -> None:
    spec = PipelineCreate.model_validate(
        _spec(training={"cv_folds": 5, "class_weight": {"yes": 2.0}, "cv_metric": "f1_macro"})
    )
    assert spec.training.cv_folds == 5
    assert "cv_folds" in _error(training={"cv_folds": 1})
    assert "class_weight" in _error(training={"class_weight": "heavy"})
    message = _error(model={"algorithm": "mlp"}, training={"class_weight": "balanced"})
    assert "mlp takes neither class weights nor sample weights" in message


def test_job_wall_time_cap() -> None:
    from chalicelib import model_steps

    settings = Settings(max_job_seconds=600)
    spec = PipelineCreate.model_validate(
        _spec(model={"algorithm": "random_forest", "max_runtime_seconds": 120})
    )
    assert model_steps.job_seconds(spec, settings) == 120
    assert model_steps.job_seconds(PipelineCreate.model_validate(_spec()), settings) == 600
    too_long = PipelineCreate.model_validate(
        _spec(model={"algorithm": "random_forest", "max_runtime_seconds": 7200})
    )
    [problem] = modelspec.cap_problems(too_long, settings)
    assert "max_runtime_seconds = 7200 is past the cap of 600 (MLPIPE_MAX_JOB_SECONDS)" in problem
    hint = model_steps.runtime_hint("MaxRuntimeExceeded: the job ran longer than 120 s")
    assert "wall-time cap" in hint and "n_estimators" in hint
    assert model_steps.runtime_hint("Failed: bad value") == ""
