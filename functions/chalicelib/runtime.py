"""Wiring: which implementation serves each port. One explicit factory per target.

On AWS (``MLPIPE_PROFILE=aws``) the ports are built here, lazily, from the settings. The
embedded local stack builds its own ports (``iac/local/stack.py``) and installs them with
``install``; nothing in this package imports the local implementations, so they never ship
in a Lambda bundle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib import aws
from chalicelib.errors import ServiceUnavailableError
from chalicelib.monitoring.store import MetricsStore
from chalicelib.ports import (
    DataCatalog,
    EndpointRuntime,
    JobRunner,
    MetadataStore,
    ObjectStore,
    Orchestrator,
)
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
    # Dataset versions as queryable tables (AWS: Glue, for Athena); None: not catalogued.
    catalog: DataCatalog | None = None


def build_aws_ports(
    settings: Settings,
    *,
    jobs: Callable[[ObjectStore], JobRunner] | None = None,
    endpoints: Callable[[ObjectStore], EndpointRuntime] | None = None,
) -> Ports:
    """The aws profile's ports. ``jobs`` / ``endpoints`` replace SageMaker with other
    implementations built over the S3 store (``MLPIPE_JOBS=local`` / ``MLPIPE_ENDPOINTS=local``:
    the offline tests of the AWS path pass the local ones from ``iac/local/hybrid.py``; this
    package never imports them, so they never reach a Lambda bundle)."""
    from chalicelib.adapters.cloudwatch import CloudWatchMetricsStore
    from chalicelib.adapters.dynamodb import DynamoMetadata
    from chalicelib.adapters.s3 import S3ObjectStore
    from chalicelib.adapters.sagemaker import SageMakerEndpointRuntime, SageMakerJobRunner
    from chalicelib.adapters.stepfunctions import StepFunctionsOrchestrator

    for port, wanted, given in (
        ("jobs", settings.jobs, jobs),
        ("endpoints", settings.endpoints, endpoints),
    ):
        if wanted == "local" and given is None:
            raise ServiceUnavailableError(
                f"MLPIPE_{port.upper()}=local needs the local implementation, which only the "
                "local stack and its tests wire in (iac/local/hybrid.py)"
            )
    store = S3ObjectStore(settings.bucket, aws.client("s3"))
    return Ports(
        settings=settings,
        store=store,
        metadata=DynamoMetadata(settings.table, aws.client("dynamodb")),
        jobs=jobs(store)
        if jobs is not None
        else SageMakerJobRunner(
            aws.client("sagemaker"),
            store,
            role_arn=settings.sagemaker_role_arn,
            image_uri=settings.sklearn_image_uri,
            code_prefix=settings.code_prefix,
            instance_type=settings.training_instance_type,
            owner=settings.stack_name,
        ),
        endpoints=endpoints(store)
        if endpoints is not None
        else SageMakerEndpointRuntime(
            aws.client("sagemaker"),
            aws.client("sagemaker-runtime"),
            store,
            role_arn=settings.sagemaker_role_arn,
            image_uri=settings.sklearn_image_uri,
            instance_type=settings.endpoint_instance_type,
            owner=settings.stack_name,
            cloudwatch=aws.client("cloudwatch"),  # rollback alarms of guarded deployments
        ),
        orchestrator=StepFunctionsOrchestrator(
            settings.state_machine_arn, aws.client("stepfunctions")
        ),
        metrics=CloudWatchMetricsStore(aws.client("cloudwatch")),
        catalog=_glue(settings),
    )


def _glue(settings: Settings) -> DataCatalog | None:
    if not settings.glue_database:
        return None
    from chalicelib.adapters.glue import GlueCatalog

    return GlueCatalog(settings.glue_database, aws.session())


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


def settings() -> Settings:
    """The settings in force: the installed ports' (the local stack's), else the
    environment's -- without building AWS clients (a health check needs none)."""
    wired = _ports
    return wired.settings if wired is not None else get_settings()


def install(wired: Ports | None) -> None:
    """Use ``wired`` for every request and step in this process (None: forget them)."""
    global _ports
    with _lock:
        _ports = wired
