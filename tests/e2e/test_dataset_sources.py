"""Dataset sources through the REST API on the embedded local stack: S3 (its moto server,
the URL GET /health reports), a database password from Secrets Manager (the same server)
against the real MariaDB, and data contracts (reject, quarantine, kept for later uploads)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import boto3
import pandas as pd
import pytest

from iac.local import stack
from tests.e2e.conftest import Api
from tests.sources import servers

PASSWORD = "from-secrets-manager-" + uuid.uuid4().hex[:8]


def _client(api: Api, service: str) -> Any:
    endpoint = api.ok("GET", "/health")["aws_endpoint_url"]
    return boto3.session.Session().client(
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def test_s3_object_prefix_and_partitioned_dataset(local_stack: stack.LocalStack, api: Api) -> None:
    s3 = _client(api, "s3")
    s3.create_bucket(Bucket="user-data")
    s3.put_object(Bucket="user-data", Key="one/sales.csv", Body=b"a,b\n1,x\n2,y\n3,z\n")
    for i in range(3):
        body = "".join(f"{i * 10 + j},{j}\n" for j in range(10))
        s3.put_object(Bucket="user-data", Key=f"daily/day={i}.csv", Body=f"n,k\n{body}".encode())
    s3.put_object(Bucket="user-data", Key="daily/", Body=b"")  # a folder marker
    for region in ("north", "south"):
        part = pd.DataFrame({"amount": [1.0, 2.0, 3.0], "units": [1, 2, 3]})
        s3.put_object(Bucket="user-data", Key=f"lake/region={region}/part-0.parquet",
                      Body=_parquet(part))  # fmt: skip

    one = api.ok(
        "POST",
        "/datasets",
        {"name": "s3one", "source": {"type": "s3", "uri": "s3://user-data/one/sales.csv"}},
    )
    assert one["rows"] == 3
    prefix = api.ok(
        "POST",
        "/datasets",
        {"name": "s3daily", "source": {"type": "s3", "uri": "s3://user-data/daily/"}},
    )
    assert prefix["rows"] == 30
    lake = api.ok("POST", "/datasets", {"name": "s3lake", "format": "parquet", "source": {
        "type": "s3", "uri": "s3://user-data/lake/", "dataset": True}})  # fmt: skip
    assert lake["rows"] == 6 and lake["columns"] == 3
    version = api.ok("GET", "/datasets/s3lake/versions/1")
    assert version["status"] == "READY"
    assert version["source"]["uri"] == "s3://user-data/lake/" and version["source"]["dataset"]
    assert {c["name"] for c in version["schema"]} == {"amount", "units", "region"}
    top = next(c for c in version["profile"]["columns"] if c["name"] == "region")["top"]
    assert top == {"north": 3, "south": 3}

    status, error = api.call(
        "POST",
        "/datasets",
        {"name": "s3none", "source": {"type": "s3", "uri": "s3://user-data/absent.csv"}},
    )
    assert status == 404 and "absent.csv" in error["Message"]
    status, error = api.call(
        "POST",
        "/datasets",
        {"name": "s3none", "source": {"type": "s3", "uri": "s3://no-such-bucket/x.csv"}},
    )
    assert status == 404, error
    status, error = api.call(
        "POST",
        "/datasets",
        {"name": "s3none", "source": {"type": "s3", "uri": "http://user-data/x.csv"}},
    )
    assert status == 400 and "source.s3.uri" in error["Message"], error


def test_sql_password_from_secrets_manager(
    local_stack: stack.LocalStack, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # The product logs at INFO (its own loggers at DEBUG here); botocore's DEBUG wire logs
    # print response bodies, secrets included, and are never on in the service.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="mlpipe")
    for db in servers.fresh_database("mysql"):
        user = f"sm_{db.name[-6:]}"
        servers.admin_execute(db.server_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
        try:
            servers.admin_execute(db.server_url, f"GRANT SELECT ON {db.name}.* TO '{user}'@'%'")
            db.execute("CREATE TABLE t (x INT, y VARCHAR(5))",
                       "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, NULL)")  # fmt: skip
            arn = _client(api, "secretsmanager").create_secret(
                Name=f"mlpipe/{user}", SecretString=json.dumps({"username": user,
                                                                "password": PASSWORD}),
            )["ARN"]  # fmt: skip
            host = db.server_url.split("@", 1)[1]
            body = {"name": "fromsecret", "source": {
                "type": "sql", "url": f"mysql://{user}@{host}/{db.name}", "table": "t",
                "credentials": {"secret_arn": arn}}}  # fmt: skip
            created = api.ok("POST", "/datasets", body)
            assert created["rows"] == 3
            answers = [created, api.ok("GET", "/datasets/fromsecret/versions/1"),
                       api.ok("GET", "/datasets/fromsecret")]  # fmt: skip
            # A secret that does not exist: a 400 naming the reference.
            missing = arn.rsplit(":", 1)[0] + ":mlpipe/absent-AbCdEf"
            status, error = api.call("POST", "/datasets", {**body, "source": {
                **body["source"], "credentials": {"secret_arn": missing}}})  # fmt: skip
            assert status == 400 and "not found" in error["Message"], error
            answers.append(error)
            everything = json.dumps(answers)
            assert arn in everything  # the reference is lineage
            assert PASSWORD not in everything and PASSWORD not in caplog.text
            stored = local_stack.data_dir / "metadata.sqlite3"
            assert PASSWORD.encode() not in stored.read_bytes()
        finally:
            servers.admin_execute(db.server_url, f"DROP USER IF EXISTS '{user}'@'%'")


def test_contracts_reject_quarantine_and_later_uploads(api: Api) -> None:
    csv = "age,email,plan\n34,a@x.io,free\n-3,b@x.io,pro\n51,not-an-email,free\n,c@x.io,gold\n29,d@x.io,pro\n"
    contract = {"columns": {
        "age": {"type": "float", "nullable": False, "min": 0, "max": 120},
        "email": {"type": "string", "regex": r"[^@\s]+@[^@\s]+", "unique": True},
        "plan": {"allowed": ["free", "pro"]}}}  # fmt: skip
    status, error = api.call("POST", "/datasets", {
        "name": "people", "source": {"type": "inline", "data": csv},
        "contract": {**contract, "policy": "reject"}})  # fmt: skip
    assert status == 400 and error["Code"] == "ContractViolation", error
    rules = {(v["column"], v["check"]): v for v in error["violations"]}
    assert set(rules) == {("age", "min"), ("age", "nullable"), ("email", "regex"),
                          ("plan", "allowed")}  # fmt: skip
    assert rules[("age", "min")]["examples"] == [{"row": 1, "value": "-3.0"}]
    assert api.call("GET", "/datasets/people")[0] == 404  # nothing stored

    created = api.ok("POST", "/datasets", {
        "name": "people", "source": {"type": "inline", "data": csv},
        "contract": {**contract, "policy": "quarantine"}})  # fmt: skip
    assert created["rows"] == 2 and created["quarantined_rows"] == 3
    version = api.ok("GET", "/datasets/people/versions/1")
    assert version["contract"] == {"policy": "quarantine", "quarantined_rows": 3}
    resp = api.client.http.get("/datasets/people/versions/1/quarantine")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/csv"
    bad = pd.read_csv(io.BytesIO(resp.body))
    assert sorted(bad["email"]) == ["b@x.io", "c@x.io", "not-an-email"]

    # The contract stays with the dataset: a later upload is checked against it.
    status, _ = api.call("POST", "/datasets/people/versions", raw="age,email,plan\n200,z@x.io,pro\n",
                         content_type="text/csv")  # fmt: skip
    assert status == 400  # the one row breaks it; quarantine would leave nothing
    good = api.ok("POST", "/datasets/people/versions", raw="age,email,plan\n20,z@x.io,pro\n",
                  content_type="text/csv")  # fmt: skip
    assert good["version"] == 2 and good["quarantined_rows"] == 0
    assert api.call("GET", "/datasets/people/versions/2/quarantine")[0] == 404
    status, error = api.call("POST", "/datasets", {
        "name": "x", "source": {"type": "inline", "data": csv},
        "contract": {"columns": {"age": {"type": "string", "min": 1}}}})  # fmt: skip
    assert status == 400 and "min/max apply to numbers" in error["Message"]


def test_large_upload_through_an_upload_url(local_stack: stack.LocalStack, api: Api) -> None:
    started = api.ok("POST", "/datasets/bigupload/uploads", {"format": "csv"})
    upload_id = started["upload_id"]
    assert started["method"] == "PUT"
    assert started["url"].endswith(f"/datasets/bigupload/uploads/{upload_id}")
    body = "x,y\n" + "".join(f"{i},{i % 7}\n" for i in range(800_000))  # ~8 MB > 6 MiB
    assert len(body) > local_stack.ports.settings.max_inline_bytes
    source = {"type": "upload", "upload_id": upload_id}
    status, error = api.call("POST", "/datasets", {"name": "bigupload", "source": source})
    assert status == 400 and "PUT the file to its URL first" in error["Message"]
    path = "/" + started["url"].split("/", 3)[3]
    resp = api.client.http.put(
        path, body=body.encode(), headers={"Content-Type": "application/octet-stream"}
    )
    assert resp.status_code == 200, resp.body
    status, error = api.call(
        "POST", "/datasets", {"name": "bigupload", "format": "json", "source": source}
    )
    assert status == 400 and "started as 'csv'" in error["Message"]
    created = api.ok("POST", "/datasets", {"name": "bigupload", "source": source})
    assert created["rows"] == 800_000
    version = api.ok("GET", "/datasets/bigupload/versions/1")
    assert version["source"]["type"] == "upload" and version["source"]["bytes"] == len(body)
    # The upload is spent: its object and record are gone.
    assert not local_stack.ports.store.list(f"datasets/bigupload/uploads/{upload_id}")
    status, _ = api.call("POST", "/datasets", {"name": "bigupload", "source": source})
    assert status == 404
    status, _ = api.call(
        "POST", "/datasets", {"name": "bigupload", "source": {"type": "upload", "upload_id": "x"}}
    )
    assert status == 400
    resp = api.client.http.put(
        "/datasets/bigupload/uploads/" + "0" * 32, body=b"a\n1\n",
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert resp.status_code == 404
