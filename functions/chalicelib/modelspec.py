"""The model parts of a pipeline spec (issue "Models"): training options, the tuning block,
the champion/challenger gate, and the resource caps every one of them is held to.

``schemas.PipelineCreate`` carries these blocks; the checks that need the settings (caps) run
at pipeline creation (``check_caps``), the rest inside the pydantic models.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlcontract import catalog, metrics


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


ClassWeight = Literal["balanced"] | dict[str, Annotated[float, Field(gt=0)]]


class TrainingSpec(_Strict):
    cv_folds: int = Field(
        default=0, ge=0, le=20, description="k-fold cross-validation on the training split "
        "before the final fit (0: none; else 2..20): scores per fold, mean and std.",
    )  # fmt: skip
    cv_metric: str | None = Field(
        default=None, description="The metric cross-validation scores (default accuracy / r2)."
    )
    class_weight: ClassWeight | None = Field(
        default=None,
        description='"balanced" or label -> weight; through the estimator\'s class_weight, '
        "else as sample weights.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.cv_folds == 1:
            raise ValueError("training.cv_folds must be 0 (none) or at least 2")
        return self


class IntRange(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False


class FloatRange(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    grid_points: int = Field(
        default=5, ge=2, le=50, description="Points of a grid search over this range."
    )


class Categorical(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1, max_length=100)


Dimension = Annotated[IntRange | FloatRange | Categorical, Field(discriminator="type")]


class Objective(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Default: the metric's own (maximize accuracy, minimize rmse)."
    )


class EarlyStopping(_Strict):
    """Median pruning across cross-validation folds (optuna's MedianPruner rule): after
    each fold a trial whose running mean is worse than the median of earlier trials at the
    same fold stops and is recorded PRUNED."""

    enabled: bool = True
    startup_trials: int = Field(default=4, ge=1, le=100)


class TuningSpec(_Strict):
    strategy: Literal["grid", "random", "bayesian"]
    max_trials: int = Field(default=20, ge=1)
    parallel: int = Field(default=1, ge=1, description="Trials run at once (a Map batch).")
    objective: Objective | None = Field(
        default=None, description="Default: accuracy (classification) or r2 (regression)."
    )
    space: dict[str, Dimension] = Field(min_length=1)
    cv_folds: int = Field(default=3, ge=2, le=10, description="Folds each trial is scored on.")
    early_stopping: EarlyStopping | None = None

    @model_validator(mode="after")
    def _check(self) -> TuningSpec:
        for name, dim in self.space.items():
            if isinstance(dim, IntRange | FloatRange):
                if dim.low > dim.high:
                    raise ValueError(f"tuning.space.{name}: low must not exceed high")
                if dim.log and dim.low <= 0:
                    raise ValueError(f"tuning.space.{name}: a log range needs low > 0")
        return self

    def objective_for(self, task: str) -> tuple[str, str]:
        metric = self.objective.metric if self.objective else None
        metric = metric or ("accuracy" if task == "classification" else "r2")
        direction = self.objective.direction if self.objective else None
        if direction is None:
            direction = "maximize" if metrics.higher_is_better(metric) else "minimize"
        return metric, direction


class ChampionSpec(_Strict):
    metric: str | None = Field(
        default=None, description="Default: the tuning objective, else accuracy / r2."
    )
    min_improvement: float = Field(
        default=0.0, ge=0, description="How much better than the champion the candidate must be."
    )
    alias: str | None = Field(
        default=None, description="The champion's alias (default: the deployment's alias)."
    )
    enabled: bool = True


# Estimators (scikit-learn 1.4.2) with no class_weight parameter and no sample_weight in fit.
NO_CLASS_WEIGHTS = frozenset({"k_nearest_neighbors", "mlp"})


def check_spec(spec: Any) -> None:
    """Cross-field checks of a pipeline spec's model parts (ValueError names the problem)."""
    task = spec.task
    evaluation = spec.evaluation
    if evaluation.metrics:
        missing = [m for m in evaluation.thresholds if m not in evaluation.metrics]
        if missing:
            raise ValueError(
                f"evaluation.thresholds names {', '.join(map(repr, missing))}, which "
                f"evaluation.metrics does not list; add it there or remove the threshold"
            )
    if spec.training.class_weight is not None and spec.model.algorithm in NO_CLASS_WEIGHTS:
        raise ValueError(
            f"training.class_weight: {spec.model.algorithm} takes neither class weights nor "
            "sample weights"
        )
    if spec.training.class_weight is not None and task != "classification":
        raise ValueError("training.class_weight only applies to classification")
    if spec.training.cv_metric:
        metrics.check(task, [spec.training.cv_metric])
    if evaluation.champion is not None and evaluation.champion.metric:
        metrics.check(task, [evaluation.champion.metric])
    tuning = spec.tuning
    if tuning is None:
        return
    metric, direction = tuning.objective_for(task)
    metrics.check(task, [metric])
    want = "maximize" if metrics.higher_is_better(metric) else "minimize"
    if direction != want:
        raise ValueError(f"tuning.objective: {metric} is better {want}d, not {direction}d")
    fixed = set(spec.model.hyperparameters) & set(tuning.space)
    if fixed:
        raise ValueError(
            f"tuning.space and model.hyperparameters both set {', '.join(sorted(fixed))}"
        )
    problems: list[str] = []
    for name, dim in tuning.space.items():
        for value in _corners(dim):
            try:
                catalog.validate_hyperparameters(spec.model.algorithm, task, {name: value})
            except catalog.HyperparameterError as exc:
                problems.extend(f"tuning.space.{name}: {p}" for p in exc.problems)
                break
    if problems:
        raise ValueError("; ".join(problems))


def _corners(dim: Any) -> list[Any]:
    if isinstance(dim, Categorical):
        return list(dim.choices)
    return [dim.low, dim.high]


def caps_of(settings: Any) -> dict[str, int]:
    """cap -> limit from the settings (MLPIPE_MAX_N_ESTIMATORS, ...)."""
    return {
        "n_estimators": settings.max_n_estimators,
        "depth": settings.max_depth,
        "iter": settings.max_iter,
        "hidden_units": settings.max_hidden_units,
        "cache_mb": settings.max_cache_mb,
    }


def cap_problems(spec: Any, settings: Any) -> list[str]:
    """Every value of the spec past a resource cap, each naming the parameter and the cap."""
    caps = caps_of(settings)
    problems = catalog.check_caps(spec.model.hyperparameters, caps)
    tuning = spec.tuning
    if tuning is not None:
        for name, dim in tuning.space.items():
            values = dim.choices if isinstance(dim, Categorical) else [dim.high]
            for value in values:
                problems += catalog.check_caps({name: value}, caps, where="tuning.space")
        if tuning.max_trials > settings.max_trials:
            problems.append(
                f"tuning.max_trials = {tuning.max_trials} is past the cap of "
                f"{settings.max_trials} (MLPIPE_MAX_TRIALS)"
            )
        if tuning.parallel > settings.max_parallel_trials:
            problems.append(
                f"tuning.parallel = {tuning.parallel} is past the cap of "
                f"{settings.max_parallel_trials} (MLPIPE_MAX_PARALLEL_TRIALS)"
            )
    runtime = spec.model.max_runtime_seconds
    if runtime is not None and runtime > settings.max_job_seconds:
        problems.append(
            f"model.max_runtime_seconds = {runtime} is past the cap of "
            f"{settings.max_job_seconds} (MLPIPE_MAX_JOB_SECONDS)"
        )
    return problems


def is_finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
