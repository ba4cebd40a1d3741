"""The domain above the ports (datasets, pipelines, registry) behaves the same on the AWS ports
(S3 + DynamoDB, on moto) as on the local ones (files + SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import datasets, pipelines, registry
from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.ports.endpoints import LocalEndpointRuntime
from chalicelib.ports.job_launcher import SpawnLauncher
from chalicelib.ports.jobs import LocalJobRunner
from chalicelib.ports.metadata import DynamoMetadata
from chalicelib.ports.objectstore import S3ObjectStore
from chalicelib.runtime import Ports, build_ports
from chalicelib.schemas import DatasetCreate, PipelineCreate
from chalicelib.settings import Settings
from tests.contract.conftest import BUCKET, TABLE, aws_client
from tests.contract.test_metadata import _dynamo_table


@pytest.fixture(params=["local", "aws"])
def ports(request: pytest.FixtureRequest, tmp_path: Path) -> Ports:
    settings = Settings(profile="local", data_dir=tmp_path)
    if request.param == "local":
        return build_ports(settings)
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
    for _ in range(2):
        registry.register(ports, "m", {"metrics": {"accuracy": 0.9}, "signature": []})
    assert [v["version"] for v in registry.list_versions(ports, "m")] == [1, 2]
    assert registry.set_alias(ports, "m", "prod", 1) is None
    assert registry.set_alias(ports, "m", "prod", 2, expect=1) == 1
    with pytest.raises(ConflictError, match="expected v1"):
        registry.set_alias(ports, "m", "prod", 1, expect=1)
    assert registry.resolve_alias(ports, "m", "prod") == 2
    assert registry.list_versions(ports, "m")[1]["aliases"] == ["prod"]
    with pytest.raises(NotFoundError):
        registry.set_alias(ports, "m", "prod", 3)
