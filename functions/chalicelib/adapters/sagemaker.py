"""SageMaker jobs and endpoints on the prebuilt scikit-learn container."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import NotFoundError
from chalicelib.names import SAGEMAKER_PREFIX, sagemaker_name
from chalicelib.ports import (
    Deployment,
    EndpointNotReadyError,
    ForeignResourceError,
    JobKind,
    JobSpec,
    JobState,
    JobStatus,
    ModelInputError,
    ObjectStore,
)

# Every SageMaker resource the service creates carries this tag, valued with the stack that
# created it; UpdateEndpoint and DeleteEndpoint are only ever called on endpoints that carry
# ours (the functions' IAM policy requires the same tag).
OWNER_TAG = "mlpipe:owner"

_SM_STATE: dict[str, JobState] = {
    "InProgress": "InProgress",
    "Stopping": "InProgress",
    "Completed": "Completed",
    "Failed": "Failed",
    "Stopped": "Stopped",
}


class SageMakerJobRunner:
    """Training jobs and processing jobs on the prebuilt scikit-learn container."""

    def __init__(
        self,
        sagemaker: Any,
        store: ObjectStore,
        *,
        role_arn: str,
        image_uri: str,
        code_prefix: str,
        instance_type: str,
        owner: str = "mlpipe",
    ) -> None:
        self.sm = sagemaker
        self.store = store
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.code_prefix = code_prefix.rstrip("/")  # holds sourcedir.tar.gz and the scripts
        self.instance_type = instance_type
        self.tags = [{"Key": OWNER_TAG, "Value": owner}]

    def start(self, spec: JobSpec) -> None:
        try:
            if spec.kind == "training":
                self._start_training(spec)
            elif spec.kind == "transform":
                self._start_transform(spec)
            else:
                self._start_processing(spec)
        except ClientError as exc:
            # A retried state: the job already exists. SageMaker says so with ResourceInUse,
            # or (processing jobs) a ValidationException: then the job must be describable.
            code = exc.response["Error"]["Code"]
            if code == "ResourceInUse":
                return
            if code == "ValidationException" and self._job_exists(spec.name, spec.kind):
                return
            raise

    def _job_exists(self, name: str, kind: JobKind) -> bool:
        try:
            self.describe(name, kind)
        except NotFoundError:
            return False
        return True

    def stop(self, name: str, kind: JobKind) -> None:
        try:
            if kind == "training":
                self.sm.stop_training_job(TrainingJobName=name)
            elif kind == "transform":
                self.sm.stop_transform_job(TransformJobName=name)
            else:
                self.sm.stop_processing_job(ProcessingJobName=name)
        except ClientError as exc:
            # A job that has already ended cannot be stopped; that is what we wanted.
            if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
                raise

    def _s3_input(self, key: str) -> str:
        # S3Prefix matches by string prefix: end a folder with "/" so that "split/train"
        # does not also pull in a sibling "split/train2/".
        return self.store.uri(key) if self.store.exists(key) else self.store.uri(key) + "/"

    def _start_training(self, spec: JobSpec) -> None:
        hyperparameters = {
            **spec.arguments,
            "sagemaker_program": spec.entry_point,
            "sagemaker_submit_directory": self.store.uri(f"{self.code_prefix}/sourcedir.tar.gz"),
        }
        self.sm.create_training_job(
            TrainingJobName=spec.name,
            AlgorithmSpecification={"TrainingImage": self.image_uri, "TrainingInputMode": "File"},
            RoleArn=self.role_arn,
            # The SDK's convention: every value JSON-encoded; the container's launcher
            # decodes them before handing them to the script as --name value.
            HyperParameters={k: json.dumps(v) for k, v in hyperparameters.items()},
            InputDataConfig=[
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": self._s3_input(key),
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for channel, key in spec.inputs.items()
            ],
            OutputDataConfig={"S3OutputPath": self.store.uri(spec.output_prefix)},
            ResourceConfig={
                "InstanceType": self.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 10,
            },
            StoppingCondition={"MaxRuntimeInSeconds": spec.max_runtime_seconds},
            Tags=self.tags,
        )

    def _start_processing(self, spec: JobSpec) -> None:
        code_dir = "/opt/ml/processing/input/code"
        argv = [a for k, v in spec.arguments.items() for a in (f"--{k}", v)]
        inputs = [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": self.store.uri(self.code_prefix) + "/",
                    "LocalPath": code_dir,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ]
        for name, key in spec.inputs.items():
            local = f"/opt/ml/processing/{name}"
            inputs.append(
                {
                    "InputName": name,
                    "S3Input": {
                        "S3Uri": self._s3_input(key),
                        "LocalPath": local,
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                }
            )
            argv += [f"--{name}-dir", local]
        argv += ["--output-dir", "/opt/ml/processing/output"]
        self.sm.create_processing_job(
            ProcessingJobName=spec.name,
            RoleArn=self.role_arn,
            AppSpecification={
                "ImageUri": self.image_uri,
                # As the SageMaker SDK's FrameworkProcessor does: install the job's
                # requirements, then run the script with the arguments.
                "ContainerEntrypoint": [
                    "/bin/sh",
                    "-c",
                    f"pip install -q -r {code_dir}/requirements.txt && "
                    f'python3 {code_dir}/{spec.entry_point} "$@"',
                    "--",
                ],
                "ContainerArguments": argv,
            },
            ProcessingInputs=inputs,
            ProcessingOutputConfig={
                "Outputs": [
                    {
                        "OutputName": "output",
                        "S3Output": {
                            "S3Uri": self.store.uri(spec.output_prefix),
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            ProcessingResources={
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": self.instance_type,
                    "VolumeSizeInGB": 10,
                }
            },
            StoppingCondition={"MaxRuntimeInSeconds": spec.max_runtime_seconds},
            Tags=self.tags,
        )

    def _start_transform(self, spec: JobSpec) -> None:
        """A Batch Transform job: the model archive served by ``batch_transform.py``'s hooks
        (from the job code), each Parquet object of the input one request, its scored rows
        written back as ``<object>.out``. The SageMaker Model it needs is named by model
        version and created once (tagged, like every resource the service makes)."""
        model_name = batch_model_name(spec.arguments["model-name"], spec.arguments["model-version"])
        if not self._model_exists(model_name):
            self.sm.create_model(
                ModelName=model_name,
                ExecutionRoleArn=self.role_arn,
                PrimaryContainer={
                    "Image": self.image_uri,
                    "ModelDataUrl": self.store.uri(spec.inputs["model"]),
                    "Environment": {
                        "SAGEMAKER_PROGRAM": spec.entry_point,
                        "SAGEMAKER_SUBMIT_DIRECTORY": self.store.uri(
                            f"{self.code_prefix}/sourcedir.tar.gz"
                        ),
                    },
                },
                Tags=self.tags,
            )
        self.sm.create_transform_job(
            TransformJobName=spec.name,
            ModelName=model_name,
            # One request per object, at most 100 MB (SageMaker's ceiling for a payload).
            BatchStrategy="SingleRecord",
            MaxPayloadInMB=100,
            MaxConcurrentTransforms=1,
            ModelClientConfig={"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 0},
            TransformInput={
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": self._s3_input(spec.inputs["data"]),
                    }
                },
                "ContentType": PARQUET,
                "CompressionType": "None",
                "SplitType": "None",
            },
            TransformOutput={
                "S3OutputPath": self.store.uri(spec.output_prefix),
                "Accept": PARQUET,
                "AssembleWith": "None",
            },
            TransformResources={"InstanceType": self.instance_type, "InstanceCount": 1},
            Tags=self.tags,
        )

    def _model_exists(self, name: str) -> bool:
        """Whether the SageMaker Model exists; one that another stack created is not used."""
        try:
            desc = self.sm.describe_model(ModelName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return False
            raise
        tags = self.sm.list_tags(ResourceArn=desc["ModelArn"]).get("Tags", [])
        if next((t["Value"] for t in tags if t["Key"] == OWNER_TAG), None) != self.tags[0]["Value"]:
            raise ForeignResourceError(
                f"SageMaker model {name!r} exists but was not created by this service"
            )
        return True

    def describe(self, name: str, kind: JobKind) -> JobStatus:
        try:
            if kind == "training":
                desc = self.sm.describe_training_job(TrainingJobName=name)
                state = _SM_STATE.get(desc["TrainingJobStatus"], "InProgress")
                outputs = {}
                artefact = desc.get("ModelArtifacts", {}).get("S3ModelArtifacts")
                if artefact:
                    outputs["model"] = self.store.key_of(artefact)
            elif kind == "transform":
                desc = self.sm.describe_transform_job(TransformJobName=name)
                state = _SM_STATE.get(desc["TransformJobStatus"], "InProgress")
                out = desc.get("TransformOutput", {}).get("S3OutputPath")
                outputs = {"output": self.store.key_of(out).rstrip("/")} if out else {}
            else:
                desc = self.sm.describe_processing_job(ProcessingJobName=name)
                state = _SM_STATE.get(desc["ProcessingJobStatus"], "InProgress")
                outputs = {}
                for out in desc.get("ProcessingOutputConfig", {}).get("Outputs", []):
                    outputs["output"] = self.store.key_of(out["S3Output"]["S3Uri"]).rstrip("/")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                raise NotFoundError(f"job {name!r} not found") from None
            raise
        return JobStatus(name, state, desc.get("FailureReason"), outputs)


PARQUET = "application/vnd.apache.parquet"


def batch_model_name(model: str, version: str) -> str:
    """The SageMaker Model a batch prediction scores with: the version's archive served by
    batch_transform.py (endpoints serve the same archive with inference.py: another Model)."""
    return sagemaker_name(SAGEMAKER_PREFIX.rstrip("-"), "batch", model, f"v{version}")


# An endpoint in one of these states refuses UpdateEndpoint (ValidationException on AWS).
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


def endpoint_resource_name(endpoint: str) -> str:
    """The SageMaker endpoint behind the API's endpoint ``endpoint``: ``mlp-<endpoint>``."""
    return SAGEMAKER_PREFIX + endpoint


def model_resource_name(model: str, version: int) -> str:
    return sagemaker_name(SAGEMAKER_PREFIX.rstrip("-"), model, f"v{version}")


def config_resource_name(endpoint: str, model: str, version: int) -> str:
    return sagemaker_name(SAGEMAKER_PREFIX.rstrip("-"), endpoint, model, f"v{version}")


class SageMakerEndpointRuntime:
    def __init__(
        self,
        sagemaker: Any,
        runtime: Any,
        store: ObjectStore,
        *,
        role_arn: str,
        image_uri: str,
        instance_type: str,
        owner: str = "mlpipe",
    ) -> None:
        self.sm = sagemaker
        self.runtime = runtime
        self.store = store
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.instance_type = instance_type
        self.owner = owner

    @property
    def _tags(self) -> list[dict[str, str]]:
        return [{"Key": OWNER_TAG, "Value": self.owner}]

    def _owner_of(self, arn: str) -> str | None:
        tags = self.sm.list_tags(ResourceArn=arn).get("Tags", [])
        return next((t["Value"] for t in tags if t["Key"] == OWNER_TAG), None)

    def _check_owned(self, endpoint: str, arn: str) -> None:
        """Refuse to change an endpoint this service (this stack) did not create."""
        if self._owner_of(arn) != self.owner:
            raise ForeignResourceError(
                f"a SageMaker endpoint named {endpoint_resource_name(endpoint)!r} exists but was "
                f"not created by this service ({OWNER_TAG}={self.owner!r}); choose another name"
            )

    def _describe_endpoint(self, endpoint: str) -> dict[str, Any] | None:
        try:
            desc: dict[str, Any] = self.sm.describe_endpoint(
                EndpointName=endpoint_resource_name(endpoint)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return None
            raise
        return desc

    def _exists(self, describe: Any, arn_key: str, **name: str) -> bool:
        """Whether the model/config exists; one another stack created is never reused."""
        try:
            desc = describe(**name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return False
            raise
        if self._owner_of(desc[arn_key]) != self.owner:
            raise ForeignResourceError(
                f"SageMaker resource {next(iter(name.values()))!r} exists but was not created "
                f"by this service ({OWNER_TAG}={self.owner!r})"
            )
        return True

    def deploy(self, deployment: Deployment) -> None:
        # Ownership and readiness first: nothing is created for an endpoint we may not change.
        current = self._describe_endpoint(deployment.endpoint)
        if current is not None:
            self._check_owned(deployment.endpoint, current["EndpointArn"])
            if current["EndpointStatus"] in BUSY:
                raise EndpointNotReadyError(
                    f"endpoint {deployment.endpoint!r} is {current['EndpointStatus']}"
                )
        model_name = model_resource_name(deployment.model, deployment.version)
        # Models and configs are immutable and named by content: create each once.
        if not self._exists(self.sm.describe_model, "ModelArn", ModelName=model_name):
            self.sm.create_model(
                ModelName=model_name,
                ExecutionRoleArn=self.role_arn,
                PrimaryContainer={
                    "Image": self.image_uri,
                    "ModelDataUrl": self.store.uri(deployment.artefact_key),
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                },
                Tags=self._tags,
            )
        config_name = config_resource_name(
            deployment.endpoint, deployment.model, deployment.version
        )
        if not self._exists(
            self.sm.describe_endpoint_config, "EndpointConfigArn", EndpointConfigName=config_name
        ):
            self.sm.create_endpoint_config(
                EndpointConfigName=config_name,
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": model_name,
                        "InstanceType": self.instance_type,
                        "InitialInstanceCount": 1,
                    }
                ],
                Tags=self._tags,
            )
        name = endpoint_resource_name(deployment.endpoint)
        try:
            if current is None:
                self.sm.create_endpoint(
                    EndpointName=name, EndpointConfigName=config_name, Tags=self._tags
                )
            else:
                self.sm.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
        except ClientError as exc:
            # Raced with another change (Creating/Updating since we looked): try again later.
            if exc.response["Error"]["Code"] in ("ValidationException", "ResourceInUse"):
                raise EndpointNotReadyError(
                    f"endpoint {deployment.endpoint!r} cannot take a new version now"
                ) from None
            raise

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        try:
            resp = self.runtime.invoke_endpoint(
                EndpointName=endpoint_resource_name(endpoint),
                Body=body,
                ContentType=content_type,
                Accept="application/json",
            )
        except self.runtime.exceptions.ModelError as exc:
            raise ModelInputError(exc.response["Error"].get("Message", "")) from None
        except self.runtime.exceptions.ValidationError:
            # Not created yet, or still Creating/Updating.
            raise EndpointNotReadyError(endpoint) from None
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationException":
                raise EndpointNotReadyError(endpoint) from None
            raise
        return bytes(resp["Body"].read())

    def status(self, endpoint: str) -> str:
        desc = self._describe_endpoint(endpoint)
        return "NotFound" if desc is None else str(desc["EndpointStatus"])

    def delete(self, endpoint: str) -> None:
        desc = self._describe_endpoint(endpoint)
        if desc is None:
            return
        self._check_owned(endpoint, desc["EndpointArn"])
        self.sm.delete_endpoint(EndpointName=endpoint_resource_name(endpoint))
