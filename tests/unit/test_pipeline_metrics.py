"""Pipeline metrics from a run document; emitted into the local store or as Powertools EMF."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
from pathlib import Path

from chalicelib.monitoring import pipeline_metrics as pm
from chalicelib.monitoring.store import MetricQuery
from iac.local.metrics_store import SqliteMetricsStore
from mlcontract import monitoring as mon

T = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
RUN = {
    "run_id": "r1",
    "pipeline": "flowers-rf",
    "status": "SUCCEEDED",
    "ended_at": "2026-11-28T10:00:09.000Z",
    "steps": [
        {
            "name": "Ingest",
            "status": "SUCCEEDED",
            "started_at": "2026-11-28T10:00:00.000Z",
            "ended_at": "2026-11-28T10:00:01.500Z",
        },
        {
            "name": "Train",
            "status": "SUCCEEDED",
            "started_at": "2026-11-28T10:00:02.000Z",
            "ended_at": "2026-11-28T10:00:08.000Z",
        },
        {
            "name": "Deploy",
            "status": "RUNNING",
            "started_at": "2026-11-28T10:00:08.000Z",
            "ended_at": None,
        },
    ],
}


def test_run_points_and_the_local_store(tmp_path: Path) -> None:
    store = SqliteMetricsStore(tmp_path / "m.sqlite3")
    emitter = pm.StoreEmitter(store)
    emitter.emit(pm.run_started("flowers-rf", T))
    emitter.emit(pm.run_ended(RUN))
    emitter.emit(pm.run_ended({**RUN, "status": "FAILED", "steps": []}))
    q = [
        MetricQuery("started", mon.RUNS_STARTED, {mon.PIPELINE: "flowers-rf"}, "Sum", 60),
        MetricQuery("ok", mon.RUNS_SUCCEEDED, {mon.PIPELINE: "flowers-rf"}, "Sum", 60),
        MetricQuery("failed", mon.RUNS_FAILED, {}, "Sum", 60),
        MetricQuery(
            "train",
            mon.STEP_DURATION,
            {mon.PIPELINE: "flowers-rf", mon.STEP: "Train"},
            "Maximum",
            60,
        ),
        MetricQuery(
            "ingest",
            mon.STEP_DURATION,
            {mon.PIPELINE: "flowers-rf", mon.STEP: "Ingest"},
            "Maximum",
            60,
        ),
        MetricQuery(
            "deploy",
            mon.STEP_DURATION,
            {mon.PIPELINE: "flowers-rf", mon.STEP: "Deploy"},
            "Maximum",
            60,
        ),
    ]
    got = {
        r["Id"]: r["Values"]
        for r in store.get_metric_data(q, T, T + dt.timedelta(minutes=1))["MetricDataResults"]
    }
    assert got == {
        "started": [1.0],
        "ok": [1.0],
        "failed": [1.0],
        "train": [6.0],
        "ingest": [1.5],
        "deploy": [],
    }


def test_powertools_emits_emf(capsys, monkeypatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ignored-namespace")
    pm.PowertoolsEmitter().emit(pm.run_ended(RUN))
    docs = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    by_name = {}
    for doc in docs:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "mlpipe"
        (metric,) = directive["Metrics"]
        by_name.setdefault(metric["Name"], []).append(doc)
    assert {d["Step"]: d["StepDuration"] for d in by_name["StepDuration"]} == {
        "Ingest": [1.5],
        "Train": [6.0],
    }
    assert (
        by_name["StepDuration"][0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"]
        == "Seconds"
    )
    assert len(by_name["RunsSucceeded"]) == 2  # per pipeline and the total


def test_job_usage_from_rusage() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    points = pm.job_usage(
        "p",
        "Train",
        usage,
        wall_seconds=1e9,
        total_memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    )
    cpu, mem = (p["Value"] for p in points)
    assert 0 <= cpu < 1 and 0 < mem < 100
    assert points[0]["Dimensions"] == [
        {"Name": "Pipeline", "Value": "p"},
        {"Name": "Step", "Value": "Train"},
    ]
