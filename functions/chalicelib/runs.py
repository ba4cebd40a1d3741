"""Runs: one Step Functions execution of a pipeline, with a per-step status record."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import datasets, pipelines, tables
from chalicelib.errors import ConflictError, NotFoundError, ServiceUnavailableError
from chalicelib.ports.metadata import ConditionFailedError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import PipelineCreate, RunCreate
from chalicelib.timeutil import now_iso

# The user-visible steps, in order. The state machine's states map onto these.
STEPS = (
    "ingest", "validate", "split", "train", "evaluate", "quality_gate", "register", "deploy",
)  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED")
log = logging.getLogger("mlpipe.runs")


def start(ports: Ports, pipeline_name: str, body: RunCreate) -> dict[str, Any]:
    spec_item = pipelines.get(ports, pipeline_name)
    spec = PipelineCreate.model_validate({k: v for k, v in spec_item.items() if k != "created_at"})
    version = body.dataset_version or spec.dataset.version
    dataset = datasets.get_version(ports, spec.dataset.name, version)
    pipelines.check_against_schema(spec, dataset)
    run_id = uuid.uuid4().hex
    now = now_iso()
    record: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": pipeline_name,
        "status": "RUNNING",
        "steps": [
            {"name": s, "status": "PENDING", "started_at": None, "ended_at": None} for s in STEPS
        ],
        "dataset": {"name": dataset["name"], "version": dataset["version"]},
        "metrics": {},
        "model": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
        "ended_at": None,
    }
    ports.metadata.put(Write(tables.RUNS, run_id, record, expected_rev=0))
    execution_input = {
        "run_id": run_id,
        "pipeline": spec.model_dump(mode="json"),
        "dataset": {"name": dataset["name"], "version": dataset["version"], "key": dataset["key"]},
        "poll_seconds": ports.settings.poll_seconds,
        "train_attempt": 1,
    }
    try:
        resp = ports.stepfunctions.start_execution(
            stateMachineArn=ports.settings.state_machine_arn,
            name=run_id,
            input=json.dumps(execution_input),
        )
    except (ClientError, BotoCoreError) as exc:
        log.error("StartExecution failed for run %s: %s", run_id, exc)
        message = "the orchestrator could not start this run; try again"
        fail(ports, run_id, {"step": None, "type": "ServiceUnavailableError", "message": message})
        raise ServiceUnavailableError(message) from None
    update(ports, run_id, execution_arn=resp["executionArn"])
    return {"run_id": run_id, "status": "RUNNING", "pipeline": pipeline_name}


def _load(ports: Ports, run_id: str) -> tuple[dict[str, Any], int]:
    rec = ports.metadata.get(tables.RUNS, run_id)
    if rec is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return rec.item, rec.rev


def _mutate(ports: Ports, run_id: str, change: Any) -> dict[str, Any]:
    """Read-modify-write with a revision check: step handlers and the API may race."""
    for _ in range(20):
        item, rev = _load(ports, run_id)
        new = change(dict(item))
        if new is None:
            return item
        new["updated_at"] = now_iso()
        try:
            ports.metadata.put(Write(tables.RUNS, run_id, new, rev))
        except ConditionFailedError:
            continue
        return dict(new)
    raise ConflictError(f"run {run_id!r} is being updated concurrently")


def update(ports: Ports, run_id: str, **fields: Any) -> dict[str, Any]:
    return _mutate(ports, run_id, lambda item: {**item, **fields})


def set_step(ports: Ports, run_id: str, step: str, status: str, **detail: Any) -> None:
    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["status"] in TERMINAL:
            return None  # a finished run's record is final
        steps = []
        for s in item["steps"]:
            if s["name"] == step:
                s = {**s, "status": status, **detail}
                if status == "RUNNING" and not s.get("started_at"):
                    s["started_at"] = now_iso()
                if status in ("SUCCEEDED", "FAILED", "SKIPPED"):
                    s["ended_at"] = now_iso()
            steps.append(s)
        return {**item, "steps": steps}

    _mutate(ports, run_id, change)


def fail(ports: Ports, run_id: str, error: dict[str, Any]) -> dict[str, Any]:
    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["status"] in TERMINAL:
            return None
        now = now_iso()
        steps = []
        failed_step = error.get("step")
        for s in item["steps"]:
            if s["status"] == "RUNNING" or (failed_step and s["name"] == failed_step):
                s = {**s, "status": "FAILED", "ended_at": now, "started_at": s["started_at"] or now}
                error["step"] = error.get("step") or s["name"]
            elif s["status"] == "PENDING":
                s = {**s, "status": "SKIPPED"}
            steps.append(s)
        return {**item, "status": "FAILED", "steps": steps, "error": error, "ended_at": now}

    return _mutate(ports, run_id, change)


def succeed(ports: Ports, run_id: str) -> dict[str, Any]:
    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["status"] in TERMINAL:
            return None
        steps = [
            {**s, "status": "SKIPPED"} if s["status"] == "PENDING" else s for s in item["steps"]
        ]
        return {**item, "status": "SUCCEEDED", "steps": steps, "ended_at": now_iso()}

    return _mutate(ports, run_id, change)


def get(ports: Ports, run_id: str) -> dict[str, Any]:
    item, _ = _load(ports, run_id)
    if item["status"] == "RUNNING" and item.get("execution_arn"):
        item = _reconcile(ports, item)
    return {k: v for k, v in item.items() if k != "execution_arn"}


def _reconcile(ports: Ports, item: dict[str, Any]) -> dict[str, Any]:
    """An execution that ended without reaching our failure handler (aborted, timed out, or
    lost with the local stack) must not leave its run RUNNING forever."""
    try:
        desc = ports.stepfunctions.describe_execution(executionArn=item["execution_arn"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            return item
        desc = {"status": "LOST"}
    status = desc["status"]
    if status in ("RUNNING", "SUCCEEDED"):
        return item  # SUCCEEDED: the final handler has written (or is writing) the record
    message = {
        "LOST": "the orchestrator no longer knows this execution (the stack was restarted)",
        "ABORTED": "the execution was aborted",
        "TIMED_OUT": "the execution timed out",
    }.get(status, f"the execution ended with status {status}")
    return fail(ports, item["run_id"], {"step": None, "type": "Interrupted", "message": message})


def list_for_pipeline(ports: Ports, pipeline: str) -> list[dict[str, Any]]:
    pipelines.get(ports, pipeline)
    runs = [r.item for r in ports.metadata.query(tables.RUNS) if r.item["pipeline"] == pipeline]
    runs.sort(key=lambda r: r["created_at"], reverse=True)
    return [
        {k: r[k] for k in ("run_id", "status", "created_at", "ended_at", "model")} for r in runs
    ]


def _history_key(run_id: str) -> str:
    return f"runs/{run_id}/history.json"


def events(ports: Ports, run_id: str) -> list[dict[str, Any]]:
    """The execution history. Once the run has ended it is kept beside the run's artefacts,
    so it outlives the orchestrator's own retention (and the local stack's memory)."""
    item, _ = _load(ports, run_id)
    arn = item.get("execution_arn")
    if not arn:
        return []
    key = _history_key(run_id)
    if item["status"] in TERMINAL and ports.store.exists(key):
        return list(json.loads(ports.store.get_bytes(key)))
    out: list[dict[str, Any]] = []
    try:
        pages = ports.stepfunctions.get_paginator("get_execution_history").paginate(
            executionArn=arn
        )
        for page in pages:
            for event in page["events"]:
                out.append({k: _jsonable(v) for k, v in event.items()})
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
            raise NotFoundError(
                f"the execution history of run {run_id!r} is no longer available"
            ) from None
        raise
    if out and out[-1]["type"] in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted",
                                   "ExecutionTimedOut"):  # fmt: skip
        ports.store.put_bytes(key, json.dumps(out).encode())
    return out


def keep_histories(ports: Ports) -> None:
    """Save the history of every ended run (before a local stop); saved ones are skipped."""
    for rec in ports.metadata.query(tables.RUNS):
        run = rec.item
        if run["status"] in TERMINAL and run.get("execution_arn"):
            with contextlib.suppress(NotFoundError):  # already gone from the orchestrator
                events(ports, run["run_id"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def mark_interrupted(ports: Ports) -> int:
    """On local start-up: runs that were in flight when the stack stopped cannot finish."""
    count = 0
    for rec in ports.metadata.query(tables.RUNS):
        if rec.item["status"] == "RUNNING":
            fail(
                ports,
                rec.item["run_id"],
                {
                    "step": None,
                    "type": "Interrupted",
                    "message": "the local stack stopped while this run was in flight",
                },
            )
            count += 1
    return count
