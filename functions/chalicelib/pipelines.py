"""Pipelines: a validated spec that names a dataset, a target, a model and its gates."""

from __future__ import annotations

from typing import Any

from chalicelib import datasets, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError
from chalicelib.ports.metadata import ConditionFailedError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import DropColumns, DropMissing, PipelineCreate
from chalicelib.timeutil import now_iso


def check_against_schema(spec: PipelineCreate, dataset: dict[str, Any]) -> None:
    """The columns a pipeline names must exist in the dataset version it will read."""
    columns = {c["name"] for c in dataset["schema"]}
    where = f"dataset {dataset['name']!r} v{dataset['version']}"
    if spec.target not in columns:
        raise BadRequestError(f"target column {spec.target!r} is not in {where}")
    for step in spec.preprocessing:
        named = step.columns if isinstance(step, DropColumns | DropMissing) else None
        missing = [c for c in named or [] if c not in columns]
        if missing:
            raise BadRequestError(f"{step.op}: columns {missing} are not in {where}")
    wants_auc = "roc_auc" in [*spec.evaluation.metrics, *spec.evaluation.thresholds]
    if wants_auc and dataset.get("profile"):
        distinct = next(
            c["distinct"] for c in dataset["profile"]["columns"] if c["name"] == spec.target
        )
        if distinct != 2:
            raise BadRequestError(
                f"roc_auc needs a binary target; {spec.target!r} has {distinct} classes in {where}"
            )
    if spec.task == "regression":
        kind = next(c["type"] for c in dataset["schema"] if c["name"] == spec.target)
        if kind not in ("integer", "number"):
            raise BadRequestError(
                f"regression needs a numeric target; {spec.target!r} is {kind} in {where}"
            )


def create(ports: Ports, spec: PipelineCreate) -> dict[str, Any]:
    dataset = datasets.get_version(ports, spec.dataset.name, spec.dataset.version)
    check_against_schema(spec, dataset)
    record = {**spec.model_dump(mode="json"), "created_at": now_iso()}
    try:
        ports.metadata.put(Write(tables.PIPELINES, spec.name, record, expected_rev=0))
    except ConditionFailedError:
        raise ConflictError(f"pipeline {spec.name!r} already exists") from None
    return record


def get(ports: Ports, name: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.PIPELINES, name)
    if rec is None:
        raise NotFoundError(f"pipeline {name!r} not found")
    return rec.item


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [r.item for r in ports.metadata.query(tables.PIPELINES)]
