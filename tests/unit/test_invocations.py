"""The API's invocation monitor: what ``observe`` counts (statuses from the raised error),
what it captures (sampled, SageMaker's layout, the inference id), what it leaves alone
(unknown endpoints), and how it flushes (thread locally, after every request in a Lambda)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import BadRequestError, ConflictError, NotFoundError
from chalicelib.monitoring import invocations
from iac.local.files import FileObjectStore
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.sqlite import SqliteMetadata
from mlcontract import capture
from mlcontract import monitoring as mon


@dataclass
class FakeSettings:
    profile: str = "local"
    metrics_namespace: str = "mlpipe"
    capture_prefix: str = "datacapture"
    default_sampling_percent: float = 100.0


@dataclass
class FakePorts:
    store: FileObjectStore
    metadata: SqliteMetadata
    metrics: SqliteMetricsStore
    settings: FakeSettings = field(default_factory=FakeSettings)


@pytest.fixture
def ports(tmp_path: Path) -> FakePorts:
    return FakePorts(
        FileObjectStore(tmp_path / "objects"),
        SqliteMetadata(tmp_path / "meta.sqlite3"),
        SqliteMetricsStore(tmp_path / "metrics.sqlite3"),
    )


@pytest.fixture
def monitor(ports: FakePorts, monkeypatch: pytest.MonkeyPatch) -> invocations.InvocationMonitor:
    made = invocations.InvocationMonitor(lambda: ports, interval=10.0)
    made._ensure_flusher = lambda: None  # type: ignore[method-assign]  # flushed by hand
    monkeypatch.setattr(invocations, "_monitor", made)
    return made


def predict(endpoint: str, error: Exception | None = None, *, served: bool = True) -> str:
    """One request through ``observe`` as the invocations route runs it."""
    expect = pytest.raises(type(error)) if error else contextlib.nullcontext()
    with expect, invocations.observe(endpoint, None) as seen:
        if served:
            seen.trace["version"] = 3
        if error is not None:
            raise error
        seen.trace.update(
            model_ns=2_000_000,
            input=b'{"dataframe_split":{"columns":["a"],"data":[[1.0]]}}',
            output=b'{"predictions":[7]}',
        )
    return seen.inference_id


def sums(ports: FakePorts, dims: dict[str, str]) -> dict[str, float]:
    now = dt.datetime.now(dt.UTC)
    from chalicelib.monitoring.store import MetricQuery

    names = (mon.INVOCATIONS, mon.ERRORS_4XX, mon.ERRORS_5XX)
    result = ports.metrics.get_metric_data(
        [MetricQuery(f"q{i}", n, dims, "Sum", 3600) for i, n in enumerate(names)],
        now - dt.timedelta(hours=1),
        now + dt.timedelta(hours=1),
    )
    return {n: sum(r["Values"]) for n, r in zip(names, result["MetricDataResults"], strict=True)}


def test_counts_by_status_and_rolls_up(ports: FakePorts, monitor: Any) -> None:
    for _ in range(5):
        predict("ep")
    predict("ep", BadRequestError("bad row"))
    predict("ep", ConflictError("not ready"))
    predict("ep", RuntimeError("boom"))
    predict("ep", NotFoundError("no such endpoint"), served=False)  # never reached a model
    assert monitor.flush() > 0
    expected = {mon.INVOCATIONS: 8, mon.ERRORS_4XX: 2, mon.ERRORS_5XX: 1}
    assert sums(ports, {mon.ENDPOINT: "ep"}) == expected
    per_version = {mon.ENDPOINT: "ep", mon.VARIANT: "AllTraffic", mon.MODEL_VERSION: "3"}
    assert sums(ports, per_version) == expected


def test_latency_splits_model_and_overhead(ports: FakePorts, monitor: Any) -> None:
    predict("ep")
    monitor.flush()
    now = dt.datetime.now(dt.UTC)
    from chalicelib.monitoring.store import MetricQuery

    result = ports.metrics.get_metric_data(
        [
            MetricQuery("m", mon.MODEL_LATENCY, {mon.ENDPOINT: "ep"}, "Maximum", 3600),
            MetricQuery("o", mon.OVERHEAD_LATENCY, {mon.ENDPOINT: "ep"}, "SampleCount", 3600),
        ],
        now - dt.timedelta(hours=1),
        now + dt.timedelta(hours=1),
    )
    model, overhead = (r["Values"] for r in result["MetricDataResults"])
    assert model[0] == pytest.approx(2000, rel=0.02)  # 2 ms in microseconds, one bucket wide
    assert overhead == [1.0]


def test_captures_sampled_requests_in_sagemaker_layout(ports: FakePorts, monitor: Any) -> None:
    ids = [predict("ep") for _ in range(3)]
    predict("ep", BadRequestError("bad"))  # errors are not captured
    monitor.flush()
    keys = ports.store.list("datacapture/ep/AllTraffic/")
    assert len(keys) == 1 and keys[0].endswith(".jsonl")
    hour = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d/%H")
    assert f"datacapture/ep/AllTraffic/{hour}/" in keys[0]
    records = list(capture.parse_lines(ports.store.get_bytes(keys[0])))
    assert [r.inference_id for r in records] == ids
    assert json.loads(records[0].output_body) == {"predictions": [7]}
    rows = capture.to_rows(records, [{"name": "a", "type": "number"}])
    assert rows.columns["a"] == [1.0, 1.0, 1.0] and rows.predictions == [7, 7, 7]


def test_sampling_follows_the_endpoint_setting(ports: FakePorts, monitor: Any) -> None:
    from chalicelib.monitoring import service

    service.set_capture(ports.metadata, "quiet", service.CaptureConfig(sampling_percent=0))
    for _ in range(20):
        predict("quiet")
    monitor.set_sampling("half", 50.0)
    for _ in range(400):
        predict("half")
    monitor.flush()
    assert ports.store.list("datacapture/quiet/") == []
    (key,) = ports.store.list("datacapture/half/")
    captured = len(list(capture.parse_lines(ports.store.get_bytes(key))))
    assert 120 < captured < 280  # 50 % of 400, far from the tails
    assert sums(ports, {mon.ENDPOINT: "quiet"})[mon.INVOCATIONS] == 20  # counted regardless


def test_the_callers_inference_id_is_kept_when_valid() -> None:
    assert invocations.inference_id("order-42:a.b_c") == "order-42:a.b_c"
    for bad in (None, "", "has space", "x" * 129, "semi;colon"):
        made = invocations.inference_id(bad)
        assert made != bad and len(made) == 32


def test_in_a_lambda_every_request_is_flushed(ports: FakePorts, monkeypatch: Any) -> None:
    ports.settings.profile = "aws"
    lines: list[str] = []
    made = invocations.InvocationMonitor(lambda: ports, interval=10.0, inline=True)
    made._ensure_flusher = lambda: None  # type: ignore[method-assign]
    monkeypatch.setattr(invocations, "_monitor", made)
    import telemetry

    monkeypatch.setattr(
        telemetry.EmfSink, "emit", lambda self, points: lines.extend(mon.emf_documents(points))
    )
    predict("ep")
    # EMF lines were written and the capture object exists, with no flusher thread.
    assert any('"Invocations"' in line for line in lines)
    assert len(ports.store.list("datacapture/ep/")) == 1


def test_a_flush_without_ports_keeps_everything(ports: FakePorts) -> None:
    installed: list[FakePorts] = []

    def ports_of() -> FakePorts:
        if not installed:
            from chalicelib.errors import ServiceUnavailableError

            raise ServiceUnavailableError("no stack")
        return installed[0]

    made = invocations.InvocationMonitor(ports_of)
    made._ensure_flusher = lambda: None  # type: ignore[method-assign]
    made.set_sampling("ep", 100)
    made.record("ep", 1, 200, 100, 10)
    made.capture("ep", "id1", b"{}", "application/json", b'{"predictions":[]}')
    assert made.flush() == 0
    installed.append(ports)
    assert made.flush() > 0
    assert len(ports.store.list("datacapture/ep/")) == 1
