"""Model registry routes: models, versions, aliases."""

from __future__ import annotations

from typing import Any

from chalicelib import deployment, registry
from chalicelib.api import Api
from chalicelib.errors import ConflictError
from chalicelib.runtime import ports
from chalicelib.schemas import AliasSet

api = Api(__name__)


@api.operation("/models", "GET")
def list_models() -> dict[str, Any]:
    """List registered models."""
    return {"models": registry.list_models(ports())}


@api.operation("/models/{name}", "GET")
def get_model(name: str) -> dict[str, Any]:
    """A model: latest version and aliases."""
    return registry.get_model(ports(), name)


@api.operation("/models/{name}/versions", "GET")
def list_model_versions(name: str) -> dict[str, Any]:
    """A model's versions."""
    return {"versions": registry.list_versions(ports(), name)}


@api.operation("/models/{name}/versions/{version}", "GET")
def get_model_version(name: str, version: int) -> dict[str, Any]:
    """A model version: metrics, hyperparameters, data and code version, artefact."""
    return registry.public(registry.get_version(ports(), name, version))


@api.operation("/models/{name}/versions/{version}", "DELETE", errors=(409,))
def delete_model_version(name: str, version: int) -> dict[str, Any]:
    """Delete a model version and its artefact (409 behind an alias or an endpoint)."""
    p = ports()
    registry.delete_version(p, name, version, deployment.serving(p, name, version))
    return {"name": name, "version": version, "deleted": True}


@api.operation("/models/{name}/aliases/{alias}", "PUT", body=AliasSet, errors=(409,))
def set_model_alias(name: str, alias: str, body: AliasSet) -> dict[str, Any]:
    """Point an alias at a version; endpoints that follow it serve that version first."""
    return deployment.move_alias(ports(), name, alias, body.version)


@api.operation("/models/{name}/aliases/{alias}", "DELETE", errors=(409,))
def delete_model_alias(name: str, alias: str) -> dict[str, Any]:
    """Remove an alias (409 while an endpoint follows it)."""
    p = ports()
    followers = deployment.followers(p, name, alias)
    if followers:
        raise ConflictError(f"endpoint(s) {', '.join(followers)} follow alias {alias!r}")
    registry.delete_alias(p, name, alias)
    return {"name": name, "alias": alias, "deleted": True}
