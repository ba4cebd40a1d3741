"""Service routes: health, the OpenAPI document, the algorithm catalog."""

from __future__ import annotations

from typing import Any

from chalicelib import openapi, runtime
from chalicelib.api import Api
from mlcontract import catalog

api = Api(__name__)


@api.operation("/health", "GET", public=True, errors=(503,))
def health() -> dict[str, Any]:
    """Liveness, the active profile and the AWS endpoint the service talks to.

    Locally ``aws_endpoint_url`` is the embedded stack's AWS API (Step Functions, Lambda,
    S3), which the AWS CLI can be pointed at with ``--endpoint-url``.
    """
    settings = runtime.settings()  # no AWS client is made for a health check
    return {
        "status": "ok",
        "profile": settings.profile,
        "aws_endpoint_url": settings.aws_endpoint_url,
    }


@api.operation("/openapi.json", "GET", public=True)
def openapi_document() -> dict[str, Any]:
    """This document (OpenAPI 3.1)."""
    return openapi.document()


@api.operation("/algorithms", "GET")
def algorithms() -> dict[str, Any]:
    """Algorithms, the tasks they serve and their configurable hyperparameters."""
    return {"algorithms": catalog.describe()}
