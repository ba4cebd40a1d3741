"""Runs: one orchestrator execution of a pipeline, with a per-step status record.

A run is ``RUNNING`` until it ends ``SUCCEEDED``, ``FAILED`` (its ``error`` names the step
and the reason) or ``ABORTED`` (cancelled). At most ``MLPIPE_MAX_CONCURRENT_RUNS`` runs are in
flight at once: the set of active runs is one record, changed with the run records in one
transaction, so two starts cannot both take the last slot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

from chalicelib import concurrency, datasets, pipelines, tables, workflow
from chalicelib.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from chalicelib.monitoring import pipeline_metrics
from chalicelib.ports import (
    TERMINAL_EVENTS,
    ExecutionNotFoundError,
    ObjectStore,
    OrchestratorUnavailableError,
    Write,
)
from chalicelib.runtime import Ports
from chalicelib.schemas import PipelineCreate, RunCreate
from chalicelib.timeutil import now_iso

TERMINAL = ("SUCCEEDED", "FAILED", "ABORTED")
STEP_DONE = ("SUCCEEDED", "FAILED", "SKIPPED", "ABORTED")
log = logging.getLogger("mlpipe.runs")


def history_key(run_id: str) -> str:
    return f"runs/{run_id}/history.json"


def spec_key(run_id: str) -> str:
    """The pipeline spec as the run read it: the execution input names it (Step Functions
    caps the state at 256 KiB; a spec's column lists are unbounded)."""
    return f"runs/{run_id}/pipeline.json"


# --- starting ------------------------------------------------------------------------------


def start(ports: Ports, pipeline_name: str, body: RunCreate) -> dict[str, Any]:
    spec = pipelines.load_spec(ports, pipeline_name)
    version = body.dataset_version or spec.dataset.version
    dataset = datasets.get_version(ports, spec.dataset.name, version)
    if dataset["status"] != "READY":
        raise ConflictError(
            f"dataset {dataset['name']!r} v{dataset['version']} is {dataset['status']}"
        )
    pipelines.check_against_schema(spec, dataset, datasets.get_profile(ports, dataset))
    run_id = uuid.uuid4().hex
    # The spec travels by reference: Step Functions caps the state at 256 KiB, and a spec's
    # column lists are unbounded. The deployment stays inline for the DeployRequested? Choice.
    spec_doc = spec.model_dump(mode="json")
    ports.store.put_bytes(spec_key(run_id), json.dumps(spec_doc).encode())
    pipeline_ref: dict[str, Any] = {"name": spec.name, "key": spec_key(run_id)}
    if spec.deployment is not None:
        pipeline_ref["deployment"] = spec_doc["deployment"]
    if spec.tuning is not None:  # for the TuningRequested? Choice
        pipeline_ref["tuning"] = True
    fields: dict[str, Any] = {
        "pipeline": pipeline_name,
        "dataset": {"name": dataset["name"], "version": dataset["version"]},
    }
    if spec.tuning is not None:  # PlanTrials fills it in (GET /runs/{id}/trials reads it)
        fields["tuning"] = {"strategy": spec.tuning.strategy, "planned": 0}
    return launch(
        ports,
        "pipeline",
        fields,
        {
            "pipeline": pipeline_ref,
            "dataset": {"name": dataset["name"], "version": dataset["version"],
                        "key": dataset["key"]},
            "train_attempt": 1,
        },
        run_id=run_id,
    )  # fmt: skip


def launch(
    ports: Ports,
    kind: str,
    fields: dict[str, Any],
    execution_input: dict[str, Any],
    run_id: str | None = None,
) -> dict[str, Any]:
    """Start a run of ``kind``: record it (taking a slot of the concurrency cap) and start its
    execution. ``fields`` go on the run record (what a user reads), ``execution_input`` to
    the state machine (with ``kind``, ``run_id`` and ``poll_seconds`` added)."""
    run_id = run_id or uuid.uuid4().hex
    now = now_iso()
    record: dict[str, Any] = {
        "run_id": run_id,
        "kind": kind,
        "pipeline": None,
        **fields,
        "status": "RUNNING",
        "steps": [
            {"name": s, "status": "PENDING", "started_at": None, "ended_at": None}
            for s in workflow.STEPS_BY_KIND[kind]
        ],
        "metrics": {},
        "model": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
        "ended_at": None,
    }
    _admit(ports, record)
    payload = {
        **execution_input,
        "kind": kind,
        "run_id": run_id,
        "poll_seconds": ports.settings.poll_seconds,
    }
    try:
        arn = ports.orchestrator.start(run_id, payload)
    except OrchestratorUnavailableError as exc:
        log.error("StartExecution failed for run %s: %s", run_id, exc)
        message = "the orchestrator could not start this run; try again"
        end(
            ports,
            run_id,
            "FAILED",
            {"step": None, "type": "ServiceUnavailableError", "message": message},
        )
        raise ServiceUnavailableError(message) from None
    update(ports, run_id, execution_arn=arn)
    pipeline_metrics.on_run_started(ports, record)
    return {"run_id": run_id, "status": "RUNNING", "kind": kind, **fields}


def _admit(ports: Ports, record: dict[str, Any]) -> None:
    """Create the run and take a slot, atomically; 429 when every slot is taken."""
    limit = ports.settings.max_concurrent_runs

    def attempt() -> None:
        slots = ports.metadata.get(tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK)
        active: list[str] = list(slots.item["runs"]) if slots else []
        if len(active) >= limit:
            active = [r for r in active if _still_running(ports, r)]  # heal leaked slots
            if len(active) >= limit:
                raise TooManyRequestsError(
                    f"{len(active)} runs are in flight, the limit is {limit} "
                    "(MLPIPE_MAX_CONCURRENT_RUNS); try again when one has ended"
                )
        taken = {"runs": [*active, record["run_id"]]}
        ports.metadata.put_many(
            [
                Write(tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK, taken, slots.rev if slots else 0),
                Write(tables.RUNS, record["run_id"], record, expected_rev=0),
            ]
        )

    concurrency.retry(attempt, what="the set of active runs")


def _still_running(ports: Ports, run_id: str) -> bool:
    rec = ports.metadata.get(tables.RUNS, run_id)
    return rec is not None and rec.item["status"] == "RUNNING"


def _release(ports: Ports, run_id: str) -> None:
    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if run_id not in item["runs"]:
            return None
        return {"runs": [r for r in item["runs"] if r != run_id]}

    with contextlib.suppress(NotFoundError):
        concurrency.update(
            ports.metadata, tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK, change, what="active runs"
        )


# --- recording -----------------------------------------------------------------------------


def _load(ports: Ports, run_id: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.RUNS, run_id)
    if rec is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return rec.item


def _mutate(ports: Ports, run_id: str, change: concurrency.Change) -> dict[str, Any]:
    def stamped(item: dict[str, Any]) -> dict[str, Any] | None:
        new = change(item)
        if new is not None:
            new["updated_at"] = now_iso()
        return new

    return concurrency.update(ports.metadata, tables.RUNS, run_id, stamped, what=f"run {run_id!r}")


def update(ports: Ports, run_id: str, **fields: Any) -> dict[str, Any]:
    return _mutate(ports, run_id, lambda item: {**item, **fields})


def record_step(
    ports: Ports,
    run_id: str,
    step: str,
    status: str,
    *,
    started_at: str | None = None,
    run_fields: dict[str, Any] | None = None,
    **detail: Any,
) -> dict[str, Any]:
    """One write per step: its status, times and detail (and any run-level fields, such as
    the metrics or the model). A run that has ended is final and is not touched. Returns
    the run record as stored afterwards."""

    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["status"] in TERMINAL:
            return None
        now = now_iso()
        steps = []
        names = [s["name"] for s in item["steps"]]
        if step not in names and step in workflow.OPTIONAL_STEPS:
            anchor = workflow.OPTIONAL_STEPS[step]
            at = names.index(anchor) if anchor in names else len(names)
            pending = {"name": step, "status": "PENDING", "started_at": None, "ended_at": None}
            item = {**item, "steps": [*item["steps"][:at], pending, *item["steps"][at:]]}
        for s in item["steps"]:
            if s["name"] == step:
                s = {**s, "status": status, **detail}
                s["started_at"] = s.get("started_at") or started_at or now
                if status in STEP_DONE:
                    s["ended_at"] = now
            steps.append(s)
        return {**item, **(run_fields or {}), "steps": steps}

    return _mutate(ports, run_id, change)


def end(
    ports: Ports, run_id: str, status: str, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """End a run: SUCCEEDED, FAILED (with ``error``: step, type, message) or ABORTED. The
    failing step is the one named in ``error``, else the one still RUNNING; steps that never
    started are SKIPPED. Ending an ended run changes nothing."""

    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        if item["status"] in TERMINAL:
            return None
        now = now_iso()
        failed_step = (error or {}).get("step")
        if status != "SUCCEEDED" and failed_step is None:
            running = [s["name"] for s in item["steps"] if s["status"] in ("RUNNING", "FAILED")]
            failed_step = running[0] if running else None
        steps = []
        for s in item["steps"]:
            if s["name"] == failed_step and status != "SUCCEEDED":
                s = {
                    **s,
                    "status": "ABORTED" if status == "ABORTED" else "FAILED",
                    "started_at": s["started_at"] or now,
                    "ended_at": now,
                }
            elif s["status"] == "PENDING":
                s = {**s, "status": "SKIPPED"}
            steps.append(s)
        new = {**item, "status": status, "steps": steps, "ended_at": now}
        if error is not None:
            new["error"] = {**error, "step": failed_step}
        return new

    item = _mutate(ports, run_id, change)
    _release(ports, run_id)
    return item


# --- reading -------------------------------------------------------------------------------


def public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "execution_arn"}


def get(ports: Ports, run_id: str) -> dict[str, Any]:
    item = _load(ports, run_id)
    if item["status"] == "RUNNING" and item.get("execution_arn"):
        item = _reconcile(ports, item)
    return public(item)


def _reconcile(ports: Ports, item: dict[str, Any]) -> dict[str, Any]:
    """An execution that ended without reaching our failure recorder (aborted, timed out,
    or lost with the local stack) must not leave its run RUNNING forever."""
    try:
        status = ports.orchestrator.status(item["execution_arn"])
    except OrchestratorUnavailableError:
        return item
    if status in ("RUNNING", "SUCCEEDED"):
        return item  # SUCCEEDED: the final step has written (or is writing) the record
    if status == "ABORTED":
        return end(ports, item["run_id"], "ABORTED", _aborted("the execution was stopped"))
    message = {
        "LOST": "the orchestrator no longer knows this execution (the stack was restarted)",
        "TIMED_OUT": "the execution timed out",
    }.get(status, f"the execution ended with status {status}")
    error = {"step": interrupted_step(item), "type": "Interrupted", "message": message}
    return end(ports, item["run_id"], "FAILED", error)


def interrupted_step(item: dict[str, Any]) -> str | None:
    """The step a run was in when it stopped with nobody to say so (a killed stack, a lost
    execution): the one RUNNING, else the first still PENDING — between two steps (say
    Register done, Deploy not yet entered) the run was on its way into that one."""
    for wanted in ("RUNNING", "PENDING"):
        for s in item["steps"]:
            if s["status"] == wanted:
                return str(s["name"])
    return None


def _aborted(message: str) -> dict[str, Any]:
    return {"step": None, "type": "Cancelled", "message": message}


def list_for_pipeline(ports: Ports, pipeline: str) -> list[dict[str, Any]]:
    pipelines.get(ports, pipeline)
    runs = [r.item for r in ports.metadata.query(tables.RUNS) if r.item.get("pipeline") == pipeline]
    runs.sort(key=lambda r: (r["created_at"], r["run_id"]), reverse=True)
    return [
        {k: r[k] for k in ("run_id", "status", "created_at", "ended_at", "model")} for r in runs
    ]


def events(ports: Ports, run_id: str, token: str | None = None, limit: int = 100) -> dict[str, Any]:
    """One page of the execution history: ``{"events", "next_token"}``. Histories kept in
    the object store (the local stack saves each as its run goes) are read from there."""
    item = _load(ports, run_id)
    arn = item.get("execution_arn")
    if not arn:
        return {"events": [], "next_token": None}
    key = history_key(run_id)
    saved: list[dict[str, Any]] | None = None
    if ports.store.exists(key):
        saved = json.loads(ports.store.get_bytes(key))
        if saved and saved[-1]["type"] in TERMINAL_EVENTS:
            return _page(saved, token, limit)
    try:
        page = ports.orchestrator.history(arn, token, limit)
    except ExecutionNotFoundError:
        if saved is not None:  # the orchestrator lost it (a restart): what was kept
            return _page(saved, token, limit)
        raise NotFoundError(
            f"the execution history of run {run_id!r} is no longer available"
        ) from None
    except OrchestratorUnavailableError as exc:
        if saved is not None:  # throttled: what was kept so far
            return _page(saved, token, limit)
        log.warning("GetExecutionHistory failed for run %s: %s", run_id, exc)
        raise ServiceUnavailableError(
            "the orchestrator could not return this run's history now; try again"
        ) from None
    except ValueError:
        raise BadRequestError("next_token is not valid for this run") from None
    whole = token is None and page.next_token is None
    if whole and page.events and page.events[-1]["type"] in TERMINAL_EVENTS:
        # An ended execution read whole: keep it beside the run's artefacts, so it outlives
        # the orchestrator's retention (and the local stack's memory).
        ports.store.put_bytes(key, json.dumps(page.events).encode())
    return {"events": page.events, "next_token": page.next_token}


def _page(events: list[dict[str, Any]], token: str | None, limit: int) -> dict[str, Any]:
    start_at = _offset(token)
    more = start_at + limit < len(events)
    return {"events": events[start_at : start_at + limit],
            "next_token": str(start_at + limit) if more else None}  # fmt: skip


def step_from_history(ports: Ports, run_id: str) -> str | None:
    """The run step whose state was entered last (for a step that died without saying so,
    e.g. a Lambda timeout); None when the history says nothing."""
    item = _load(ports, run_id)
    arn = item.get("execution_arn")
    if not arn:
        return None
    last: str | None = None
    token: str | None = None
    try:
        while True:
            page = ports.orchestrator.history(arn, token, 1000)
            for event in page.events:
                if event.get("type") == "TaskStateEntered":
                    task = workflow.BY_STATE.get(event["stateEnteredEventDetails"]["name"])
                    if task is not None and task.run_step:
                        last = task.run_step
            token = page.next_token
            if not token:
                return last
    except (ExecutionNotFoundError, OrchestratorUnavailableError):
        return last


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise BadRequestError("next_token is not valid for this run")
    return int(token)


# --- cancelling ----------------------------------------------------------------------------


def cancel(ports: Ports, run_id: str) -> dict[str, Any]:
    """Stop the execution and the job it waits on; the run ends ABORTED."""
    item = _load(ports, run_id)
    if item["status"] in TERMINAL:
        raise ConflictError(f"run {run_id!r} has already ended ({item['status']})")
    if item.get("execution_arn"):
        try:
            ports.orchestrator.stop(item["execution_arn"], "cancelled through the API")
        except ExecutionNotFoundError:
            pass  # lost with a restarted stack: nothing left to stop
        except OrchestratorUnavailableError:
            raise ServiceUnavailableError(
                "the orchestrator could not stop this run; try again"
            ) from None
    reason = {**_aborted("cancelled through the API"), "step": interrupted_step(item)}
    ended = end(ports, run_id, "ABORTED", reason)
    # After the end, no step can record a job any more (an ended run is final), and a step
    # that starts its job after this write stops it itself (steps._start_job): the jobs
    # read here are all there is to stop.
    stop_jobs(ports, _load(ports, run_id))
    return public(ended)


def stop_jobs(ports: Ports, item: dict[str, Any]) -> None:
    """Stop the jobs the run's steps have started (an ended job stays as it ended)."""
    for s in item["steps"]:
        job = s.get("job")
        if s["status"] in ("RUNNING", "ABORTED", "FAILED") and isinstance(job, dict):
            ports.jobs.stop(job["name"], job["kind"])


def spec_of(event: dict[str, Any], store: ObjectStore) -> PipelineCreate:
    """The pipeline spec an execution input refers to (``$.pipeline.key``; executions started
    before specs moved out of the state carry it whole). It was validated when the run
    started, so it is read without re-validating the catalog (the spec is ours)."""
    ref = event["pipeline"]
    doc = json.loads(store.get_bytes(ref["key"])) if "key" in ref else ref
    return PipelineCreate.model_validate(doc, context={"trusted": True})
