"""Evaluation metrics: the names a pipeline may ask for, per task, and which way is better.

The API validates pipeline specs against this table, the evaluation job computes exactly these
names, and the quality gate reads ``higher_is_better`` to know whether a threshold is a floor
or a ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Metric:
    name: str
    task: str
    higher_is_better: bool
    description: str
    # Only defined for a two-class target (one class is "positive").
    binary_only: bool = False
    # Computed from class probabilities, so the model must have predict_proba.
    needs_proba: bool = False
    # Part of "every metric of the task" when a pipeline names none. The later additions are
    # computed when asked for (and always in the evaluation report), so that the default
    # metrics of existing pipelines stay what they were.
    default: bool = True


METRICS: Final[tuple[Metric, ...]] = (
    Metric("accuracy", "classification", True, "share of rows predicted right"),
    Metric("precision_macro", "classification", True, "precision, unweighted mean over classes"),
    Metric("recall_macro", "classification", True, "recall, unweighted mean over classes"),
    Metric("f1_macro", "classification", True, "F1, unweighted mean over classes"),
    Metric(
        "roc_auc",
        "classification",
        True,
        "area under the ROC curve of the positive (second) class (probabilities, else the "
        "decision function)",
        binary_only=True,
    ),
    Metric(
        "balanced_accuracy", "classification", True, "recall averaged over classes", default=False
    ),
    Metric(
        "precision_weighted",
        "classification",
        True,
        "precision, mean over classes weighted by support",
        default=False,
    ),
    Metric(
        "recall_weighted",
        "classification",
        True,
        "recall, mean over classes weighted by support",
        default=False,
    ),
    Metric(
        "f1_weighted",
        "classification",
        True,
        "F1, mean over classes weighted by support",
        default=False,
    ),
    Metric(
        "log_loss",
        "classification",
        False,
        "cross-entropy of the class probabilities",
        needs_proba=True,
        default=False,
    ),
    Metric("rmse", "regression", False, "root mean squared error"),
    Metric("mae", "regression", False, "mean absolute error"),
    Metric("r2", "regression", True, "coefficient of determination"),
    Metric(
        "mape", "regression", False, "mean absolute percentage error (a fraction)", default=False
    ),
)

BY_NAME: Final = {m.name: m for m in METRICS}


def for_task(task: str) -> tuple[str, ...]:
    return tuple(m.name for m in METRICS if m.task == task)


def higher_is_better(name: str) -> bool:
    return BY_NAME[name].higher_is_better


def defaults(task: str, n_classes: int | None = None, has_proba: bool = True) -> list[str]:
    """Every default metric of the task that is defined for this model, what a pipeline that
    names none gets: roc_auc for every binary target (from probabilities or the decision
    function), ``needs_proba`` ones only with probabilities."""
    return [
        m.name
        for m in METRICS
        if m.task == task
        and m.default
        and not (m.binary_only and n_classes is not None and n_classes != 2)
        and not (m.needs_proba and not has_proba)
    ]


def check(task: str, names: list[str]) -> None:
    """Raise ValueError naming the first metric that does not belong to ``task``."""
    allowed = for_task(task)
    for name in names:
        if name not in allowed:
            raise ValueError(
                f"metric {name!r} is not available for {task}; choose from " + ", ".join(allowed)
            )


def passes(name: str, value: float, bound: float) -> bool:
    """The quality gate for one metric: a floor, or a ceiling when lower is better."""
    return value >= bound if higher_is_better(name) else value <= bound
