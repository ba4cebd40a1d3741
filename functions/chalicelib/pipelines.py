"""Pipelines: a validated spec that names a dataset, a target, a model and its gates."""

from __future__ import annotations

from typing import Any

from chalicelib import datasets, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError, PayloadTooLargeError
from chalicelib.ports import ConditionFailedError, TooLargeError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import PipelineCreate
from chalicelib.timeutil import now_iso
from mlcontract import preprocessing as prep


def check_against_schema(
    spec: PipelineCreate, dataset: dict[str, Any], profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a pipeline names must fit the dataset version it will read: its columns exist
    with types its steps accept, and the target suits the task. Returns the ``warnings``
    and the ``excluded_columns`` (id-like or constant, left out by training) to report."""
    where = f"dataset {dataset['name']!r} v{dataset['version']}"
    columns = {c["name"]: c["type"] for c in dataset["schema"]}
    if spec.target not in columns:
        raise BadRequestError(f"target column {spec.target!r} is not in {where}")
    try:
        prep.validate_steps(spec.preprocessing, task=spec.task, target=spec.target, columns=columns)
    except prep.StepsError as exc:
        raise BadRequestError(f"{exc} (in {where})") from None
    profile = profile or {}
    target = next((c for c in profile.get("columns", []) if c["name"] == spec.target), None)
    warnings: list[str] = []
    if target is not None:
        try:
            warnings = prep.check_target(spec.task, target, rows=profile.get("rows"))
        except prep.TargetTaskError as exc:
            raise BadRequestError(f"{exc} ({where})") from None
    if spec.task == "regression" and columns[spec.target] not in ("integer", "number"):
        raise BadRequestError(
            f"regression needs a numeric target; {spec.target!r} is "
            f"{columns[spec.target]} in {where}"
        )
    wants_auc = "roc_auc" in [*spec.evaluation.metrics, *spec.evaluation.thresholds]
    if wants_auc and target is not None and target.get("distinct") != 2:
        raise BadRequestError(
            f"roc_auc needs a binary target; {spec.target!r} has {target.get('distinct')} "
            f"classes in {where}"
        )
    excluded = prep.default_exclusions(profile, spec.target, spec.preprocessing) if profile else []
    return {"warnings": warnings, "excluded_columns": excluded}


def create(ports: Ports, spec: PipelineCreate) -> dict[str, Any]:
    from chalicelib import deployment, modelspec

    caps = modelspec.cap_problems(spec, ports.settings)
    if caps:
        raise BadRequestError("; ".join(caps))
    dataset = datasets.get_version(ports, spec.dataset.name, spec.dataset.version)
    checked = check_against_schema(spec, dataset, datasets.get_profile(ports, dataset))
    if spec.deployment is not None:
        deployment.check_pipeline_target(
            ports, spec.deployment.endpoint, spec.model_name or spec.name
        )
    record = {**spec.model_dump(mode="json"), "created_at": now_iso()}
    try:
        ports.metadata.put(Write(tables.PIPELINES, spec.name, record, expected_rev=0))
    except ConditionFailedError:
        raise ConflictError(f"pipeline {spec.name!r} already exists") from None
    except TooLargeError:  # DynamoDB stops at 400 KB: a 413 that says so, never a 500
        raise PayloadTooLargeError(
            "the pipeline spec is too large to record (its column lists); name fewer columns"
        ) from None
    return {**record, **checked}


def get(ports: Ports, name: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.PIPELINES, name)
    if rec is None:
        raise NotFoundError(f"pipeline {name!r} not found")
    return rec.item


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [r.item for r in ports.metadata.query(tables.PIPELINES)]


def load_spec(ports: Ports, name: str) -> PipelineCreate:
    item = get(ports, name)
    data = {k: v for k, v in item.items() if k != "created_at"}
    return PipelineCreate.model_validate(data, context={"trusted": True})


def using_dataset(
    ports: Ports, dataset: str, version: int | None, latest: int | None = None
) -> list[str]:
    """Pipelines that read ``dataset``: any of it when ``version`` is None; else the ones
    pinned to that version, or following the latest when that version is the latest."""
    users = []
    for rec in ports.metadata.query(tables.PIPELINES):
        ref = rec.item["dataset"]
        if ref["name"] != dataset:
            continue
        pinned = ref.get("version")
        if version is None or pinned == version or (pinned is None and version == latest):
            users.append(rec.item["name"])
    return users


def delete(ports: Ports, name: str) -> dict[str, Any]:
    get(ports, name)
    running = [
        r.item["run_id"]
        for r in ports.metadata.query(tables.RUNS)
        if r.item.get("pipeline") == name and r.item["status"] == "RUNNING"
    ]
    if running:
        raise ConflictError(
            f"pipeline {name!r} has runs in flight ({', '.join(running)}); cancel them first"
        )
    ports.metadata.delete(tables.PIPELINES, name)
    return {"name": name, "deleted": True}
