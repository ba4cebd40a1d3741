"""The OpenAPI 3.1 document, generated from the routes (``chalicelib.api.OPERATIONS``) and the
pydantic models that validate their input, as Powertools' resolver does: a route cannot exist
without being described, and every status it can answer is listed."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from chalicelib.api import ERROR_DESCRIPTIONS, OPERATIONS, Operation
from chalicelib.names import PATTERN

ERROR = {"$ref": "#/components/schemas/Error"}
NAME_PATTERN = f"^{PATTERN}$"
_PARAM = re.compile(r"\{(\w+)\}")


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999}
            if n == "version"
            else {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
        }
        for n in _PARAM.findall(path)
    ]


def _query_params(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    op_id = op.method.lower() + "".join(c if c.isalnum() else "_" for c in op.path)
    success: dict[str, Any] = {
        "description": "OK",
        "content": {"application/json": {"schema": op.response or {"type": "object"}}},
    }
    responses: dict[str, Any] = {str(op.status): success}
    for status in op.errors:
        responses[str(status)] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ERROR}},
        }
    out: dict[str, Any] = {"summary": op.summary, "operationId": op_id, "responses": responses}
    if op.description:
        out["description"] = op.description
    if not op.public:
        out["security"] = [{"sigv4": []}]
    params = _path_params(op.path) + _query_params(op, schemas)
    if params:
        out["parameters"] = params
    if op.body is not None:
        schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[op.body.__name__] = schema
        out["requestBody"] = {
            "required": bool(schema.get("required")),
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
            },
        }
    elif op.raw_body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in op.raw_body.items()},
        }
    return out


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
    for op in sorted(OPERATIONS, key=lambda o: (o.path, o.method)):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
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
