"""Endpoint routes: deploy, inspect, roll back, delete, predict."""

from __future__ import annotations

from typing import Any

from chalice import Response

from chalicelib import deployment, deployments
from chalicelib.api import Api, request_bytes, to_response
from chalicelib.deployments import DeploymentCreate
from chalicelib.monitoring import invocations
from chalicelib.monitoring import service as monitoring_service
from chalicelib.monitoring.service import CaptureConfig
from chalicelib.runtime import ports
from chalicelib.schemas import EndpointCreate
from mlcontract import capture

api = Api(__name__)

_INVOCATION_BODY = {
    "application/json": {
        "oneOf": [
            {"type": "object", "required": ["dataframe_split"],
             "properties": {"dataframe_split": {"type": "object", "properties": {
                 "columns": {"type": "array", "items": {"type": "string"}},
                 "data": {"type": "array", "items": {"type": "array"}}}}}},
            {"type": "object", "required": ["dataframe_records"],
             "properties": {"dataframe_records": {"type": "array", "items": {"type": "object"}}}},
            {"type": "object", "required": ["instances"],
             "properties": {"instances": {"type": "array"}}},
            {"type": "object", "required": ["inputs"],
             "properties": {"inputs": {"oneOf": [{"type": "array"}, {"type": "object"}]}}},
        ]
    },
    "text/csv": {"type": "string"},
}  # fmt: skip


@api.operation("/endpoints", "POST", status=201, body=EndpointCreate, errors=(409,))
def create_endpoint(body: EndpointCreate) -> dict[str, Any]:
    """Deploy a model version, or an alias (the endpoint then follows it), to an endpoint.

    ``data_capture_percent`` sets the share of requests captured (monitoring).
    """
    created = deployment.create(ports(), body)
    if body.data_capture_percent is not None:
        monitoring_service.set_capture(
            ports().metadata, body.name, CaptureConfig(sampling_percent=body.data_capture_percent)
        )
        invocations.monitor().set_sampling(body.name, body.data_capture_percent)
    return created


@api.operation("/endpoints", "GET")
def list_endpoints() -> dict[str, Any]:
    """List endpoints."""
    return {"endpoints": deployment.list_all(ports())}


@api.operation("/endpoints/{name}", "GET")
def get_endpoint(name: str) -> dict[str, Any]:
    """An endpoint: the model version it serves, its status and history."""
    return deployment.get(ports(), name)


@api.operation("/endpoints/{name}", "DELETE", errors=(409,))
def delete_endpoint(name: str) -> dict[str, Any]:
    """Delete an endpoint (its model versions stay registered)."""
    deployment.delete(ports(), name)
    return {"name": name, "deleted": True}


@api.operation("/endpoints/{name}/rollback", "POST", errors=(409,))
def rollback_endpoint(name: str) -> dict[str, Any]:
    """Serve the previously served version again (a followed alias moves back too)."""
    return deployment.rollback(ports(), name)


@api.operation(
    "/endpoints/{name}/invocations",
    "POST",
    content_types=["application/json", "text/csv"],
    raw_body=_INVOCATION_BODY,
    errors=(409, 503),
)
def invoke_endpoint(name: str) -> Response:
    """Predict (MLflow scoring protocol).

    JSON with exactly one of dataframe_split, dataframe_records, instances or inputs, or
    text/csv with a header; at most 10,000 rows. Rows are checked against the model's
    signature. The answer names the model version that answered (during a canary, either)
    and carries an X-Inference-Id header (the caller's, if it sent a valid one): the key of
    the captured request, to send feedback with. Requests are counted and timed, and
    sampled into data capture (monitoring).
    """
    request = api.current_request
    content_type = request.headers.get("content-type", "application/json")
    with invocations.observe(name, request.headers.get("x-inference-id")) as seen:
        result = deployment.invoke(
            ports(), name, request_bytes(request), content_type, seen.trace, seen.inference_id
        )
        return to_response(result, headers={capture.INFERENCE_ID_HEADER: seen.inference_id})


@api.operation(
    "/endpoints/{name}/deployments", "POST", status=202, body=DeploymentCreate, errors=(409,)
)
def create_deployment(name: str, body: DeploymentCreate) -> dict[str, Any]:
    """Deploy a model version (or an alias's version) by a guarded strategy.

    strategy: all_at_once {bake_seconds}, canary {percent, bake_seconds}, linear
    {step_percent, interval_seconds} or shadow {bake_seconds} (a copy of the traffic,
    answers recorded, never returned). rollback_on: {error_rate, p99_ms, min_requests}; a
    breach while the new version bakes sends the traffic back and moves the alias back.
    Answers 202 with the deployment's id; its status is IN_PROGRESS, BAKING, COMPLETED or
    ROLLED_BACK (with the reason).
    """
    return deployments.create(ports(), name, body)


@api.operation("/endpoints/{name}/deployments", "GET")
def list_deployments(name: str) -> dict[str, Any]:
    """The endpoint's guarded deployments, oldest first."""
    return {"deployments": deployments.list_for(ports(), name)}


@api.operation("/endpoints/{name}/deployments/{deployment_id}", "GET")
def get_deployment(name: str, deployment_id: str) -> dict[str, Any]:
    """A guarded deployment: status, traffic share of the new version, what was observed."""
    return deployments.get(ports(), name, deployment_id)
