"""The state machine's Lambda steps (see ``workflow.py`` for the registry).

Each handler takes a ``StepContext`` (the ports, the state input and the pipeline spec, parsed
once) and returns a ``StepResult``: the output for the state machine and, at most once per
step, what to record on the run. The ``task`` wrapper does the recording — one write per step
— turns passing trouble into ``TransientError`` (which the state machine retries) and marks
the step FAILED before a real error goes to the failure recorder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from chalicelib import (
    cleaning,
    datasets,
    deployment,
    fast_path,
    model_steps,
    registry,
    runs,
    workflow,
)
from chalicelib.errors import MLPipeError, StepError, TransientError
from chalicelib.monitoring import baseline, pipeline_metrics
from chalicelib.names import sagemaker_name
from chalicelib.ports import JobKind, JobSpec, TooLargeError
from chalicelib.preprocessing import split
from chalicelib.runtime import Ports, ports
from chalicelib.schemas import PipelineCreate
from chalicelib.timeutil import now_iso
from mlcontract import metrics as metrics_mod

log = logging.getLogger("mlpipe.steps")

# Errors whose messages we wrote for users; anything else is a bug whose details stay in logs.
USER_FACING_ERRORS = frozenset(
    {
        "StepError", "QualityGateFailed", "ConflictError", "NotFoundError", "BadRequestError",
        "PayloadTooLargeError", "TransientError", "States.Timeout", "InsufficientStorageError",
    }
)  # fmt: skip


@dataclass
class StepContext:
    ports: Ports
    event: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.event["run_id"])

    @property
    def prefix(self) -> str:
        return f"runs/{self.run_id}"

    @cached_property
    def spec(self) -> PipelineCreate:
        return runs.spec_of(self.event, self.ports.store)


@dataclass
class StepResult:
    output: dict[str, Any]
    # The run step's new status (None: nothing to record this time) and its detail.
    status: str | None = "SUCCEEDED"
    detail: dict[str, Any] = field(default_factory=dict)
    run_fields: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[StepContext], StepResult]
HANDLERS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {}


def transient(exc: BaseException) -> bool:
    """Worth a retry by the state machine: throttling and timeouts of an AWS call (the
    adapters' stores raise TransientError themselves for a busy local database)."""
    if isinstance(exc, TransientError):
        return True
    # botocore's retryable errors, by class name: this module does not import botocore.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"ConnectionError", "ReadTimeoutError", "ConnectTimeoutError"}:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        return code in {
            "Throttling", "ThrottlingException", "TooManyRequestsException",
            "ProvisionedThroughputExceededException", "RequestLimitExceeded",
            "ServiceUnavailable", "InternalServerError", "InternalFailure", "SlowDown",
        }  # fmt: skip
    return False


def task(function: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the Lambda ``function`` of the registry (workflow.TASKS)."""
    entry = workflow.BY_FUNCTION[function]

    def register(handler: Handler) -> Handler:
        def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            ctx = StepContext(ports(), event)
            started = now_iso()
            try:
                result = handler(ctx)
            except TooLargeError as exc:
                raise StepError(f"a record is too large for the metadata store: {exc}") from None
            except MLPipeError as exc:
                if not isinstance(exc, TransientError) and entry.run_step:
                    _mark_failed(ctx, entry.run_step, started)
                raise
            except Exception as exc:
                if transient(exc):
                    raise TransientError(f"{type(exc).__name__}: {exc}") from exc
                if entry.run_step:
                    _mark_failed(ctx, entry.run_step, started)
                raise
            if entry.run_step and result.status is not None:
                runs.record_step(
                    ctx.ports, ctx.run_id, entry.run_step, result.status,
                    started_at=started, run_fields=result.run_fields, **result.detail,
                )  # fmt: skip
            return result.output

        lambda_handler.__name__ = function
        lambda_handler.__doc__ = handler.__doc__
        HANDLERS[function] = lambda_handler
        return handler

    return register


def _mark_failed(ctx: StepContext, step: str, started: str) -> None:
    """Name the failing step on the run before the failure recorder ends it."""
    try:
        runs.record_step(ctx.ports, ctx.run_id, step, "FAILED", started_at=started)
    except Exception:  # the recorder still ends the run; this is only the step's name
        log.warning("could not mark step %s of run %s failed", step, ctx.run_id, exc_info=True)


def _step_in_flight(ctx: StepContext) -> bool:
    run = runs.get(ctx.ports, ctx.run_id)
    return any(s["status"] in ("RUNNING", "FAILED") for s in run["steps"])


def job_name(run_id: str, state: str, attempt: int) -> str:
    """Deterministic: a retried state asks for the same job, which starts it at most once.
    Always a valid SageMaker job name starting with ``mlp-`` (hashed if it would not fit)."""
    return sagemaker_name("mlp", run_id, state, str(attempt))


# --- data ----------------------------------------------------------------------------------


@task("ingest")
def ingest(ctx: StepContext) -> StepResult:
    ds = ctx.event["dataset"]
    record = datasets.get_version(ctx.ports, ds["name"], ds["version"])
    if record["status"] != "READY":
        raise StepError(f"dataset {ds['name']!r} v{ds['version']} is {record['status']}")
    if ctx.spec.target not in {c["name"] for c in record["schema"]}:
        raise StepError(f"target column {ctx.spec.target!r} is not in the dataset")
    result = {"key": record["key"], "rows": record["rows"], "columns": len(record["schema"])}
    return StepResult(result, detail={"detail": result})


@task("validate")
def validate(ctx: StepContext) -> StepResult:
    spec = ctx.spec
    frame = datasets.load_frame(ctx.ports, ctx.event["ingest"]["key"])
    cleaned, report = cleaning.clean(frame, spec.target, spec.task, spec.preprocessing)
    key = f"{ctx.prefix}/clean/data.parquet"
    ctx.ports.store.put_bytes(key, datasets.to_parquet(cleaned))
    # The state and the run record carry counts; the names (one per column at worst) stay
    # in the object store.
    report_key = f"{ctx.prefix}/clean/report.json"
    ctx.ports.store.put_bytes(report_key, json.dumps(report).encode())
    counts = {k: len(v) if isinstance(v, list) else v for k, v in report.items()}
    # Warnings are a few sentences about the target, read by register: kept as text.
    counts["warnings"] = [str(w)[:500] for w in report.get("warnings", [])[:20]]
    result = {"key": key, "report_key": report_key, **counts}
    return StepResult(result, detail={"detail": result})


def _bounded(report: dict[str, Any], items: int = 20) -> dict[str, Any]:
    """The report with every list cut to ``items`` entries (and its full length said)."""
    out: dict[str, Any] = {}
    for name, value in report.items():
        if isinstance(value, list) and len(value) > items:
            out[name] = value[:items]
            out[f"{name}_count"] = len(value)
        else:
            out[name] = value
    return out


@task("split")
def split_data(ctx: StepContext) -> StepResult:
    spec = ctx.spec
    frame = datasets.load_frame(ctx.ports, ctx.event["clean"]["key"])
    train, test = split(frame, spec.target, spec.task, spec.evaluation.test_size, spec.seed)
    store = ctx.ports.store
    store.put_bytes(f"{ctx.prefix}/split/train/data.parquet", datasets.to_parquet(train))
    store.put_bytes(f"{ctx.prefix}/split/test/data.parquet", datasets.to_parquet(test))
    # The drift baseline of the model version this run registers (monitoring).
    features = {c: datasets.column_type(train[c]) for c in train.columns if c != spec.target}
    baseline_key = f"{ctx.prefix}/split/baseline.json"
    store.put_bytes(baseline_key, json.dumps(baseline.of_frame(train, features)).encode())
    result = {
        "train": f"{ctx.prefix}/split/train",
        "test": f"{ctx.prefix}/split/test",
        "train_rows": len(train),
        "test_rows": len(test),
        "baseline": baseline_key,
    }
    return StepResult(result, detail={"detail": result})


# --- jobs ----------------------------------------------------------------------------------


def _start_job(ctx: StepContext, step: str, spec: JobSpec) -> StepResult:
    """Start the job of run step ``step`` and record it on the run (the job is stopped, and
    the step fails, when the run has been cancelled meanwhile)."""
    ctx.ports.jobs.start(spec)
    job = {"name": spec.name, "kind": spec.kind, "status": "InProgress"}
    # Recorded here, before the run is read back: a cancel that ended the run before this
    # write sees no job, so this step stops it; one that ends it after sees the job (runs.cancel).
    run = runs.record_step(
        ctx.ports, ctx.run_id, step, "RUNNING", job={"name": spec.name, "kind": spec.kind}
    )
    if run["status"] in runs.TERMINAL:
        ctx.ports.jobs.stop(spec.name, spec.kind)
        raise StepError(f"the run ended ({run['status']}) while its {step} job was starting")
    return StepResult(job, status=None)


# SageMaker caps a hyperparameter value at 2500 characters: a longer preprocessing spec
# travels as preprocessing.json in the training channel instead (train.py reads either).
MAX_ARGUMENT = 2500


def _training_arguments(ctx: StepContext) -> dict[str, str]:
    spec = ctx.spec
    arguments = {
        "algorithm": spec.model.algorithm,
        "task": spec.task,
        "target": spec.target,
        "hyperparameters": json.dumps(_hyperparameters(ctx)),
        "seed": str(spec.seed),
        **model_steps.training_options(spec, ctx.event),
    }
    steps = json.dumps(spec.preprocessing, separators=(",", ":"))
    if len(steps) <= MAX_ARGUMENT:
        arguments["preprocessing"] = steps
    else:
        ctx.ports.store.put_bytes(
            f"{ctx.event['split']['train']}/preprocessing.json", steps.encode()
        )
    return arguments


def _hyperparameters(ctx: StepContext) -> dict[str, Any]:
    """The pipeline's hyperparameters, with the best trial's when the run tuned them."""
    best = (ctx.event.get("tuning") or {}).get("best") or {}
    return {**ctx.spec.model.hyperparameters, **(best.get("params") or {})}


@task("start_training")
def start_training(ctx: StepContext) -> StepResult:
    name = job_name(ctx.run_id, "train", int(ctx.event.get("train_attempt", 1)))
    return _start_job(
        ctx,
        "train",
        JobSpec(
            name=name,
            kind="training",
            entry_point="train.py",
            arguments=_training_arguments(ctx),
            inputs={"train": ctx.event["split"]["train"]},
            output_prefix=f"{ctx.prefix}/model",
            max_runtime_seconds=model_steps.job_seconds(ctx.spec, ctx.ports.settings),
        ),
    )


@task("start_evaluation")
def start_evaluation(ctx: StepContext) -> StepResult:
    name = job_name(ctx.run_id, "evaluate", 1)
    champion_arguments, champion_inputs = model_steps.champion_job_inputs(ctx.ports, ctx.spec)
    champion_version = champion_arguments.pop("champion-version", None)
    job = _start_job(
        ctx,
        "evaluate",
        JobSpec(
            name=name,
            kind="processing",
            entry_point="evaluate.py",
            arguments={"metrics": ",".join(ctx.spec.report_metrics), **champion_arguments},
            inputs={
                "model": ctx.event["train_job"]["outputs"]["model"],
                "test": ctx.event["split"]["test"],
                **champion_inputs,
            },
            output_prefix=f"{ctx.prefix}/evaluation",
            max_runtime_seconds=model_steps.job_seconds(ctx.spec, ctx.ports.settings),
        ),
    )
    if champion_version is not None:
        job.output["champion_version"] = int(champion_version)
    return job


def _check(ctx: StepContext, what: str, job_key: str, done_step: bool) -> StepResult:
    job = ctx.event[job_key]
    kind: JobKind = job["kind"]
    status = ctx.ports.jobs.describe(job["name"], kind)
    if status.status in ("Failed", "Stopped"):
        raise StepError(
            f"{what} job {job['name']} {status.status.lower()}: {status.failure_reason}"
            + model_steps.runtime_hint(status.failure_reason)
        )
    result = {**job, "status": status.status, "outputs": status.outputs}
    finished = status.status == "Completed" and done_step
    return StepResult(result, status="SUCCEEDED" if finished else None)


@task("check_training")
def check_training(ctx: StepContext) -> StepResult:
    return _check(ctx, "train", "train_job", done_step=True)


@task("check_evaluation")
def check_evaluation(ctx: StepContext) -> StepResult:
    # The evaluate step ends when its report has been read (quality_gate).
    return _check(ctx, "evaluate", "eval_job", done_step=False)


# --- decisions -----------------------------------------------------------------------------


@task("quality_gate")
def quality_gate(ctx: StepContext) -> StepResult:
    """Read the evaluation, record the metrics, and decide the gate for the Choice state."""
    output = ctx.event["eval_job"]["outputs"]["output"]
    report = json.loads(ctx.ports.store.get_bytes(f"{output}/evaluation.json"))
    measured: dict[str, float | None] = report["metrics"]
    failures = []
    for metric, bound in ctx.spec.evaluation.thresholds.items():
        value = measured.get(metric)
        if value is None:
            failures.append(f"{metric} was not measured (undefined on this data)")
        elif not metrics_mod.passes(metric, value, bound):
            side = (
                "below the floor" if metrics_mod.higher_is_better(metric) else "above the ceiling"
            )
            failures.append(f"{metric} = {value:.4g} is {side} {bound:g}")
    # The evaluate step ends here (its report is read); the gate's outcome is recorded by
    # the next step (register) or by the failure recorder.
    runs.record_step(
        ctx.ports, ctx.run_id, "evaluate", "SUCCEEDED",
        run_fields={"metrics": measured}, detail={"rows": report.get("rows")},
    )  # fmt: skip
    # Only the archive's sha256 travels on: its signature and classes (one entry per column
    # or class) are read from the report by Register, never carried in the state.
    artefact = report.get("artefact") or {}
    verdict = model_steps.champion_verdict(
        ctx.spec, report, ctx.event["eval_job"].get("champion_version")
    )
    result = {
        "metrics": measured,
        "passed": not failures,
        "failures": failures,
        "artefact": {"sha256": artefact.get("sha256"), "report": f"{output}/evaluation.json"},
        "rejected": verdict["rejected"],
        "champion": verdict if len(verdict) > 1 else None,
    }
    return StepResult(result, status="SUCCEEDED" if not failures else None)


@task("register")
def register(ctx: StepContext) -> StepResult:
    spec = ctx.spec
    key = ctx.event["train_job"]["outputs"]["model"]
    gate = ctx.event["gate"]["artefact"]
    facts = gate
    if "report" in gate:  # the state carries a reference (see quality_gate)
        facts = json.loads(ctx.ports.store.get_bytes(gate["report"])).get("artefact") or {}
    if not facts.get("sha256") or facts.get("sha256") != gate.get("sha256"):
        raise StepError("the evaluation did not report the model archive's sha256")
    name = spec.model_name or spec.name
    # The ONNX fast path is built by its own job, started here and not waited for: the
    # version serves with scikit-learn until it lands (chalicelib/fast_path.py).
    fast = fast_path.start(
        ctx.ports,
        JobSpec(
            name=job_name(ctx.run_id, fast_path.JOB_STATE, 1),
            kind="processing",
            entry_point="evaluate.py",
            arguments={"fast-path": "only"},
            inputs={"model": key, "test": ctx.event["split"]["test"]},
            output_prefix=f"{ctx.prefix}/fastpath",
            max_runtime_seconds=ctx.ports.settings.max_job_seconds,
        ),
    )
    version = registry.register(
        ctx.ports,
        name,
        ctx.run_id,
        {
            "pipeline": spec.name,
            "task": spec.task,
            "algorithm": spec.model.algorithm,
            "hyperparameters": _hyperparameters(ctx),
            "metrics": ctx.event["gate"]["metrics"],
            "data": {"dataset": ctx.event["dataset"]["name"],
                     "version": ctx.event["dataset"]["version"]},
            "code_version": ctx.ports.settings.code_version,
            "artefact_key": key,
            "artefact_uri": ctx.ports.store.uri(key),
            "sha256": facts["sha256"],
            "signature": facts["signature"],
            "classes": facts.get("classes"),
            "excluded_columns": facts.get("excluded_columns", [])[:200],
            "preprocessing": facts.get("preprocessing", []),
            "baseline_key": ctx.event["split"].get("baseline"),
            "fast_path": fast,
            **model_steps.provenance(facts, ctx.event),
        },
    )  # fmt: skip
    model = {"name": name, "version": version["version"]}
    notes = [*facts.get("notes", []), *ctx.event["clean"].get("warnings", [])]
    notes += model_steps.after_register(ctx.ports, version)
    if version.get("status") == "REJECTED":
        model["status"] = "REJECTED"
        notes.insert(0, f"not deployed: {version.get('status_reason')}")
    return StepResult(
        model, detail={"detail": model}, run_fields={"model": model, "notes": notes[:50]}
    )


@task("deploy")
def deploy(ctx: StepContext) -> StepResult:
    target = ctx.spec.deployment
    if target is None:
        raise StepError("the pipeline names no deployment")
    model = ctx.event["model"]
    outcome = deployment.deploy_from_pipeline(
        ctx.ports, target.endpoint, model["name"], target.alias, model["version"]
    )
    result = {"endpoint": target.endpoint, "alias": target.alias, "version": model["version"],
              **outcome}  # fmt: skip
    status = "SKIPPED" if outcome["status"] == "skipped" else "SUCCEEDED"
    return StepResult(result, status=status, detail={"detail": result})


# --- ends ----------------------------------------------------------------------------------


# How a run of each kind ends, besides its run record: e.g. a batch prediction registers its
# output dataset version, an ingestion marks its dataset version READY or FAILED. Called
# with the ended run (its status and error) by RecordSuccess and RecordFailure.
ON_END: dict[str, Callable[[StepContext, dict[str, Any]], None]] = {}


def _ended(ctx: StepContext, run: dict[str, Any]) -> None:
    pipeline_metrics.on_run_ended(ctx.ports, run)  # every kind: RunsSucceeded/Failed, steps
    hook = ON_END.get(str(ctx.event.get("kind", "pipeline")))
    if hook is not None:
        hook(ctx, run)


# The tuning steps (PlanTrials, StartTrialJob, CheckTrialJob) live in their own module and
# register themselves here.
from chalicelib import tuning as _tuning  # noqa: E402, F401  (registers its handlers)


@task("finish")
def finish(ctx: StepContext) -> StepResult:
    run = runs.end(ctx.ports, ctx.run_id, "SUCCEEDED")
    _ended(ctx, run)
    return StepResult({"status": run["status"]}, status=None)


@task("fail_run")
def fail_run(ctx: StepContext) -> StepResult:
    """Catch target: record the error on the run. Internal details never reach the user."""
    error = ctx.event.get("error") or {}
    kind = str(error.get("Error", "Unknown"))
    message = str(error.get("Cause", ""))
    try:
        cause = json.loads(message)
    except json.JSONDecodeError:
        cause = None
    if isinstance(cause, dict):  # a Lambda error: {"errorType", "errorMessage"}
        kind = str(cause.get("errorType", kind))
        message = str(cause.get("errorMessage", message))
    step = None
    if kind == "QualityGateFailed":
        step = "quality_gate"
        failures = cause if isinstance(cause, list) else [message]
        message = "quality gate failed: " + "; ".join(map(str, failures))
    elif kind not in USER_FACING_ERRORS:
        message = f"internal error ({kind}); see the step's logs"
    if step is None and not _step_in_flight(ctx):
        step = runs.step_from_history(ctx.ports, ctx.run_id)
    run = runs.end(
        ctx.ports, ctx.run_id, "FAILED", {"step": step, "type": kind, "message": message}
    )
    _ended(ctx, run)
    return StepResult({"status": run["status"], "error": run["error"]}, status=None)


# The batch prediction flow's handlers register themselves on import (workflow.TASKS).
from chalicelib import batch_steps  # noqa: E402, F401
