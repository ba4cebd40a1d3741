"""Every name the service sends to AWS is valid there: checked against botocore's own service
models (the shapes' ``pattern`` and ``max``, loaded with botocore's Loader), for the names
users choose (validated at creation) and for the names the service derives from them.

Limits the service models do not carry (S3 key bytes, DynamoDB key bytes) are the documented
service quotas, named where they are used.
"""

from __future__ import annotations

import re
import uuid
from functools import cache
from typing import Any

import pytest
from botocore.loaders import Loader
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib import tables
from chalicelib.adapters.sagemaker import (
    OWNER_TAG,
    config_resource_name,
    endpoint_resource_name,
    model_resource_name,
)
from chalicelib.names import ENDPOINT_MAX, ENDPOINT_PATTERN, PATTERN, check_name
from chalicelib.ports import check_key
from chalicelib.schemas import DeploymentSpec, EndpointCreate
from chalicelib.steps import job_name

S3_KEY_MAX_BYTES = 1024  # S3 user guide, "Naming Amazon S3 objects"
DYNAMODB_PK_MAX_BYTES = 2048  # DynamoDB developer guide, "Partition key length"
DYNAMODB_SK_MAX_BYTES = 1024  # "Sort key length"
STATES = ("train", "evaluate")  # the job states of steps.py

names = st.from_regex(PATTERN, fullmatch=True).filter(lambda n: ".." not in n)
endpoint_names = st.from_regex(ENDPOINT_PATTERN, fullmatch=True).filter(
    lambda n: len(n) <= ENDPOINT_MAX
)
versions = st.integers(min_value=1, max_value=10**9)


@cache
def shape(service: str, name: str) -> dict[str, Any]:
    model = Loader().load_service_model(service, "service-2")
    return dict(model["shapes"][name])


def valid(service: str, shape_name: str, value: str) -> bool:
    spec = shape(service, shape_name)
    pattern = spec.get("pattern")
    if pattern is not None:  # Java's Unicode classes, for the ASCII names we check
        pattern = (
            pattern.replace(r"\p{L}", "a-zA-Z").replace(r"\p{Z}", " ").replace(r"\p{N}", "0-9")
        )
    length_ok = spec.get("min", 0) <= len(value) <= spec.get("max", 10**9)
    return length_ok and (pattern is None or re.fullmatch(pattern, value) is not None)


def test_the_service_models_say_what_we_assume() -> None:
    """If AWS changes a rule, this fails first (and the checks below use the new rule)."""
    assert shape("sagemaker", "EndpointName")["max"] == 63
    assert not valid("sagemaker", "EndpointName", "flowers_ep.v2")  # the example
    assert not valid("sagemaker", "EndpointName", "x-")
    assert valid("sagemaker", "EndpointName", "mlp-flowers-ep-v2")


@settings(max_examples=300, deadline=None)
@given(endpoint_names)
def test_endpoint_names_we_accept_are_sagemaker_endpoint_names(name: str) -> None:
    assert EndpointCreate(name=name, model="m", version=1).name == name
    physical = endpoint_resource_name(name)
    assert valid("sagemaker", "EndpointName", physical), physical
    assert physical.startswith("mlp-")


@pytest.mark.parametrize(
    "bad",
    ["flowers_ep", "flowers.v2", "ep-", "-ep", "e" * (ENDPOINT_MAX + 1), "e" + "-" * 60 + "e"],
)
def test_endpoint_names_sagemaker_refuses_are_refused_at_creation(bad: str) -> None:
    with pytest.raises(ValidationError, match="endpoint name"):
        EndpointCreate(name=bad, model="m", version=1)
    with pytest.raises(ValidationError, match="endpoint name"):
        DeploymentSpec(endpoint=bad)


def test_stored_specs_with_old_endpoint_names_still_load() -> None:
    spec = DeploymentSpec.model_validate({"endpoint": "old_ep.v1"}, context={"trusted": True})
    assert spec.endpoint == "old_ep.v1"


@settings(max_examples=300, deadline=None)
@given(names, endpoint_names, versions)
def test_derived_model_and_config_names_are_valid(model: str, endpoint: str, version: int) -> None:
    model_name = model_resource_name(model, version)
    config_name = config_resource_name(endpoint, model, version)
    assert valid("sagemaker", "ModelName", model_name), model_name
    assert valid("sagemaker", "EndpointConfigName", config_name), config_name
    assert model_name.startswith("mlp-") and config_name.startswith("mlp-")


def test_derived_names_stay_distinct() -> None:
    made = {
        model_resource_name(m, v)
        for m in ("iris", "iris_rf", "iris-rf", "iris.rf", "m" * 63, "m" * 62 + "n")
        for v in (1, 2)
    }
    assert len(made) == 12


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(STATES), st.integers(min_value=1, max_value=10**12))
def test_job_names_are_valid_training_and_processing_job_names(state: str, attempt: int) -> None:
    name = job_name(uuid.uuid4().hex, state, attempt)
    assert valid("sagemaker", "TrainingJobName", name), name
    assert valid("sagemaker", "ProcessingJobName", name), name
    assert name.startswith("mlp-")  # what the IAM policy allows
    assert job_name("r" * 32, state, attempt) == job_name("r" * 32, state, attempt)


def test_owner_tag_is_a_valid_tag() -> None:
    assert valid("sagemaker", "TagKey", OWNER_TAG)
    assert valid("sagemaker", "TagValue", "mlpipe-prod")  # a stack name


@settings(max_examples=200, deadline=None)
@given(names)
def test_keys_built_from_names_fit_s3_and_dynamodb(name: str) -> None:
    check_name(name)
    for key in (
        f"datasets/{name}/{tables.version_sk(10**8 - 1)}/{'f' * 12}/data.parquet",
        f"datasets/{name}/{tables.version_sk(10**8 - 1)}/{'f' * 12}/profile.json",
        f"models/{name}/{tables.version_sk(10**8 - 1)}/signature.json",
    ):
        assert check_key(key) == key
        assert valid("s3", "ObjectKey", key)
        assert len(key.encode()) <= S3_KEY_MAX_BYTES
    for pk in (tables.dataset_versions(name), tables.model_versions(name), tables.model_runs(name)):
        assert len(pk.encode()) <= DYNAMODB_PK_MAX_BYTES
    for sk in (name, tables.version_sk(10**8 - 1), f"endpoint#{name}"):
        assert len(sk.encode()) <= DYNAMODB_SK_MAX_BYTES


def test_execution_names_are_valid_step_functions_names() -> None:
    run_id = uuid.uuid4().hex  # runs.start: the execution name is the run id
    assert valid("stepfunctions", "Name", run_id)
    # "To enable logging with CloudWatch Logs, the name should only contain 0-9, A-Z, a-z,
    # - and _" (StartExecution documentation).
    assert re.fullmatch(r"[0-9A-Za-z_-]+", run_id)
