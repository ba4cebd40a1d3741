"""The monitoring routes through Chalice's test client: GetMetricData-shaped metrics,
data capture settings, feedback -> performance, drift checks, alarms, the dashboard page;
bad input is a 400 naming the problem."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from chalice.test import Client

import app
import datacapture
from chalicelib.api import monitoring as routes
from chalicelib.monitoring import service
from iac.local.files import FileObjectStore
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.sqlite import SqliteMetadata
from mlcontract import monitoring as mon
from tests.monitoring_helpers import TYPES, baseline_of, traffic

SIGNATURE = [{"name": n, "type": t} for n, t in TYPES.items()]
# The real app (a blueprint registers into one app per process); the routes' ports are
# replaced per test.
APP = app.app


@dataclass
class FakeSettings:
    profile: str
    data_dir: Path


@dataclass
class FakePorts:
    settings: FakeSettings
    store: FileObjectStore
    metadata: SqliteMetadata
    metrics: SqliteMetricsStore


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Client, FakePorts]:
    ports = FakePorts(
        FakeSettings("local", tmp_path),
        FileObjectStore(tmp_path / "objects"),
        SqliteMetadata(tmp_path / "meta.sqlite3"),
        SqliteMetricsStore(tmp_path / "metrics.sqlite3"),
    )
    monkeypatch.setattr(routes, "ports", lambda: ports)
    ports.store.put_bytes(
        "models/m/v1/baseline.json", json.dumps(baseline_of(traffic(3000, seed=5), TYPES)).encode()
    )
    model = {
        "endpoint": "flowers", "model": "m", "model_version": 1, "task": "classification", "signature": SIGNATURE,
        "baseline_key": "models/m/v1/baseline.json", "variants": ["AllTraffic"],
        "version": {"name": "m", "version": 1, "task": "classification"},
    }  # fmt: skip
    monkeypatch.setattr(service, "model_of_endpoint", lambda p, e: model)
    with Client(APP) as client:
        yield client, ports


def test_metrics_in_get_metric_data_shape(env) -> None:
    client, ports = env
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    ports.metrics.put(
        "mlpipe",
        [
            mon.datum(
                mon.INVOCATIONS, {mon.ENDPOINT: "flowers"}, now - dt.timedelta(minutes=m), value=10
            )
            for m in range(1, 6)
        ],
    )
    start, end = mon.iso(now - dt.timedelta(minutes=10)), mon.iso(now)
    resp = client.http.get(
        f"/endpoints/flowers/metrics?metric=Invocations&stat=Sum,SampleCount&period=60&start={start}&end={end}"
    )
    assert resp.status_code == 200
    body = json.loads(resp.body)
    assert body["Period"] == 60 and body["Messages"] == []
    (inv_sum, inv_n) = body["MetricDataResults"]
    assert inv_sum["Label"] == "Invocations Sum" and inv_sum["StatusCode"] == "Complete"
    assert inv_sum["Values"] == [10.0] * 5 and len(inv_sum["Timestamps"]) == 5
    assert inv_n["Values"] == [1.0] * 5
    default = json.loads(client.http.get("/endpoints/flowers/metrics").body)
    assert [r["Label"] for r in default["MetricDataResults"]] == [
        f"{m} {s}" for m, s in service.ENDPOINT_DEFAULTS
    ]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("stat=Median&metric=Invocations", "statistic"),
        ("period=7", "period"),
        ("start=yesterday", "ISO 8601"),
        ("start=2026-11-28T10:00:00Z&end=2026-11-28T09:00:00Z", "end must be after start"),
        ("version=3", "variant"),
        ("bogus=1", "bogus"),
        ("period=10&start=2026-01-01T00:00:00Z&end=2026-11-01T00:00:00Z", "period"),
    ],
)
def test_bad_metric_queries_are_400s(env, query: str, needle: str) -> None:
    client, _ = env
    resp = client.http.get(f"/endpoints/flowers/metrics?{query}")
    assert resp.status_code == 400, resp.body
    assert needle in json.loads(resp.body)["Message"]
    assert client.http.get("/endpoints/bad..name/metrics").status_code == 400


def test_pipeline_metrics_include_each_step(env) -> None:
    client, ports = env
    now = dt.datetime.now(dt.UTC)
    for step, secs in [("Train", 6.0), ("Ingest", 1.0)]:
        ports.metrics.put(
            "mlpipe",
            [
                mon.datum(
                    mon.STEP_DURATION,
                    {mon.PIPELINE: "p", mon.STEP: step},
                    now - dt.timedelta(minutes=2),
                    value=secs,
                )
            ],
        )
    body = json.loads(client.http.get("/pipelines/p/metrics").body)
    labels = [r["Label"] for r in body["MetricDataResults"]]
    assert labels == ["RunsStarted Sum", "RunsSucceeded Sum", "RunsFailed Sum", "Ingest", "Train"]
    assert body["MetricDataResults"][-1]["Values"] == [6.0]


def test_data_capture_settings(env) -> None:
    client, _ = env
    assert (
        json.loads(client.http.get("/endpoints/flowers/data-capture").body)["sampling_percent"]
        == 100
    )
    resp = client.http.put(
        "/endpoints/flowers/data-capture",
        body=json.dumps({"sampling_percent": 25}),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200
    assert (
        json.loads(client.http.get("/endpoints/flowers/data-capture").body)["sampling_percent"]
        == 25
    )
    bad = client.http.put(
        "/endpoints/flowers/data-capture",
        body=json.dumps({"sampling_percent": 101}),
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and "sampling_percent" in json.loads(bad.body)["Message"]


def test_feedback_then_performance_and_drift_check(env) -> None:
    client, ports = env
    now = dt.datetime.now(dt.UTC)
    writer = datacapture.CaptureWriter(ports.store.root, "flowers")
    frame = traffic(600, seed=6, shift=True)
    for i in range(0, 600, 6):
        chunk = frame.iloc[i : i + 6]
        data = [[None if v != v else v for v in row] for row in chunk.itertuples(index=False)]
        body = json.dumps(
            {"dataframe_split": {"columns": list(frame.columns), "data": data}}
        ).encode()
        preds = ["yes" if j % 2 else "no" for j in range(6)]
        writer.capture(
            f"id{i}",
            "AllTraffic",
            body,
            "application/json",
            json.dumps({"predictions": preds}).encode(),
            when=(now - dt.timedelta(minutes=30)).timestamp() + i,
        )
    writer.flush()
    headers = {"Content-Type": "application/json"}
    items = [{"inference_id": f"id{i}", "actuals": ["yes"] * 6} for i in range(0, 600, 6)]
    resp = client.http.post("/endpoints/flowers/feedback", body=json.dumps(items), headers=headers)
    assert resp.status_code == 202 and json.loads(resp.body) == {
        "endpoint": "flowers",
        "accepted": 100,
        "rows": 600,
    }
    for bad in ("{}", "[]", '{"inference_id": "x", "actuals": []}', "not json"):
        r = client.http.post("/endpoints/flowers/feedback", body=bad, headers=headers)
        assert r.status_code == 400, bad
    perf = json.loads(client.http.get("/endpoints/flowers/performance").body)
    assert perf["overall"]["accuracy"] == 0.5 and perf["overall"]["labelled_rows"] == 600
    assert client.http.get("/endpoints/flowers/drift").status_code == 404
    report = json.loads(client.http.post("/endpoints/flowers/drift-checks").body)
    assert {"x3", "colour"} <= set(report["drifted_features"]) and report["rows"] == 600
    latest = json.loads(client.http.get("/endpoints/flowers/drift").body)
    assert latest["checked_at"] == report["checked_at"]
    drift_metrics = ports.metrics.list_metrics(
        "mlpipe", mon.FEATURE_DRIFT, {mon.ENDPOINT: "flowers"}
    )
    assert len(drift_metrics) == len(TYPES)


def test_alarms_crud_and_dashboard(env) -> None:
    client, _ = env
    headers = {"Content-Type": "application/json"}
    definition = {
        "metric": {"metric_name": "ModelLatency", "dimensions": {"EndpointName": "flowers"}, "statistic": "p99"},
        "threshold": 50000, "comparison_operator": "GreaterThanThreshold", "evaluation_periods": 3,
    }  # fmt: skip
    assert (
        client.http.put(
            "/endpoints/flowers/alarms/slow", body=json.dumps(definition), headers=headers
        ).status_code
        == 200
    )
    listed = json.loads(client.http.get("/endpoints/flowers/alarms").body)["alarms"]
    assert [(a["definition"]["name"], a["state"]) for a in listed] == [
        ("slow", "INSUFFICIENT_DATA")
    ]
    bad = client.http.put(
        "/endpoints/flowers/alarms/slow",
        body=json.dumps({**definition, "period": 45}),
        headers=headers,
    )
    assert bad.status_code == 400 and "period" in json.loads(bad.body)["Message"]
    assert client.http.delete("/endpoints/flowers/alarms/slow").status_code == 200
    assert client.http.delete("/endpoints/flowers/alarms/slow").status_code == 404
    page = client.http.get("/dashboard")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    assert "__MLPIPE_DASHBOARD_CONFIG__" not in text and '"widgets"' in text
    assert (
        "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    )  # no CDN
