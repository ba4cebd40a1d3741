"""Wiring: which implementation serves each port. One explicit factory per target.

On AWS (``MLPIPE_PROFILE=aws``) the ports are built here, lazily, from the settings. The
embedded local stack builds its own ports (``iac/local/stack.py``) and installs them with
``install``; nothing in this package imports the local implementations, so they never ship
in a Lambda bundle.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from chalicelib.errors import ServiceUnavailableError
from chalicelib.monitoring.store import MetricsStore
from chalicelib.ports import EndpointRuntime, JobRunner, MetadataStore, ObjectStore, Orchestrator
from chalicelib.settings import Settings, get_settings


@dataclass
class Ports:
    settings: Settings
    store: ObjectStore
    metadata: MetadataStore
    jobs: JobRunner
    endpoints: EndpointRuntime
    orchestrator: Orchestrator
    metrics: MetricsStore


def build_aws_ports(settings: Settings) -> Ports:
    # The AWS SDK loads here, when the aws profile wires its ports: the domain never imports it.
    from chalicelib import aws
    from chalicelib.adapters.cloudwatch import CloudWatchMetricsStore
    from chalicelib.adapters.dynamodb import DynamoMetadata
    from chalicelib.adapters.s3 import S3ObjectStore
    from chalicelib.adapters.sagemaker import SageMakerEndpointRuntime, SageMakerJobRunner
    from chalicelib.adapters.stepfunctions import StepFunctionsOrchestrator

    store = S3ObjectStore(settings.bucket, aws.client("s3"))
    return Ports(
        settings=settings,
        store=store,
        metadata=DynamoMetadata(settings.table, aws.client("dynamodb")),
        jobs=SageMakerJobRunner(
            aws.client("sagemaker"),
            store,
            role_arn=settings.sagemaker_role_arn,
            image_uri=settings.sklearn_image_uri,
            code_prefix=settings.code_prefix,
            instance_type=settings.training_instance_type,
        ),
        endpoints=SageMakerEndpointRuntime(
            aws.client("sagemaker"),
            aws.client("sagemaker-runtime"),
            store,
            role_arn=settings.sagemaker_role_arn,
            image_uri=settings.sklearn_image_uri,
            instance_type=settings.endpoint_instance_type,
        ),
        orchestrator=StepFunctionsOrchestrator(
            settings.state_machine_arn, aws.client("stepfunctions")
        ),
        metrics=CloudWatchMetricsStore(aws.client("cloudwatch")),
    )


_ports: Ports | None = None
_lock = threading.Lock()


def ports() -> Ports:
    global _ports
    if _ports is None:
        with _lock:
            if _ports is None:
                settings = get_settings()
                if settings.profile != "aws":
                    raise ServiceUnavailableError(
                        "the local stack is not running (start it with `make run`)"
                    )
                _ports = build_aws_ports(settings)
    return _ports


def install(wired: Ports | None) -> None:
    """Use ``wired`` for every request and step in this process (None: forget them)."""
    global _ports
    with _lock:
        _ports = wired
