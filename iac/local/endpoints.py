"""The endpoint runtime on this machine: each endpoint serves its model version through the
hooks in the archive's own ``code/inference.py`` (model_fn, input_fn, predict_fn, output_fn),
as the SageMaker scikit-learn container does.

joblib runs code when it loads, so a model is only ever loaded from bytes that match the
sha256 recorded on its version: the archive is verified on every load and unpacked afresh
into a private temporary directory that is removed once the model is in memory — an unpacked
copy on disk is never trusted. An endpoint whose model cannot be loaded reports ``Failed``
with the reason. Endpoint configs persist under ``root`` so a restarted stack serves the
same versions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from chalicelib.errors import NotFoundError
from chalicelib.ports import Deployment, EndpointNotReadyError, ModelInputError, ObjectStore
from mlcontract import archive


class ModelLoadError(EndpointNotReadyError):
    """The artefact does not match its recorded sha256, or its hooks failed to load it."""


@dataclass
class _Loaded:
    deployment: Deployment
    hooks: ModuleType
    model: Any


class LocalEndpointRuntime:
    def __init__(self, root: Path, store: ObjectStore) -> None:
        self.root = root
        self.store = store
        self._loaded: dict[str, _Loaded] = {}
        self._failed: dict[str, str] = {}  # endpoint -> why its model could not be loaded
        self._lock = threading.Lock()

    def _config_path(self, endpoint: str) -> Path:
        return self.root / "configs" / f"{endpoint}.json"

    def _archive(self, deployment: Deployment) -> Path:
        """The verified archive, downloaded once per sha256 and checked on every use."""
        path = self.root / "models" / f"{deployment.sha256}.tar.gz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            self.store.get_file(deployment.artefact_key, tmp)
            os.replace(tmp, path)
        if archive.sha256_of(path) != deployment.sha256:
            path.unlink(missing_ok=True)
            raise ModelLoadError(
                f"the artefact of {deployment.model} v{deployment.version} does not match its "
                "recorded sha256; refusing to load it"
            )
        return path

    def _load(self, deployment: Deployment) -> _Loaded:
        verified = self._archive(deployment)
        scratch = Path(tempfile.mkdtemp(prefix="model-", dir=self.root))
        try:
            archive.safe_extract(verified, scratch)
            hooks = _import_hooks(scratch / "code" / "inference.py", deployment.sha256)
            model = hooks.model_fn(str(scratch))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"{deployment.model} v{deployment.version} could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _Loaded(deployment, hooks, model)

    def deploy(self, deployment: Deployment) -> None:
        # One deploy at a time: two deploys of an endpoint share its config file.
        with self._lock:
            loaded = self._load(deployment)  # fail the deploy, not the first request
            path = self._config_path(deployment.endpoint)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(deployment)))
            os.replace(tmp, path)
            self._loaded[deployment.endpoint] = loaded
            self._failed.pop(deployment.endpoint, None)

    def _config(self, endpoint: str) -> Deployment | None:
        try:
            return Deployment(**json.loads(self._config_path(endpoint).read_text()))
        except FileNotFoundError:
            return None

    def _get(self, endpoint: str) -> _Loaded:
        loaded = self._loaded.get(endpoint)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(endpoint)
            if loaded is None:
                config = self._config(endpoint)
                if config is None:
                    raise NotFoundError(f"endpoint {endpoint!r} is not deployed")
                try:
                    loaded = self._load(config)
                except ModelLoadError as exc:
                    self._failed[endpoint] = str(exc)
                    raise EndpointNotReadyError(str(exc)) from None
                self._loaded[endpoint] = loaded
                self._failed.pop(endpoint, None)
        return loaded

    def warm(self) -> dict[str, str]:
        """Load every configured endpoint (stack start); returns the ones that failed."""
        configs = self.root / "configs"
        for path in sorted(configs.glob("*.json")) if configs.exists() else []:
            try:
                self._get(path.stem)
            except (EndpointNotReadyError, NotFoundError):
                continue
        return dict(self._failed)

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        loaded = self._get(endpoint)
        try:
            data = loaded.hooks.input_fn(body, content_type, loaded.model)
            prediction = loaded.hooks.predict_fn(data, loaded.model)
        except ValueError as exc:  # RequestError, or sklearn refusing a value
            raise ModelInputError(str(exc)) from None
        out = loaded.hooks.output_fn(prediction, "application/json")
        body_out = out[0] if isinstance(out, tuple) else out
        return body_out.encode() if isinstance(body_out, str) else bytes(body_out)

    def status(self, endpoint: str) -> str:
        if endpoint in self._failed:
            return "Failed"
        return "InService" if self._config_path(endpoint).exists() else "NotFound"

    def failure_reason(self, endpoint: str) -> str | None:
        return self._failed.get(endpoint)

    def delete(self, endpoint: str) -> None:
        with self._lock:
            self._loaded.pop(endpoint, None)
            self._failed.pop(endpoint, None)
        self._config_path(endpoint).unlink(missing_ok=True)


def _import_hooks(path: Path, sha: str) -> ModuleType:
    """Import an archive's inference.py under a name unique to its sha256; its sibling
    ``mlcontract`` is the one already loaded in this process (same contract version)."""
    spec = importlib.util.spec_from_file_location(f"mlpipe_inference_{sha[:16]}", path)
    if spec is None or spec.loader is None:
        raise ModelLoadError("the model archive has no code/inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
