"""The local stack's monitoring loop: what CloudWatch, EventBridge and SageMaker's data
capture do on AWS, done by one daemon thread of the stack.

Every ``flush_seconds`` (<= 10):
  - pull each model server's ``GET /metrics`` (``telemetry.Telemetry.drain``: the data
    points since the last pull), add the per-endpoint and per-variant rollups
    (``mlcontract.monitoring.with_rollups``) and put them into the metrics store;
Every ``alarm_evaluation_seconds``: evaluate each endpoint's alarms (``service.evaluate_alarms``
  via ``steps.evaluate_monitoring``), firing rollback/retrain hooks on entering ALARM;
Every ``drift_schedule_minutes``: a drift check per endpoint (in-process,
  ``service.drift_check_now``) — the schedule EventBridge runs on AWS;
Once an hour: prune metrics older than ``metrics_retention_days``.

``servers`` is a callable returning ``{endpoint: base_url}`` of the running model servers
(the serving work's supervisor knows them); ``endpoints`` the endpoints to check. ``tick``
does one round and is what tests drive; ``start``/``stop`` run it on a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.monitoring import schedule, service, steps
from chalicelib.monitoring.store import MetricsStore
from chalicelib.settings import Settings as MonitoringSettings
from chalicelib.settings import get_settings as get_monitoring_settings
from mlcontract import monitoring as mon

log = logging.getLogger("mlpipe.local.monitoring")
# Imported for its alarm actions (rollback, retrain), registered on import.
ALARM_ACTIONS = schedule.alarms.ACTIONS


def pull(base_url: str, timeout: float = 2.0) -> dict[str, Any]:
    """One model server's buffered metrics (loopback only: the stack's own servers)."""
    if not base_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError(f"refusing to pull metrics from a non-loopback address {base_url!r}")
    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=timeout) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


# What a model server measures that the API in front of it cannot: its own process.
RESOURCE_METRICS = frozenset({"CPUUtilization", "MemoryUtilization"})


class MonitoringLoop:
    def __init__(
        self,
        ports: Any,
        metrics: MetricsStore,
        servers: Callable[[], Mapping[str, str]],
        endpoints: Callable[[], list[str]] | None = None,
        settings: MonitoringSettings | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        server_metrics: frozenset[str] | None = None,
    ) -> None:
        """``server_metrics``: the metric names kept from the servers' pulls (None: all);
        the stack keeps only ``RESOURCE_METRICS``, since its API counts every invocation."""
        self.ports = ports
        self.server_metrics = server_metrics
        self.metrics = metrics
        self.servers = servers
        self.endpoints = endpoints or (lambda: list(servers()))
        self.settings = settings or get_monitoring_settings()
        self.clock = clock
        self._last: dict[str, dt.datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def _due(self, what: str, every: dt.timedelta, now: dt.datetime) -> bool:
        last = self._last.get(what)
        if last is None or now - last >= every:
            self._last[what] = now
            return True
        return False

    def collect(self) -> int:
        """Pull every server once; returns the number of data points stored."""
        stored = 0
        for endpoint, url in self.servers().items():
            try:
                body = pull(url)
            except (OSError, ValueError) as exc:  # a server restarting: next round
                self._note(f"metrics of {endpoint}: {exc}")
                continue
            data = body.get("MetricData", [])
            if self.server_metrics is not None:
                data = [d for d in data if d.get("MetricName") in self.server_metrics]
            points = list(mon.with_rollups(data))
            if points:
                self.metrics.put(body.get("Namespace", mon.NAMESPACE), points)
                stored += len(points)
        return stored

    def tick(self) -> dict[str, Any]:
        now = self.clock()
        s = self.settings
        done: dict[str, Any] = {"stored": self.collect()}
        if self._due("alarms", dt.timedelta(seconds=s.alarm_evaluation_seconds), now):
            for endpoint in self.endpoints():
                try:
                    done.setdefault("monitoring", {})[endpoint] = steps.evaluate_monitoring(
                        self.ports, {"endpoint": endpoint, "now": mon.iso(now)}
                    )
                except Exception as exc:
                    self._note(f"alarms of {endpoint}: {type(exc).__name__}: {exc}")
        if self._due("drift", dt.timedelta(minutes=s.drift_schedule_minutes), now):
            for endpoint in self.endpoints():
                try:
                    report = service.drift_check_now(self.ports, endpoint, now)
                    done.setdefault("drift", {})[endpoint] = report["drifted_features"]
                except Exception as exc:  # no traffic yet, no baseline: not an outage
                    self._note(f"drift check of {endpoint}: {type(exc).__name__}: {exc}")
        prune = getattr(self.metrics, "prune", None)
        if prune is not None and self._due("prune", dt.timedelta(hours=1), now):
            prune(now - dt.timedelta(days=s.metrics_retention_days))
        return done

    def _note(self, message: str) -> None:
        log.info("%s", message)
        self.errors = [*self.errors[-99:], message]

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="monitoring", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.metrics_flush_seconds):
            try:
                self.tick()
            except Exception:
                log.exception("monitoring round failed")

    def stop(self) -> None:
        """Stop, after a last pull so the servers' final metrics are kept."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        try:
            self.collect()
        except Exception:
            log.exception("last metrics pull failed")
