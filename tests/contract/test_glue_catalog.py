"""Every dataset version becomes a Glue table (for Athena), through awswrangler behind the
DataCatalog port, tested against moto's Glue and S3: the domain's upload registers the
version over its Parquet prefix with Athena types, and deleting the version drops the table."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib import datasets, runtime
from chalicelib.adapters.glue import GlueCatalog
from chalicelib.adapters.s3 import S3ObjectStore
from tests.contract.conftest import BUCKET, REGION
from tests.fakes import make_ports

pytest.importorskip("awswrangler")  # in the Lambda layer on AWS; the dev extra here
DATABASE = "mlpipe_test"


@pytest.fixture
def ports(s3_client: Any) -> Any:
    session = boto3.session.Session(region_name=REGION)
    session.client("glue").create_database(DatabaseInput={"Name": DATABASE})
    wired = make_ports()
    wired.store = S3ObjectStore(BUCKET, s3_client)
    wired.catalog = GlueCatalog(DATABASE, session)
    runtime.install(wired)
    yield wired
    runtime.install(None)


def test_a_dataset_version_is_a_glue_table_until_it_is_deleted(ports: Any) -> None:
    csv = "petal/Len,sepal width,colour,count,label\n" + "".join(
        f"{i / 10},{i % 7},{'red' if i % 2 else 'blue'},{i},{'yes' if i % 3 else 'no'}\n"
        for i in range(20)
    )
    out = datasets.upload(ports, "Flowers-v2", csv.encode(), "text/csv")
    glue = boto3.session.Session(region_name=REGION).client("glue")
    table = glue.get_table(DatabaseName=DATABASE, Name="flowers_v2_v1")["Table"]
    record = datasets.get_version(ports, "Flowers-v2", out["version"])
    prefix = record["key"].rsplit("/", 1)[0]
    sd = table["StorageDescriptor"]
    assert sd["Location"] == f"s3://{BUCKET}/{prefix}/"
    assert ports.store.list(prefix) == [record["key"]]  # only Parquet under the location
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("petal_len", "double"), ("sepal_width", "bigint"), ("colour", "string"),
        ("count", "bigint"), ("label", "string"),
    ]  # fmt: skip
    assert sd["Columns"][0]["Comment"] == "petal/Len"  # the original name
    # Names changed, so Athena must read the Parquet columns by position.
    assert sd["SerdeInfo"]["Parameters"]["parquet.column.index.access"] == "true"
    assert table["Parameters"]["mlpipe:dataset"] == "Flowers-v2"

    datasets.delete(ports, "Flowers-v2", out["version"])
    assert glue.get_tables(DatabaseName=DATABASE)["TableList"] == []


def test_a_catalog_failure_does_not_fail_the_upload(ports: Any) -> None:
    ports.catalog = GlueCatalog("no_such_database", boto3.session.Session(region_name=REGION))
    out = datasets.upload(ports, "d", b"x,y\n1,2\n3,4\n", "text/csv")
    assert out["status"] == "READY"
