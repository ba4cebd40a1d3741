"""The OpenAPI document describes exactly the routes the app serves; names are checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib import openapi
from chalicelib.names import check_name
from chalicelib.schemas import EndpointCreate, PipelineCreate


def test_openapi_matches_the_routes() -> None:
    from app import app
    from chalicelib.api import OPERATIONS

    served = {(m, path) for path, entries in app.routes.items() for m in entries}
    assert served == {(op.method, op.path) for op in OPERATIONS}
    doc = openapi.document()
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == served
    assert "PipelineCreate" in doc["components"]["schemas"]


def test_openapi_is_a_valid_document() -> None:
    from openapi_spec_validator import validate

    validate(openapi.document())


def test_every_operation_documents_its_errors() -> None:
    doc = openapi.document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "500" in op["responses"], (method, path)
            if "{" in path:
                assert {"400", "404"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(op["responses"]), (method, path)
    assert "429" in doc["paths"]["/pipelines/{name}/runs"]["post"]["responses"]


@pytest.mark.parametrize("name", ["a", "iris-v2", "A.b_c-1", "x" * 63])
def test_safe_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a..b", ".hidden", "-x", "x" * 64, "a b", "é"])
def test_unsafe_names(name: str) -> None:
    with pytest.raises(ValueError, match="safe identifier"):
        check_name(name)


def test_pipeline_spec_defaults() -> None:
    spec = PipelineCreate.model_validate(
        {"name": "p", "dataset": {"name": "d"}, "target": "y", "task": "regression",
         "model": {"algorithm": "random_forest"}}
    )  # fmt: skip
    assert spec.model_name == "p" and spec.evaluation.test_size == 0.2
    assert spec.report_metrics == []  # none named: the job computes every defined metric


def test_endpoint_needs_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        EndpointCreate.model_validate({"name": "e", "model": "m", "alias": "a", "version": 1})
