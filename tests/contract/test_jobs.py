"""JobRunner contract: LocalJobRunner really runs sagemaker_jobs/*.py as subprocesses;
SageMakerJobRunner is checked against moto for well-formed requests. One parametrized suite
covers what both promise (idempotent start, NotFoundError for unknown jobs)."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from sklearn.metrics import accuracy_score, f1_score

from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.adapters.sagemaker import SageMakerJobRunner
from chalicelib.errors import NotFoundError
from chalicelib.ports import JobKind, JobRunner, JobSpec, JobStatus
from iac.local.files import FileObjectStore
from iac.local.jobs import LocalJobRunner, wait_until_done
from iac.local.launcher import SpawnLauncher
from tests.contract.conftest import (
    BUCKET,
    TARGET,
    TEST_KEY,
    TRAIN_KEY,
    TrainedModel,
    aws_client,
    evaluate_spec,
    features_for_pipeline,
    load_pipeline,
    to_parquet,
    train_spec,
)

STATES = {"InProgress", "Completed", "Failed", "Stopped"}
ROLE = "arn:aws:iam::123456789012:role/contract-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
CODE_PREFIX = "code/current"


def _job_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"job-{name}"]


# --------------------------------------------------------------------------- local runner


def test_training_job_produces_a_servable_model_archive(trained_model: TrainedModel) -> None:
    status = trained_model.status
    assert status.name == trained_model.spec.name
    assert status.status == "Completed"
    assert status.failure_reason is None
    key = status.outputs["model"]
    assert key.startswith(trained_model.spec.output_prefix + "/")
    assert trained_model.store.exists(key)
    with tarfile.open(fileobj=io.BytesIO(trained_model.store.get_bytes(key)), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert {"model.joblib", "metadata.json", "code/inference.py"} <= names
        member = tar.extractfile("metadata.json")
        assert member is not None
        metadata = json.loads(member.read())
    assert metadata["task"] == "classification"
    assert metadata["target"] == TARGET
    assert [f["name"] for f in metadata["signature"]["inputs"]] == ["x1", "x2", "colour"]
    assert sorted(metadata["classes"]) == ["no", "yes"]
    assert metadata["training_rows"] == len(trained_model.train)
    assert metadata["hyperparameters"] == {"n_estimators": 8, "max_depth": 4}


def test_describe_of_a_finished_job_is_stable(trained_model: TrainedModel) -> None:
    again = trained_model.runner.describe(trained_model.spec.name, "training")
    assert again == trained_model.status


def test_starting_a_finished_job_again_is_a_no_op(trained_model: TrainedModel) -> None:
    runner, spec = trained_model.runner, trained_model.spec
    workdir = runner.jobs_dir / spec.name
    log_before = (workdir / "job.log").stat()
    model_before = trained_model.store.get_bytes(trained_model.status.outputs["model"])

    runner.start(spec)

    assert _job_threads(spec.name) == []  # no worker thread was started for a second run
    assert runner.describe(spec.name, "training") == trained_model.status
    log_after = (workdir / "job.log").stat()
    assert (log_after.st_mtime_ns, log_after.st_size) == (
        log_before.st_mtime_ns,
        log_before.st_size,
    )
    assert trained_model.store.get_bytes(trained_model.status.outputs["model"]) == model_before


def test_failing_training_job_reports_the_bad_parameter(trained_model: TrainedModel) -> None:
    runner = trained_model.runner
    spec = train_spec("train-bad-hp", {"n_estimators": -1})
    runner.start(spec)
    status = wait_until_done(runner, spec.name, "training", timeout=120)
    assert status.status == "Failed"
    assert status.failure_reason is not None
    assert "n_estimators" in status.failure_reason
    assert status.outputs == {}
    assert len(status.failure_reason) <= 1024


def test_failing_job_with_missing_input_fails_without_running(tmp_path: Path) -> None:
    runner = LocalJobRunner(tmp_path / "jobs", FileObjectStore(tmp_path / "objects"))
    spec = train_spec("train-no-data")
    runner.start(spec)
    status = wait_until_done(runner, spec.name, "training", timeout=60)
    assert status.status == "Failed"
    assert status.failure_reason is not None
    assert "NotFoundError" in status.failure_reason
    assert not (tmp_path / "jobs" / spec.name / "job.log").exists()


def test_evaluation_processing_job_writes_metrics(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    runner, store = trained_model.runner, trained_model.store
    spec = evaluate_spec("evaluate-ok", trained_model.status.outputs["model"])
    runner.start(spec)
    status = wait_until_done(runner, spec.name, "processing", timeout=120)
    assert status.status == "Completed", (
        status,
        (runner.jobs_dir / spec.name / "job.log").read_text(errors="replace"),
    )
    assert status.outputs == {"output": spec.output_prefix}
    written = store.list(spec.output_prefix)
    assert f"{spec.output_prefix}/evaluation.json" in written
    # Beside the summary: the full report and its plots (issue "Models").
    assert f"{spec.output_prefix}/report.json" in written
    assert f"{spec.output_prefix}/plots/confusion_matrix.png" in written
    report = json.loads(store.get_bytes(f"{spec.output_prefix}/evaluation.json"))
    assert report["task"] == "classification"
    assert report["rows"] == len(trained_model.test)
    assert set(report["metrics"]) == {"accuracy", "f1_macro"}

    # The metrics are the model's, on the test channel.
    pipeline = load_pipeline(trained_model, tmp_path)
    predicted = pipeline.predict(features_for_pipeline(trained_model.test))
    truth = trained_model.test[TARGET].to_numpy()
    assert report["metrics"]["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert report["metrics"]["f1_macro"] == pytest.approx(
        f1_score(truth, predicted, average="macro")
    )


def test_describe_of_an_unknown_local_job(tmp_path: Path) -> None:
    runner = LocalJobRunner(tmp_path / "jobs", FileObjectStore(tmp_path / "objects"))
    with pytest.raises(NotFoundError):
        runner.describe("never-started", "training")


def _write_status(jobs_dir: Path, status: dict[str, Any]) -> None:
    (jobs_dir / status["name"]).mkdir(parents=True)
    (jobs_dir / status["name"] / "status.json").write_text(json.dumps(status))


def test_mark_interrupted_stops_jobs_left_in_progress(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    # What a previous process left behind.
    _write_status(
        jobs_dir, {"name": "old", "status": "InProgress", "failure_reason": None, "outputs": {}}
    )
    done = {"name": "done", "status": "Completed", "failure_reason": None, "outputs": {"m": "k"}}
    _write_status(jobs_dir, done)

    runner = LocalJobRunner(jobs_dir, FileObjectStore(tmp_path / "objects"))
    assert runner.mark_interrupted() == 1
    old = runner.describe("old", "training")
    assert old.status == "Stopped"
    assert old.failure_reason is not None
    assert "Interrupted" in old.failure_reason
    assert runner.describe("done", "training") == JobStatus("done", "Completed", None, {"m": "k"})
    # Persisted, so a later process sees it too; a second sweep finds nothing.
    assert json.loads((jobs_dir / "old" / "status.json").read_text())["status"] == "Stopped"
    assert runner.mark_interrupted() == 0


def test_describe_stops_an_orphaned_in_progress_job(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    _write_status(
        jobs_dir, {"name": "orphan", "status": "InProgress", "failure_reason": None, "outputs": {}}
    )
    runner = LocalJobRunner(jobs_dir, FileObjectStore(tmp_path / "objects"))
    status = runner.describe("orphan", "processing")
    assert status.status == "Stopped"
    assert status.failure_reason is not None
    assert "Interrupted" in status.failure_reason


# -------------------------------------------------------------------- SageMaker runner


@pytest.fixture
def sm_runner(s3_client: Any) -> SageMakerJobRunner:
    return SageMakerJobRunner(
        aws_client("sagemaker"),
        S3ObjectStore(BUCKET, s3_client),
        role_arn=ROLE,
        image_uri=IMAGE,
        code_prefix=CODE_PREFIX + "/",
        instance_type="ml.m5.large",
    )


def test_sagemaker_training_job_request(sm_runner: SageMakerJobRunner) -> None:
    spec = train_spec("train-sm")
    sm_runner.start(spec)
    desc = sm_runner.sm.describe_training_job(TrainingJobName=spec.name)
    assert desc["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert desc["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert desc["RoleArn"] == ROLE
    hyperparameters = desc["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == '"train.py"'
    assert hyperparameters["sagemaker_submit_directory"] == json.dumps(
        f"s3://{BUCKET}/{CODE_PREFIX}/sourcedir.tar.gz"
    )
    # The training toolkit json-decodes every value before passing it to the script as
    # --name value, so what train.py receives must be exactly the spec's arguments.
    assert {k: json.loads(v) for k, v in hyperparameters.items()} == {
        **spec.arguments,
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"s3://{BUCKET}/{CODE_PREFIX}/sourcedir.tar.gz",
    }
    assert all(isinstance(v, str) for v in hyperparameters.values())
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in desc["InputDataConfig"]}
    assert set(channels) == set(spec.inputs)
    for name, key in spec.inputs.items():
        # Folders end in "/" so the prefix match cannot pull in a sibling ("train2/").
        assert channels[name]["S3Uri"] == sm_runner.store.uri(key) + "/"
        assert channels[name]["S3DataType"] == "S3Prefix"
    assert desc["OutputDataConfig"]["S3OutputPath"] == sm_runner.store.uri(spec.output_prefix)
    assert desc["ResourceConfig"]["InstanceType"] == "ml.m5.large"

    status = sm_runner.describe(spec.name, "training")
    assert status.name == spec.name
    assert status.status in STATES
    if status.status == "Completed":
        # Where SageMaker puts it: <output path>/<job name>/output/model.tar.gz, as a key.
        assert status.outputs["model"] == f"{spec.output_prefix}/{spec.name}/output/model.tar.gz"


def test_sagemaker_processing_job_request(sm_runner: SageMakerJobRunner) -> None:
    spec = evaluate_spec("evaluate-sm", "runs/r1/model/train-sm/output/model.tar.gz")
    sm_runner.start(spec)
    desc = sm_runner.sm.describe_processing_job(ProcessingJobName=spec.name)
    app = desc["AppSpecification"]
    assert app["ImageUri"] == IMAGE
    assert desc["RoleArn"] == ROLE
    code_dir = "/opt/ml/processing/input/code"
    assert app["ContainerEntrypoint"][:2] == ["/bin/sh", "-c"]
    assert f"{code_dir}/{spec.entry_point}" in app["ContainerEntrypoint"][2]
    assert f"{code_dir}/requirements.txt" in app["ContainerEntrypoint"][2]
    inputs = {i["InputName"]: i["S3Input"] for i in desc["ProcessingInputs"]}
    assert inputs["code"]["S3Uri"] == sm_runner.store.uri(CODE_PREFIX) + "/"
    assert inputs["code"]["LocalPath"] == code_dir
    args = app["ContainerArguments"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--metrics"] == spec.arguments["metrics"]
    for name, key in spec.inputs.items():
        # An object key stays exact; a folder ends in "/".
        expected = sm_runner.store.uri(key)
        assert inputs[name]["S3Uri"] in (expected, expected + "/")
        assert inputs[name]["S3Uri"].endswith("/") != sm_runner.store.exists(key)
        # The script is told where each input was downloaded.
        assert pairs[f"--{name}-dir"] == inputs[name]["LocalPath"]
    (output,) = desc["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == sm_runner.store.uri(spec.output_prefix)
    assert pairs["--output-dir"] == output["S3Output"]["LocalPath"]

    status = sm_runner.describe(spec.name, "processing")
    assert status.status in STATES
    assert status.outputs == {"output": spec.output_prefix}


# What SageMaker answers when a job name is reused (the runner treats it as "already started").
_DUPLICATE = {
    "training": (
        "ResourceInUse",
        "Training job names must be unique within an AWS account and region, and a training "
        "job with this name already exists (arn:aws:sagemaker:us-east-1:123456789012:"
        "training-job/j)",
    ),
    "processing": (
        "ValidationException",
        "Job name must be unique within an AWS account and region, and a job with this name "
        "already exists (arn:aws:sagemaker:us-east-1:123456789012:processing-job/j)",
    ),
}


_DESCRIBED_PROCESSING = {
    "ProcessingJobName": "dup",
    "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/dup",
    "ProcessingJobStatus": "InProgress",
    "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
    "ProcessingResources": {
        "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
    },
    "AppSpecification": {"ImageUri": "img"},
}


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_sagemaker_start_swallows_only_the_duplicate_name_error(
    sm_runner: SageMakerJobRunner, kind: JobKind
) -> None:
    # moto accepts a reused job name silently, so the real error is stubbed in.
    spec = train_spec("dup") if kind == "training" else evaluate_spec("dup", "m/model.tar.gz")
    operation = f"create_{kind}_job"
    code, message = _DUPLICATE[kind]
    with Stubber(sm_runner.sm) as stub:
        stub.add_client_error(operation, service_error_code=code, service_message=message)
        if code == "ValidationException":  # ambiguous: the runner checks the job exists
            stub.add_response("describe_processing_job", _DESCRIBED_PROCESSING)
        sm_runner.start(spec)  # no error
        stub.add_client_error(
            operation,
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: iam:PassRole",
        )
        with pytest.raises(ClientError, match="PassRole"):
            sm_runner.start(spec)
        stub.assert_no_pending_responses()


# ------------------------------------------------------------ the shared contract, both


@dataclass
class RunnerCase:
    runner: JobRunner
    release: Callable[[], None]  # let started jobs finish
    runs_of: Callable[[str], int]  # how many times a job actually ran / was created


def _gated_python(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A stand-in interpreter: records each run, then waits for a gate file and exits 0.
    Keeps the job InProgress for as long as the test needs, with no timing assumptions."""
    gate, runs = tmp_path / "gate", tmp_path / "runs.log"
    script = tmp_path / "fake-python"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$PWD\" >> '{runs}'\n"  # the runner starts each job in its own dir
        f"while [ ! -e '{gate}' ]; do sleep 0.02; done\n"
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, gate, runs


@pytest.fixture(params=["local", "sagemaker"])
def runner_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunnerCase]:
    if request.param == "local":
        store = FileObjectStore(tmp_path / "objects")
        store.put_bytes(TRAIN_KEY, to_parquet(_tiny_frame()))
        store.put_bytes(TEST_KEY, to_parquet(_tiny_frame()))
        python, gate, runs = _gated_python(tmp_path)
        runner = LocalJobRunner(tmp_path / "jobs", store, SpawnLauncher(str(python)))

        def local_runs(name: str) -> int:
            if not runs.exists():
                return 0
            return sum(1 for line in runs.read_text().splitlines() if Path(line).name == name)

        case = RunnerCase(runner, gate.touch, local_runs)
        yield case
        gate.touch()  # never leave a worker waiting
        return
    sm: Any = request.getfixturevalue("sm_runner")

    def sm_runs(name: str) -> int:
        found = sm.sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
        found += sm.sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"]
        return sum(
            1 for job in found if job.get("TrainingJobName", job.get("ProcessingJobName")) == name
        )

    yield RunnerCase(sm, lambda: None, sm_runs)


def _tiny_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"x1": np.arange(4.0), "x2": np.zeros(4), "colour": ["a"] * 4, TARGET: ["yes", "no"] * 2}
    )


def _spec(kind: JobKind, name: str) -> JobSpec:
    return train_spec(name) if kind == "training" else evaluate_spec(name, TRAIN_KEY)


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_start_is_idempotent(runner_case: RunnerCase, kind: JobKind) -> None:
    runner = runner_case.runner
    spec = _spec(kind, f"idem-{kind}")
    runner.start(spec)
    in_flight = runner.describe(spec.name, kind)
    runner.start(spec)  # a retried state reuses the name: same job, no second run
    runner.start(spec)
    assert in_flight.name == spec.name
    assert in_flight.status in STATES
    if isinstance(runner, LocalJobRunner):
        assert in_flight.status == "InProgress"  # the gate is closed
        assert len(_job_threads(spec.name)) == 1
        assert runner.mark_interrupted() == 0  # a job this process runs is not "interrupted"
    runner_case.release()
    final = wait_until_done(runner, spec.name, kind, timeout=60)
    assert final.status == "Completed", final
    assert runner_case.runs_of(spec.name) == 1
    runner.start(spec)  # also after it finished
    assert runner.describe(spec.name, kind) == final
    assert runner_case.runs_of(spec.name) == 1


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_describe_unknown_job_raises_not_found(runner_case: RunnerCase, kind: JobKind) -> None:
    with pytest.raises(NotFoundError):
        runner_case.runner.describe("no-such-job", kind)


def test_job_status_shape(runner_case: RunnerCase) -> None:
    spec = _spec("processing", "shape")
    runner_case.runner.start(spec)
    runner_case.release()
    status = wait_until_done(runner_case.runner, spec.name, "processing", timeout=60)
    assert isinstance(status, JobStatus)
    assert status.status == "Completed", status
    assert status.outputs == {"output": spec.output_prefix}
