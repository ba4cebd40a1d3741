"""Step handlers for scheduled monitoring (``def handler(ports, event) -> dict``, the shape of
the step registry being written on main).

On AWS an EventBridge schedule (every ``MLPIPE_DRIFT_SCHEDULE_MINUTES``) starts one execution
of a small monitoring state machine per endpoint (or the generic one with a monitoring
branch): ``StartDriftCheck`` -> Wait (``poll_seconds``) -> ``CheckDriftCheck`` -> Choice
(loop while ``InProgress``) -> ``EvaluateMonitoring``. The drift computation runs as the
``drift.py`` SageMaker processing job because scipy does not fit in the Lambda bundle.
Locally the same handlers run from the local stack's monitoring loop, the job as a local
process (or ``service.drift_check_now`` in-process).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from chalicelib.errors import BadRequestError, StepError
from chalicelib.ports import JobSpec
from chalicelib.settings import get_settings as get_monitoring_settings
from mlcontract import monitoring as mon

from . import service


def _now(event: dict[str, Any]) -> dt.datetime:
    return mon.parse_time(event["now"]) if event.get("now") else dt.datetime.now(dt.UTC)


def start_drift_check(ports: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Event ``{"endpoint", "now"?}``. Writes the baseline and signature the job reads and
    starts ``drift.py`` over the endpoint's captures of the last ``drift_window_hours``."""
    endpoint = event["endpoint"]
    now = _now(event)
    settings = get_monitoring_settings()
    model = service.model_of_endpoint(ports, endpoint)
    if not model["baseline_key"]:
        raise StepError(f"model {model['model']!r} v{model['model_version']} has no drift baseline")
    check_id = now.strftime("%Y%m%dT%H%M%SZ")
    base = f"monitoring/{endpoint}/drift-runs/{check_id}"
    ports.store.put_bytes(
        f"{base}/input/baseline.json", ports.store.get_bytes(model["baseline_key"])
    )
    ports.store.put_bytes(
        f"{base}/input/signature.json", json.dumps({"inputs": model["signature"]}).encode()
    )
    name = f"mlp-drift-{endpoint}-{check_id}"[:63].replace("_", "-").replace(".", "-")
    start = now - dt.timedelta(hours=settings.drift_window_hours)
    ports.jobs.start(
        JobSpec(
            name=name,
            kind="processing",
            entry_point="drift.py",
            arguments={
                "endpoint": endpoint,
                "start": mon.iso(start),
                "end": mon.iso(now),
                "psi-threshold": str(settings.drift_psi_threshold),
                "p-value-threshold": str(settings.drift_p_value_threshold),
            },
            # The whole capture prefix of the endpoint: the job filters by time. An S3
            # lifecycle rule on the capture prefix bounds how much that is.
            inputs={
                "baseline": f"{base}/input",
                "capture": f"{settings.capture_prefix}/{endpoint}",
            },
            output_prefix=f"{base}/output",
        )
    )
    return {
        "endpoint": endpoint,
        "check_id": check_id,
        "name": name,
        "kind": "processing",
        "status": "InProgress",
    }


def check_drift_check(ports: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Event: what ``start_drift_check`` returned. While the job runs: ``InProgress``;
    when it is done: the report becomes the endpoint's latest and its metrics are put."""
    status = ports.jobs.describe(event["name"], "processing")
    if status.status in ("Failed", "Stopped"):
        raise StepError(
            f"drift check {event['name']} {status.status.lower()}: {status.failure_reason}"
        )
    if status.status != "Completed":
        return {**event, "status": "InProgress"}
    out = (
        status.outputs.get("output")
        or f"monitoring/{event['endpoint']}/drift-runs/{event['check_id']}/output"
    )
    report = json.loads(ports.store.get_bytes(f"{out}/drift.json"))
    report["checked_at"] = mon.iso(dt.datetime.now(dt.UTC))
    body = json.dumps(report, allow_nan=False).encode()
    ports.store.put_bytes(service.drift_key(event["endpoint"], event["check_id"]), body)
    ports.store.put_bytes(service.drift_key(event["endpoint"], "latest"), body)
    metrics = json.loads(ports.store.get_bytes(f"{out}/metrics.json"))
    service.metrics_of(ports).put(metrics["Namespace"], metrics["MetricData"])
    return {**event, "status": "Completed", "drifted_features": report["drifted_features"]}


def evaluate_monitoring(ports: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Event ``{"endpoint", "now"?}``: performance over the drift window (metrics put) and
    the endpoint's alarms evaluated (actions fired on entering ALARM). Locally the monitoring
    loop calls this; on AWS CloudWatch evaluates the alarms and this only computes quality."""
    endpoint = event["endpoint"]
    now = _now(event)
    settings = get_monitoring_settings()
    metrics = service.metrics_of(ports)
    model = service.model_of_endpoint(ports, endpoint)
    window = service.MetricsParams(
        start=mon.iso(now - dt.timedelta(hours=settings.drift_window_hours)),
        end=mon.iso(now),
        period=3600,
    )
    try:
        perf = service.endpoint_performance(
            ports.store, metrics, endpoint, model["task"], window, model["variants"], now
        )
    except BadRequestError:
        perf = None
    states = []
    if settings.alarm_topic_arn == "":  # no CloudWatch alarms: evaluate here
        states = service.evaluate_alarms(ports, ports.metadata, metrics, endpoint, now)
    overall = (perf or {}).get("overall") or {}
    return {
        "endpoint": endpoint,
        "labelled_rows": overall.get("labelled_rows", 0),
        "alarms": {s["definition"]["name"]: s["state"] for s in states},
    }
