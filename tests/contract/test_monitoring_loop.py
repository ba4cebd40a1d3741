"""The local stack's monitoring loop pulls a model server's GET /metrics over real loopback
HTTP into the metrics store: after traffic, the counts match what was sent, exactly, per
endpoint and per variant; latencies plausibly."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import telemetry
from chalicelib.monitoring.store import MetricQuery
from chalicelib.settings import Settings as MonitoringSettings
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.monitoring_loop import MonitoringLoop, pull
from mlcontract import monitoring as mon


@pytest.fixture
def model_server() -> Iterator[tuple[str, telemetry.Telemetry]]:
    """The part of a model server that matters here: GET /metrics -> Telemetry.drain."""
    tel = telemetry.Telemetry("flowers", 2, variant="AllTraffic")
    tel.start(telemetry.BufferSink(), interval=10)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, ctype = telemetry.metrics_response(tel)
            self.send_response(status)
            self.send_header("Content-Type", ctype.decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", tel
    finally:
        tel.stop()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_counts_after_traffic_match_what_was_sent(model_server, tmp_path: Path) -> None:
    url, tel = model_server
    store = SqliteMetricsStore(tmp_path / "metrics.sqlite3")
    settings = MonitoringSettings(alarm_evaluation_seconds=3600, drift_schedule_minutes=1440)
    loop = MonitoringLoop(
        None, store, servers=lambda: {"flowers": url}, endpoints=lambda: [], settings=settings
    )
    rng = random.Random(4)
    sent = {"AllTraffic": [0, 0, 0], "canary": [0, 0, 0]}
    latencies = []
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for _round in range(3):  # three pulls, traffic in between
        for _ in range(2000):
            variant = "canary" if rng.random() < 0.1 else "AllTraffic"
            status = rng.choices([200, 400, 500], [0.95, 0.03, 0.02])[0]
            lat = int(rng.lognormvariate(7, 0.5))
            latencies.append(lat)
            tel.record(variant, status, lat, 80)
            sent[variant][0] += 1
            sent[variant][1] += status == 400
            sent[variant][2] += status == 500
        assert loop.tick()["stored"] > 0
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)

    def total(metric: str, dims: dict[str, str], stat: str = "Sum") -> float:
        q = MetricQuery("q", metric, dims, stat, 3600 * 24)
        values = store.get_metric_data([q], start - dt.timedelta(days=1), end)["MetricDataResults"][
            0
        ]["Values"]
        return sum(values)

    ep = {mon.ENDPOINT: "flowers"}
    assert total(mon.INVOCATIONS, ep) == 6000
    for variant, (n, e4, e5) in sent.items():
        dims = {**ep, mon.VARIANT: variant}
        assert total(mon.INVOCATIONS, dims) == n
        assert total(mon.ERRORS_4XX, dims) == e4
        assert total(mon.ERRORS_5XX, dims) == e5
        assert total(mon.INVOCATIONS, {**dims, mon.MODEL_VERSION: "2"}) == n
    p50 = total(mon.MODEL_LATENCY, ep, "p50")
    assert p50 == pytest.approx(sorted(latencies)[len(latencies) // 2], rel=0.05)
    assert total(mon.MODEL_LATENCY, ep, "SampleCount") == 6000
    assert total(mon.CPU, {**ep, mon.VARIANT: "AllTraffic"}, "SampleCount") >= 1


def test_a_server_that_is_down_is_skipped_and_noted(tmp_path: Path) -> None:
    store = SqliteMetricsStore(tmp_path / "m.sqlite3")
    loop = MonitoringLoop(
        None, store, servers=lambda: {"gone": "http://127.0.0.1:9"}, endpoints=lambda: []
    )
    assert loop.tick()["stored"] == 0
    assert loop.errors and "gone" in loop.errors[0]
    with pytest.raises(ValueError, match="non-loopback"):
        pull("http://10.0.0.1:8080")
