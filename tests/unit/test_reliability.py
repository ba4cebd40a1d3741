"""Reliability of the domain over in-memory fakes (issue 5): bounded JSON nesting, throttling
is a 503 with Retry-After, interrupted and cancelled runs name their step, a cancel racing
StartTraining stops the job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice.test import Client

from chalicelib import runs, runtime, steps, tables
from chalicelib.adapters.stepfunctions import StepFunctionsOrchestrator
from chalicelib.errors import StepError, TooManyRequestsError
from chalicelib.ports import JobSpec, OrchestratorUnavailableError
from chalicelib.runtime import Ports
from mlcontract import jsonlimits
from tests.fakes import FakeJobs, make_ports

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:mlpipe"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:mlpipe:r1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", 1),
        ("[[], [[]], {}]", 3),
        ('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),
        ('["\\\\", ["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]]', 2),
        ("1", 0),
    ],
)
def test_depth_counts_brackets_outside_strings(text: str, expected: int) -> None:
    assert jsonlimits.depth(text) == expected
    assert jsonlimits.depth(text.encode()) == expected


def test_depth_stops_past_the_limit_and_counts_unclosed_brackets() -> None:
    assert jsonlimits.too_deep("[" * 33 + "]" * 33)
    assert not jsonlimits.too_deep("[" * 32 + "]" * 32)
    assert jsonlimits.too_deep("[" * 3000)  # unclosed: json.loads would recurse into it
    assert not jsonlimits.too_deep("]" * 3000)
    assert not jsonlimits.too_deep("[" + "[1], " * 50_000 + "[]]")  # wide, not deep


# --- throttling --------------------------------------------------------------------------


def _throttled(method: str) -> tuple[StepFunctionsOrchestrator, Stubber]:
    sfn = boto3.client(
        "stepfunctions",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    stub = Stubber(sfn)
    stub.add_client_error(method, "ThrottlingException", "Rate exceeded", 400)
    stub.activate()
    return StepFunctionsOrchestrator(ARN, sfn), stub


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("start_execution", lambda o: o.start("r1", {})),
        ("describe_execution", lambda o: o.status(EXECUTION)),
        ("stop_execution", lambda o: o.stop(EXECUTION, "x")),
        ("get_execution_history", lambda o: o.history(EXECUTION)),
    ],
)
def test_every_orchestrator_call_maps_throttling_to_unavailable(method: str, call: Any) -> None:
    orchestrator, stub = _throttled(method)
    with pytest.raises(OrchestratorUnavailableError, match="Rate exceeded"):
        call(orchestrator)
    stub.assert_no_pending_responses()


class ThrottledOrchestrator:
    """Step Functions answering ThrottlingException to everything but StartExecution."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.throttle = False

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        if self.throttle:
            raise OrchestratorUnavailableError("ThrottlingException: Rate exceeded")
        return str(self.inner.start(name, execution_input))

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.throttle:
                raise OrchestratorUnavailableError("ThrottlingException: Rate exceeded")
            return real(*args, **kwargs)

        return call


@pytest.fixture
def wired() -> Iterator[Ports]:
    ports = make_ports()
    ports.orchestrator = ThrottledOrchestrator(ports.orchestrator)  # type: ignore[misc]
    runtime.install(ports)
    yield ports
    runtime.install(None)


def _run(ports: Ports) -> str:
    return str(runs.launch(ports, "pipeline", {"pipeline": "p"}, {})["run_id"])


def test_throttled_routes_are_503_with_retry_after(wired: Ports) -> None:
    from app import app

    run_id = _run(wired)
    wired.orchestrator.throttle = True  # type: ignore[attr-defined]
    with Client(app) as client:
        for method, path in (
            ("get", f"/runs/{run_id}/events"),
            ("post", f"/runs/{run_id}/cancel"),
        ):
            resp = getattr(client.http, method)(path)
            assert resp.status_code == 503, resp.body
            assert resp.headers["Retry-After"] == "5"
            assert json.loads(resp.body)["Code"] == "ServiceUnavailableError"
        resp = client.http.get(f"/runs/{run_id}")  # the record as it stands
        assert resp.status_code == 200 and json.loads(resp.body)["status"] == "RUNNING"


def test_a_throttled_history_falls_back_to_what_was_kept(wired: Ports) -> None:
    run_id = _run(wired)
    kept = [{"type": "ExecutionStarted", "id": 1}, {"type": "TaskStateEntered", "id": 2}]
    wired.store.put_bytes(runs.history_key(run_id), json.dumps(kept).encode())
    wired.orchestrator.throttle = True  # type: ignore[attr-defined]
    assert runs.events(wired, run_id)["events"] == kept


def test_the_concurrency_cap_says_when_to_retry() -> None:
    from chalicelib.api import _error

    ports = make_ports(max_concurrent_runs=1)
    _run(ports)
    with pytest.raises(TooManyRequestsError) as caught:
        _run(ports)
    exc = caught.value
    response = _error(exc.status_code, exc.code, exc.message, retry_after=exc.retry_after)
    assert response.status_code == 429 and response.headers["Retry-After"] == "10"


# --- interrupted and cancelled runs name their step ---------------------------------------


def _steps_done(ports: Ports, run_id: str, *names: str) -> None:
    for name in names:
        runs.record_step(ports, run_id, name, "SUCCEEDED")


def test_a_run_killed_between_register_and_deploy_names_deploy() -> None:
    from iac.local.stack import _interrupt_runs

    ports = make_ports()
    run_id = _run(ports)
    done = ("ingest", "validate", "split", "train", "evaluate", "quality_gate", "register")
    _steps_done(ports, run_id, *done)
    _interrupt_runs(ports, "the local stack stopped while this run ran")
    run = runs.get(ports, run_id)
    assert run["status"] == "FAILED"
    assert run["error"]["type"] == "Interrupted" and run["error"]["step"] == "deploy"
    statuses = {s["name"]: s["status"] for s in run["steps"]}
    assert statuses["deploy"] == "FAILED" and statuses["register"] == "SUCCEEDED"


def test_a_lost_execution_names_the_step_it_was_in() -> None:
    ports = make_ports()
    run_id = _run(ports)
    _steps_done(ports, run_id, "ingest", "validate")
    item = ports.metadata.get(tables.RUNS, run_id)
    assert item is not None
    ports.orchestrator.statuses.pop(item.item["execution_arn"])  # type: ignore[attr-defined]
    run = runs.get(ports, run_id)
    assert run["status"] == "FAILED" and run["error"]["step"] == "split"


def _start_training(ports: Ports, run_id: str) -> Any:
    ctx = steps.StepContext(ports, {"run_id": run_id})
    spec = JobSpec(
        name=f"mlp-{run_id}-train-1", kind="training", entry_point="train.py", arguments={},
        inputs={}, output_prefix=f"runs/{run_id}/model", max_runtime_seconds=60,
    )  # fmt: skip
    return spec, lambda: steps._start_job(ctx, "train", spec)


def test_a_cancel_before_start_training_records_its_job_stops_the_job() -> None:
    ports = make_ports()
    run_id = _run(ports)
    _steps_done(ports, run_id, "ingest", "validate", "split")
    spec, start = _start_training(ports, run_id)
    cancelled = runs.cancel(ports, run_id)
    assert cancelled["status"] == "ABORTED" and cancelled["error"]["step"] == "train"
    with pytest.raises(StepError, match="ended"):
        start()
    jobs = ports.jobs
    assert isinstance(jobs, FakeJobs)
    assert jobs.stopped == [spec.name]
    assert jobs.describe(spec.name, "training").status == "Stopped"


def test_a_cancel_after_start_training_recorded_its_job_stops_the_job() -> None:
    ports = make_ports()
    run_id = _run(ports)
    _steps_done(ports, run_id, "ingest", "validate", "split")
    spec, start = _start_training(ports, run_id)
    result = start()
    assert result.status is None and result.output["name"] == spec.name
    train = next(s for s in runs.get(ports, run_id)["steps"] if s["name"] == "train")
    assert train["status"] == "RUNNING" and train["job"]["name"] == spec.name
    cancelled = runs.cancel(ports, run_id)
    assert cancelled["status"] == "ABORTED"
    assert next(s for s in cancelled["steps"] if s["name"] == "train")["status"] == "ABORTED"
    jobs = ports.jobs
    assert isinstance(jobs, FakeJobs)
    assert jobs.stopped == [spec.name]


# --- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_during_an_upload_is_507_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import errno

    from app import app
    from iac.local import files
    from iac.local.files import FileObjectStore

    ports = make_ports(tmp_path)
    ports.store = FileObjectStore(tmp_path / "objects")
    real_open = builtins.open

    class FullDisk:
        """A file on a disk that fills up halfway through the write."""

        def __init__(self, path: str, mode: str) -> None:
            self.fh = real_open(path, mode)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "open", FullDisk, raising=False)
    runtime.install(ports)
    try:
        with Client(app) as client:
            resp = client.http.post(
                "/datasets/full/versions",
                body="a,b\n1,2\n3,4\n",
                headers={"Content-Type": "text/csv"},
            )
            assert resp.status_code == 507, resp.body
            body = json.loads(resp.body)
            assert body["Code"] == "InsufficientStorageError" and "disk is full" in body["Message"]
            assert client.http.get("/datasets/full").status_code == 404
    finally:
        runtime.install(None)
    left = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert left == []


# --- deploys in version order ---------------------------------------------------------------


def test_a_deploy_waits_for_older_versions_of_runs_in_flight_only() -> None:
    from chalicelib import deploy_order

    ports = make_ports()
    older, newer, other = _run(ports), _run(ports), _run(ports)
    runs.update(ports, older, model={"name": "m", "version": 1})
    runs.update(ports, newer, model={"name": "m", "version": 2})
    runs.update(ports, other, model={"name": "elsewhere", "version": 1})
    assert deploy_order.older_deploys_pending(ports, "m", 2) == [older]
    assert deploy_order.older_deploys_pending(ports, "m", 1) == []  # never the newer ones
    assert deploy_order.wait_for_older_deploys(ports, "m", 2, timeout=0.2) == [older]
    runs.record_step(ports, older, "deploy", "SKIPPED")
    assert deploy_order.wait_for_older_deploys(ports, "m", 2, timeout=0) == []
    runs.update(ports, older, status="RUNNING")  # deploy done: no longer waited for
    runs.end(ports, newer, "FAILED", {"step": "deploy", "type": "X", "message": "x"})
    assert deploy_order.older_deploys_pending(ports, "m", 3) == []
