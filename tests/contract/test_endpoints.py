"""EndpointRuntime contract: LocalEndpointRuntime serves a real model.tar.gz in-process through
its code/inference.py hooks; SageMakerEndpointRuntime is checked against moto for the
model / endpoint config / endpoint it creates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.adapters.sagemaker import (
    SageMakerEndpointRuntime,
    config_resource_name,
    model_resource_name,
)
from chalicelib.errors import NotFoundError
from chalicelib.names import sagemaker_name
from chalicelib.ports import (
    Deployment,
    EndpointNotReadyError,
    ForeignResourceError,
    ModelInputError,
)
from iac.local.endpoints import LocalEndpointRuntime
from mlcontract.archive import sha256_of
from tests.contract.conftest import (
    BUCKET,
    FEATURES,
    TrainedModel,
    aws_client,
    features_for_pipeline,
    load_pipeline,
)

JSON = "application/json"

# --------------------------------------------------------------------------- local runtime


@pytest.fixture(scope="module")
def served(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The trained model's key, sha256 and expected predictions on 12 test rows."""
    tmp = tmp_path_factory.mktemp("served")
    key = trained_model.status.outputs["model"]
    sha = sha256_of(trained_model.store.get_file(key, tmp / "copy.tar.gz"))
    rows = trained_model.test.head(12)
    pipeline = load_pipeline(trained_model, tmp)
    expected = pipeline.predict(features_for_pipeline(rows)).tolist()
    data = [[float(r["x1"]), float(r["x2"]), str(r["colour"])] for _, r in rows.iterrows()]
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": data}}).encode()
    return {"key": key, "sha": sha, "rows": rows, "expected": expected, "body": body}


def _deployment(served: Any, endpoint: str = "ep-local", **overrides: Any) -> Deployment:
    fields = {
        "endpoint": endpoint,
        "model": "iris",
        "version": 1,
        "artefact_key": served["key"],
        "sha256": served["sha"],
    }
    return Deployment(**{**fields, **overrides})


def _predictions(response: bytes) -> list[Any]:
    assert isinstance(response, bytes)
    decoded = json.loads(response)
    assert list(decoded) == ["predictions"]
    return list(decoded["predictions"])


@pytest.fixture
def runtimes() -> Any:
    """Builds process-backed runtimes (one supervisor each) and closes them all after."""
    made: list[LocalEndpointRuntime] = []

    def make(root: Path, store: Any, **kwargs: Any) -> LocalEndpointRuntime:
        runtime = LocalEndpointRuntime(root, store, **kwargs)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def test_deploy_and_invoke(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    runtime = runtimes(tmp_path / "endpoints", trained_model.store)
    assert runtime.status("ep-local") == "NotFound"
    runtime.deploy(_deployment(served))
    assert runtime.status("ep-local") == "InService"
    predictions = _predictions(runtime.invoke("ep-local", served["body"], JSON))
    assert predictions == served["expected"]
    assert set(predictions) <= {"yes", "no"}  # the original labels, not indices
    # Same answer for the same rows as records and as CSV.
    records = json.loads(served["body"])["dataframe_split"]
    body = json.dumps(
        {
            "dataframe_records": [
                dict(zip(records["columns"], r, strict=True)) for r in records["data"]
            ]
        }
    ).encode()
    assert _predictions(runtime.invoke("ep-local", body, JSON)) == served["expected"]
    csv = "x1,x2,colour\n" + "".join(
        f"{r['x1']!r},{r['x2']!r},{r['colour']}\n" for _, r in served["rows"].iterrows()
    )
    assert _predictions(runtime.invoke("ep-local", csv.encode(), "text/csv")) == served["expected"]


def test_a_restarted_runtime_serves_without_redeploying(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    root = tmp_path / "endpoints"
    runtimes(root, trained_model.store).deploy(_deployment(served))
    restarted = runtimes(root, trained_model.store)  # a new process, same data dir
    assert restarted.status("ep-local") == "InService"
    assert _predictions(restarted.invoke("ep-local", served["body"], JSON)) == served["expected"]


def test_wrong_sha256_is_refused_and_nothing_is_cached(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    root = tmp_path / "endpoints"
    runtime = runtimes(root, trained_model.store)
    bad = "0" * 64
    with pytest.raises(EndpointNotReadyError):
        runtime.deploy(_deployment(served, "ep-bad", sha256=bad))
    assert runtime.status("ep-bad") == "NotFound"
    with pytest.raises(NotFoundError):
        runtime.invoke("ep-bad", served["body"], JSON)
    with pytest.raises(NotFoundError):
        runtimes(root, trained_model.store).invoke("ep-bad", served["body"], JSON)
    models = root / "models"
    leftovers = sorted(p.name for p in models.iterdir()) if models.exists() else []
    assert leftovers == []


def test_wrong_sha256_keeps_the_previous_version_serving(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    root = tmp_path / "endpoints"
    runtime = runtimes(root, trained_model.store)
    runtime.deploy(_deployment(served))
    with pytest.raises(EndpointNotReadyError):
        runtime.deploy(_deployment(served, version=2, sha256="f" * 64))
    assert _predictions(runtime.invoke("ep-local", served["body"], JSON)) == served["expected"]
    restarted = runtimes(root, trained_model.store)
    assert _predictions(restarted.invoke("ep-local", served["body"], JSON)) == served["expected"]
    assert sorted(p.name for p in (root / "models").iterdir()) == [served["sha"] + ".tar.gz"]


def test_invoke_unknown_endpoint(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    runtime = runtimes(tmp_path / "endpoints", trained_model.store)
    with pytest.raises(NotFoundError):
        runtime.invoke("never-deployed", served["body"], JSON)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ({"dataframe_split": {"columns": ["x1", "x2"], "data": [[1.0, 2.0]]}}, JSON, "colour"),
        (
            {"dataframe_split": {"columns": FEATURES, "data": [["one", 2.0, "red"]]}},
            JSON,
            "x1",
        ),
        ({"dataframe_split": {"columns": FEATURES, "data": []}}, JSON, "no rows"),
        ({"unknown_format": []}, JSON, "dataframe_split"),
        ("x1,x2,colour\n1,2,red\n", "text/plain", "content type"),
        ("{not json", JSON, "JSON"),
    ],
)
def test_bad_request_bodies_raise_model_input_error(
    trained_model: TrainedModel,
    served: Any,
    tmp_path: Path,
    runtimes: Any,
    body: Any,
    content_type: str,
    message: str,
) -> None:
    runtime = runtimes(tmp_path / "endpoints", trained_model.store)
    runtime.deploy(_deployment(served))
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(ModelInputError, match=re.escape(message)):
        runtime.invoke("ep-local", raw, content_type)


def test_two_endpoints_of_one_model_and_delete(
    trained_model: TrainedModel, served: Any, tmp_path: Path, runtimes: Any
) -> None:
    root = tmp_path / "endpoints"
    runtime = runtimes(root, trained_model.store)
    runtime.deploy(_deployment(served, "ep-a"))
    runtime.deploy(_deployment(served, "ep-b"))
    runtime.delete("ep-a")
    assert runtime.status("ep-a") == "NotFound"
    with pytest.raises(NotFoundError):
        runtime.invoke("ep-a", served["body"], JSON)
    with pytest.raises(NotFoundError):
        runtimes(root, trained_model.store).invoke("ep-a", served["body"], JSON)
    assert _predictions(runtime.invoke("ep-b", served["body"], JSON)) == served["expected"]


# ---------------------------------------------------------------- SageMaker runtime (moto)

ROLE = "arn:aws:iam::123456789012:role/contract-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


class SageMakerWithUpdate:
    """The moto client, plus UpdateEndpoint, which moto 5.2.5 does not implement: recorded,
    then applied with public calls (delete + create under the same name) so describe_endpoint
    shows the new config as it would on AWS."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.updates: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_endpoint(self, *, EndpointName: str, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        self._client.describe_endpoint(EndpointName=EndpointName)  # must exist, as on AWS
        self._client.describe_endpoint_config(EndpointConfigName=EndpointConfigName)
        self.updates.append((EndpointName, EndpointConfigName))
        self._client.delete_endpoint(EndpointName=EndpointName)
        self._client.create_endpoint(
            EndpointName=EndpointName, EndpointConfigName=EndpointConfigName
        )
        return {}


@pytest.fixture
def sm_endpoints(s3_client: Any) -> SageMakerEndpointRuntime:
    store = S3ObjectStore(BUCKET, s3_client)
    store.put_bytes("runs/r1/model/model.tar.gz", b"v1")
    store.put_bytes("runs/r2/model/model.tar.gz", b"v2")
    return SageMakerEndpointRuntime(
        SageMakerWithUpdate(aws_client("sagemaker")),
        aws_client("sagemaker-runtime"),
        store,
        role_arn=ROLE,
        image_uri=IMAGE,
        instance_type="ml.t2.medium",
    )


def _sm_deployment(version: int) -> Deployment:
    return Deployment(
        endpoint="iris-prod",
        model="iris_rf",  # "_" is not allowed in SageMaker names
        version=version,
        artefact_key=f"runs/r{version}/model/model.tar.gz",
        sha256="a" * 64,
    )


def test_sagemaker_deploy_creates_model_config_and_endpoint(
    sm_endpoints: SageMakerEndpointRuntime,
) -> None:
    sm = sm_endpoints.sm
    assert sm_endpoints.status("iris-prod") == "NotFound"
    sm_endpoints.deploy(_sm_deployment(1))

    models = [m["ModelName"] for m in sm.list_models()["Models"]]
    assert len(models) == 1
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,63}", models[0])
    model = sm.describe_model(ModelName=models[0])
    assert model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == sm_endpoints.store.uri("runs/r1/model/model.tar.gz")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"

    endpoint = sm.describe_endpoint(EndpointName="mlp-iris-prod")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == models[0]
    assert variant["InstanceType"] == "ml.t2.medium"
    assert sm_endpoints.status("iris-prod") in {"Creating", "InService"}
    assert sm.updates == []


def test_sagemaker_second_version_updates_the_endpoint(
    sm_endpoints: SageMakerEndpointRuntime,
) -> None:
    sm = sm_endpoints.sm
    sm_endpoints.deploy(_sm_deployment(1))
    first = sm.describe_endpoint(EndpointName="mlp-iris-prod")["EndpointConfigName"]
    sm_endpoints.deploy(_sm_deployment(2))
    second = sm.describe_endpoint(EndpointName="mlp-iris-prod")["EndpointConfigName"]
    assert second != first
    assert sm.updates == [("mlp-iris-prod", second)]
    (variant,) = sm.describe_endpoint_config(EndpointConfigName=second)["ProductionVariants"]
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == sm_endpoints.store.uri(
        "runs/r2/model/model.tar.gz"
    )
    assert len(sm.list_models()["Models"]) == 2  # v1 stays for a rollback


def test_sagemaker_redeploy_reuses_the_existing_model_and_config(
    sm_endpoints: SageMakerEndpointRuntime,
) -> None:
    """A retried deploy checks the endpoint is ours and idle, finds its model and config
    (described first, never matched by an error message, and only reused when they carry our
    owner tag) and only updates the endpoint. AWS's answers are stubbed in."""
    deployment = _sm_deployment(2)
    model_name = model_resource_name(deployment.model, deployment.version)
    config_name = config_resource_name(deployment.endpoint, deployment.model, deployment.version)
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    now = datetime.now(UTC)
    ours = {"Tags": [{"Key": "mlpipe:owner", "Value": "mlpipe"}]}
    client = sm_endpoints.sm._client
    with Stubber(client) as stub:
        stub.add_response(
            "describe_endpoint",
            {
                "EndpointName": "mlp-iris-prod",
                "EndpointArn": f"{arn}:endpoint/mlp-iris-prod",
                "EndpointConfigName": config_name,
                "EndpointStatus": "InService",
                "CreationTime": now,
                "LastModifiedTime": now,
            },
            {"EndpointName": "mlp-iris-prod"},
        )
        stub.add_response("list_tags", ours, {"ResourceArn": f"{arn}:endpoint/mlp-iris-prod"})
        stub.add_response(
            "describe_model",
            {"ModelName": model_name, "ModelArn": f"{arn}:model/{model_name}",
             "CreationTime": now},
            {"ModelName": model_name},
        )  # fmt: skip
        stub.add_response("list_tags", ours, {"ResourceArn": f"{arn}:model/{model_name}"})
        stub.add_response(
            "describe_endpoint_config",
            {"EndpointConfigName": config_name,
             "EndpointConfigArn": f"{arn}:endpoint-config/{config_name}",
             "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model_name}],
             "CreationTime": now},
            {"EndpointConfigName": config_name},
        )  # fmt: skip
        stub.add_response(
            "list_tags", ours, {"ResourceArn": f"{arn}:endpoint-config/{config_name}"}
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": f"{arn}:endpoint/mlp-iris-prod"},
            {"EndpointName": "mlp-iris-prod", "EndpointConfigName": config_name},
        )
        sm_endpoints.sm = client  # the stubbed client itself (no moto UpdateEndpoint shim)
        sm_endpoints.deploy(deployment)
        stub.assert_no_pending_responses()


def test_sagemaker_never_touches_an_endpoint_it_did_not_create(
    sm_endpoints: SageMakerEndpointRuntime,
) -> None:
    """Another team's endpoint of the same name (no owner tag, or another stack's) is neither
    updated nor deleted: the deploy and the delete are refused before any change."""
    sm = sm_endpoints.sm
    sm._client.create_model(
        ModelName="their-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    sm._client.create_endpoint_config(
        EndpointConfigName="their-config",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "their-model",
                             "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}],
    )  # fmt: skip
    sm._client.create_endpoint(EndpointName="mlp-iris-prod", EndpointConfigName="their-config")
    with pytest.raises(ForeignResourceError, match="not created by this service"):
        sm_endpoints.deploy(_sm_deployment(1))
    with pytest.raises(ForeignResourceError):
        sm_endpoints.delete("iris-prod")
    endpoint = sm.describe_endpoint(EndpointName="mlp-iris-prod")
    assert endpoint["EndpointConfigName"] == "their-config"
    assert sm.updates == []
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["their-model"]


def test_sagemaker_busy_endpoint_is_not_ready(sm_endpoints: SageMakerEndpointRuntime) -> None:
    """UpdateEndpoint on an endpoint that is Updating fails on AWS: refused before the call."""
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/mlp-iris-prod"
    now = datetime.now(UTC)
    client = sm_endpoints.sm._client
    with Stubber(client) as stub:
        stub.add_response(
            "describe_endpoint",
            {"EndpointName": "mlp-iris-prod", "EndpointArn": arn, "EndpointConfigName": "c",
             "EndpointStatus": "Updating", "CreationTime": now, "LastModifiedTime": now},
            {"EndpointName": "mlp-iris-prod"},
        )  # fmt: skip
        stub.add_response(
            "list_tags",
            {"Tags": [{"Key": "mlpipe:owner", "Value": "mlpipe"}]},
            {"ResourceArn": arn},
        )
        sm_endpoints.sm = client
        with pytest.raises(EndpointNotReadyError, match="Updating"):
            sm_endpoints.deploy(_sm_deployment(2))
        stub.assert_no_pending_responses()


def test_sagemaker_deploy_propagates_other_errors(sm_endpoints: SageMakerEndpointRuntime) -> None:
    client = sm_endpoints.sm._client
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_endpoint",
            service_error_code="ValidationException",
            service_message="Could not find endpoint",
        )
        stub.add_client_error(
            "describe_model",
            service_error_code="ValidationException",
            service_message="Could not find model",
        )
        stub.add_client_error(
            "create_model",
            service_error_code="ValidationException",
            service_message="Could not access model data at s3://x/model.tar.gz.",
        )
        sm_endpoints.sm = client
        with pytest.raises(ClientError, match="Could not access model data"):
            sm_endpoints.deploy(_sm_deployment(1))


def test_sagemaker_status_invoke_delete(sm_endpoints: SageMakerEndpointRuntime) -> None:
    assert sm_endpoints.status("never-deployed") == "NotFound"
    sm_endpoints.deploy(_sm_deployment(1))
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[1.0, 2.0, "red"]]}})
    # moto's sagemaker-runtime answers every invocation with a canned body (it runs no
    # model), so only the type is checked here; the local suite checks real predictions.
    assert isinstance(sm_endpoints.invoke("iris-prod", body.encode(), JSON), bytes)
    sm_endpoints.delete("iris-prod")
    assert sm_endpoints.status("iris-prod") == "NotFound"


def test_sagemaker_names_are_valid_and_distinct() -> None:
    names = {
        sagemaker_name("iris", "v1"),
        sagemaker_name("iris_rf", "v1"),
        sagemaker_name("iris-rf", "v1"),
        sagemaker_name("m" * 80, "v1"),
        sagemaker_name("m" * 80, "v2"),
    }
    assert len(names) == 5
    assert all(re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})", n) for n in names)
    assert sagemaker_name("iris", "v1") == "iris-v1"  # already valid: unchanged
    assert sagemaker_name("iris_rf", "v1") == sagemaker_name("iris_rf", "v1")  # stable


@pytest.mark.parametrize(
    ("code", "message", "raised"),
    [
        (
            "ValidationException",
            "Endpoint iris-prod of account 1 not found.",
            EndpointNotReadyError,
        ),
        ("ModelError", "Received client error (400) from primary: missing column", ModelInputError),
    ],
)
def test_sagemaker_invoke_errors_become_caller_errors(
    sm_endpoints: SageMakerEndpointRuntime, code: str, message: str, raised: type[Exception]
) -> None:
    with Stubber(sm_endpoints.runtime) as stub:
        stub.add_client_error("invoke_endpoint", service_error_code=code, service_message=message)
        with pytest.raises(raised):
            sm_endpoints.invoke("iris-prod", b"{}", JSON)
