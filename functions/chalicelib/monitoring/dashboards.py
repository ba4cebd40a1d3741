"""Dashboards as data: one definition per endpoint and one for pipelines, rendered

- into a CloudWatch dashboard body (``cloudwatch_body``): for the template (the pipelines
  dashboard, and an endpoints overview that uses SEARCH because endpoints are created at run
  time) and for ``PutDashboard`` when an endpoint is created (``put_dashboard_args``);
- into the local web page ``GET /dashboard`` (``html_page``): one self-contained HTML file
  (``dashboard.html`` beside this module: inline CSS and JavaScript, SVG charts drawn by the
  page itself, no build step, nothing fetched but the API's JSON). The definitions are
  embedded in the page, so both renderings show the same widgets.

A widget: ``id``, ``title``, ``kind`` (``line`` | ``bars`` | ``stacked`` | ``drift`` |
``accuracy`` | ``runs``), ``unit`` (how the page formats values), ``scale`` (the page divides
values by it: microseconds shown as ms), and ``metrics``: ``[{"metric", "stat", "label"}]``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from mlcontract import monitoring as mon

ENDPOINT_WIDGETS: list[dict[str, Any]] = [
    {
        "id": "requests",
        "title": "Requests",
        "kind": "line",
        "unit": "count",
        "metrics": [{"metric": mon.INVOCATIONS, "stat": "Sum", "label": "requests"}],
    },
    {
        "id": "errors",
        "title": "Errors",
        "kind": "stacked",
        "unit": "count",
        "metrics": [
            {"metric": mon.ERRORS_4XX, "stat": "Sum", "label": "4xx"},
            {"metric": mon.ERRORS_5XX, "stat": "Sum", "label": "5xx"},
        ],
    },
    {
        "id": "latency",
        "title": "Model latency",
        "kind": "line",
        "unit": "ms",
        "scale": 1000,
        "metrics": [
            {"metric": mon.MODEL_LATENCY, "stat": "p50", "label": "p50"},
            {"metric": mon.MODEL_LATENCY, "stat": "p90", "label": "p90"},
            {"metric": mon.MODEL_LATENCY, "stat": "p99", "label": "p99"},
        ],
    },
    {
        "id": "overhead",
        "title": "Overhead latency",
        "kind": "line",
        "unit": "ms",
        "scale": 1000,
        "metrics": [
            {"metric": mon.OVERHEAD_LATENCY, "stat": "p50", "label": "p50"},
            {"metric": mon.OVERHEAD_LATENCY, "stat": "p99", "label": "p99"},
        ],
    },
    {
        "id": "resources",
        "title": "CPU and memory",
        "kind": "line",
        "unit": "%",
        "metrics": [
            {"metric": mon.CPU, "stat": "Average", "label": "CPU"},
            {"metric": mon.MEMORY, "stat": "Average", "label": "memory"},
        ],
    },
    {"id": "drift", "title": "Feature drift (PSI)", "kind": "drift", "unit": "", "metrics": []},
    {
        "id": "accuracy",
        "title": "Accuracy on labelled traffic",
        "kind": "accuracy",
        "unit": "",
        "metrics": [
            {"metric": mon.ACCURACY, "stat": "Average", "label": "accuracy"},
            {"metric": mon.F1, "stat": "Average", "label": "F1"},
            {"metric": mon.RMSE, "stat": "Average", "label": "RMSE"},
            {"metric": mon.MAE, "stat": "Average", "label": "MAE"},
        ],
    },
]

PIPELINE_WIDGETS: list[dict[str, Any]] = [
    {
        "id": "runs",
        "title": "Runs",
        "kind": "bars",
        "unit": "count",
        "metrics": [
            {"metric": mon.RUNS_SUCCEEDED, "stat": "Sum", "label": "succeeded"},
            {"metric": mon.RUNS_FAILED, "stat": "Sum", "label": "failed"},
        ],
    },
    {
        "id": "steps",
        "title": "Step duration",
        "kind": "line",
        "unit": "s",
        "metrics": [{"metric": mon.STEP_DURATION, "stat": "Average", "label": "per step"}],
    },
    {
        "id": "jobs",
        "title": "Job CPU and memory",
        "kind": "line",
        "unit": "%",
        "metrics": [
            {"metric": mon.JOB_CPU, "stat": "Average", "label": "CPU"},
            {"metric": mon.JOB_MEMORY, "stat": "Average", "label": "memory"},
        ],
    },
    {"id": "recent", "title": "Recent runs", "kind": "runs", "unit": "s", "metrics": []},
]


def definitions() -> dict[str, Any]:
    return {"endpoint": ENDPOINT_WIDGETS, "pipeline": PIPELINE_WIDGETS}


# --- CloudWatch --------------------------------------------------------------------------


def _cw_metric(namespace: str, m: dict[str, Any], dims: dict[str, str], region: str) -> list[Any]:
    row: list[Any] = [namespace, m["metric"]]
    for k, v in dims.items():
        row += [k, v]
    row.append({"stat": m["stat"], "label": m["label"], "region": region})
    return row


def cloudwatch_body(
    kind: str,
    name: str,
    *,
    region: str,
    namespace: str = mon.NAMESPACE,
    period: int = 60,
) -> dict[str, Any]:
    """The CloudWatch dashboard body for one endpoint (``kind="endpoint"``) or pipeline.
    Drift and recent runs have no metric form there: drift shows ``FeatureDrift`` per
    feature through SEARCH; runs are left to the Step Functions console."""
    widgets = ENDPOINT_WIDGETS if kind == "endpoint" else PIPELINE_WIDGETS
    dims = {mon.ENDPOINT: name} if kind == "endpoint" else {mon.PIPELINE: name}
    out: list[dict[str, Any]] = []
    for i, w in enumerate(widgets):
        x, y = (i % 3) * 8, (i // 3) * 6
        props: dict[str, Any] = {
            "title": w["title"],
            "region": region,
            "period": period,
            "view": "timeSeries",
        }
        if w["kind"] == "drift":
            search = (
                f"SEARCH('{{{namespace},{mon.ENDPOINT},{mon.FEATURE}}} "
                f'MetricName="{mon.FEATURE_DRIFT}" {mon.ENDPOINT}="{name}"\', \'Maximum\', 3600)'
            )
            props.update(
                metrics=[[{"expression": search, "id": "drift", "label": ""}]], period=3600
            )
            props["annotations"] = {"horizontal": [{"label": "PSI 0.2", "value": 0.2}]}
        elif w["kind"] == "runs":
            continue
        elif w["id"] == "steps" and kind == "pipeline":
            where = f'MetricName="{mon.STEP_DURATION}" {mon.PIPELINE}="{name}"'
            search = (
                f"SEARCH('{{{namespace},{mon.PIPELINE},{mon.STEP}}} {where}', 'Average', {period})"
            )
            props["metrics"] = [[{"expression": search, "id": "steps", "label": ""}]]
        elif w["id"] == "jobs":
            search = (
                f"SEARCH('{{{namespace},{mon.PIPELINE},{mon.STEP}}} "
                f'(MetricName="{mon.JOB_CPU}" OR MetricName="{mon.JOB_MEMORY}") '
                f"{mon.PIPELINE}=\"{name}\"', 'Average', {period})"
            )
            props["metrics"] = [[{"expression": search, "id": "jobs", "label": ""}]]
        else:
            props["metrics"] = [_cw_metric(namespace, m, dims, region) for m in w["metrics"]]
            if w["kind"] in ("bars", "stacked"):
                props["stacked"] = True
        out.append({"type": "metric", "x": x, "y": y, "width": 8, "height": 6, "properties": props})
    return {"widgets": out}


def put_dashboard_args(
    kind: str, name: str, *, region: str, prefix: str = "mlpipe"
) -> dict[str, Any]:
    """``cloudwatch.put_dashboard(**args)`` (the API calls it when an endpoint is created)."""
    return {
        "DashboardName": f"{prefix}-{kind}-{name}"[:255],
        "DashboardBody": json.dumps(cloudwatch_body(kind, name, region=region)),
    }


# --- the local page ----------------------------------------------------------------------

_PLACEHOLDER = "/*__MLPIPE_DASHBOARD_CONFIG__*/null"


def html_page(api_base: str = "") -> str:
    """The dashboard page with the widget definitions (and the API's base path) inlined."""
    template = resources.files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")
    config = json.dumps({"apiBase": api_base, "widgets": definitions()}, separators=(",", ":"))
    # Inside <script>: "</" must not close the element.
    return template.replace(_PLACEHOLDER, config.replace("</", "<\\/"))
