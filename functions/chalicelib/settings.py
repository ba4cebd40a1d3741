"""The one settings object. Every environment variable the product reads is declared here."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read once per process (``get_settings``); ``reset_settings`` is for tests and the stack."""

    model_config = SettingsConfigDict(env_prefix="MLPIPE_", extra="ignore")

    profile: Literal["local", "aws"] = "local"
    # local profile: where datasets, artefacts, job workspaces and the SQLite metadata live.
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".mlpipe")

    region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")
    # AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> are read by botocore itself (see aws.py).

    # aws profile resources (created by iac/template.yaml; names passed to the functions).
    bucket: str = "mlpipe-artifacts"
    table: str = "mlpipe-metadata"
    state_machine_arn: str = "arn:aws:states:us-east-1:123456789012:stateMachine:mlpipe-pipeline"
    sagemaker_role_arn: str = "arn:aws:iam::123456789012:role/mlpipe-sagemaker"
    sklearn_image_uri: str = (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    )
    training_instance_type: str = "ml.m5.large"
    endpoint_instance_type: str = "ml.t2.medium"

    # Seconds the state machine waits between job status checks (AWS: 30). Each check is 9
    # history events; on the aws profile the settings refuse a poll interval that would let
    # two jobs of max_job_seconds approach Step Functions' 25,000-event history limit (see
    # ``history_events`` and stepfunctions/README.md). The local stack sets 0: its job
    # runner's describe long-polls instead (job_long_poll_seconds).
    poll_seconds: int = Field(default=30, ge=0, le=3600)
    job_long_poll_seconds: float = Field(default=5.0, ge=0, le=60)

    # Limits. Runs in flight at once (429 beyond); wall time of one training or evaluation
    # job (the run fails with MaxRuntimeExceeded past it).
    max_concurrent_runs: int = Field(default=4, ge=1, le=1000)
    max_job_seconds: int = Field(default=3600, ge=60, le=5 * 24 * 3600)

    # Directories a "file" dataset source may read from, ':'-separated. Nothing else is
    # readable through the API. Default: <data dir>/files (put or link files there).
    file_roots: str = ""

    # The embedded local stack's AWS endpoint (Step Functions, Lambda, S3 on loopback),
    # which the AWS CLI can be pointed at (`--endpoint-url http://127.0.0.1:4510`).
    aws_port: int = Field(default=4510, ge=0, le=65535)
    # The AWS endpoint this service talks to, reported by GET /health: the embedded one
    # locally (set by the local stack); on AWS, unset.
    aws_endpoint_url: str | None = None
    # The S3 prefix holding the job scripts (sourcedir.tar.gz + raw files) and the version
    # recorded on each model: set by the deploy script on AWS, by the local stack offline.
    code_prefix: str = "code/current"
    code_version: str = "unknown"

    # Monitoring. Our metrics' namespace (EMF, PutMetricData) and where endpoint metrics are
    # read ("AWS/SageMaker" on AWS reads SageMaker's own, which have no ModelVersion).
    metrics_namespace: str = "mlpipe"
    endpoint_metrics_namespace: str = "mlpipe"
    # How often model servers flush and the local stack pulls their metrics (<= 10 s).
    metrics_flush_seconds: float = Field(default=10.0, gt=0, le=10)
    # Local metrics retention (CloudWatch keeps 1-minute data 15 days).
    metrics_retention_days: int = Field(default=15, ge=1, le=455)
    # Data capture: object-store prefix (S3 DestinationS3Uri on AWS) and default sampling.
    capture_prefix: str = "datacapture"
    default_sampling_percent: float = Field(default=100.0, ge=0, le=100)
    # Scheduled drift checks: how often, over how much recent traffic, and when to flag.
    drift_schedule_minutes: int = Field(default=60, ge=5, le=1440)
    drift_window_hours: int = Field(default=24, ge=1, le=24 * 30)
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    drift_p_value_threshold: float = Field(default=0.05, gt=0, lt=1)
    # Offline alarm evaluation period (on AWS, CloudWatch evaluates alarms).
    alarm_evaluation_seconds: int = Field(default=60, ge=10, le=3600)
    # AWS: the SNS topic alarms notify (the rollback/retrain Lambda subscribes to it).
    alarm_topic_arn: str = ""
    # The stack these functions belong to (the template sets it): every SageMaker resource
    # the service creates is tagged mlpipe:owner=<stack_name>, and endpoints without our tag
    # are never updated or deleted.
    stack_name: str = Field(default="mlpipe", min_length=1, max_length=128)
    # Where jobs and endpoints run on the aws profile: SageMaker, or (offline tests of the
    # AWS path: iac/local/hybrid.py) the local job runner and endpoint runtime. "local" is
    # refused inside a Lambda: the local implementations are never in the bundle.
    jobs: Literal["sagemaker", "local"] = "sagemaker"
    endpoints: Literal["sagemaker", "local"] = "sagemaker"
    # The Python the local job runner runs job scripts with: the job environment pinned to
    # the SageMaker image's library versions (make jobs-venv: .venv-jobs). Unset: that venv
    # when it exists, else this interpreter.
    job_python: str | None = None
    # The Glue database every dataset version is registered in as a table (for Athena); the
    # template creates it. Unset: datasets are not catalogued.
    glue_database: str | None = None

    # Upper bound on inline dataset bodies and uploads (API Gateway caps payloads at 10 MB).
    max_inline_bytes: int = 6 * 1024 * 1024

    # Remote dataset sources (chalicelib/sources). http: hosts or CIDRs let past the SSRF
    # guard (comma-separated; e.g. "127.0.0.1/32,data.internal"), and the most bytes one
    # source may send (all pages). s3: the most bytes one source may read.
    http_allow: str = ""
    http_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    s3_max_bytes: int = Field(default=4 * 1024 * 1024 * 1024, ge=1)
    # POST /datasets/{name}/uploads: the most bytes one upload may hold (S3: 5 GB per PUT).
    upload_max_bytes: int = Field(default=5 * 1000**3, ge=1)

    @model_validator(mode="after")
    def _history_fits(self) -> Settings:
        if self.profile == "aws" and self.jobs == "sagemaker":
            if self.poll_seconds < 1:
                raise ValueError("MLPIPE_POLL_SECONDS must be at least 1 on AWS (0 would spin)")
            events = history_events(self.max_job_seconds, self.poll_seconds)
            if events > HISTORY_BUDGET:
                raise ValueError(
                    f"a run with two jobs of MLPIPE_MAX_JOB_SECONDS={self.max_job_seconds} "
                    f"polled every MLPIPE_POLL_SECONDS={self.poll_seconds} s could write "
                    f"{events} history events; Step Functions stops at 25,000 (budget "
                    f"{HISTORY_BUDGET}): raise the poll interval to at least "
                    f"{min_poll_seconds(self.max_job_seconds)} s"
                )
        return self

    @property
    def allowed_file_roots(self) -> list[Path]:
        roots = [p for p in self.file_roots.split(":") if p]
        return [Path(p).resolve() for p in roots] or [(self.data_dir / "files").resolve()]

    @property
    def metrics_path(self) -> Path:
        return self.data_dir / "metrics.sqlite3"

    @property
    def metadata_path(self) -> Path:
        return self.data_dir / "metadata.sqlite3"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"


# Step Functions history arithmetic (stepfunctions/README.md). One Wait/Check/Choice loop is
# 9 events: WaitStateEntered/Exited, TaskStateEntered, TaskScheduled, TaskStarted,
# TaskSucceeded, TaskStateExited, ChoiceStateEntered/Exited. A run has two job loops
# (training, evaluation); the rest of a run (10 Lambda tasks, choices, retries) stays under
# FIXED_EVENTS. The budget leaves 20 % of the 25,000 limit for retries.
EVENTS_PER_POLL = 9
FIXED_EVENTS = 250
HISTORY_BUDGET = 20_000


def history_events(max_job_seconds: int, poll_seconds: int) -> int:
    """Worst-case history events of one run: two jobs that each run max_job_seconds."""
    polls = max_job_seconds // max(poll_seconds, 1) + 2
    return FIXED_EVENTS + 2 * EVENTS_PER_POLL * polls


def min_poll_seconds(max_job_seconds: int) -> int:
    poll = 1
    while history_events(max_job_seconds, poll) > HISTORY_BUDGET:
        poll += 1
    return poll


@cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()
