"""The aws profile against LocalStack, by AWS_ENDPOINT_URL alone (LocalStack's conventions,
as localstack-client uses them: one edge endpoint, by default http://localhost:4566, health
at /_localstack/health, any credentials). ``make localstack-test`` starts LocalStack 2026.3.0
in host mode (iac/localstack/run.sh) and runs this module; without a reachable LocalStack
every test here is skipped and says why.

LocalStack here serves S3, STS, IAM, Step Functions, CloudWatch and Logs. Its DynamoDB needs
Java 21 (this machine has 17) and its Lambda needs Docker (none here): DynamoDB goes to an
in-process moto server through AWS_ENDPOINT_URL_DYNAMODB (botocore's per-service override),
and no Lambda runs in LocalStack, so the pipeline's Lambda steps cannot execute there.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import stepfunctions
from chalicelib import aws, datasets, runtime
from chalicelib.settings import Settings, reset_settings

ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT", "http://localhost:4566")
REGION = "us-east-1"
BUCKET = "mlpipe-localstack-artefacts"
TABLE = "mlpipe-localstack-metadata"


def _health() -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=2) as resp:
            return dict(json.loads(resp.read()))
    except OSError:
        return None


HEALTH = _health()
pytestmark = pytest.mark.skipif(
    HEALTH is None,
    reason=f"no LocalStack at {ENDPOINT} (run `make localstack-test`: it needs Python 3.13)",
)


def _client(service: str, endpoint: str = ENDPOINT) -> Any:
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip


def test_localstack_serves_what_the_aws_profile_needs_here() -> None:
    assert HEALTH is not None
    services = HEALTH["services"]
    for service in ("s3", "sts", "iam", "stepfunctions", "cloudwatch", "logs"):
        assert services.get(service) in ("available", "running"), (service, services)


@pytest.fixture
def aws_profile(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AWS_ENDPOINT_URL -> LocalStack; DynamoDB alone -> a moto server (LocalStack's needs
    Java 21). Returns the moto endpoint."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": ENDPOINT, "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION, "MLPIPE_PROFILE": "aws",
        "MLPIPE_BUCKET": BUCKET, "MLPIPE_TABLE": TABLE,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    reset_settings()
    aws.reset_clients()
    try:
        yield moto_url
    finally:
        runtime.install(None)
        reset_settings()
        aws.reset_clients()
        moto.stop()


def test_the_aws_profile_stores_a_dataset_in_localstack(aws_profile: str) -> None:
    s3 = _client("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    _client("dynamodb", aws_profile).create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
    )  # fmt: skip
    ports = runtime.build_aws_ports(Settings())  # nothing but the environment says where
    name = f"ls-{int(time.time() * 1000)}"
    csv = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    out = datasets.upload(ports, name, csv.encode(), "text/csv")
    record = datasets.get_version(ports, name, out["version"])
    assert [c["name"] for c in record["schema"]] == ["x", "y"]
    stored = s3.get_object(Bucket=BUCKET, Key=record["key"])["Body"].read()
    assert stored[:4] == b"PAR1"  # Parquet, in LocalStack's S3
    assert ports.store.uri(record["key"]) == f"s3://{BUCKET}/{record['key']}"


def _role() -> str:
    iam = _client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "states.amazonaws.com"}}]}  # fmt: skip
    name = f"mlpipe-ls-{int(time.time() * 1000)}"
    return str(
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    )


def test_localstack_accepts_the_pipeline_definition() -> None:
    """LocalStack's own ASL parser validates the definition at CreateStateMachine."""
    sfn = _client("stepfunctions")
    arns = {p: f"arn:aws:lambda:{REGION}:000000000000:function:mlpipe-{f}"
            for p, f in stepfunctions.FUNCTIONS.items()}  # fmt: skip
    created = sfn.create_state_machine(
        name=f"mlpipe-pipeline-{int(time.time() * 1000)}",
        definition=stepfunctions.render(arns), roleArn=_role(), type="STANDARD",
    )  # fmt: skip
    described = sfn.describe_state_machine(stateMachineArn=created["stateMachineArn"])
    assert json.loads(described["definition"]) == json.loads(stepfunctions.render(arns))


def test_the_orchestrator_runs_executions_on_localstack(aws_profile: str) -> None:
    """start (idempotent by name), status, paged history: the Step Functions adapter against
    LocalStack's interpreter, on a definition without Lambda (none runs here)."""
    from chalicelib.adapters.stepfunctions import StepFunctionsOrchestrator

    definition = {"StartAt": "Note", "States": {
        "Note": {"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.note", "Next": "Wait"},
        "Wait": {"Type": "Wait", "SecondsPath": "$.poll_seconds", "Next": "Done"},
        "Done": {"Type": "Succeed"}}}  # fmt: skip
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"mlpipe-orch-{int(time.time() * 1000)}",
        definition=json.dumps(definition),
        roleArn=_role(),
    )["stateMachineArn"]
    orchestrator = StepFunctionsOrchestrator(machine, sfn)
    arn = orchestrator.start("run-1", {"poll_seconds": 0})
    assert orchestrator.start("run-1", {"poll_seconds": 0}) == arn  # a retried start
    deadline = time.monotonic() + 30
    while orchestrator.status(arn) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert orchestrator.status(arn) == "SUCCEEDED"
    events, token = [], None
    while True:
        # LocalStack 2026.3.0 ignores maxResults (AWS and moto honour it): it answers the whole
        # history in one page, so only the paging protocol (no token = the end) is checked.
        page = orchestrator.history(arn, token, limit=2)
        events += page.events
        token = page.next_token
        if not token:
            break
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionSucceeded"
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
