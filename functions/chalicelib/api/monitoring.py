"""Monitoring routes: metrics (CloudWatch GetMetricData shape), data capture settings,
accuracy feedback and performance, drift checks, alarms and the dashboard page.

Handlers stay thin: the parsed input goes to ``chalicelib.monitoring.service``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chalice import Response

from chalicelib.api import Api, to_response
from chalicelib.errors import BadRequestError
from chalicelib.monitoring import alarms, dashboards, feedback, invocations, schedule, service
from chalicelib.names import Name
from chalicelib.runtime import ports

api = Api(__name__)


class AlarmBody(alarms.AlarmDefinition):
    """An alarm definition; its name is the path's (a ``name`` in the body must match)."""

    name: Name | None = None  # type: ignore[assignment]


@api.operation("/endpoints/{name}/metrics", "GET", query=service.MetricsParams)
def endpoint_metrics(name: str, query: service.MetricsParams) -> dict[str, Any]:
    """Endpoint metrics in the shape of CloudWatch GetMetricData.

    ``metric`` and ``stat`` are comma lists (every pair is queried; default: invocations,
    errors, latency percentiles, CPU and memory), ``period`` seconds (10, 30 or a multiple
    of 60), ``start``/``end`` ISO 8601 or epoch seconds (default: the last 3 hours),
    ``variant`` and ``version`` narrow the dimensions. Answers ``MetricDataResults`` with
    ``Label``, ``Timestamps`` and ``Values`` per series.
    """
    return service.endpoint_metrics(service.metrics_of(ports()), name, query)


@api.operation("/pipelines/{name}/metrics", "GET", query=service.MetricsParams)
def pipeline_metrics(name: str, query: service.MetricsParams) -> dict[str, Any]:
    """Pipeline metrics in the shape of CloudWatch GetMetricData.

    Default: RunsStarted, RunsSucceeded, RunsFailed (Sum) and one StepDuration series per
    step (Label = the step); ``step`` narrows to one step's duration.
    """
    return service.pipeline_metrics(service.metrics_of(ports()), name, query)


@api.operation("/endpoints/{name}/data-capture", "GET")
def get_data_capture(name: str) -> dict[str, Any]:
    """The endpoint's data capture settings (sampling percentage)."""
    return service.get_capture(ports().metadata, name)


@api.operation("/endpoints/{name}/data-capture", "PUT", body=service.CaptureConfig)
def put_data_capture(name: str, body: service.CaptureConfig) -> dict[str, Any]:
    """Set the percentage of requests captured (0-100) under datacapture/ in the object store.

    Captured requests and predictions are JSON lines in SageMaker's data-capture format and
    layout, each with the inference id returned in the X-Inference-Id response header.
    """
    config = service.set_capture(ports().metadata, name, body)
    invocations.monitor().set_sampling(name, body.sampling_percent if body.enabled else 0.0)
    return config


@api.operation("/endpoints/{name}/feedback", "POST", status=202, body=feedback.FeedbackBody)
def post_feedback(name: str, body: feedback.FeedbackBody) -> dict[str, Any]:
    """Ground truth by inference id: {"inference_id", "actuals": [one per row]} or a list.

    Joined with the captured predictions of that request for GET .../performance.
    """
    return service.post_feedback(ports().store, name, body.model_dump())


@api.operation("/endpoints/{name}/performance", "GET", query=service.MetricsParams)
def performance(name: str, query: service.MetricsParams) -> dict[str, Any]:
    """Accuracy and F1 (classification) or RMSE and MAE (regression) per time window.

    From the captured predictions joined with the feedback; ``period`` is the window
    (default 3600 s). The numbers are also put as metrics (Accuracy, F1, RMSE, MAE).
    """
    p = ports()
    model = service.model_of_endpoint(p, name)
    return service.endpoint_performance(
        p.store, service.metrics_of(p), name, model["task"], query, model["variants"]
    )


@api.operation("/endpoints/{name}/drift-checks", "POST", errors=(409,))
def drift_check(name: str) -> Any:
    """Run a drift check now over the drift window's captured traffic.

    Per feature against the served version's training baseline: PSI and Kolmogorov-Smirnov
    (numeric), PSI and chi-square (categorical). Locally it runs in the API and answers the
    report; on AWS it starts the drift processing job and answers 202 with its check id.
    """
    p = ports()
    now = dt.datetime.now(dt.UTC)
    if p.settings.profile == "aws":
        return to_response(schedule.start_check(p, name, now), 202)
    return service.drift_check_now(p, name, now)


@api.operation("/endpoints/{name}/drift", "GET")
def drift(name: str) -> dict[str, Any]:
    """The latest drift report: per feature its statistic, p-value, threshold and flag."""
    return service.latest_drift(ports().store, name)


@api.operation("/endpoints/{name}/alarms", "GET")
def list_alarms(name: str) -> dict[str, Any]:
    """The endpoint's alarms and their states (OK, ALARM, INSUFFICIENT_DATA)."""
    return {"alarms": service.list_alarms(ports().metadata, name)}


@api.operation("/endpoints/{name}/alarms/{alarm}", "PUT", body=AlarmBody)
def put_alarm(name: str, alarm: str, body: AlarmBody) -> dict[str, Any]:
    """Define an alarm on a metric (or a ratio of two): threshold, periods, actions.

    Actions on entering ALARM: rollback (serve the previous version), retrain (start a run
    of the pipeline that produced the model), notify.
    """
    if body.name is not None and body.name != alarm:
        raise BadRequestError(f"the body names alarm {body.name!r}, the path {alarm!r}")
    p = ports()
    item = service.put_alarm(p.metadata, name, {**body.model_dump(exclude={"name"}), "name": alarm})
    schedule.sync_alarm(p, name, alarm, item["definition"])
    return item


@api.operation("/endpoints/{name}/alarms/{alarm}", "DELETE")
def delete_alarm(name: str, alarm: str) -> dict[str, Any]:
    """Delete an alarm."""
    p = ports()
    deleted = service.delete_alarm(p.metadata, name, alarm)
    schedule.sync_alarm(p, name, alarm, None)
    return deleted


@api.operation("/dashboard", "GET")
def dashboard() -> Response:
    """The monitoring dashboard (HTML): per endpoint and pipeline, no build step."""
    # Relative API paths: the page is served by the API it reads.
    return Response(
        dashboards.html_page(),
        status_code=200,
        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
    )
