"""Endpoint runtime port: SageMaker real-time endpoints, or an in-process model server.

Both serve ``model.tar.gz`` through the hooks in its ``code/inference.py`` (model_fn,
input_fn, predict_fn, output_fn), which is what the SageMaker scikit-learn container does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.ports.objectstore import ObjectStore
from mlcontract import archive as archive_mod


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    model: str
    version: int
    artefact_key: str
    sha256: str


class ModelInputError(ValueError):
    """The model's input_fn rejected the request body."""


class EndpointRuntime(Protocol):
    def deploy(self, deployment: Deployment) -> None: ...
    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes: ...
    def status(self, endpoint: str) -> str: ...
    def delete(self, endpoint: str) -> None: ...


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _Loaded:
    sha256: str
    hooks: ModuleType
    model: Any


class LocalEndpointRuntime:
    """Serves models in this process. Endpoint configs persist under ``root`` so a restarted
    stack serves the same versions; the model is loaded once and cached in memory."""

    def __init__(self, root: Path, store: ObjectStore) -> None:
        self.root = root
        self.store = store
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def _config_path(self, endpoint: str) -> Path:
        return self.root / "configs" / f"{endpoint}.json"

    def _load(self, deployment: Deployment) -> _Loaded:
        cache_dir = self.root / "models" / deployment.sha256
        archive = self.root / "models" / f"{deployment.sha256}.tar.gz"
        if not (cache_dir / "model.joblib").exists():
            archive.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(deployment.artefact_key, archive)
            # joblib runs code when it loads: only load bytes we produced and recorded.
            actual = sha256_of(archive)
            if actual != deployment.sha256:
                archive.unlink()
                raise ConflictError(
                    f"artefact of {deployment.model} v{deployment.version} does not match its "
                    "recorded sha256; refusing to load it"
                )
            tmp = cache_dir.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            archive_mod.safe_extract(archive, tmp)
            os.replace(tmp, cache_dir)
            archive.unlink()
        hooks = _import_hooks(cache_dir / "code" / "inference.py", deployment.sha256)
        model = hooks.model_fn(str(cache_dir))
        return _Loaded(deployment.sha256, hooks, model)

    def deploy(self, deployment: Deployment) -> None:
        # One deploy at a time: two first deploys of an artefact share its cache folder, and
        # two deploys of an endpoint its config file.
        with self._lock:
            loaded = self._load(deployment)  # fail the deploy, not the first request
            path = self._config_path(deployment.endpoint)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(deployment.__dict__))
            os.replace(tmp, path)
            self._loaded[deployment.endpoint] = loaded

    def _get(self, endpoint: str) -> _Loaded:
        loaded = self._loaded.get(endpoint)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(endpoint)
            if loaded is None:
                try:
                    config = json.loads(self._config_path(endpoint).read_text())
                except FileNotFoundError:
                    raise NotFoundError(f"endpoint {endpoint!r} is not deployed") from None
                loaded = self._load(Deployment(**config))
                self._loaded[endpoint] = loaded
        return loaded

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        loaded = self._get(endpoint)
        try:
            data = loaded.hooks.input_fn(body, content_type)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
        prediction = loaded.hooks.predict_fn(data, loaded.model)
        out = loaded.hooks.output_fn(prediction, "application/json")
        body_out = out[0] if isinstance(out, tuple) else out
        return body_out.encode() if isinstance(body_out, str) else bytes(body_out)

    def status(self, endpoint: str) -> str:
        return "InService" if self._config_path(endpoint).exists() else "NotFound"

    def delete(self, endpoint: str) -> None:
        with self._lock:
            self._loaded.pop(endpoint, None)
        self._config_path(endpoint).unlink(missing_ok=True)


def _import_hooks(path: Path, sha: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mlpipe_inference_{sha[:16]}", path)
    if spec is None or spec.loader is None:
        raise NotFoundError("model archive has no code/inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sagemaker_name(*parts: str) -> str:
    """SageMaker names allow [a-zA-Z0-9-] only, at most 63 chars; keep them unique."""
    raw = "-".join(parts)
    clean = re.sub(r"[^a-zA-Z0-9-]", "-", raw).strip("-")
    if clean != raw or len(clean) > 63:
        clean = f"{clean[:54]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return clean


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
    ) -> None:
        self.sm = sagemaker
        self.runtime = runtime
        self.store = store
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.instance_type = instance_type

    def deploy(self, deployment: Deployment) -> None:
        model_name = sagemaker_name(deployment.model, f"v{deployment.version}")
        try:
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
            )
        except ClientError as exc:
            if "already exist" not in exc.response["Error"].get("Message", "").lower():
                raise
        config_name = sagemaker_name(deployment.endpoint, model_name)
        try:
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
            )
        except ClientError as exc:
            if "already exist" not in exc.response["Error"].get("Message", "").lower():
                raise
        if self.status(deployment.endpoint) == "NotFound":
            self.sm.create_endpoint(
                EndpointName=deployment.endpoint, EndpointConfigName=config_name
            )
        else:
            self.sm.update_endpoint(
                EndpointName=deployment.endpoint, EndpointConfigName=config_name
            )

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        try:
            resp = self.runtime.invoke_endpoint(
                EndpointName=endpoint,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ModelError":
                raise ModelInputError(exc.response["Error"].get("Message", "")) from None
            if code == "ValidationException":  # not created yet, or still Creating/Updating
                raise ConflictError(
                    f"endpoint {endpoint!r} is not in service yet; check GET /endpoints/{endpoint}"
                ) from None
            raise
        return bytes(resp["Body"].read())

    def status(self, endpoint: str) -> str:
        try:
            return str(self.sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationException":
                return "NotFound"
            raise

    def delete(self, endpoint: str) -> None:
        self.sm.delete_endpoint(EndpointName=endpoint)
