"""Every catalog algorithm trains (train.py in-process, the job environment's scikit-learn
version), a tuning trial prunes by the median rule, the evaluation report and its plots, and
the trial planner (grid, random, Bayesian)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import modelkit
import numpy as np
import pandas as pd
import plotkit
import pytest
import reportkit
import trial as trial_job

import train as train_job
from chalicelib import tuning
from chalicelib.modelspec import TuningSpec
from mlcontract import catalog

PAIRS = [(a, t) for a, tasks in catalog.ESTIMATORS.items() for t in tasks]


def _data(task: str, rows: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green"], size=rows)
    y: Any = x1 - x2 + (colour == "red")
    if task == "classification":
        y = np.where(y > 0.5, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "y": y})


def _train(tmp: Path, algorithm: str, task: str, *extra: str) -> dict[str, Any]:
    train_dir = tmp / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    _data(task).to_parquet(train_dir / "data.parquet")
    args = train_job._build_parser().parse_args(
        ["--algorithm", algorithm, "--task", task, "--target", "y", *extra]
    )
    return train_job.train(args, train_dir, tmp / "model")


@pytest.mark.parametrize(("algorithm", "task"), PAIRS)
def test_every_catalog_algorithm_trains(tmp_path: Path, algorithm: str, task: str) -> None:
    hyperparameters = {"max_iter": 300} if algorithm == "mlp" else {}
    metadata = _train(tmp_path, algorithm, task, "--hyperparameters", json.dumps(hyperparameters))
    pipeline = joblib.load(tmp_path / "model" / "model.joblib")
    frame = _data(task, 10, seed=1)
    assert len(pipeline.predict(frame[["x1", "x2", "colour"]])) == 10
    assert metadata["libraries"]["scikit-learn"] == "1.4.2"
    assert len(metadata["data"]["sha256"]) == 64


def test_cross_validation_class_weights_and_list_hidden_layers(tmp_path: Path) -> None:
    metadata = _train(
        tmp_path, "mlp", "classification", "--hyperparameters",
        json.dumps({"hidden_layer_sizes": [8, 4], "max_iter": 200}),
        "--cv-folds", "4", "--cv-metric", "f1_macro",
    )  # fmt: skip
    cv = metadata["cross_validation"]
    assert cv["metric"] == "f1_macro" and len(cv["folds"]) == 4
    assert cv["mean"] == pytest.approx(np.mean(cv["folds"]))
    assert cv["std"] == pytest.approx(np.std(cv["folds"]))
    assert metadata["effective_hyperparameters"]["hidden_layer_sizes"] == [8, 4]
    # No class_weight parameter: the weights go to fit as sample weights.
    weighted = _train(tmp_path / "gb", "gradient_boosting", "classification",
                      "--class-weight", "balanced")  # fmt: skip
    assert weighted["class_weight"] == "balanced"


def test_class_weight_naming_an_unknown_label_fails(tmp_path: Path) -> None:
    with pytest.raises(train_job.JobError, match="not in the training data"):
        _train(tmp_path, "random_forest", "classification", "--class-weight", '{"maybe": 2}')


def test_float_labels_stay_floats(tmp_path: Path) -> None:
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    frame = _data("classification")
    frame["y"] = np.where(frame["y"] == "yes", 1.0, 0.0)
    frame.to_parquet(train_dir / "data.parquet")
    args = train_job._build_parser().parse_args(
        ["--algorithm", "random_forest", "--task", "classification", "--target", "y"]
    )
    metadata = train_job.train(args, train_dir, tmp_path / "model")
    assert metadata["classes"] == [0.0, 1.0]
    assert all(isinstance(c, float) for c in metadata["classes"])


def _trial(tmp: Path, prune_below: list[float] | None) -> dict[str, Any]:
    train_dir = tmp / "train"
    train_dir.mkdir(exist_ok=True)
    _data("classification", 120).to_parquet(train_dir / "data.parquet")
    argv = ["--algorithm", "random_forest", "--task", "classification", "--target", "y",
            "--train-dir", str(train_dir), "--output-dir", str(tmp / "out"), "--number", "3",
            "--metric", "accuracy", "--cv-folds", "3",
            "--params", json.dumps({"n_estimators": 5, "max_depth": 2})]  # fmt: skip
    if prune_below is not None:
        argv += ["--prune-below", json.dumps(prune_below)]
    assert trial_job.main(argv) == 0
    result: dict[str, Any] = json.loads((tmp / "out" / "trial.json").read_text())
    return result


def test_a_trial_reports_fold_scores_and_is_pruned_by_the_median_rule(tmp_path: Path) -> None:
    full = _trial(tmp_path, None)
    assert full["status"] == "COMPLETE" and len(full["folds"]) == 3 and full["number"] == 3
    assert full["params"] == {"n_estimators": 5, "max_depth": 2}
    pruned = _trial(tmp_path, [1.01, 1.01])  # earlier trials' medians it cannot reach
    assert pruned["status"] == "PRUNED" and len(pruned["folds"]) == 1
    assert _trial(tmp_path, [0.0, 0.0])["status"] == "COMPLETE"


def test_report_and_plots(tmp_path: Path) -> None:
    for task in ("classification", "regression"):
        model_dir = tmp_path / task
        _train(model_dir, "random_forest", task)
        pipeline = joblib.load(model_dir / "model" / "model.joblib")
        frame = _data(task, 60, seed=2)
        y = frame["y"].to_numpy()
        report = reportkit.build(task, pipeline, frame[["x1", "x2", "colour"]], y)
        names = plotkit.write_all(report, [0.3, 0.1], model_dir / "plots")
        if task == "classification":
            assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 60
            assert names == ["calibration", "confusion_matrix", "importance", "pr", "roc"]
        else:
            residuals = report["residuals"]
            assert residuals["histogram"]["counts"] and sum(residuals["histogram"]["counts"]) == 60
            assert report["mape"] is not None and names == ["importance", "residuals"]
        for name in names:
            assert (model_dir / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_roc_auc_from_the_decision_function(tmp_path: Path) -> None:
    _train(tmp_path, "linear_svm", "classification")
    pipeline = joblib.load(tmp_path / "model" / "model.joblib")
    frame = _data("classification", 60, seed=4)
    assert not modelkit.has_proba(pipeline) and modelkit.has_scores(pipeline)
    values = modelkit.metric_values(
        ["roc_auc"], pipeline, frame[["x1", "x2", "colour"]], frame["y"].to_numpy()
    )
    assert 0.5 < values["roc_auc"] <= 1.0  # type: ignore[operator]


SPACE = {
    "max_depth": {"type": "int", "low": 2, "high": 6},
    "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True, "grid_points": 3},
    "loss": {"type": "categorical", "choices": ["a", "b"]},
}


def test_grid_random_and_bayesian_plans() -> None:
    spec = TuningSpec.model_validate({"strategy": "grid", "max_trials": 100, "space": SPACE})
    points = tuning.grid(spec, seed=1)
    assert len(points) == 5 * 3 * 2
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 30
    cut = TuningSpec.model_validate({"strategy": "grid", "max_trials": 7, "space": SPACE})
    assert len(tuning.grid(cut, seed=1)) == 7
    random_spec = TuningSpec.model_validate({"strategy": "random", "space": SPACE})
    assert tuning.random_point(random_spec, 1, 4) == tuning.random_point(random_spec, 1, 4)
    assert tuning.random_point(random_spec, 1, 4) != tuning.random_point(random_spec, 1, 5)
    history = [
        {"number": i, "params": tuning.random_point(random_spec, 0, i), "status": "COMPLETE",
         "score": 0.5 + 0.01 * i, "running_means": [0.5]}
        for i in range(6)
    ]  # fmt: skip
    history.append({"number": 6, "params": history[0]["params"], "status": "FAILED",
                    "score": None, "running_means": None})  # fmt: skip
    bayes = TuningSpec.model_validate({"strategy": "bayesian", "max_trials": 20, "space": SPACE})
    batch = tuning.bayesian(bayes, 0, "maximize", history, 3)
    assert len(batch) == 3
    for point in batch:
        assert 2 <= point["max_depth"] <= 6 and point["loss"] in ("a", "b")
        assert 0.01 <= point["learning_rate"] <= 0.3


def test_prune_bounds_are_medians_after_the_startup_trials() -> None:
    spec = TuningSpec.model_validate(
        {"strategy": "random", "space": SPACE, "early_stopping": {"startup_trials": 3}}
    )
    done = [{"status": "COMPLETE", "running_means": [v, v + 0.1, v]} for v in (0.1, 0.5, 0.9)]
    assert tuning.prune_bounds(spec, done[:2], folds=3) == []
    assert tuning.prune_bounds(spec, done, folds=3) == pytest.approx([0.5, 0.6])
    best = tuning.best_of(
        [{"number": 0, "status": "COMPLETE", "score": 0.2},
         {"number": 1, "status": "PRUNED", "score": 0.9},
         {"number": 2, "status": "COMPLETE", "score": 0.4}], "maximize",
    )  # fmt: skip
    assert best is not None and best["number"] == 2
