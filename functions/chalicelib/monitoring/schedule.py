"""Scheduled monitoring: what runs every ``drift_schedule_minutes`` for every endpoint.

- AWS: the EventBridge rule ``DriftCheckSchedule`` invokes the ``monitor`` Lambda
  (``app.py``), which calls ``scheduled_round``: per endpoint, collect the drift check the
  previous round started (``steps.check_drift_check``: its report becomes the latest and its
  FeatureDrift metrics are put), start a new one (``steps.start_drift_check``: the
  ``drift.py`` processing job, since scipy does not fit in a Lambda), and compute the
  model-quality metrics (``steps.evaluate_monitoring``). The job in flight is remembered in
  the metadata store (``monitoring/driftjob/<endpoint>``), so a check that takes longer
  than one period is collected by a later round.
- Local: the stack's monitoring loop (``iac/local/monitoring_loop.py``) runs the check
  in-process (``service.drift_check_now``) on the same schedule.

Also here: the alarm actions ``rollback`` and ``retrain`` wired to the deployment and runs
modules (``alarms.register_action``), registered on import.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from chalicelib import tables
from chalicelib.errors import MLPipeError, NotFoundError
from chalicelib.ports import Write

from . import alarms, service, steps

log = logging.getLogger("mlpipe.monitoring.schedule")


def _job_key(endpoint: str) -> str:
    return f"driftjob/{endpoint}"


def start_check(ports: Any, endpoint: str, now: dt.datetime) -> dict[str, Any]:
    """Start the drift processing job for ``endpoint`` (AWS ``POST .../drift-checks``)."""
    service.model_of_endpoint(ports, endpoint)  # 404 for an unknown endpoint
    job = steps.start_drift_check(ports, {"endpoint": endpoint, "now": now.isoformat()})
    ports.metadata.put(Write(service.MONITORING_TABLE, _job_key(endpoint), job))
    return job


def collect_check(ports: Any, endpoint: str) -> dict[str, Any] | None:
    """Finish the endpoint's drift job if it is done; None when there is none."""
    rec = ports.metadata.get(service.MONITORING_TABLE, _job_key(endpoint))
    if rec is None:
        return None
    try:
        out = steps.check_drift_check(ports, rec.item)
    except MLPipeError as exc:  # failed or stopped: forget it, the next round starts anew
        ports.metadata.delete(service.MONITORING_TABLE, _job_key(endpoint))
        return {**rec.item, "status": "Failed", "error": exc.message}
    if out["status"] != "InProgress":
        ports.metadata.delete(service.MONITORING_TABLE, _job_key(endpoint))
    return out


def scheduled_round(ports: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """One scheduled round over every endpoint (the ``monitor`` Lambda on AWS)."""
    now = now or dt.datetime.now(dt.UTC)
    done: dict[str, Any] = {}
    for rec in ports.metadata.query(tables.ENDPOINTS):
        endpoint = rec.item["name"]
        entry: dict[str, Any] = {}
        try:
            collected = collect_check(ports, endpoint)
            if collected is not None:
                entry["collected"] = collected["status"]
            if collected is None or collected["status"] != "InProgress":
                entry["started"] = start_check(ports, endpoint, now)["check_id"]
        except MLPipeError as exc:  # no baseline, no model: not an outage
            entry["drift_error"] = exc.message
        try:
            entry["monitoring"] = steps.evaluate_monitoring(
                ports, {"endpoint": endpoint, "now": now.isoformat()}
            )
        except MLPipeError as exc:
            entry["monitoring_error"] = exc.message
        done[endpoint] = entry
    return done


# --- CloudWatch alarms (AWS) ------------------------------------------------------------------


def cloudwatch_alarm_name(ports: Any, endpoint: str, alarm: str) -> str:
    """Alarms are named ``<stack>-<endpoint>-<alarm>`` (the functions role may change only
    its stack's alarms)."""
    return f"{ports.settings.stack_name}-{endpoint}-{alarm}"[:255]


def sync_alarm(ports: Any, endpoint: str, alarm: str, definition: dict[str, Any] | None) -> None:
    """On AWS, mirror a stored alarm definition as a CloudWatch alarm (None: delete it);
    locally the monitoring loop evaluates the stored definitions and nothing happens here."""
    if ports.settings.profile != "aws":
        return
    from chalicelib import aws
    from chalicelib.adapters.cloudwatch import CloudWatchAlarms

    cloudwatch = CloudWatchAlarms(aws.client("cloudwatch"))
    name = cloudwatch_alarm_name(ports, endpoint, alarm)
    if definition is None:
        cloudwatch.delete(name)
        return
    parsed = alarms.AlarmDefinition.model_validate(definition)
    topic = ports.settings.alarm_topic_arn
    args = alarms.put_metric_alarm_args(parsed, [topic] if topic and parsed.actions else [])
    args["AlarmName"] = name
    cloudwatch.put(args)


def on_alarm_notification(ports: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The ``alarm_action`` Lambda (subscribed to ``MonitoringAlarmTopic``): a CloudWatch
    alarm of an endpoint entered ALARM -> run its definition's actions (rollback, retrain),
    as the local monitoring loop does when it evaluates the alarm itself."""
    done: dict[str, Any] = {}
    for record in event.get("Records") or []:
        try:
            message = json.loads(record["Sns"]["Message"])
        except (KeyError, TypeError, ValueError):
            continue
        if not isinstance(message, dict):
            continue
        name = str(message.get("AlarmName", ""))
        if message.get("NewStateValue") != "ALARM":
            done[name] = "ignored"
            continue
        for rec in ports.metadata.query(service.MONITORING_TABLE, "alarm/"):
            endpoint = rec.item["endpoint"]
            definition = alarms.AlarmDefinition.model_validate(rec.item["definition"])
            if cloudwatch_alarm_name(ports, endpoint, definition.name) != name:
                continue
            result = alarms.AlarmResult(
                name=definition.name,
                state="ALARM",
                previous_state=message.get("OldStateValue") or "OK",
                reason=str(message.get("NewStateReason", ""))[:1000],
                datapoints=[],
                evaluated_at=str(message.get("StateChangeTime", "")),
                changed=True,
                threshold=definition.threshold,
                comparison_operator=definition.comparison_operator,
            )
            done[name] = alarms.fire(ports, endpoint, definition, result)
    return done


# --- alarm actions ---------------------------------------------------------------------------


def _rollback(ports: Any, endpoint: str, definition: Any, result: Any) -> None:
    from chalicelib import deployment

    rolled = deployment.rollback(ports, endpoint)
    log.warning(
        "alarm %s: endpoint %s rolled back from v%s to v%s",
        definition.name, endpoint, rolled["rolled_back_from"], rolled["model_version"],
    )  # fmt: skip


def _retrain(ports: Any, endpoint: str, definition: Any, result: Any) -> None:
    from chalicelib import runs
    from chalicelib.schemas import RunCreate

    model = service.model_of_endpoint(ports, endpoint)
    pipeline = model["version"].get("pipeline")
    if not pipeline:
        raise NotFoundError(f"the model served by {endpoint!r} names no pipeline to retrain")
    run = runs.start(ports, pipeline, RunCreate())
    log.warning("alarm %s: retraining %s (run %s)", definition.name, pipeline, run["run_id"])


alarms.register_action("rollback", _rollback)
alarms.register_action("retrain", _retrain)
