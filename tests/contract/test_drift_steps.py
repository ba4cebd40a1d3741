"""The scheduled drift check as state machine steps: StartDriftCheck starts drift.py as a
real (local) processing job over the captures, CheckDriftCheck turns its output into the
endpoint's latest report and FeatureDrift metrics; EvaluateMonitoring scores feedback and
evaluates alarms."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import datacapture
from chalicelib.monitoring import alarms, service, steps
from chalicelib.runtime import Ports
from chalicelib.settings import Settings
from iac.local.files import FileObjectStore
from iac.local.jobs import LocalJobRunner
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.sqlite import SqliteMetadata
from mlcontract import monitoring as mon
from tests.fakes import FakeEndpoints, FakeOrchestrator
from tests.monitoring_helpers import TYPES, baseline_of, traffic


@pytest.fixture
def ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    store = FileObjectStore(tmp_path / "objects")
    p = Ports(
        settings=Settings(profile="local", data_dir=tmp_path),
        store=store,
        metadata=SqliteMetadata(tmp_path / "m.db"),
        jobs=LocalJobRunner(tmp_path / "jobs", store),
        endpoints=FakeEndpoints(),
        orchestrator=FakeOrchestrator(),
        metrics=SqliteMetricsStore(tmp_path / "metrics.db"),
    )
    store.put_bytes(
        "models/m/v1/baseline.json", json.dumps(baseline_of(traffic(3000, seed=8), TYPES)).encode()
    )
    model = {
        "endpoint": "ep", "model": "m", "model_version": 1, "task": "classification",
        "signature": [{"name": n, "type": t} for n, t in TYPES.items()],
        "baseline_key": "models/m/v1/baseline.json", "variants": ["AllTraffic"],
        "version": {"name": "m", "version": 1},
    }  # fmt: skip
    monkeypatch.setattr(service, "model_of_endpoint", lambda ports, endpoint: model)
    yield p
    p.jobs.close()


def capture(store: FileObjectStore, now: dt.datetime) -> None:
    writer = datacapture.CaptureWriter(store.root, "ep")
    frame = traffic(1000, seed=9, shift=True)
    for i in range(0, 1000, 10):
        chunk = frame.iloc[i : i + 10]
        data = [[None if v != v else v for v in row] for row in chunk.itertuples(index=False)]
        body = json.dumps(
            {"dataframe_split": {"columns": list(frame.columns), "data": data}}
        ).encode()
        out = json.dumps({"predictions": ["yes"] * len(chunk)}).encode()
        writer.capture(
            f"id{i}",
            "AllTraffic",
            body,
            "application/json",
            out,
            when=(now - dt.timedelta(hours=2)).timestamp() + i,
        )
    writer.flush()


def test_scheduled_drift_check_runs_the_job_and_publishes(ports) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    capture(ports.store, now)
    started = steps.start_drift_check(ports, {"endpoint": "ep", "now": mon.iso(now)})
    assert started["status"] == "InProgress"
    state = started
    for _ in range(60):  # the local describe long-polls; a few rounds at most
        state = steps.check_drift_check(ports, state)
        if state["status"] != "InProgress":
            break
    assert state["status"] == "Completed", state
    assert {"x3", "colour"} <= set(state["drifted_features"])
    latest = service.latest_drift(ports.store, "ep")
    assert latest["rows"] == 1000 and latest["endpoint"] == "ep"
    found = ports.metrics.list_metrics("mlpipe", mon.FEATURE_DRIFT, {mon.ENDPOINT: "ep"})
    assert len(found) == len(TYPES)

    # The drift alarm preset sees DriftedFeatures >= 1 in the current hour... evaluated an
    # hour later, when that period is complete.
    (drift_alarm,) = [
        a for a in alarms.endpoint_presets("ep", error_rate=None) if a.name == "ep-drift"
    ]
    service.put_alarm(ports.metadata, "ep", drift_alarm.model_dump())
    result = steps.evaluate_monitoring(
        ports, {"endpoint": "ep", "now": mon.iso(now + dt.timedelta(hours=1))}
    )
    assert result["alarms"] == {"ep-drift": "ALARM"}
