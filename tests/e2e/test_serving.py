"""Serving through the REST API on the embedded stack: a model version deploys to its own
model server process (the job environment's Python), switches to its ONNX fast path once
the fast-path job lands, answers MLflow's own client, and takes new versions by guarded
deployments: a canary that routes its share and rolls back on a breach (the alias moves
back), an all-at-once deployment that completes, and a shadow that never answers callers."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from iac.local import stack
from tests.e2e.conftest import Api, classification_csv

ENDPOINT = "shop"
MODEL = "shop-rf"
ROW = {"petal/len": 0.3, "sepal width": -0.2, "colour": "red", "count": 1}
MARKER = "fault-marker"  # a colour the v2 server fails on (MLPIPE_FAULT_MARKER)


def _pipeline(name: str, deploy: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "model_name": MODEL,
        "dataset": {"name": "shop"},
        "target": "label",
        "task": "classification",
        "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 20}},
        "evaluation": {"test_size": 0.25, "metrics": ["accuracy"]},
    }
    if deploy:
        spec["deployment"] = {"endpoint": ENDPOINT, "alias": "production"}
    return spec


def _run(api: Api, pipeline: str) -> dict[str, Any]:
    started = api.ok("POST", f"/pipelines/{pipeline}/runs", {})
    run = api.wait_run(started["run_id"], timeout=300)
    assert run["status"] == "SUCCEEDED", run.get("error")
    return run


def _wait(check: Any, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def served(api: Api, local_stack: stack.LocalStack) -> dict[str, Any]:
    runtime: Any = local_stack.ports.endpoints
    # v2's server fails any request carrying the marker: the fault a rollback must catch.
    runtime.server_env = lambda d: {"MLPIPE_FAULT_MARKER": MARKER} if d.version == 2 else {}
    runtime._random.seed(20261128)  # the traffic split is reproducible
    api.ok(
        "POST",
        "/datasets",
        {"name": "shop", "source": {"type": "inline", "data": classification_csv(300, seed=3)}},
    )
    api.ok("POST", "/pipelines", _pipeline("shop-live", deploy=True))
    api.ok("POST", "/pipelines", _pipeline("shop-candidate", deploy=False))
    first = _run(api, "shop-live")
    second = _run(api, "shop-candidate")
    assert first["model"]["version"] == 1 and second["model"]["version"] == 2
    return {"first": first, "second": second}


def _predict(api: Api, row: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(
        api.ok("POST", f"/endpoints/{ENDPOINT}/invocations", {"dataframe_records": [row or ROW]})
    )


def test_the_endpoint_is_its_own_server_and_switches_to_the_fast_path(
    api: Api, served: dict[str, Any]
) -> None:
    def onnx() -> dict[str, Any] | None:
        endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
        return endpoint if endpoint["runtime"] == "onnx" else None

    endpoint = _wait(onnx, what="the fast path to serve")
    assert endpoint["status"] == "InService" and endpoint["model_version"] == 1
    assert endpoint["url"].startswith("http://127.0.0.1:")
    assert "agrees with scikit-learn" in endpoint["runtime_reason"]
    [variant] = endpoint["variants"]
    assert variant["name"] == "v1" and variant["weight"] == 100 and variant["pid"]
    version = api.ok("GET", f"/models/{MODEL}/versions/1")
    fast = version["fast_path"]
    assert fast["status"] == "READY" and fast["runtime"] == "onnx" and fast["agrees"]
    assert len(fast["sha256"]) == 64
    answer = _predict(api)
    assert answer["model_version"] == 1 and answer["predictions"] in (["yes"], ["no"])


def test_mlflow_client_against_the_model_server(api: Api, served: dict[str, Any]) -> None:
    pd = pytest.importorskip("pandas")
    client_mod = pytest.importorskip("mlflow.pyfunc.scoring_server.client")
    url = urlsplit(api.ok("GET", f"/endpoints/{ENDPOINT}")["url"])
    client = client_mod.ScoringServerClient(url.hostname, url.port)
    client.wait_server_ready(timeout=10)
    frame = pd.DataFrame([ROW, {**ROW, "colour": "blue", "petal/len": -2.0}])
    client.ping()
    direct = client.invoke(frame)
    through_api = api.ok(
        "POST",
        f"/endpoints/{ENDPOINT}/invocations",
        {"dataframe_records": frame.to_dict("records")},
    )["predictions"]
    assert list(direct["predictions"]) == through_api


def test_invocations_carry_an_inference_id(local_stack: stack.LocalStack, served: Any) -> None:
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        body = json.dumps({"dataframe_records": [ROW]})
        resp = client.http.post(
            f"/endpoints/{ENDPOINT}/invocations",
            body=body,
            headers={"Content-Type": "application/json", "X-Inference-Id": "order-42"},
        )
        assert resp.status_code == 200 and resp.headers["X-Inference-Id"] == "order-42"
        fresh = client.http.post(
            f"/endpoints/{ENDPOINT}/invocations",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        assert len(fresh.headers["X-Inference-Id"]) == 32


def test_the_server_captures_requests_and_serves_its_metrics(
    api: Api, local_stack: stack.LocalStack, served: Any
) -> None:
    """The monitoring hooks: data capture in SageMaker's layout under the object store, keyed
    by the inference id, and the server's GET /metrics (pulled by the monitoring loop)."""
    import urllib.request

    from mlcontract import capture

    test_the_endpoint_is_its_own_server_and_switches_to_the_fast_path(api, served)
    url = api.ok("GET", f"/endpoints/{ENDPOINT}")["url"]
    for _ in range(5):
        _predict(api)
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["Namespace"] == "mlpipe"
    invocations = [m for m in body["MetricData"] if m["MetricName"] == "Invocations"]
    if not invocations:  # a monitoring loop of the stack pulled them first: they are stored
        stored = local_stack.ports.metrics.list_metrics("mlpipe", "Invocations")
        assert stored, "the server's invocations were neither served nor stored"
    else:
        assert sum(m["Value"] for m in invocations) >= 5
        dims = {d["Name"]: d["Value"] for d in invocations[0]["Dimensions"]}
        assert dims["EndpointName"] == ENDPOINT and dims["VariantName"] == "v1"

    root = local_stack.ports.settings.objects_dir / "datacapture" / ENDPOINT

    def captured() -> list[Any]:
        found = []
        for path in root.rglob("*.jsonl"):
            found += [
                c for c in capture.parse_lines(path.read_bytes()) if c.inference_id == "order-42"
            ]
        return found

    [record] = _wait(captured, 30, "the request to be captured")
    assert json.loads(record.input_body)["dataframe_split"]["columns"]


def _deployment(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    status, started = api.call("POST", f"/endpoints/{ENDPOINT}/deployments", body)
    assert status == 202, started
    return dict(started)


def _until(api: Api, deployment_id: str, statuses: set[str], timeout: float = 120) -> Any:
    def done() -> dict[str, Any] | None:
        d = api.ok("GET", f"/endpoints/{ENDPOINT}/deployments/{deployment_id}")
        return d if d["status"] in statuses else None

    return _wait(done, timeout, f"deployment {deployment_id} to reach {statuses}")


def test_canary_routes_its_share_then_rolls_back_on_errors(
    api: Api, served: dict[str, Any]
) -> None:
    started = _deployment(
        api,
        {
            "model_version": 2,
            "strategy": {"type": "canary", "percent": 25, "bake_seconds": 3600},
            "rollback_on": {"error_rate": 0.05, "min_requests": 20},
        },
    )
    assert started["status"] == "BAKING" and started["traffic_percent"] == 25
    # While it bakes, the alias points at the canary and the endpoint reports both variants.
    assert api.ok("GET", f"/models/{MODEL}")["aliases"] == {"production": 2}
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    assert endpoint["status"] == "Updating"
    assert endpoint["deployment"]["id"] == started["id"]
    assert {v["name"]: v["weight"] for v in endpoint["variants"]} == {"v1": 75, "v2": 25}

    n = 400
    answered = Counter(_predict(api)["model_version"] for _ in range(n))
    share = answered[2] / n
    assert answered[1] + answered[2] == n
    assert abs(share - 0.25) < 0.06, answered  # 400 requests: ~2.7 standard deviations

    # Requests the canary fails on (its 5xx), until its error rate breaches the condition.
    failures = 0
    for _ in range(200):
        status, _ = api.call(
            "POST",
            f"/endpoints/{ENDPOINT}/invocations",
            {"dataframe_records": [{**ROW, "colour": MARKER}]},
        )
        assert status in (200, 503)
        failures += status == 503
        d = api.ok("GET", f"/endpoints/{ENDPOINT}/deployments/{started['id']}")
        if d["status"] == "ROLLED_BACK":
            break
    ended = _until(api, started["id"], {"ROLLED_BACK"}, timeout=30)
    assert failures >= 1 and "5xx error rate" in ended["reason"], ended
    assert ended["traffic_percent"] == 0
    # All traffic is back on v1, the alias too, and v2's server is gone.
    assert api.ok("GET", f"/models/{MODEL}")["aliases"] == {"production": 1}
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    assert endpoint["model_version"] == 1 and endpoint["history"] == [1]
    assert [v["name"] for v in endpoint["variants"]] == ["v1"]
    assert {_predict(api)["model_version"] for _ in range(20)} == {1}


def test_a_plain_deploy_during_a_guarded_one_is_a_conflict(
    api: Api, served: dict[str, Any]
) -> None:
    started = _deployment(
        api, {"model_version": 2, "strategy": {"type": "canary", "percent": 10, "bake_seconds": 2}}
    )
    status, error = api.call("POST", f"/endpoints/{ENDPOINT}/deployments", {"model_version": 2})
    assert status == 409 and "in progress" in error["Message"]
    ended = _until(api, started["id"], {"COMPLETED", "ROLLED_BACK"})
    assert ended["status"] == "COMPLETED", ended
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    assert endpoint["model_version"] == 2 and endpoint["history"] == [1, 2]
    assert api.ok("GET", f"/models/{MODEL}")["aliases"] == {"production": 2}
    assert {_predict(api)["model_version"] for _ in range(20)} == {2}


def test_shadow_gets_a_copy_and_never_answers(api: Api, served: dict[str, Any]) -> None:
    started = _deployment(
        api, {"model_version": 1, "strategy": {"type": "shadow", "bake_seconds": 3}}
    )
    assert started["status"] == "BAKING"
    answers = {_predict(api)["model_version"] for _ in range(30)}
    assert answers == {2}  # the live version answers; the shadow only listens
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    shadow = _wait(
        lambda: (
            (s := api.ok("GET", f"/endpoints/{ENDPOINT}").get("shadow"))
            and s["answered"] >= 30
            and s
        ),
        30,
        "the shadow to answer",
    )
    assert shadow["sent"] >= 30 and shadow["errors"] == 0
    assert any(v["shadow"] and v["name"] == "v1" for v in endpoint["variants"])
    ended = _until(api, started["id"], {"COMPLETED", "ROLLED_BACK"})
    assert ended["status"] == "COMPLETED"
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    assert endpoint["model_version"] == 2 and [v["name"] for v in endpoint["variants"]] == ["v2"]
    assert api.ok("GET", f"/models/{MODEL}")["aliases"] == {"production": 2}


def test_bad_deployment_requests_are_400s(api: Api, served: dict[str, Any]) -> None:
    for body, message in (
        ({}, "model_version"),
        ({"model_version": 1, "alias": "production"}, "exactly one"),
        (
            {"model_version": 1, "strategy": {"type": "canary", "percent": 150, "bake_seconds": 1}},
            "percent",
        ),
        ({"model_version": 1, "strategy": "sideways"}, "strategy"),
        ({"model_version": 1, "rollback_on": {"error_rate": 2}}, "error_rate"),
    ):
        status, error = api.call("POST", f"/endpoints/{ENDPOINT}/deployments", body)
        assert status == 400 and message in error["Message"], (body, error)
    status, error = api.call("POST", f"/endpoints/{ENDPOINT}/deployments", {"model_version": 9})
    assert status == 404
    status, _ = api.call("GET", f"/endpoints/{ENDPOINT}/deployments/d-nope")
    assert status == 404
    status, _ = api.call("POST", "/endpoints/nowhere/deployments", {"model_version": 1})
    assert status == 404


def test_the_stack_restarts_a_crashed_server(
    api: Api, local_stack: stack.LocalStack, served: dict[str, Any]
) -> None:
    import os
    import signal

    before = api.ok("GET", f"/endpoints/{ENDPOINT}")
    [live] = [v for v in before["variants"] if v["weight"] > 0]
    os.kill(live["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        e = api.ok("GET", f"/endpoints/{ENDPOINT}")
        [v] = [v for v in e["variants"] if v["weight"] > 0]
        return (
            e if v["restarts"] >= 1 and v["status"] == "ready" and v["pid"] != live["pid"] else None
        )

    after = _wait(restarted, 60, "the server to be restarted")
    assert after["restarts"] >= 1 and "exited" in (after["last_error"] or "")
    assert after["url"] == before["url"]  # same address across the restart
    assert _predict(api)["model_version"] == 2


def test_an_alarm_can_roll_back_a_deployment_in_flight(
    api: Api, local_stack: stack.LocalStack, served: dict[str, Any]
) -> None:
    """Monitoring's ``rollback`` alarm action calls ``deployments.abort``."""
    from chalicelib import deployments

    serving = api.ok("GET", f"/endpoints/{ENDPOINT}")["model_version"]
    other = 1 if serving == 2 else 2
    started = _deployment(
        api,
        {"model_version": other, "strategy": {"type": "linear", "step_percent": 50,
                                              "interval_seconds": 3600}},
    )  # fmt: skip
    assert started["traffic_percent"] == 50
    ended = deployments.abort(local_stack.ports, ENDPOINT, "alarm AccuracyLow is in ALARM")
    assert ended is not None and ended["status"] == "ROLLED_BACK"
    assert ended["reason"] == "alarm AccuracyLow is in ALARM"
    endpoint = api.ok("GET", f"/endpoints/{ENDPOINT}")
    assert endpoint["model_version"] == serving and len(endpoint["variants"]) == 1
    assert api.ok("GET", f"/models/{MODEL}")["aliases"] == {"production": serving}
    assert deployments.abort(local_stack.ports, ENDPOINT, "again") is None
    listed = api.ok("GET", f"/endpoints/{ENDPOINT}/deployments")["deployments"]
    assert [d["id"] for d in listed][-1] == started["id"]
