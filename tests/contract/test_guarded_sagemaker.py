"""Guarded deployments on the SageMaker adapter, as far as moto 5.2.5 allows.

What runs against moto: the models and endpoint configs created for the new version (a
shadow config's ShadowProductionVariants are dropped by moto, so its arguments are checked), the CloudWatch rollback alarms (``PutMetricAlarm`` with metric math), and
``DescribeEndpoint`` read back as the rollout's state. What does not: moto implements no
``UpdateEndpoint``, so the call is recorded by ``SageMakerWithUpdate`` and its arguments are
validated against botocore's service model (the exact shape AWS would receive); the traffic
shifting, baking and alarm-driven rollback are SageMaker's own and cannot run offline, so a
rolled-back endpoint is stubbed as AWS describes it. sagemaker-runtime's answers (variant,
ModelError with the container's status) are stubbed too.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.adapters.sagemaker import (
    SageMakerEndpointRuntime,
    config_resource_name,
    deployment_config,
    rollback_alarms,
)
from chalicelib.ports import Deployment, ModelFailedError, ModelInputError, Rollout
from tests.contract.conftest import BUCKET, aws_client

ROLE = "arn:aws:iam::123456789012:role/contract-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


class SageMakerWithUpdate:
    """moto's client plus UpdateEndpoint (not in moto 5.2.5): its arguments are validated
    against the service model, recorded, and the new config applied (delete + create)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.updates: list[dict[str, Any]] = []
        self.configs: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_endpoint_config(self, **params: Any) -> dict[str, Any]:
        self.configs.append(params)  # moto 5.2.5 drops ShadowProductionVariants: keep them
        return dict(self._client.create_endpoint_config(**params))

    def update_endpoint(self, **params: Any) -> dict[str, Any]:
        shape = self._client.meta.service_model.operation_model("UpdateEndpoint").input_shape
        validate_parameters(params, shape)  # raises ParamValidationError on a wrong shape
        self._client.describe_endpoint(EndpointName=params["EndpointName"])
        self._client.describe_endpoint_config(EndpointConfigName=params["EndpointConfigName"])
        self.updates.append(params)
        self._client.delete_endpoint(EndpointName=params["EndpointName"])
        self._client.create_endpoint(
            EndpointName=params["EndpointName"], EndpointConfigName=params["EndpointConfigName"]
        )
        return {}


def _d(version: int) -> Deployment:
    return Deployment("shop", "shop-rf", version, f"runs/r{version}/model/model.tar.gz", "a" * 64)


@pytest.fixture
def runtime(s3_client: Any) -> SageMakerEndpointRuntime:
    store = S3ObjectStore(BUCKET, s3_client)
    for v in (1, 2):
        store.put_bytes(f"runs/r{v}/model/model.tar.gz", b"v")
    rt = SageMakerEndpointRuntime(
        SageMakerWithUpdate(aws_client("sagemaker")),
        aws_client("sagemaker-runtime"),
        store,
        role_arn=ROLE,
        image_uri=IMAGE,
        instance_type="ml.m5.large",
        cloudwatch=aws_client("cloudwatch"),
    )
    rt.deploy(_d(1))
    return rt


def test_canary_maps_to_blue_green_with_rollback_alarms(
    runtime: SageMakerEndpointRuntime,
) -> None:
    rollout = Rollout(
        id="d-1", current=_d(1), new=_d(2), strategy="canary", percent=10, bake_seconds=600,
        error_rate=0.05, p99_ms=50, min_requests=20,
    )  # fmt: skip
    runtime.start_rollout(rollout)
    [update] = runtime.sm.updates
    assert update["EndpointConfigName"] == config_resource_name("shop", "shop-rf", 2)
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 600,
    }
    names = [
        a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    ]
    assert len(names) == 2 and all(n.startswith("mlp-") for n in names)
    alarms = {a["AlarmName"]: a for a in runtime.cw.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == set(names)
    rate = next(a for n, a in alarms.items() if n.endswith("error-rate"))
    assert rate["Threshold"] == 0.05
    expression = next(m for m in rate["Metrics"] if m["Id"] == "rate")["Expression"]
    assert expression == "IF(invocations >= 20, errors / invocations, 0)"
    dims = {
        d["Name"]: d["Value"]
        for m in rate["Metrics"]
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
    }
    assert dims == {"EndpointName": "mlp-shop", "VariantName": "AllTraffic"}
    p99 = next(a for n, a in alarms.items() if n.endswith("p99"))
    assert p99["ExtendedStatistic"] == "p99" and p99["Threshold"] == 50_000  # microseconds
    # moto applies the config at once: the endpoint serves the new version's config.
    state = runtime.rollout_state("shop", "d-1", _d(2))
    assert state is not None and state.status == "COMPLETED" and state.new_percent == 100


def test_linear_and_all_at_once_configs() -> None:
    linear = Rollout("d-2", _d(1), _d(2), "linear", percent=20, bake_seconds=30)
    assert deployment_config(linear, []) == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                "WaitIntervalInSeconds": 30,
            },
            "TerminationWaitInSeconds": 0,
        }
    }
    once = Rollout("d-3", _d(1), _d(2), "all_at_once", bake_seconds=120)
    policy = deployment_config(once, ["a"])
    assert policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert policy["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 120
    assert policy["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}]}
    assert rollback_alarms(once) == []  # no condition, no alarm


def test_a_rolled_back_endpoint_reads_as_rolled_back(runtime: SageMakerEndpointRuntime) -> None:
    """SageMaker's rollback is not emulated: the endpoint as AWS describes it afterwards."""
    client = runtime.sm._client
    old = config_resource_name("shop", "shop-rf", 1)
    with Stubber(client) as stub:
        stub.add_response(
            "describe_endpoint",
            {
                "EndpointName": "mlp-shop",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/mlp-shop",
                "EndpointConfigName": old,
                "EndpointStatus": "InService",
                "FailureReason": "Auto-rollback: alarm mlp-shop-d-1-error-rate is in ALARM",
                "CreationTime": "2026-11-28T10:00:00Z",
                "LastModifiedTime": "2026-11-28T10:05:00Z",
            },
        )
        state = runtime.rollout_state("shop", "d-1", _d(2))
    assert state is not None and state.status == "ROLLED_BACK"
    assert "error-rate" in (state.reason or "")


def test_shadow_is_an_endpoint_config_with_a_shadow_variant(
    runtime: SageMakerEndpointRuntime,
) -> None:
    runtime.start_rollout(Rollout("d-4", _d(1), _d(2), "all_at_once", 100, 60, shadow=True))
    [update] = runtime.sm.updates
    assert "DeploymentConfig" not in update
    [config] = [
        c for c in runtime.sm.configs if c["EndpointConfigName"] == update["EndpointConfigName"]
    ]
    assert [v["ModelName"] for v in config["ProductionVariants"]] == ["mlp-shop-rf-v1"]
    assert [(v["VariantName"], v["ModelName"]) for v in config["ShadowProductionVariants"]] == [
        ("Shadow-v2", "mlp-shop-rf-v2")
    ]
    runtime.sm.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])


def test_invoke_passes_the_inference_id_and_maps_container_errors(
    runtime: SageMakerEndpointRuntime,
) -> None:
    import io

    from botocore.response import StreamingBody

    client = runtime.runtime
    with Stubber(client) as stub:
        body = b'{"predictions": ["yes"]}'
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "InvokedProductionVariant": "AllTraffic"},
            {
                "EndpointName": "mlp-shop", "Body": b"{}", "ContentType": "application/json",
                "Accept": "application/json", "InferenceId": "order-42",
            },
        )  # fmt: skip
        stub.add_client_error(
            "invoke_endpoint", "ModelError", "the model failed", 424,
            modeled_fields={"OriginalStatusCode": 500},
        )  # fmt: skip
        stub.add_client_error(
            "invoke_endpoint", "ModelError", "bad row", 424,
            modeled_fields={"OriginalStatusCode": 400},
        )  # fmt: skip
        assert runtime.invoke_variant("shop", b"{}", "application/json", "order-42") == (
            body,
            "AllTraffic",
        )
        with pytest.raises(ModelFailedError):
            runtime.invoke("shop", b"{}", "application/json")
        with pytest.raises(ModelInputError, match="bad row"):
            runtime.invoke("shop", b"{}", "application/json")
