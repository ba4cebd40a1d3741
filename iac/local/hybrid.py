"""The aws profile with local jobs and endpoints: S3, DynamoDB, Step Functions (and Lambda,
through the in-process plug) are AWS's or an emulator's (moto, LocalStack), while training,
evaluation and serving run on this machine (``MLPIPE_JOBS=local``, ``MLPIPE_ENDPOINTS=local``)
because no emulator runs SageMaker.

Only the local stack's tests and tools import this module: the Lambda bundle never contains
``iac/``, so on AWS ``MLPIPE_JOBS=local`` fails loudly instead of silently running locally.
"""

from __future__ import annotations

from pathlib import Path

from chalicelib import runtime
from chalicelib.ports import EndpointRuntime, JobRunner, ObjectStore
from chalicelib.runtime import Ports
from chalicelib.settings import Settings
from iac.local.endpoints import LocalEndpointRuntime
from iac.local.jobs import LocalJobRunner, job_python


def build_ports(settings: Settings, work_dir: Path) -> Ports:
    """AWS ports over ``settings`` (profile aws), with the local job runner and endpoint
    runtime where the settings ask for them; their working files go under ``work_dir``."""

    def jobs(store: ObjectStore) -> JobRunner:
        return LocalJobRunner(
            work_dir / "jobs",
            store,
            long_poll_seconds=settings.job_long_poll_seconds,
            python=settings.job_python,
        )

    def endpoints(store: ObjectStore) -> EndpointRuntime:
        return LocalEndpointRuntime(
            work_dir / "endpoints", store, python=job_python(settings.job_python)
        )

    return runtime.build_aws_ports(
        settings,
        jobs=jobs if settings.jobs == "local" else None,
        endpoints=endpoints if settings.endpoints == "local" else None,
    )
