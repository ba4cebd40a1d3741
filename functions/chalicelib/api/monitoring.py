"""Monitoring routes (a Chalice Blueprint; app.py registers it: see INTEGRATION-monitoring.md).

Handlers are one to three lines: parse, call ``chalicelib.monitoring.service``, return.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from chalice import Blueprint, Response
from pydantic import BaseModel

from chalicelib.api import parse_json
from chalicelib.errors import BadRequestError, MLPipeError
from chalicelib.monitoring import dashboards, service
from chalicelib.names import check_name
from chalicelib.runtime import ports

bp = Blueprint(__name__)
log = logging.getLogger("mlpipe.api.monitoring")

# (method, path) -> (summary, request model, success status): for chalicelib.openapi.
OPERATIONS: dict[tuple[str, str], tuple[str, type[BaseModel] | None, int]] = {
    ("GET", "/endpoints/{name}/metrics"): (
        "Endpoint metrics in the shape of CloudWatch GetMetricData "
        "(?metric=&stat=&period=&start=&end=&variant=&version=)",
        None,
        200,
    ),
    ("GET", "/pipelines/{name}/metrics"): (
        "Pipeline metrics (GetMetricData shape; ?step=)",
        None,
        200,
    ),
    ("GET", "/endpoints/{name}/data-capture"): ("The endpoint's data capture settings", None, 200),
    ("PUT", "/endpoints/{name}/data-capture"): (
        "Set the sampling percentage",
        service.CaptureConfig,
        200,
    ),
    ("POST", "/endpoints/{name}/feedback"): ("Ground truth by inference id", None, 202),
    ("GET", "/endpoints/{name}/performance"): ("Accuracy/F1 or RMSE/MAE per window", None, 200),
    ("POST", "/endpoints/{name}/drift-checks"): ("Run a drift check now", None, 200),
    ("GET", "/endpoints/{name}/drift"): ("The latest drift report, per feature", None, 200),
    ("GET", "/endpoints/{name}/alarms"): ("Alarms and their states", None, 200),
    ("PUT", "/endpoints/{name}/alarms/{alarm}"): ("Define an alarm", None, 200),
    ("DELETE", "/endpoints/{name}/alarms/{alarm}"): ("Delete an alarm", None, 200),
    ("GET", "/dashboard"): ("The monitoring dashboard (HTML)", None, 200),
}


def _api(fn: Callable[..., Any]) -> Callable[..., Any]:
    """As app.py's ``api``: domain errors -> their 4xx, anything else a bare logged 500."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MLPipeError as exc:
            if exc.status_code >= 500:
                log.error("%s: %s", exc.code, exc.message)
            return Response({"Code": exc.code, "Message": exc.message}, status_code=exc.status_code)
        except Exception:
            log.exception("unhandled error in %s", fn.__name__)
            return Response({"Code": "InternalError", "Message": "internal error"}, status_code=500)

    return wrapper


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _json() -> Any:
    request = bp.current_request
    raw = (request.raw_body if request is not None else b"") or b""
    return parse_json(raw or b"null")  # strict: bounded nesting, no NaN or Infinity


def _query() -> dict[str, str]:
    request = bp.current_request
    return dict(request.query_params or {}) if request is not None else {}


@bp.route("/endpoints/{name}/metrics", methods=["GET"])
@_api
def endpoint_metrics(name: str) -> dict[str, Any]:
    params = service.MetricsParams.parse(_query())
    return service.endpoint_metrics(
        service.metrics_of(ports()), _name(name, "endpoint name"), params
    )


@bp.route("/pipelines/{name}/metrics", methods=["GET"])
@_api
def pipeline_metrics(name: str) -> dict[str, Any]:
    params = service.MetricsParams.parse(_query())
    return service.pipeline_metrics(
        service.metrics_of(ports()), _name(name, "pipeline name"), params
    )


@bp.route("/endpoints/{name}/data-capture", methods=["GET"])
@_api
def get_data_capture(name: str) -> dict[str, Any]:
    return service.get_capture(ports().metadata, _name(name, "endpoint name"))


@bp.route("/endpoints/{name}/data-capture", methods=["PUT"])
@_api
def put_data_capture(name: str) -> dict[str, Any]:
    config = service.parse_body(service.CaptureConfig, _json())
    return service.set_capture(ports().metadata, _name(name, "endpoint name"), config)


@bp.route("/endpoints/{name}/feedback", methods=["POST"])
@_api
def post_feedback(name: str) -> Response:
    accepted = service.post_feedback(ports().store, _name(name, "endpoint name"), _json())
    return Response(accepted, status_code=202)


@bp.route("/endpoints/{name}/performance", methods=["GET"])
@_api
def performance(name: str) -> dict[str, Any]:
    p = ports()
    endpoint = _name(name, "endpoint name")
    model = service.model_of_endpoint(p, endpoint)
    params = service.MetricsParams.parse(_query())
    return service.endpoint_performance(
        p.store, service.metrics_of(p), endpoint, model["task"], params, model["variants"]
    )


@bp.route("/endpoints/{name}/drift-checks", methods=["POST"])
@_api
def drift_check(name: str) -> dict[str, Any]:
    return service.drift_check_now(ports(), _name(name, "endpoint name"), dt.datetime.now(dt.UTC))


@bp.route("/endpoints/{name}/drift", methods=["GET"])
@_api
def drift(name: str) -> dict[str, Any]:
    return service.latest_drift(ports().store, _name(name, "endpoint name"))


@bp.route("/endpoints/{name}/alarms", methods=["GET"])
@_api
def list_alarms(name: str) -> dict[str, Any]:
    return {"alarms": service.list_alarms(ports().metadata, _name(name, "endpoint name"))}


@bp.route("/endpoints/{name}/alarms/{alarm}", methods=["PUT"])
@_api
def put_alarm(name: str, alarm: str) -> dict[str, Any]:
    body = _json()
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object (an alarm definition)")
    body = {**body, "name": _name(alarm, "alarm name")}
    return service.put_alarm(ports().metadata, _name(name, "endpoint name"), body)


@bp.route("/endpoints/{name}/alarms/{alarm}", methods=["DELETE"])
@_api
def delete_alarm(name: str, alarm: str) -> dict[str, Any]:
    return service.delete_alarm(
        ports().metadata, _name(name, "endpoint name"), _name(alarm, "alarm name")
    )


@bp.route("/dashboard", methods=["GET"])
@_api
def dashboard() -> Response:
    # Relative API paths: the page is served by the API it reads (a stage prefix on API
    # Gateway is part of the page's own URL, so fetches resolve under it).
    return Response(
        dashboards.html_page(),
        status_code=200,
        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
    )
