"""The state machine's Lambda steps. Each takes the state input and returns its result.

Every step records its status on the run, so ``GET /runs/{id}`` shows progress without
reading the execution history. A step raises ``StepError`` for failures a user can act on;
the state machine's Catch hands those to ``fail_run``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from chalicelib import datasets, deployment, registry, runs
from chalicelib.errors import StepError
from chalicelib.ports.endpoints import sha256_of
from chalicelib.ports.jobs import JOBS_SOURCE_DIR, JobKind, JobSpec
from chalicelib.preprocessing import clean, split
from chalicelib.runtime import Ports
from chalicelib.schemas import PipelineCreate
from mlcontract import archive as archive_mod
from mlcontract import metrics as metrics_mod

# Errors whose messages we wrote for users; anything else is a bug whose details stay in logs.
USER_FACING_ERRORS = frozenset(
    {
        "StepError", "QualityGateFailed", "ConflictError", "NotFoundError", "BadRequestError",
        "PayloadTooLargeError", "TransientError", "States.Timeout",
    }
)  # fmt: skip


def transient(exc: Exception) -> bool:
    """Worth a retry by the state machine: throttling, timeouts, a busy SQLite file."""
    import sqlite3

    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return code in {
            "Throttling", "ThrottlingException", "TooManyRequestsException",
            "ProvisionedThroughputExceededException", "RequestLimitExceeded",
            "ServiceUnavailable", "InternalServerError", "InternalFailure", "SlowDown",
        }  # fmt: skip
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def job_name(run_id: str, state: str, attempt: int) -> str:
    """Deterministic: a retried state asks for the same job, which starts it at most once."""
    return f"mlp-{run_id}-{state}-{attempt}"


def _spec(event: dict[str, Any]) -> PipelineCreate:
    return PipelineCreate.model_validate(event["pipeline"])


def _prefix(event: dict[str, Any]) -> str:
    return f"runs/{event['run_id']}"


def ingest(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "ingest", "RUNNING")
    ds = event["dataset"]
    record = datasets.get_version(ports, ds["name"], ds["version"])
    if record["status"] != "READY":
        raise StepError(f"dataset {ds['name']!r} v{ds['version']} is {record['status']}")
    spec = _spec(event)
    if spec.target not in {c["name"] for c in record["schema"]}:
        raise StepError(f"target column {spec.target!r} is not in the dataset")
    result = {"key": record["key"], "rows": record["rows"], "columns": len(record["schema"])}
    runs.set_step(ports, run_id, "ingest", "SUCCEEDED", detail=result)
    return result


def validate(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "validate", "RUNNING")
    spec = _spec(event)
    frame = datasets.load_frame(ports, event["ingest"]["key"])
    steps = [s.model_dump() for s in spec.preprocessing]
    cleaned, report = clean(frame, spec.target, spec.task, steps)
    key = f"{_prefix(event)}/clean/data.parquet"
    ports.store.put_bytes(key, datasets.to_parquet(cleaned))
    result = {"key": key, **report}
    runs.set_step(ports, run_id, "validate", "SUCCEEDED", detail=result)
    return result


def split_data(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "split", "RUNNING")
    spec = _spec(event)
    frame = datasets.load_frame(ports, event["clean"]["key"])
    train, test = split(frame, spec.target, spec.task, spec.evaluation.test_size, spec.seed)
    base = _prefix(event)
    ports.store.put_bytes(f"{base}/split/train/data.parquet", datasets.to_parquet(train))
    ports.store.put_bytes(f"{base}/split/test/data.parquet", datasets.to_parquet(test))
    result = {
        "train": f"{base}/split/train",
        "test": f"{base}/split/test",
        "train_rows": len(train),
        "test_rows": len(test),
    }
    runs.set_step(ports, run_id, "split", "SUCCEEDED", detail=result)
    return result


def start_training(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "train", "RUNNING")
    spec = _spec(event)
    name = job_name(run_id, "train", int(event.get("train_attempt", 1)))
    ports.jobs.start(
        JobSpec(
            name=name,
            kind="training",
            entry_point="train.py",
            arguments={
                "algorithm": spec.model.algorithm,
                "task": spec.task,
                "target": spec.target,
                "hyperparameters": json.dumps(spec.model.hyperparameters),
                "seed": str(spec.seed),
            },
            inputs={"train": event["split"]["train"]},
            output_prefix=f"{_prefix(event)}/model",
        )
    )
    runs.set_step(ports, run_id, "train", "RUNNING", job=name)
    return {"name": name, "kind": "training", "status": "InProgress"}


def start_evaluation(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "evaluate", "RUNNING")
    spec = _spec(event)
    name = job_name(run_id, "evaluate", 1)
    ports.jobs.start(
        JobSpec(
            name=name,
            kind="processing",
            entry_point="evaluate.py",
            arguments={"metrics": ",".join(spec.report_metrics)},
            inputs={
                "model": event["train_job"]["outputs"]["model"],
                "test": event["split"]["test"],
            },
            output_prefix=f"{_prefix(event)}/evaluation",
        )
    )
    runs.set_step(ports, run_id, "evaluate", "RUNNING", job=name)
    return {"name": name, "kind": "processing", "status": "InProgress"}


def check_job(ports: Ports, event: dict[str, Any], step: str, job_key: str) -> dict[str, Any]:
    """Describe the step's job; long-polls locally. Raises when the job failed."""
    job = event[job_key]
    kind: JobKind = job["kind"]
    status = ports.jobs.describe(job["name"], kind, ports.settings.job_long_poll_seconds)
    if status.status in ("Failed", "Stopped"):
        raise StepError(
            f"{step} job {job['name']} {status.status.lower()}: {status.failure_reason}"
        )
    result = {**job, "status": status.status, "outputs": status.outputs}
    if status.status == "Completed" and step == "train":
        runs.set_step(ports, event["run_id"], "train", "SUCCEEDED")
    return result


def quality_gate(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    """Read the evaluation, record the metrics, and decide the gate for the Choice state."""
    run_id = event["run_id"]
    spec = _spec(event)
    report = json.loads(
        ports.store.get_bytes(f"{event['eval_job']['outputs']['output']}/evaluation.json")
    )
    metrics: dict[str, float] = report["metrics"]
    runs.set_step(ports, run_id, "evaluate", "SUCCEEDED", detail={"rows": report.get("rows")})
    runs.update(ports, run_id, metrics=metrics)
    failures = []
    for metric, bound in spec.evaluation.thresholds.items():
        value = metrics.get(metric)
        if value is None:
            failures.append(f"{metric} was not measured")
        elif not metrics_mod.passes(metric, value, bound):
            side = (
                "below the floor" if metrics_mod.higher_is_better(metric) else "above the ceiling"
            )
            failures.append(f"{metric} = {value:.4g} is {side} {bound:g}")
    passed = not failures
    runs.set_step(ports, run_id, "quality_gate", "RUNNING")
    if passed:
        runs.set_step(ports, run_id, "quality_gate", "SUCCEEDED")
    return {"metrics": metrics, "passed": passed, "failures": failures}


def code_version(ports: Ports) -> str:
    if ports.settings.profile == "aws":
        return ports.settings.code_version
    digest = hashlib.sha256()
    for path in sorted(JOBS_SOURCE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def register(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    run = runs.get(ports, run_id)
    if run.get("model"):  # a retried Register must not mint a second version
        return dict(run["model"])
    runs.set_step(ports, run_id, "register", "RUNNING")
    spec = _spec(event)
    key = event["train_job"]["outputs"]["model"]
    with tempfile.TemporaryDirectory() as tmp:
        archive = ports.store.get_file(key, Path(tmp) / "model.tar.gz")
        sha = sha256_of(archive)
        try:
            meta = archive_mod.read_metadata(archive)
        except archive_mod.ArchiveError as exc:
            raise StepError(str(exc)) from None
    name = spec.model_name or spec.name
    version = registry.register(
        ports,
        name,
        {
            "run_id": run_id,
            "pipeline": spec.name,
            "task": spec.task,
            "algorithm": spec.model.algorithm,
            "hyperparameters": spec.model.hyperparameters,
            "metrics": event["gate"]["metrics"],
            "data": {"dataset": event["dataset"]["name"], "version": event["dataset"]["version"]},
            "code_version": code_version(ports),
            "artefact_key": key,
            "artefact_uri": ports.store.uri(key),
            "sha256": sha,
            "signature": meta["signature"]["inputs"],
            "classes": meta.get("classes"),
        },
    )
    model = {"name": name, "version": version["version"]}
    runs.update(ports, run_id, model=model)
    runs.set_step(ports, run_id, "register", "SUCCEEDED", detail=model)
    return model


def deploy(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run_id = event["run_id"]
    runs.set_step(ports, run_id, "deploy", "RUNNING")
    spec = _spec(event)
    assert spec.deployment is not None
    model = event["model"]
    target = spec.deployment
    endpoint = deployment.deploy_from_pipeline(
        ports, target.endpoint, model["name"], target.alias, model["version"]
    )
    result = {
        "endpoint": target.endpoint,
        "alias": target.alias,
        "version": model["version"],
        "served_version": endpoint["model_version"],
        "previous_version": endpoint["previous_version"],
        "status": endpoint["status"],
    }
    runs.set_step(ports, run_id, "deploy", "SUCCEEDED", detail=result)
    return result


def finish(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    run = runs.succeed(ports, event["run_id"])
    return {"status": run["status"]}


def fail_run(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    """Catch target: record the error on the run. Internal details never reach the user."""
    error = event.get("error") or {}
    kind = str(error.get("Error", "Unknown"))
    message = str(error.get("Cause", ""))
    try:
        cause = json.loads(message)
    except json.JSONDecodeError:
        cause = None
    if isinstance(cause, dict):  # a Lambda error: {"errorType", "errorMessage"}
        kind = str(cause.get("errorType", kind))
        message = str(cause.get("errorMessage", message))
    if kind == "QualityGateFailed":
        runs.set_step(ports, event["run_id"], "quality_gate", "RUNNING")
        message = "quality gate failed: " + "; ".join(json.loads(message))
    elif kind not in USER_FACING_ERRORS:
        message = f"internal error ({kind}); see the step's logs"
    run = runs.fail(ports, event["run_id"], {"step": None, "type": kind, "message": message})
    return {"status": run["status"], "error": run["error"]}
