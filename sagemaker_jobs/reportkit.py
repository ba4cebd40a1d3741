"""The evaluation report of one model on held-out data (evaluate.py writes it as
``report.json`` beside ``evaluation.json``; the API serves it per model version).

Classification: accuracy, balanced accuracy, precision/recall/F1 per class and macro/weighted,
ROC AUC (one-vs-rest for multiclass), log loss, confusion matrix, calibration, ROC and PR
curve points. Regression: RMSE, MAE, MAPE, R², residual statistics and a residual histogram.
Curves are thinned to at most ``MAX_POINTS`` points so a report stays small.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_recall_curve,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    roc_curve,
)

import jobkit
import modelkit

MAX_POINTS = 101


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _thin(*arrays: np.ndarray) -> list[list[float | None]]:
    n = len(arrays[0])
    if n > MAX_POINTS:
        index = np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))
        arrays = tuple(a[index] for a in arrays)
    return [[_num(v) for v in a] for a in arrays]


def _curves(is_positive: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    if is_positive.all() or not is_positive.any():
        return {"roc": None, "pr": None, "roc_auc": None}
    fpr, tpr, _ = roc_curve(is_positive, scores)
    precision, recall, _ = precision_recall_curve(is_positive, scores)
    roc = _thin(fpr, tpr)
    pr = _thin(recall, precision)
    return {
        "roc": {"fpr": roc[0], "tpr": roc[1]},
        "pr": {"recall": pr[0], "precision": pr[1]},
        "roc_auc": _num(roc_auc_score(is_positive, scores)),
    }


def _calibration(is_positive: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[Any]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {"bin": [float(edges[b]), float(edges[b + 1])], "count": int(mask.sum()),
                 "mean_predicted": _num(probability[mask].mean()),
                 "fraction_positive": _num(is_positive[mask].mean())}
            )  # fmt: skip
    return out


def classification(pipeline: Any, features: pd.DataFrame, y_true: np.ndarray) -> dict[str, Any]:
    y_pred = pipeline.predict(features)
    classes = list(pipeline.classes_)
    labels = [jobkit.json_value(c) for c in classes]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = [
        {"class": label, "precision": _num(p), "recall": _num(r), "f1": _num(f),
         "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]  # fmt: skip
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=classes, average=average, zero_division=0
        )
        averages[average] = {"precision": _num(p), "recall": _num(r), "f1": _num(f)}
    report: dict[str, Any] = {
        "classes": labels,
        "accuracy": _num(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _num(balanced_accuracy_score(y_true, y_pred)),
        "per_class": per_class,
        "averages": averages,
        "confusion_matrix": {
            "labels": labels,
            "rows_are": "true class",
            "matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        },
        "roc_auc": None,
        "log_loss": None,
        "curves": {},
        "calibration": None,
    }
    probability = None
    if modelkit.has_proba(pipeline):
        probability = np.asarray(pipeline.predict_proba(features))
        with contextlib.suppress(ValueError):  # a label the model never saw
            report["log_loss"] = _num(log_loss(y_true, probability, labels=classes))
    if len(classes) == 2:
        scores = modelkit.positive_scores(pipeline, features)
        if scores is not None:
            is_positive = y_true == classes[1]
            curves = _curves(is_positive, scores)
            report["roc_auc"] = curves.pop("roc_auc")
            report["curves"] = {str(labels[1]): curves}
            if probability is not None:
                report["calibration"] = _calibration(is_positive, probability[:, 1])
    elif probability is not None:
        present = [c for c in classes if (y_true == c).any()]
        try:
            report["roc_auc"] = _num(
                roc_auc_score(y_true, probability, multi_class="ovr", labels=classes)
            )
        except ValueError:
            report["roc_auc"] = None  # a class missing from the test split
        report["curves"] = {
            str(jobkit.json_value(c)): _curves(y_true == c, probability[:, classes.index(c)])
            for c in present
        }
        for curve in report["curves"].values():
            curve.pop("roc_auc", None)
    return report


def regression(pipeline: Any, features: pd.DataFrame, y_true: np.ndarray) -> dict[str, Any]:
    y_pred = np.asarray(pipeline.predict(features), dtype=float)
    residuals = y_true - y_pred
    counts, edges = np.histogram(residuals, bins=20)
    quantiles = np.quantile(residuals, [0.05, 0.25, 0.5, 0.75, 0.95])
    order = np.argsort(y_pred)
    sample = _thin(y_pred[order], residuals[order])
    return {
        "rmse": _num(math.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": _num(mean_absolute_error(y_true, y_pred)),
        "mape": _num(mean_absolute_percentage_error(y_true, y_pred)),
        "r2": _num(r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
        "residuals": {
            "mean": _num(residuals.mean()),
            "std": _num(residuals.std()),
            "min": _num(residuals.min()),
            "max": _num(residuals.max()),
            "quantiles": {
                q: _num(v)
                for q, v in zip(("p5", "p25", "p50", "p75", "p95"), quantiles, strict=True)
            },
            "histogram": {"edges": [_num(e) for e in edges], "counts": counts.tolist()},
            "vs_predicted": {"predicted": sample[0], "residual": sample[1]},
        },
    }


def build(task: str, pipeline: Any, features: pd.DataFrame, y_true: np.ndarray) -> dict[str, Any]:
    if task == "classification":
        return {"task": task, "rows": len(features), **classification(pipeline, features, y_true)}
    return {"task": task, "rows": len(features), **regression(pipeline, features, y_true)}
