"""The embedded local stack: everything `make run` and the tests need, with no Docker and no
AWS account.

- a moto server on loopback with Step Functions execution on (it runs the real ASL);
- the state machine and one Lambda function per step, provisioned from the same
  definitions used on AWS (stepfunctions/pipeline.asl.json, the Chalice app's functions);
- the Lambda plug, so those functions run the project's handlers in this process;
- the local ports (files, SQLite, job subprocesses, in-process endpoints) under a data dir.

moto keeps its state in memory; everything a user must keep lives in the data dir, so a
restart loses nothing. Runs and jobs that were in flight when the stack stopped are marked
failed on the next start.
"""

from __future__ import annotations

import io
import json
import logging
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

import stepfunctions
from iac.local import lambda_plug

log = logging.getLogger("mlpipe.stack")

ACCOUNT = "123456789012"
REGION = "us-east-1"
STATE_MACHINE_NAME = "mlpipe-pipeline"
FUNCTION_PREFIX = "mlpipe-local-"
ROLE_NAME = "mlpipe-local-states"


@dataclass
class LocalStack:
    data_dir: Path
    server: ThreadedMotoServer
    endpoint_url: str
    state_machine_arn: str

    def stop(self) -> None:
        from chalicelib import runs
        from chalicelib.runtime import ports, reset_ports

        # moto forgets executions when it stops; the runs' histories are kept on disk.
        runs.keep_histories(ports())
        lambda_plug.uninstall()
        self.server.stop()
        reset_ports()  # also stops the warm job launcher


def _reset_process_caches() -> None:
    from chalicelib import aws, runtime, settings

    settings.reset_settings()
    aws.reset_clients()
    runtime.reset_ports()


def _function_zip() -> bytes:
    # moto stores the code but never runs it (the plug does); AWS gets the real package
    # from `chalice package`.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "# code runs in-process via iac/local/lambda_plug.py\n")
    return buf.getvalue()


def start(data_dir: Path, port: int = 0) -> LocalStack:
    """Start (or restart) the stack over ``data_dir``. Returns once it can take runs."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # moto's server logs every internal call (each Lambda invoke, ...): keep consoles readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The interpreter logs every Fail state at ERROR with its whole AST; a failed run is a
    # normal outcome whose reason is on the run record (GET /runs/{id}).
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    endpoint = f"http://{host}:{bound}"

    # moto's interpreter calls Lambda through the server at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound)
    state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE_NAME}"
    env = {
        "MLPIPE_PROFILE": "local",
        "MLPIPE_DATA_DIR": str(data_dir),
        "MLPIPE_STATE_MACHINE_ARN": state_machine_arn,
        # Everything boto3 does in this process goes to the embedded server, never to AWS.
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    _reset_process_caches()

    _post_json(f"{endpoint}/moto-api/reset", {})
    _post_json(
        f"{endpoint}/moto-api/config",
        {"stepfunctions": {"execute_state_machine": True}},
    )
    _install_handlers()
    _provision(state_machine_arn)
    _recover()
    log.info("local stack on %s, data in %s", endpoint, data_dir)
    return LocalStack(data_dir, server, endpoint, state_machine_arn)


def _post_json(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(  # noqa: S310 - loopback URL we just bound
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        resp.read()


def _install_handlers() -> None:
    from app import app  # the Chalice app: its step functions are the Lambda handlers

    lambda_plug.install({FUNCTION_PREFIX + fn.name: fn.func for fn in app.pure_lambda_functions})


def _provision(state_machine_arn: str) -> None:
    from chalicelib import aws

    iam = aws.client("iam")
    role = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    lam = aws.client("lambda")
    code = _function_zip()
    arns: dict[str, str] = {}
    for placeholder, name in stepfunctions.FUNCTIONS.items():
        arn = lam.create_function(
            FunctionName=FUNCTION_PREFIX + name,
            Runtime="python3.11",
            Role=role,
            Handler=f"app.{name}",
            Code={"ZipFile": code},
            Timeout=900,
            MemorySize=3008,
        )["FunctionArn"]
        arns[placeholder] = arn
    sfn = aws.client("stepfunctions")
    created = sfn.create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=stepfunctions.render(arns),
        roleArn=role,
        type="STANDARD",
    )["stateMachineArn"]
    assert created == state_machine_arn, created


def _recover() -> None:
    from chalicelib import runs
    from chalicelib.ports.jobs import LocalJobRunner
    from chalicelib.runtime import ports

    p = ports()
    interrupted = runs.mark_interrupted(p)
    jobs = p.jobs.mark_interrupted() if isinstance(p.jobs, LocalJobRunner) else 0
    if interrupted or jobs:
        log.warning("marked %d interrupted run(s) and %d job(s) as failed", interrupted, jobs)
