"""The OpenAPI 3.1 document for the REST API. Request schemas come from the same pydantic
models that validate the bodies; a test checks every Chalice route is described here."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from chalicelib.schemas import AliasSet, DatasetCreate, EndpointCreate, PipelineCreate, RunCreate

ERROR = {"$ref": "#/components/schemas/Error"}

# (method, path) -> (summary, request model, success status)
OPERATIONS: dict[tuple[str, str], tuple[str, type[BaseModel] | None, int]] = {
    ("GET", "/health"): ("Liveness and active profile", None, 200),
    ("GET", "/openapi.json"): ("This document", None, 200),
    ("GET", "/algorithms"): ("Algorithms, tasks and configurable hyperparameters", None, 200),
    ("POST", "/datasets"): ("Ingest a dataset version (inline or file source)", DatasetCreate, 201),
    ("POST", "/datasets/{name}/versions"): (
        "Upload a new dataset version as the request body (text/csv, application/json, "
        "application/x-ndjson, or Parquet as application/vnd.apache.parquet)",
        None,
        201,
    ),
    ("GET", "/datasets"): ("List datasets", None, 200),
    ("GET", "/datasets/{name}"): ("A dataset and its versions", None, 200),
    ("GET", "/datasets/{name}/versions/{version}"): (
        "A dataset version: schema, row count, profile, status",
        None,
        200,
    ),
    ("POST", "/pipelines"): ("Define a pipeline", PipelineCreate, 201),
    ("GET", "/pipelines"): ("List pipelines", None, 200),
    ("GET", "/pipelines/{name}"): ("A pipeline's spec", None, 200),
    ("POST", "/pipelines/{name}/runs"): (
        "Start a run (a Step Functions execution)",
        RunCreate,
        202,
    ),
    ("GET", "/pipelines/{name}/runs"): ("A pipeline's runs, newest first", None, 200),
    ("GET", "/runs/{run_id}"): ("A run: status, per-step status, metrics, model, error", None, 200),
    ("GET", "/runs/{run_id}/events"): ("The run's execution history", None, 200),
    ("GET", "/models"): ("List registered models", None, 200),
    ("GET", "/models/{name}"): ("A model: latest version and aliases", None, 200),
    ("GET", "/models/{name}/versions"): ("A model's versions", None, 200),
    ("GET", "/models/{name}/versions/{version}"): (
        "A model version: metrics, hyperparameters, data and code version, artefact",
        None,
        200,
    ),
    ("PUT", "/models/{name}/aliases/{alias}"): (
        "Point an alias at a version (endpoints following it are updated)",
        AliasSet,
        200,
    ),
    ("POST", "/endpoints"): (
        "Deploy a model version, or an alias, to an endpoint",
        EndpointCreate,
        201,
    ),
    ("GET", "/endpoints"): ("List endpoints", None, 200),
    ("GET", "/endpoints/{name}"): ("An endpoint and the model version it serves", None, 200),
    ("POST", "/endpoints/{name}/rollback"): ("Serve the previously served version", None, 200),
    ("POST", "/endpoints/{name}/invocations"): (
        "Predict (MLflow scoring protocol: dataframe_split, dataframe_records, instances, "
        "inputs, or text/csv with a header)",
        None,
        200,
    ),
}

_INVOCATION_BODY = {
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
}  # fmt: skip


def _path_params(path: str) -> list[dict[str, Any]]:
    names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    return [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1}
            if n == "version"
            else {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        }
        for n in names
    ]


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["Code", "Message"],
            "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}},
        }
    }
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, model, status) in OPERATIONS.items():
        op_id = method.lower() + "".join(c if c.isalnum() else "_" for c in path)
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": op_id,
            "responses": {
                str(status): {"description": "OK", "content": {"application/json": {}}},
                "400": _error_response("Bad request"),
                "404": _error_response("Not found"),
            },
        }
        if path not in ("/health", "/openapi.json"):
            op["security"] = [{"sigv4": []}]
        params = _path_params(path)
        if params:
            op["parameters"] = params
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            op["requestBody"] = {
                "required": model is not RunCreate,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        if path == "/datasets/{name}/versions":
            op["requestBody"] = {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/vnd.apache.parquet": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                },
            }
        if path.endswith("/invocations"):
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _INVOCATION_BODY},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlpipe — Machine Learning Pipeline API",
            "version": "1.0.0",
            "description": "Ingest, train, evaluate, register, deploy and predict. Errors are "
            '{"Code", "Message"} with a 4xx status for the caller\'s mistakes.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "On AWS: AWS Signature Version 4 (IAM). Not checked by "
                    "the local server, which listens on loopback.",
                }
            },
        },
    }
