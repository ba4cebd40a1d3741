"""Wires each port to its implementation for the active profile. Built lazily, once."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from chalicelib import aws
from chalicelib.ports.endpoints import (
    EndpointRuntime,
    LocalEndpointRuntime,
    SageMakerEndpointRuntime,
)
from chalicelib.ports.jobs import JobRunner, LocalJobRunner, SageMakerJobRunner
from chalicelib.ports.metadata import DynamoMetadata, MetadataStore, SqliteMetadata
from chalicelib.ports.objectstore import FileObjectStore, ObjectStore, S3ObjectStore
from chalicelib.settings import Settings, get_settings


@dataclass
class Ports:
    settings: Settings
    store: ObjectStore
    metadata: MetadataStore
    jobs: JobRunner
    endpoints: EndpointRuntime

    @property
    def stepfunctions(self) -> Any:
        # The orchestrator port is the Step Functions API itself; locally it is served by
        # the embedded moto server (AWS_ENDPOINT_URL), so there is one implementation.
        return aws.client("stepfunctions")


def build_ports(settings: Settings) -> Ports:
    if settings.profile == "local":
        store: ObjectStore = FileObjectStore(settings.objects_dir)
        return Ports(
            settings=settings,
            store=store,
            metadata=SqliteMetadata(settings.metadata_path),
            jobs=LocalJobRunner(settings.jobs_dir, store),
            endpoints=LocalEndpointRuntime(settings.data_dir / "endpoints", store),
        )
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
    )


_ports: Ports | None = None
_lock = threading.Lock()


def ports() -> Ports:
    global _ports
    if _ports is None:
        with _lock:
            if _ports is None:
                _ports = build_ports(get_settings())
    return _ports


def reset_ports() -> None:
    """Forget the wired ports (tests, stack restarts); the local job launcher is stopped."""
    global _ports
    with _lock:
        if _ports is not None and isinstance(_ports.jobs, LocalJobRunner):
            _ports.jobs.close()
        _ports = None
