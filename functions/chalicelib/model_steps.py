"""What the model steps add to the pipeline's steps (issue "Models"): training options on
the training job's command line, the jobs' wall-time cap, and the provenance a version keeps.
Kept apart from steps.py so the shared step module only gains calls."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.schemas import PipelineCreate
from chalicelib.settings import Settings


def training_options(spec: PipelineCreate, event: dict[str, Any]) -> dict[str, str]:
    """train.py's --cv-folds, --cv-metric, --class-weight and --data-version."""
    options: dict[str, str] = {"data-version": str(event["dataset"]["version"])}
    training = spec.training
    if training.cv_folds:
        options["cv-folds"] = str(training.cv_folds)
        metric = training.cv_metric or (
            spec.tuning.objective_for(spec.task)[0] if spec.tuning else None
        )
        if metric:
            options["cv-metric"] = metric
    if training.class_weight is not None:
        weight = training.class_weight
        options["class-weight"] = weight if isinstance(weight, str) else json.dumps(weight)
    return options


def job_seconds(spec: PipelineCreate, settings: Settings) -> int:
    """The wall-time cap of one job: the pipeline's own, never past MLPIPE_MAX_JOB_SECONDS."""
    own = spec.model.max_runtime_seconds
    return min(own, settings.max_job_seconds) if own else settings.max_job_seconds


def provenance(facts: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """What a model version records to be reproduced: the data version and the training
    split's hash, library versions, seed, every constructor argument, the cross-validation
    scores, and the tuning that chose the hyperparameters."""
    data = {"dataset": event["dataset"]["name"], "version": event["dataset"]["version"]}
    trained_on = facts.get("data") or {}
    if trained_on.get("sha256"):
        data["train_sha256"] = trained_on["sha256"]
    out: dict[str, Any] = {
        "data": data,
        "seed": facts.get("seed"),
        "effective_hyperparameters": facts.get("effective_hyperparameters"),
        "class_weight": facts.get("class_weight"),
        "cross_validation": facts.get("cross_validation"),
        "libraries": facts.get("libraries"),
    }
    tuning = event.get("tuning") or {}
    if tuning.get("best"):
        out["tuning"] = {
            "strategy": tuning.get("strategy"),
            "trials": tuning.get("completed"),
            "best_trial": tuning["best"].get("number"),
            "best_score": tuning["best"].get("score"),
            "params": tuning["best"].get("params"),
        }
    return out
