"""Guard for the one moto internal the local stack patches (iac/local/lambda_plug.py), and a
proof that the plug works end to end: a real state machine in moto's ASL interpreter calls
Lambda functions whose handlers run in this process, and an exception's class name becomes
the error name that Retry/Catch match on.

Uses its own ThreadedMotoServer (not iac/local/stack.py): moto's interpreter calls Lambda over
HTTP at localhost:$MOTO_PORT, so an in-process ``mock_aws`` cannot exercise the plug.
"""

from __future__ import annotations

import inspect
import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from iac.local import lambda_plug

CHANGED = "moto internals changed: iac/local/lambda_plug.py needs updating"
REGION = "us-east-1"


class BoomError(Exception):
    """A domain error a handler raises; its class name must reach Step Functions."""


def test_patched_moto_internal_is_still_there() -> None:
    from moto.awslambda.models import LambdaFunction

    assert hasattr(LambdaFunction, "_invoke_lambda"), CHANGED
    original = lambda_plug._original  # moto's own method, captured before any install
    assert original.__qualname__ == "LambdaFunction._invoke_lambda", CHANGED
    assert list(inspect.signature(original).parameters) == ["self", "event"], CHANGED
    # The call site the plug relies on: invoke() passes the decoded payload as ``event`` and
    # unpacks (payload, errored, logs).
    source = inspect.getsource(LambdaFunction.invoke)
    assert "self._invoke_lambda(event=" in source, CHANGED
    assert "res, errored, logs = " in source, CHANGED


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "# never run: the plug calls the handler in-process\n")
    return buf.getvalue()


def _double(event: Any, context: Any) -> dict[str, Any]:
    return {"doubled": event["x"] * 2, "function": context.function_name}


def _boom(event: Any, context: Any) -> dict[str, Any]:
    raise BoomError(f"boom on {event['x']}")


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("MOTO_PORT", str(port))
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        _post(f"{endpoint}/moto-api/reset", {})
        _post(f"{endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        lambda_plug.install({"plug-test": _double, "plug-boom": _boom})

        def client(service: str) -> Any:
            return boto3.session.Session().client(  # type: ignore[call-overload]
                service, region_name=REGION, endpoint_url=endpoint
            )

        role = client("iam").create_role(
            RoleName="plug-test-role",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        lam = client("lambda")
        arns = {
            name: lam.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": _zip()},
            )["FunctionArn"]
            for name in ("plug-test", "plug-boom")
        }
        yield {"lambda": lam, "sfn": client("stepfunctions"), "arns": arns, "role": role}
    finally:
        lambda_plug.uninstall()
        try:
            host, port = server.get_host_and_port()
            _post(
                f"http://{host}:{port}/moto-api/config",
                {"stepfunctions": {"execute_state_machine": False}},
            )
            _post(f"http://{host}:{port}/moto-api/reset", {})
        finally:
            server.stop()


def _run(sfn: Any, role: str, name: str, definition: dict[str, Any], x: int) -> dict[str, Any]:
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=role, type="STANDARD"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"x": x}))
    deadline = time.monotonic() + 30
    while True:
        desc = sfn.describe_execution(executionArn=execution["executionArn"])
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(desc)
        time.sleep(0.05)


def test_direct_invoke_runs_the_handler_in_process(plugged: dict[str, Any]) -> None:
    resp = plugged["lambda"].invoke(FunctionName="plug-test", Payload=json.dumps({"x": 4}))
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == {"doubled": 8, "function": "plug-test"}

    resp = plugged["lambda"].invoke(FunctionName="plug-boom", Payload=json.dumps({"x": 1}))
    assert resp.get("FunctionError")
    assert json.loads(resp["Payload"].read()) == {
        "errorType": "BoomError",
        "errorMessage": "boom on 1",
    }


def test_state_machine_task_calls_the_plugged_handler(plugged: dict[str, Any]) -> None:
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", "Resource": plugged["arns"]["plug-test"], "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    desc = _run(plugged["sfn"], plugged["role"], "plug-ok", definition, x=21)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"doubled": 42, "function": "plug-test"}


def test_handler_exception_class_is_the_step_functions_error_name(
    plugged: dict[str, Any],
) -> None:
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": plugged["arns"]["plug-boom"],
                # Only this name is caught: any other error would fail the execution.
                "Catch": [
                    {"ErrorEquals": ["BoomError"], "ResultPath": "$.error", "Next": "Caught"}
                ],
                "Next": "NotCaught",
            },
            "Caught": {"Type": "Pass", "End": True},
            "NotCaught": {"Type": "Fail", "Error": "WrongPath"},
        },
    }
    desc = _run(plugged["sfn"], plugged["role"], "plug-catch", definition, x=3)
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert output["x"] == 3
    assert output["error"]["Error"] == "BoomError"
    assert "boom on 3" in output["error"]["Cause"]
