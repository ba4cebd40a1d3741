"""Job runner port: SageMaker training/processing jobs, or the same scripts as local processes.

Both sides follow the SageMaker container contract, so ``sagemaker_jobs/*.py`` never know
where they run:

- training: hyperparameters arrive as ``--name value``; channel ``c`` is a directory in
  ``SM_CHANNEL_C``; the model goes to ``SM_MODEL_DIR`` and is tarred to ``model.tar.gz``;
  a failure reason is written to ``$SM_OUTPUT_DIR/failure``.
- processing: input ``n`` is a directory passed as ``--n-dir``; outputs go to ``--output-dir``.

``start`` is idempotent for a given job name (retried states reuse the name), and
``describe`` may block up to ``wait_seconds`` for the job to end (local long-poll).
"""

from __future__ import annotations

import json
import os
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from chalicelib.errors import NotFoundError
from chalicelib.ports.job_launcher import Launcher, default_launcher
from chalicelib.ports.objectstore import ObjectStore

JobKind = Literal["training", "processing"]
JobState = Literal["InProgress", "Completed", "Failed", "Stopped"]

JOBS_SOURCE_DIR = Path(__file__).resolve().parents[3] / "sagemaker_jobs"


@dataclass(frozen=True)
class JobSpec:
    name: str
    kind: JobKind
    entry_point: str  # a file in sagemaker_jobs/, e.g. "train.py"
    arguments: dict[str, str]  # hyperparameters (training) or CLI arguments (processing)
    inputs: dict[str, str]  # channel/input name -> object key (one file) or key prefix
    output_prefix: str  # where the job's outputs land in the object store


@dataclass
class JobStatus:
    name: str
    status: JobState
    failure_reason: str | None = None
    # training: {"model": key of model.tar.gz}; processing: {"output": key prefix}
    outputs: dict[str, str] = field(default_factory=dict)


class JobRunner(Protocol):
    def start(self, spec: JobSpec) -> None: ...
    def describe(self, name: str, kind: JobKind, wait_seconds: float = 0) -> JobStatus: ...


class LocalJobRunner:
    """Runs the job scripts as subprocesses of this process, one workspace per job."""

    def __init__(
        self, jobs_dir: Path, store: ObjectStore, launcher: Launcher | None = None
    ) -> None:
        self.jobs_dir = jobs_dir
        self.store = store
        self.launcher = launcher or default_launcher()
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _status_path(self, name: str) -> Path:
        return self.jobs_dir / name / "status.json"

    def _write_status(self, status: JobStatus) -> None:
        path = self._status_path(status.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(status)))
        os.replace(tmp, path)

    def _read_status(self, name: str) -> JobStatus | None:
        try:
            return JobStatus(**json.loads(self._status_path(name).read_text()))
        except FileNotFoundError:
            return None

    def start(self, spec: JobSpec) -> None:
        with self._lock:
            if self._read_status(spec.name) is not None:
                return  # same name = the same job (a retried state): never run it twice
            workdir = self.jobs_dir / spec.name
            workdir.mkdir(parents=True, exist_ok=True)
            self._write_status(JobStatus(spec.name, "InProgress"))
            done = threading.Event()
            self._done[spec.name] = done
        thread = threading.Thread(
            target=self._run, args=(spec, workdir, done), name=f"job-{spec.name}", daemon=True
        )
        thread.start()

    def _stage(self, key: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        if self.store.exists(key):
            self.store.get_file(key, dest / key.rsplit("/", 1)[-1])
            return
        prefix = key.rstrip("/") + "/"
        keys = self.store.list(prefix)
        if not keys:
            raise NotFoundError(f"job input {key!r} is empty")
        for k in keys:
            self.store.get_file(k, dest / k[len(prefix) :])

    def _run(self, spec: JobSpec, workdir: Path, done: threading.Event) -> None:
        status = JobStatus(spec.name, "Failed")
        try:
            status = self._execute(spec, workdir)
        except Exception as exc:  # the job failed; the reason is what the user sees
            status.failure_reason = f"{type(exc).__name__}: {exc}"[:1024]
        finally:
            self._write_status(status)
            done.set()

    def _execute(self, spec: JobSpec, workdir: Path) -> JobStatus:
        output_dir = workdir / "output"
        output_dir.mkdir(exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MLPIPE_", "MOTO_"))  # jobs get no credentials
        }
        env["SM_OUTPUT_DIR"] = str(output_dir)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        script = str(JOBS_SOURCE_DIR / spec.entry_point)
        if spec.kind == "training":
            model_dir = workdir / "model"
            model_dir.mkdir(exist_ok=True)
            env["SM_MODEL_DIR"] = str(model_dir)
            env["SM_OUTPUT_DATA_DIR"] = str(output_dir / "data")
            for channel, key in spec.inputs.items():
                channel_dir = workdir / "input" / "data" / channel
                self._stage(key, channel_dir)
                env[f"SM_CHANNEL_{channel.upper()}"] = str(channel_dir)
            argv = [a for k, v in spec.arguments.items() for a in (f"--{k}", v)]
        else:
            out = workdir / "processing" / "output"
            out.mkdir(parents=True, exist_ok=True)
            argv = [a for k, v in spec.arguments.items() for a in (f"--{k}", v)]
            for name, key in spec.inputs.items():
                target = workdir / "processing" / name
                self._stage(key, target)
                argv += [f"--{name}-dir", str(target)]
            argv += ["--output-dir", str(out)]
        returncode = self.launcher.run(script, argv, env, workdir, workdir / "job.log")
        if returncode != 0:
            failure = output_dir / "failure"
            reason = failure.read_text().strip() if failure.exists() else ""
            if not reason:  # killed, or crashed before it could say why: the log has the rest
                reason = f"the job exited with code {returncode} without a failure reason"
            return JobStatus(spec.name, "Failed", reason[:1024])
        if spec.kind == "training":
            archive = workdir / "model.tar.gz"
            # Level 1: models can be 100 MB of pickle; level 6 costs ~1 s more for ~20 % less.
            with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
                for item in sorted((workdir / "model").iterdir()):
                    tar.add(item, arcname=item.name)
            key = f"{spec.output_prefix.rstrip('/')}/model.tar.gz"
            self.store.put_file(key, archive)
            return JobStatus(spec.name, "Completed", outputs={"model": key})
        prefix = spec.output_prefix.rstrip("/")
        out = workdir / "processing" / "output"
        for path in sorted(out.rglob("*")):
            if path.is_file():
                self.store.put_file(f"{prefix}/{path.relative_to(out).as_posix()}", path)
        return JobStatus(spec.name, "Completed", outputs={"output": prefix})

    def describe(self, name: str, kind: JobKind, wait_seconds: float = 0) -> JobStatus:
        done = self._done.get(name)
        if done is not None and wait_seconds > 0:
            done.wait(wait_seconds)
        status = self._read_status(name)
        if status is None:
            raise NotFoundError(f"job {name!r} not found")
        if status.status == "InProgress" and done is None:
            # Started by a process that has since stopped: nothing will ever finish it.
            status = JobStatus(name, "Failed", "interrupted: the local stack stopped mid-job")
            self._write_status(status)
        return status

    def close(self) -> None:
        self.launcher.close()

    def mark_interrupted(self) -> int:
        """On start-up: jobs left InProgress by a previous process can never complete."""
        count = 0
        if not self.jobs_dir.exists():
            return 0
        for path in self.jobs_dir.glob("*/status.json"):
            status = self._read_status(path.parent.name)
            if status and status.status == "InProgress" and path.parent.name not in self._done:
                status.status = "Failed"
                status.failure_reason = "interrupted: the local stack stopped mid-job"
                self._write_status(status)
                count += 1
        return count


_SM_STATE: dict[str, JobState] = {
    "InProgress": "InProgress",
    "Stopping": "InProgress",
    "Completed": "Completed",
    "Failed": "Failed",
    "Stopped": "Stopped",
}


class SageMakerJobRunner:
    """Training jobs and processing jobs on the prebuilt scikit-learn container."""

    def __init__(
        self,
        sagemaker: Any,
        store: ObjectStore,
        *,
        role_arn: str,
        image_uri: str,
        code_prefix: str,
        instance_type: str,
    ) -> None:
        self.sm = sagemaker
        self.store = store
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.code_prefix = code_prefix.rstrip("/")  # holds sourcedir.tar.gz and the scripts
        self.instance_type = instance_type

    def start(self, spec: JobSpec) -> None:
        try:
            if spec.kind == "training":
                self._start_training(spec)
            else:
                self._start_processing(spec)
        except ClientError as exc:
            message = exc.response["Error"].get("Message", "")
            if "already" in message.lower() or "unique" in message.lower():
                return  # a retried state: the job already exists
            raise

    def _s3_input(self, key: str) -> str:
        # S3Prefix matches by string prefix: end a folder with "/" so that "split/train"
        # does not also pull in a sibling "split/train2/".
        return self.store.uri(key) if self.store.exists(key) else self.store.uri(key) + "/"

    def _start_training(self, spec: JobSpec) -> None:
        hyperparameters = {
            **spec.arguments,
            "sagemaker_program": spec.entry_point,
            "sagemaker_submit_directory": self.store.uri(f"{self.code_prefix}/sourcedir.tar.gz"),
        }
        self.sm.create_training_job(
            TrainingJobName=spec.name,
            AlgorithmSpecification={"TrainingImage": self.image_uri, "TrainingInputMode": "File"},
            RoleArn=self.role_arn,
            # The SDK's convention: every value JSON-encoded; the container's launcher
            # decodes them before handing them to the script as --name value.
            HyperParameters={k: json.dumps(v) for k, v in hyperparameters.items()},
            InputDataConfig=[
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": self._s3_input(key),
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for channel, key in spec.inputs.items()
            ],
            OutputDataConfig={"S3OutputPath": self.store.uri(spec.output_prefix)},
            ResourceConfig={
                "InstanceType": self.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 10,
            },
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )

    def _start_processing(self, spec: JobSpec) -> None:
        code_dir = "/opt/ml/processing/input/code"
        argv = [a for k, v in spec.arguments.items() for a in (f"--{k}", v)]
        inputs = [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": self.store.uri(self.code_prefix) + "/",
                    "LocalPath": code_dir,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ]
        for name, key in spec.inputs.items():
            local = f"/opt/ml/processing/{name}"
            inputs.append(
                {
                    "InputName": name,
                    "S3Input": {
                        "S3Uri": self._s3_input(key),
                        "LocalPath": local,
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                }
            )
            argv += [f"--{name}-dir", local]
        argv += ["--output-dir", "/opt/ml/processing/output"]
        self.sm.create_processing_job(
            ProcessingJobName=spec.name,
            RoleArn=self.role_arn,
            AppSpecification={
                "ImageUri": self.image_uri,
                # As the SageMaker SDK's FrameworkProcessor does: install the job's
                # requirements, then run the script with the arguments.
                "ContainerEntrypoint": [
                    "/bin/sh",
                    "-c",
                    f"pip install -q -r {code_dir}/requirements.txt && "
                    f'python3 {code_dir}/{spec.entry_point} "$@"',
                    "--",
                ],
                "ContainerArguments": argv,
            },
            ProcessingInputs=inputs,
            ProcessingOutputConfig={
                "Outputs": [
                    {
                        "OutputName": "output",
                        "S3Output": {
                            "S3Uri": self.store.uri(spec.output_prefix),
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            ProcessingResources={
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": self.instance_type,
                    "VolumeSizeInGB": 10,
                }
            },
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )

    def describe(self, name: str, kind: JobKind, wait_seconds: float = 0) -> JobStatus:
        del wait_seconds  # the state machine's Wait state paces polling on AWS
        try:
            if kind == "training":
                desc = self.sm.describe_training_job(TrainingJobName=name)
                state = _SM_STATE.get(desc["TrainingJobStatus"], "InProgress")
                outputs = {}
                artefact = desc.get("ModelArtifacts", {}).get("S3ModelArtifacts")
                if artefact:
                    outputs["model"] = self.store.key_of(artefact)
            else:
                desc = self.sm.describe_processing_job(ProcessingJobName=name)
                state = _SM_STATE.get(desc["ProcessingJobStatus"], "InProgress")
                outputs = {}
                for out in desc.get("ProcessingOutputConfig", {}).get("Outputs", []):
                    outputs["output"] = self.store.key_of(out["S3Output"]["S3Uri"]).rstrip("/")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                raise NotFoundError(f"job {name!r} not found") from None
            raise
        return JobStatus(name, state, desc.get("FailureReason"), outputs)


def wait_until_done(runner: JobRunner, name: str, kind: JobKind, timeout: float) -> JobStatus:
    """For scripts and tests: poll until the job ends or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        status = runner.describe(name, kind, wait_seconds=min(5.0, timeout))
        if status.status != "InProgress" or time.monotonic() > deadline:
            return status
