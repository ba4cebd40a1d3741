"""What training, tuning trials and evaluation share about models: metric scorers, class
weights, k-fold cross-validation and the provenance a model version records.

A sibling module of the job scripts (like jobkit): standard library, numpy, pandas and
scikit-learn only, Python 3.10.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import KFold, StratifiedKFold

from jobkit import JobError
from mlcontract import metrics as metrics_mod

# The parameter a classifier takes class weights through; others get sample weights in fit.
CLASS_WEIGHT = "class_weight"


def positive_scores(pipeline: Any, features: pd.DataFrame) -> np.ndarray | None:
    """Scores of the positive (second) class: probabilities, else the decision function
    (an SVM without probability=True); None when the model has neither."""
    if hasattr(pipeline, "predict_proba"):
        try:
            return np.asarray(pipeline.predict_proba(features))[:, 1]
        except AttributeError:  # SVC(probability=False) exposes the name but refuses it
            pass
    if hasattr(pipeline, "decision_function"):
        scores = np.asarray(pipeline.decision_function(features))
        return scores if scores.ndim == 1 else None
    return None


def has_proba(pipeline: Any) -> bool:
    """Real class probabilities (an SVC without probability=True only pretends)."""
    if not hasattr(pipeline, "predict_proba"):
        return False
    estimator = pipeline.named_steps["estimator"] if hasattr(pipeline, "named_steps") else pipeline
    return getattr(estimator, "probability", True) is not False


def has_scores(pipeline: Any) -> bool:
    return hasattr(pipeline, "predict_proba") or hasattr(pipeline, "decision_function")


def roc_auc(pipeline: Any, features: pd.DataFrame, y_true: np.ndarray) -> float:
    positive = pipeline.classes_[1]
    is_positive = y_true == positive
    if is_positive.all() or not is_positive.any():
        raise JobError("roc_auc is undefined: the test data contains only one class.")
    scores = positive_scores(pipeline, features)
    if scores is None:
        raise JobError("roc_auc needs class scores but the model has none.")
    return float(roc_auc_score(is_positive, scores))


def metric_values(
    names: list[str], pipeline: Any, features: pd.DataFrame, y_true: np.ndarray
) -> dict[str, float | None]:
    """The named metrics (mlcontract.metrics) of a fitted pipeline on ``features``."""
    y_pred = pipeline.predict(features)
    scorers: dict[str, Callable[[], float]] = {
        "accuracy": lambda: accuracy_score(y_true, y_pred),
        "precision_macro": lambda: precision_score(
            y_true, y_pred, average="macro", zero_division=0
        ),
        "recall_macro": lambda: recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": lambda: f1_score(y_true, y_pred, average="macro", zero_division=0),
        "roc_auc": lambda: roc_auc(pipeline, features, y_true),
        # sqrt of MSE rather than root_mean_squared_error: the container may ship sklearn < 1.4.
        "rmse": lambda: math.sqrt(mean_squared_error(y_true, y_pred)),
        "mae": lambda: mean_absolute_error(y_true, y_pred),
        "r2": lambda: r2_score(y_true, y_pred),
        "balanced_accuracy": lambda: balanced_accuracy_score(y_true, y_pred),
        "precision_weighted": lambda: precision_score(
            y_true, y_pred, average="weighted", zero_division=0
        ),
        "recall_weighted": lambda: recall_score(
            y_true, y_pred, average="weighted", zero_division=0
        ),
        "f1_weighted": lambda: f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "log_loss": lambda: log_loss(
            y_true, pipeline.predict_proba(features), labels=pipeline.classes_
        ),
        "mape": lambda: mean_absolute_percentage_error(y_true, y_pred),
    }
    results: dict[str, float | None] = {}
    for name in names:
        value = float(scorers[name]())
        # NaN is not JSON; null says "undefined on this data" (e.g. r2 of a single row).
        results[name] = value if math.isfinite(value) else None
    return results


def fit_kwargs(estimator: Any, class_weight: Any, labels: np.ndarray) -> dict[str, Any]:
    """Apply ``class_weight`` ("balanced" or label -> weight): through the estimator's own
    parameter when it has one, else as sample weights passed to fit. Returns fit kwargs."""
    if class_weight is None:
        return {}
    weights = class_weight
    if isinstance(class_weight, dict):
        by_text = {str(k): float(v) for k, v in class_weight.items()}
        present = {str(label) for label in np.unique(labels)}
        unknown = sorted(set(by_text) - present)
        if unknown:
            raise JobError(
                f"class_weight names label(s) not in the training data: {', '.join(unknown)}; "
                f"labels are: {', '.join(sorted(present))}."
            )
        weights = {
            label: by_text[str(label)] for label in np.unique(labels) if str(label) in by_text
        }
    if CLASS_WEIGHT in estimator.get_params():
        estimator.set_params(**{CLASS_WEIGHT: weights})
        return {}
    import inspect

    from sklearn.utils.class_weight import compute_sample_weight

    if "sample_weight" not in inspect.signature(estimator.fit).parameters:
        raise JobError(
            f"{type(estimator).__name__} takes neither class_weight nor sample weights; "
            "remove training.class_weight."
        )
    return {"estimator__sample_weight": compute_sample_weight(weights, labels)}


def folds(task: str, n_folds: int, seed: int, labels: np.ndarray) -> Any:
    """Seeded, shuffled k-fold splitter (stratified for classification when every class has
    at least k rows)."""
    if task == "classification":
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= n_folds:
            return StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return KFold(n_splits=n_folds, shuffle=True, random_state=seed)


def cross_validate(
    pipeline: Any,
    features: pd.DataFrame,
    labels: np.ndarray,
    *,
    task: str,
    n_folds: int,
    seed: int,
    metric: str,
    class_weight: Any = None,
    prune_below: list[float] | None = None,
) -> dict[str, Any]:
    """k-fold scores of ``metric`` for a fresh clone of ``pipeline`` per fold.

    ``prune_below``: per fold, the median running mean of earlier trials (optuna's
    MedianPruner rule); a trial whose running mean is worse after a fold stops there and is
    reported ``pruned``.
    """
    if len(labels) < n_folds:
        raise JobError(f"{n_folds}-fold cross-validation needs at least {n_folds} rows.")
    higher = metrics_mod.higher_is_better(metric)
    scores: list[float] = []
    pruned = False
    for index, (train_idx, test_idx) in enumerate(
        folds(task, n_folds, seed, labels).split(features, labels)
    ):
        model = clone(pipeline)
        y_train = labels[train_idx]
        kwargs = fit_kwargs(model.named_steps["estimator"], class_weight, y_train)
        model.fit(features.iloc[train_idx], y_train, **kwargs)
        value = metric_values([metric], model, features.iloc[test_idx], labels[test_idx])[metric]
        scores.append(float("nan") if value is None else value)
        mean = _running_mean(scores)
        running = math.nan if mean is None else mean
        if prune_below and index < len(prune_below) and index + 1 < n_folds:
            bound = prune_below[index]
            worse = running < bound if higher else running > bound
            if math.isnan(running) or worse:
                pruned = True
                break
    finite = [s for s in scores if math.isfinite(s)]
    return {
        "metric": metric,
        "folds": [s if math.isfinite(s) else None for s in scores],
        "mean": float(np.mean(finite)) if finite else None,
        "std": float(np.std(finite)) if finite else None,
        "running_means": [_running_mean(scores[: i + 1]) for i in range(len(scores))],
        "pruned": pruned,
    }


def _running_mean(scores: list[float]) -> float | None:
    finite = [s for s in scores if math.isfinite(s)]
    return float(np.mean(finite)) if finite else None


def data_hash(directory: Path) -> str:
    """sha256 over the training channel's parquet files (name and bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*.parquet") if p.is_file()):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def json_params(estimator: Any) -> dict[str, Any]:
    """Every constructor argument of the estimator as JSON values (objects as their repr)."""
    out: dict[str, Any] = {}
    for name, value in sorted(estimator.get_params(deep=False).items()):
        if value is None or isinstance(value, bool | int | float | str):
            out[name] = (
                value if not (isinstance(value, float) and not math.isfinite(value)) else str(value)
            )
        elif isinstance(value, tuple | list):
            out[name] = [v if isinstance(v, bool | int | float | str) else repr(v) for v in value]
        elif isinstance(value, dict):
            out[name] = {
                str(k): v if isinstance(v, int | float | str) else repr(v) for k, v in value.items()
            }
        else:
            out[name] = repr(value)
    return out


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)
