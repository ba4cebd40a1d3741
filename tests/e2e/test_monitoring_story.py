"""Monitoring through the REST API on the embedded stack: train and deploy, predict with data
capture at 100 %, shift the traffic, check drift, read the endpoint and pipeline metrics,
send ground truth and read the accuracy, and let an alarm roll a deployment back.

Nothing below the REST API is mocked: the real ASL runs (its split step records the
baseline, its recorders emit the pipeline metrics), the real model answers, the API's
invocation monitor counts and captures, the stack's monitoring loop evaluates alarms.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chalice.test import Client

from iac.local import stack
from tests.e2e.conftest import Api
from tests.e2e.test_dashboard_chromium import browser, keep, kpi, wait_ready

assert browser  # a fixture, imported for the live dashboard test

pytestmark = pytest.mark.e2e
FEATURES = ["x0", "x1", "x2", "colour"]
SHIFTED = {"x1", "colour"}
REQUESTS = 40  # per phase
ROWS = 5  # per request


def rows(n: int, seed: int, *, shift: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Features and their true labels; ``shift`` moves x1 by 3 sd and changes the colours
    (and adds one the model never saw). The label depends on x0 and x2 only."""
    rng = np.random.default_rng(seed)
    x0, x1, x2 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    if shift:
        x1 = x1 + 3.0
        colour = rng.choice(["red", "green", "blue", "purple"], size=n, p=[0.1, 0.1, 0.5, 0.3])
    else:
        colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    label = np.where(1.5 * x0 - x2 > 0, "yes", "no")
    out = [
        {"x0": round(float(a), 4), "x1": round(float(b), 4), "x2": round(float(c), 4),
         "colour": str(d)}
        for a, b, c, d in zip(x0, x1, x2, colour, strict=True)
    ]  # fmt: skip
    return out, label.tolist()


def training_csv(n: int = 600) -> str:
    data, labels = rows(n, seed=0)
    lines = ["x0,x1,x2,colour,label"]
    lines += [
        f"{r['x0']},{r['x1']},{r['x2']},{r['colour']},{y}"
        for r, y in zip(data, labels, strict=True)
    ]
    return "\n".join(lines) + "\n"


PIPELINE = {
    "name": "watched-rf",
    "dataset": {"name": "watched"},
    "target": "label",
    "task": "classification",
    "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 20}},
    "evaluation": {"test_size": 0.25, "metrics": ["accuracy"], "thresholds": {"accuracy": 0.6}},
    "deployment": {"endpoint": "watched", "alias": "production"},
}


@pytest.fixture(scope="module")
def monitored_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.LocalStack]:
    running = stack.start(
        tmp_path_factory.mktemp("mlpipe-monitoring"),
        port=0,
        metrics_flush_seconds=1,
        alarm_evaluation_seconds=10,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(monitored_stack: stack.LocalStack) -> Iterator[Client]:
    from app import app

    with Client(app) as c:
        yield c


@pytest.fixture(scope="module")
def api(client: Client) -> Api:
    return Api(client)


@pytest.fixture(scope="module")
def deployed(api: Api) -> dict[str, Any]:
    api.ok(
        "POST",
        "/datasets",
        {"name": "watched", "source": {"type": "inline", "data": training_csv()}},
    )
    api.ok("POST", "/pipelines", PIPELINE)
    started = api.ok("POST", "/pipelines/watched-rf/runs", {})
    run = api.wait_run(started["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    return run


@pytest.fixture(scope="module")
def traffic(client: Client, api: Api, deployed: dict[str, Any]) -> dict[str, Any]:
    """Normal traffic, then shifted traffic, then three bad requests; capture at 100 %."""
    begin = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert api.ok("PUT", "/endpoints/watched/data-capture", {"sampling_percent": 100}) == {
        **api.ok("GET", "/endpoints/watched/data-capture")
    }
    sent: dict[str, tuple[list[str], list[str]]] = {}  # inference id -> (predictions, truth)
    for phase, shift in (("normal", False), ("shifted", True)):
        for i in range(REQUESTS):
            batch, truth = rows(ROWS, seed=1000 + i + (500 if shift else 0), shift=shift)
            resp = client.http.post(
                "/endpoints/watched/invocations",
                body=json.dumps({"dataframe_records": batch}),
                headers={"Content-Type": "application/json"},
            )
            assert resp.status_code == 200, (phase, resp.body)
            inference = resp.headers["X-Inference-Id"]
            assert inference not in sent
            sent[inference] = (json.loads(resp.body)["predictions"], truth)
    bad = 0
    for body in ('{"dataframe_records": [{"x0": "not a number"}]}', "{}", "[1, 2]"):
        resp = client.http.post(
            "/endpoints/watched/invocations",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400, resp.body
        bad += 1
    return {"begin": begin, "sent": sent, "bad": bad}


def metric_sums(api: Api, begin: dt.datetime, metrics: str) -> dict[str, float]:
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    body = api.ok(
        "GET",
        f"/endpoints/watched/metrics?metric={metrics}&stat=Sum&period=60"
        f"&start={begin.isoformat().replace('+00:00', 'Z')}&end={end.isoformat().replace('+00:00', 'Z')}",
    )
    return {r["Label"]: sum(r["Values"]) for r in body["MetricDataResults"]}


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_version_records_its_training_baseline(api: Api, deployed: dict[str, Any]) -> None:
    # The split step profiled the training split; register recorded it on the version.
    status, _ = api.call("GET", "/endpoints/watched/drift")
    assert status == 404  # no check yet: a clear 404, not an empty report
    status, body = api.call("POST", "/endpoints/watched/drift-checks")
    assert status == 400 and "no captured requests" in body["Message"]


def test_metrics_count_exactly_what_was_sent(api: Api, traffic: dict[str, Any]) -> None:
    expected = {
        "Invocations Sum": 2 * REQUESTS + traffic["bad"],
        "Invocation4XXErrors Sum": traffic["bad"],
        "Invocation5XXErrors Sum": 0,
    }

    def counted() -> dict[str, float]:
        sums = metric_sums(
            api, traffic["begin"], "Invocations,Invocation4XXErrors,Invocation5XXErrors"
        )
        assert sums == expected, sums
        return sums

    wait_for(counted)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    start = traffic["begin"].isoformat().replace("+00:00", "Z")
    latency = api.ok(
        "GET",
        f"/endpoints/watched/metrics?metric=ModelLatency,OverheadLatency&stat=p50,Maximum,SampleCount"
        f"&period=3600&start={start}&end={end}",
    )["MetricDataResults"]
    by = {r["Label"]: r["Values"] for r in latency}
    assert sum(by["ModelLatency SampleCount"]) == 2 * REQUESTS + traffic["bad"]
    # Plausible: a forest of 20 trees answers 5 rows in well under a second, above 10 us.
    assert all(10 < v < 1_000_000 for v in by["ModelLatency p50"]), by
    assert all(0 < v < 5_000_000 for v in by["OverheadLatency Maximum"]), by
    # Per variant and version, as SageMaker's dimensions.
    per_version = api.ok(
        "GET",
        f"/endpoints/watched/metrics?metric=Invocations&stat=Sum&period=3600"
        f"&start={start}&end={end}&variant=AllTraffic&version=1",
    )["MetricDataResults"][0]
    assert sum(per_version["Values"]) == 2 * REQUESTS + traffic["bad"]


def test_drift_check_flags_the_shifted_features(api: Api, traffic: dict[str, Any]) -> None:
    def checked() -> dict[str, Any]:
        status, report = api.call("POST", "/endpoints/watched/drift-checks")
        assert status == 200, report
        assert report["rows"] == 2 * REQUESTS * ROWS, report["rows"]  # every capture written
        return dict(report)

    report = wait_for(checked)
    features = {f["name"]: f for f in report["features"]}
    assert set(features) == set(FEATURES)
    assert set(report["drifted_features"]) >= SHIFTED, report["drifted_features"]
    assert not set(report["drifted_features"]) - SHIFTED, report["drifted_features"]
    assert features["x1"]["test"] == "ks" and features["colour"]["test"] == "chi2"
    assert features["colour"]["new_categories"] == 1
    for f in features.values():
        assert {"statistic", "p_value", "threshold", "drifted", "psi"} <= set(f)
    latest = api.ok("GET", "/endpoints/watched/drift")
    assert latest["checked_at"] == report["checked_at"]
    drift = api.ok("GET", "/endpoints/watched/metrics?metric=FeatureDrift&stat=Maximum")
    assert drift["MetricDataResults"]  # FeatureDrift per feature, queryable like the others


def test_the_scheduled_round_runs_the_drift_job(
    monitored_stack: stack.LocalStack, api: Api, traffic: dict[str, Any]
) -> None:
    """What the EventBridge schedule runs on AWS (the monitor Lambda): a drift processing
    job per endpoint, collected by a later round (here the local job runner runs drift.py)."""
    from chalicelib.monitoring import schedule

    before = api.ok("GET", "/endpoints/watched/drift")["checked_at"]
    first = schedule.scheduled_round(monitored_stack.ports)["watched"]
    assert first.get("started"), first

    def collected() -> None:
        out = schedule.scheduled_round(monitored_stack.ports)["watched"]
        assert out.get("collected") == "Completed", out

    wait_for(collected, timeout=180)
    report = api.ok("GET", "/endpoints/watched/drift")
    assert report["checked_at"] > before
    assert set(report["drifted_features"]) == SHIFTED, report["drifted_features"]
    assert report["rows"] == 2 * REQUESTS * ROWS


def test_feedback_turns_into_accuracy(api: Api, traffic: dict[str, Any]) -> None:
    sent = traffic["sent"]
    items = [{"inference_id": i, "actuals": truth} for i, (_, truth) in sent.items()]
    status, accepted = api.call("POST", "/endpoints/watched/feedback", items)
    assert status == 202 and accepted["accepted"] == len(items), accepted
    pairs = [(p, t) for preds, truth in sent.values() for p, t in zip(preds, truth, strict=True)]
    independent = sum(p == t for p, t in pairs) / len(pairs)
    perf = api.ok("GET", "/endpoints/watched/performance")
    assert perf["overall"]["labelled_rows"] == len(pairs)
    assert perf["overall"]["accuracy"] == pytest.approx(independent)
    bad = api.call("POST", "/endpoints/watched/feedback", {"inference_id": "x", "actuals": []})
    assert bad[0] == 400


def test_pipeline_metrics_count_the_run_and_time_its_steps(
    api: Api, deployed: dict[str, Any]
) -> None:
    def counted() -> dict[str, float]:
        body = api.ok("GET", "/pipelines/watched-rf/metrics")
        sums = {r["Label"]: sum(r["Values"]) for r in body["MetricDataResults"]}
        assert sums["RunsStarted Sum"] >= 1 and sums["RunsSucceeded Sum"] >= 1, sums
        assert sums["RunsFailed Sum"] == 0, sums
        assert {"ingest", "split", "train", "register", "deploy"} <= set(sums), sums
        return sums

    wait_for(counted)


def test_sampling_is_settable_at_deployment(api: Api, deployed: dict[str, Any]) -> None:
    body = {"name": "watched-sample", "model": "watched-rf", "version": 1}
    status, answer = api.call("POST", "/endpoints", {**body, "data_capture_percent": 101})
    assert status == 400 and "data_capture_percent" in answer["Message"]
    api.ok("POST", "/endpoints", {**body, "data_capture_percent": 25})
    capture = api.ok("GET", "/endpoints/watched-sample/data-capture")
    assert capture["sampling_percent"] == 25 and capture["enabled"] is True
    api.ok("DELETE", "/endpoints/watched-sample")


def test_bad_monitoring_input_is_a_400(api: Api, deployed: dict[str, Any]) -> None:
    for method, path, body in [
        ("PUT", "/endpoints/watched/data-capture", {"sampling_percent": 150}),
        ("PUT", "/endpoints/watched/data-capture", {"sampling": 10}),
        ("GET", "/endpoints/watched/metrics?period=7", None),
        ("GET", "/endpoints/watched/metrics?stat=Median", None),
        ("PUT", "/endpoints/watched/alarms/x", {"threshold": 1}),
    ]:
        status, answer = api.call(method, path, body)
        assert status == 400, (path, answer)
        assert answer["Message"], answer


@pytest.fixture
def served(monitored_stack: stack.LocalStack) -> Iterator[str]:
    """The real app over HTTP on loopback (what `make run` serves)."""
    from waitress.server import create_server

    from app import app
    from iac.local.http import ChaliceWsgi

    server = create_server(ChaliceWsgi(app), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)


def test_the_dashboard_shows_the_endpoint_in_chromium(
    served: str, browser: Any, api: Api, traffic: dict[str, Any], tmp_path: Path
) -> None:
    accuracy = api.ok("GET", "/endpoints/watched/performance")["overall"]["accuracy"]
    browser.get(f"{served}/dashboard")
    assert wait_ready(browser) == "ready", browser.find_element("id", "error").text
    assert kpi(browser, "requests") == str(2 * REQUESTS + traffic["bad"])
    assert kpi(browser, "drift") == f"{len(SHIFTED)}/{len(FEATURES)}"
    assert kpi(browser, "quality") == f"{accuracy:.2f}"
    shown = browser.execute_script(
        "return [...document.querySelectorAll('[data-widget=drift] g.feature[data-drifted=true]')]"
        ".map(g => g.dataset.feature).sort()"
    )
    assert shown == sorted(SHIFTED)
    assert keep(browser, tmp_path, "dashboard-live-endpoint.png").stat().st_size > 20_000


def test_an_alarm_rolls_a_guarded_deployment_back(
    client: Client, api: Api, traffic: dict[str, Any]
) -> None:
    # A second version goes to production; then client errors on it trip an alarm whose
    # action rolls the endpoint back to v1.
    started = api.ok("POST", "/pipelines/watched-rf/runs", {})
    assert api.wait_run(started["run_id"])["status"] == "SUCCEEDED"
    assert api.ok("GET", "/endpoints/watched")["model_version"] == 2
    definition = {
        "metric": {"metric_name": "Invocation4XXErrors", "statistic": "Sum",
                   "dimensions": {"EndpointName": "watched", "VariantName": "AllTraffic",
                                  "ModelVersion": "2"}},
        "period": 10, "evaluation_periods": 6, "datapoints_to_alarm": 1, "threshold": 1,
        "comparison_operator": "GreaterThanOrEqualToThreshold", "actions": ["rollback"],
    }  # fmt: skip
    api.ok("PUT", "/endpoints/watched/alarms/client-errors", definition)
    for _ in range(3):
        client.http.post(
            "/endpoints/watched/invocations",
            body="{}",
            headers={"Content-Type": "application/json"},
        )

    def rolled_back() -> None:
        (alarm,) = api.ok("GET", "/endpoints/watched/alarms")["alarms"]
        assert alarm["state"] == "ALARM", alarm
        endpoint = api.ok("GET", "/endpoints/watched")
        assert endpoint["model_version"] == 1 and endpoint["history"] == [1], endpoint

    wait_for(rolled_back, timeout=180)  # generous: a loaded machine evaluates late
