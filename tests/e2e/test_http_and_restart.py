"""The served app over real HTTP (what `make run` starts), and restarts: a stopped stack loses
nothing, and a run in flight when the process died is marked failed, never left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import UserSide, classification_csv

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server(UserSide):
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}:{ROOT / 'sagemaker_jobs'}"}
        for key in ("AWS_ENDPOINT_URL", "MOTO_PORT", "MLPIPE_DATA_DIR", "MLPIPE_STATE_MACHINE_ARN"):
            env.pop(key, None)  # the served process sets up its own stack
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iac.local.serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--aws-port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not come up within 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        req = urllib.request.Request(  # real HTTP, to the served app on loopback
            f"http://127.0.0.1:{self.port}{path}",
            data=data.encode() if isinstance(data, str) else data,
            method=method,
            headers={"Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop(signal.SIGKILL)


ROW = {"petal/len": 1.2, "sepal width": -0.3, "colour": "red", "count": 1}


def test_http_story_and_restarts_keep_everything(server: Server) -> None:
    server.start()
    health = server.ok("GET", "/health")
    assert health["status"] == "ok" and health["profile"] == "local"
    assert health["aws_endpoint_url"].startswith("http://127.0.0.1:")
    assert server.ok("GET", "/openapi.json")["openapi"].startswith("3.")
    server.ok(
        "POST",
        "/datasets",
        {"name": "iris2", "source": {"type": "inline", "data": classification_csv(300)}},
    )
    server.ok(
        "POST",
        "/pipelines",
        {
            "name": "iris2-hgb",
            "dataset": {"name": "iris2"},
            "target": "label",
            "task": "classification",
            "model": {"algorithm": "hist_gradient_boosting", "hyperparameters": {"max_iter": 30}},
            "deployment": {"endpoint": "iris2"},
        },
    )
    run = server.wait_run(server.ok("POST", "/pipelines/iris2-hgb/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    before = server.ok("POST", "/endpoints/iris2/invocations", {"dataframe_records": [ROW]})
    csv = "petal/len,sepal width,colour,count\n1.2,-0.3,red,1\n"
    assert (
        server.ok("POST", "/endpoints/iris2/invocations", raw=csv, content_type="text/csv")
        == before
    )

    # Reading an ended run's history keeps it beside the run's artefacts.
    history = server.events(run["run_id"])
    assert history[-1]["type"] == "ExecutionSucceeded"

    # Start a second run and kill the process while it is in flight.
    in_flight = server.ok("POST", "/pipelines/iris2-hgb/runs")["run_id"]
    assert server.stop(signal.SIGKILL) != 0

    server.start()
    lost = server.ok("GET", f"/runs/{in_flight}")
    assert lost["status"] == "FAILED" and lost["error"]["type"] == "Interrupted"
    assert all(s["status"] != "RUNNING" for s in lost["steps"])
    assert server.ok("GET", f"/runs/{run['run_id']}")["status"] == "SUCCEEDED"
    assert [d["name"] for d in server.ok("GET", "/datasets")["datasets"]] == ["iris2"]
    assert server.ok("GET", "/models/iris2-hgb")["aliases"] == {"production": 1}
    assert server.ok("GET", "/endpoints/iris2")["model_version"] == 1
    assert server.ok("POST", "/endpoints/iris2/invocations", {"dataframe_records": [ROW]}) == before
    assert server.events(run["run_id"]) == history

    # A graceful stop exits cleanly, and a third start still has it all.
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    assert server.ok("POST", "/endpoints/iris2/invocations", {"dataframe_records": [ROW]}) == before
    again = server.wait_run(server.ok("POST", "/pipelines/iris2-hgb/runs")["run_id"])
    # Version 2: the killed run never registered one.
    assert again["status"] == "SUCCEEDED" and again["model"]["version"] == 2, again["error"]

    # A graceful stop keeps the histories of ended runs nobody had read yet.
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    kept = server.events(again["run_id"])
    assert kept[0]["type"] == "ExecutionStarted" and kept[-1]["type"] == "ExecutionSucceeded"
