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
    trained_on = facts.get("data") or {}
    out: dict[str, Any] = {
        # "data" (dataset name and version) is recorded by register; this is the hash of the
        # exact training split the job read.
        "training_data": {"sha256": trained_on.get("sha256"), "rows": facts.get("training_rows")},
        "seed": facts.get("seed"),
        "effective_hyperparameters": facts.get("effective_hyperparameters"),
        "class_weight": facts.get("class_weight"),
        "cross_validation": facts.get("cross_validation"),
        "libraries": facts.get("libraries"),
    }
    gate = event.get("gate") or {}
    out["report_key"] = (gate.get("artefact") or {}).get("report", "").replace(
        "/evaluation.json", "/report.json"
    ) or None
    verdict = gate.get("champion")
    if verdict:
        out["champion"] = verdict
        if verdict.get("rejected"):
            out["status"] = "REJECTED"
            out["status_reason"] = verdict.get("reason")
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


def champion_metric(spec: PipelineCreate) -> str:
    champion = spec.evaluation.champion
    if champion is not None and champion.metric:
        return champion.metric
    if spec.tuning is not None:
        return spec.tuning.objective_for(spec.task)[0]
    return "accuracy" if spec.task == "classification" else "r2"


def champion_job_inputs(ports: Any, spec: PipelineCreate) -> tuple[dict[str, str], dict[str, str]]:
    """(arguments, inputs) that make the evaluation job score the champion too: the version
    behind the champion alias (default the deployment's), when the gate is on and one exists."""
    from chalicelib import registry
    from chalicelib.errors import NotFoundError

    champion = spec.evaluation.champion
    if champion is None or not champion.enabled:
        return {}, {}
    alias = champion.alias or (spec.deployment.alias if spec.deployment else "production")
    name = spec.model_name or spec.name
    arguments = {"champion-metric": champion_metric(spec)}
    try:
        version = registry.resolve_alias(ports, name, alias)
        record = registry.get_version(ports, name, version)
    except NotFoundError:
        return arguments, {}
    key = record.get("artefact_key")
    if not isinstance(key, str):
        return arguments, {}
    arguments["champion-version"] = str(version)
    return arguments, {"champion": key}


def champion_verdict(spec: PipelineCreate, report: dict[str, Any], version: Any) -> dict[str, Any]:
    """Whether the candidate beats the champion (by more than min_improvement) on the same
    test split; ``rejected`` is what the gate acts on."""
    from mlcontract import metrics as metrics_mod

    champion = spec.evaluation.champion
    scored = report.get("champion")
    if champion is None or not champion.enabled or not scored:
        return {"rejected": False}
    metric = scored["metric"]
    out = {"metric": metric, "candidate": scored.get("candidate"),
           "champion": scored.get("champion"), "champion_version": version,
           "min_improvement": champion.min_improvement, "rejected": False}  # fmt: skip
    if version is None or scored.get("champion") is None:
        out["reason"] = scored.get("error") or "no champion behind the alias: the candidate wins"
        return out
    candidate = scored.get("candidate")
    if candidate is None:
        out.update(rejected=True, reason=f"{metric} is undefined for the candidate")
        return out
    sign = 1.0 if metrics_mod.higher_is_better(metric) else -1.0
    improvement = sign * (candidate - scored["champion"])
    out["improvement"] = improvement
    if improvement > champion.min_improvement:
        out["reason"] = (
            f"{metric} {candidate:.4g} beats the champion v{version}'s {scored['champion']:.4g}"
        )
    else:
        out.update(
            rejected=True,
            reason=f"{metric} {candidate:.4g} does not beat the champion v{version}'s "
            f"{scored['champion']:.4g} by more than {champion.min_improvement:g}",
        )
    return out


def runtime_hint(reason: str | None) -> str:
    """What to do about a job stopped by its wall-time cap."""
    if not reason or "MaxRuntimeExceeded" not in reason:
        return ""
    return (
        " (the job wall-time cap: model.max_runtime_seconds, at most MLPIPE_MAX_JOB_SECONDS; "
        "lower n_estimators, max_iter or max_depth, or train on less data)"
    )


def after_register(ports: Any, version: dict[str, Any]) -> list[str]:
    """Log the version's run to MLflow when a tracking server is configured; the notes say
    what went wrong there (never a failure of the run)."""
    if not ports.settings.mlflow_tracking_uri:
        return []
    from chalicelib import mlflow_export

    note = mlflow_export.log_run(ports, version, {})
    return [note] if note else []
