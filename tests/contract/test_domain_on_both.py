"""The domain above the ports (datasets, pipelines, registry) behaves the same on the AWS ports
(S3 + DynamoDB, on moto) as on the local ones (files + SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import datasets, pipelines, registry
from chalicelib.adapters.dynamodb import DynamoMetadata
from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.runtime import Ports
from chalicelib.schemas import DatasetCreate, PipelineCreate
from chalicelib.settings import Settings
from iac.local.endpoints import LocalEndpointRuntime
from iac.local.files import FileObjectStore
from iac.local.jobs import LocalJobRunner
from iac.local.launcher import SpawnLauncher
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.sqlite import SqliteMetadata
from tests.contract.conftest import BUCKET, TABLE, aws_client
from tests.contract.test_metadata import _dynamo_table
from tests.fakes import FakeOrchestrator


@pytest.fixture(params=["local", "aws"])
def ports(request: pytest.FixtureRequest, tmp_path: Path) -> Ports:
    settings = Settings(profile="local", data_dir=tmp_path)
    if request.param == "local":
        store = FileObjectStore(tmp_path / "objects")
        return Ports(
            settings=settings,
            store=store,
            metadata=SqliteMetadata(tmp_path / "metadata.sqlite3"),
            jobs=LocalJobRunner(tmp_path / "jobs", store, SpawnLauncher()),
            endpoints=LocalEndpointRuntime(tmp_path / "endpoints", store),
            orchestrator=FakeOrchestrator(),
            metrics=SqliteMetricsStore(tmp_path / "metrics.sqlite3"),
        )
    request.getfixturevalue("moto_aws")
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    dynamodb = aws_client("dynamodb")
    _dynamo_table(dynamodb)
    store = S3ObjectStore(BUCKET, s3)
    return Ports(
        settings=settings,
        store=store,
        metadata=DynamoMetadata(TABLE, dynamodb),
        jobs=LocalJobRunner(tmp_path / "jobs", store, SpawnLauncher()),
        endpoints=LocalEndpointRuntime(tmp_path / "endpoints", store),
        orchestrator=FakeOrchestrator(),
        metrics=SqliteMetricsStore(tmp_path / "metrics.sqlite3"),
    )


CSV = "x,colour,label\n" + "".join(f"{i},{'rb'[i % 2]},{'yn'[i % 3 == 0]}\n" for i in range(30))


def test_dataset_versions_and_pipelines(ports: Ports) -> None:
    first = datasets.create(
        ports,
        DatasetCreate.model_validate({"name": "d", "source": {"type": "inline", "data": CSV}}),
    )
    second = datasets.create(
        ports,
        DatasetCreate.model_validate(
            {"name": "d", "source": {"type": "inline", "data": CSV[:200]}}
        ),
    )
    assert (first["version"], second["version"]) == (1, 2)
    assert datasets.describe(ports, "d")["latest_version"] == 2
    record = datasets.get_version(ports, "d", 1)
    assert record["rows"] == 30 and record["uri"].startswith(("file://", "s3://"))
    frame = datasets.load_frame(ports, record["key"])
    assert list(frame.columns) == ["x", "colour", "label"] and len(frame) == 30
    with pytest.raises(NotFoundError):
        datasets.get_version(ports, "d", 3)

    spec = PipelineCreate.model_validate(
        {"name": "p", "dataset": {"name": "d"}, "target": "label", "task": "classification",
         "model": {"algorithm": "random_forest"}}
    )  # fmt: skip
    pipelines.create(ports, spec)
    with pytest.raises(ConflictError):
        pipelines.create(ports, spec)
    assert [p["name"] for p in pipelines.list_all(ports)] == ["p"]


def test_registry_versions_and_aliases(ports: Ports) -> None:
    for run in ("r1", "r2"):
        registry.register(ports, "m", run, {"metrics": {"accuracy": 0.9}, "signature": []})
    # A retried Register of the same run returns its version instead of minting another.
    assert registry.register(ports, "m", "r2", {"signature": []})["version"] == 2
    assert [v["version"] for v in registry.list_versions(ports, "m")] == [1, 2]
    assert registry.set_alias(ports, "m", "prod", 1) == (None, True)
    assert registry.set_alias(ports, "m", "prod", 2, expect=1) == (1, True)
    assert registry.set_alias(ports, "m", "prod", 1, forward_only=True) == (2, False)
    with pytest.raises(ConflictError, match="expected v1"):
        registry.set_alias(ports, "m", "prod", 1, expect=1)
    assert registry.resolve_alias(ports, "m", "prod") == 2
    assert registry.list_versions(ports, "m")[1]["aliases"] == ["prod"]
    with pytest.raises(NotFoundError):
        registry.set_alias(ports, "m", "prod", 3)
