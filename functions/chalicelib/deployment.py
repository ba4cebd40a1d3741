"""Endpoints: serve a model version, follow an alias, roll back, answer predictions."""

from __future__ import annotations

import json
import threading
from typing import Any

from chalicelib import registry, scoring, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError
from chalicelib.ports.endpoints import Deployment, ModelInputError
from chalicelib.ports.metadata import ConditionFailedError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import EndpointCreate
from chalicelib.timeutil import now_iso

# Signatures of served versions: immutable per (model, version), so cache them per process.
_signatures: dict[tuple[str, int], list[dict[str, str]]] = {}
_sig_lock = threading.Lock()


def _deployment(endpoint: str, version: dict[str, Any]) -> Deployment:
    return Deployment(
        endpoint=endpoint,
        model=version["name"],
        version=int(version["version"]),
        artefact_key=version["artefact_key"],
        sha256=version["sha256"],
    )


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item["name"],
        "model": item["model"],
        "alias": item.get("alias"),
        "model_version": item["version"],
        "status": item["status"],
        "history": item["history"],
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
    }


def get(ports: Ports, name: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.ENDPOINTS, name)
    if rec is None:
        raise NotFoundError(f"endpoint {name!r} not found")
    # The runtime's own view: a SageMaker endpoint is Creating/Updating for minutes.
    return {**_public(rec.item), "status": ports.endpoints.status(name)}


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [_public(r.item) for r in ports.metadata.query(tables.ENDPOINTS)]


def create(ports: Ports, req: EndpointCreate) -> dict[str, Any]:
    if ports.metadata.get(tables.ENDPOINTS, req.name) is not None:
        raise ConflictError(f"endpoint {req.name!r} already exists")
    number = (
        registry.resolve_alias(ports, req.model, req.alias)
        if req.alias is not None
        else int(req.version or 0)
    )
    version = registry.get_version(ports, req.model, number)
    ports.endpoints.deploy(_deployment(req.name, version))
    now = now_iso()
    item = {
        "name": req.name,
        "model": req.model,
        "alias": req.alias,
        "version": number,
        "history": [number],
        "status": "InService",
        "created_at": now,
        "updated_at": now,
    }
    try:
        ports.metadata.put(Write(tables.ENDPOINTS, req.name, item, expected_rev=0))
    except ConditionFailedError:
        raise ConflictError(f"endpoint {req.name!r} already exists") from None
    return _public(item)


def serve_version(
    ports: Ports, name: str, model: str, number: int, alias: str | None
) -> dict[str, Any]:
    """Make ``name`` serve ``model`` v``number``, creating the endpoint if needed."""
    version = registry.get_version(ports, model, number)
    for _ in range(10):
        rec = ports.metadata.get(tables.ENDPOINTS, name)
        if rec is not None and rec.item["model"] != model:
            raise ConflictError(
                f"endpoint {name!r} serves model {rec.item['model']!r}, not {model!r}"
            )
        if rec is not None and rec.item["version"] == number:
            return _public(rec.item)
        ports.endpoints.deploy(_deployment(name, version))
        now = now_iso()
        if rec is None:
            item = {
                "name": name, "model": model, "alias": alias, "version": number,
                "history": [number], "status": "InService", "created_at": now,
                "updated_at": now,
            }  # fmt: skip
        else:
            item = {
                **rec.item,
                "version": number,
                "history": [*rec.item["history"], number][-50:],
                "updated_at": now,
            }
        try:
            ports.metadata.put(Write(tables.ENDPOINTS, name, item, rec.rev if rec else 0))
        except ConditionFailedError:
            continue
        return _public(item)
    raise ConflictError(f"endpoint {name!r} is being updated concurrently; try again")


def rollback(ports: Ports, name: str) -> dict[str, Any]:
    """Serve the previously served version again; an alias the endpoint follows moves too."""
    rec = ports.metadata.get(tables.ENDPOINTS, name)
    if rec is None:
        raise NotFoundError(f"endpoint {name!r} not found")
    item = rec.item
    if len(item["history"]) < 2:
        raise ConflictError(f"endpoint {name!r} has no previous version to roll back to")
    current, previous = item["history"][-1], item["history"][-2]
    version = registry.get_version(ports, item["model"], previous)
    if item.get("alias"):
        registry.set_alias(ports, item["model"], item["alias"], previous, expect=current)
    ports.endpoints.deploy(_deployment(name, version))
    new = {**item, "version": previous, "history": item["history"][:-1], "updated_at": now_iso()}
    try:
        ports.metadata.put(Write(tables.ENDPOINTS, name, new, rec.rev))
    except ConditionFailedError:
        raise ConflictError(f"endpoint {name!r} changed during the rollback; retry") from None
    return {**_public(new), "rolled_back_from": current}


def _signature(ports: Ports, model: str, number: int) -> list[dict[str, str]]:
    key = (model, number)
    sig = _signatures.get(key)
    if sig is None:
        sig = registry.get_version(ports, model, number)["signature"]
        with _sig_lock:
            _signatures[key] = sig
    return sig


def invoke(ports: Ports, name: str, body: bytes, content_type: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.ENDPOINTS, name)
    if rec is None:
        raise NotFoundError(f"endpoint {name!r} not found")
    model, number = rec.item["model"], int(rec.item["version"])
    canonical = scoring.parse(body, content_type, _signature(ports, model, number))
    try:
        raw = ports.endpoints.invoke(name, json.dumps(canonical).encode(), "application/json")
    except ModelInputError as exc:
        raise BadRequestError(f"the model rejected the input: {exc}") from None
    result = json.loads(raw)
    return {**result, "model": model, "model_version": number}


def _follow(ports: Ports, name: str, model: str, alias: str) -> dict[str, Any]:
    """Serve the alias's current version on an endpoint that follows it (creating the endpoint
    if needed). Re-reads the alias after serving, so concurrent moves converge on the last."""
    for _ in range(10):
        number = registry.resolve_alias(ports, model, alias)
        served = serve_version(ports, name, model, number, alias)
        if registry.resolve_alias(ports, model, alias) == number:
            return served
    raise ConflictError(f"alias {alias!r} of {model!r} keeps moving; try again")


def move_alias(ports: Ports, model: str, alias: str, number: int) -> dict[str, Any]:
    """Point an alias at a version; every endpoint that follows the alias serves it next."""
    previous = registry.set_alias(ports, model, alias, number)
    moved = [
        _follow(ports, r.item["name"], model, alias)["name"]
        for r in ports.metadata.query(tables.ENDPOINTS)
        if r.item["model"] == model and r.item.get("alias") == alias
    ]
    return {
        "model": model,
        "alias": alias,
        "version": number,
        "previous_version": previous,
        "endpoints": moved,
    }


def deploy_from_pipeline(
    ports: Ports, name: str, model: str, alias: str, number: int
) -> dict[str, Any]:
    """A pipeline's Deploy: move the alias, then make sure the pipeline's endpoint serves it —
    created on first deploy (following the alias), or told the version if it follows none."""
    moved = move_alias(ports, model, alias, number)
    rec = ports.metadata.get(tables.ENDPOINTS, name)
    if rec is None:
        endpoint = _follow(ports, name, model, alias)
    elif rec.item.get("alias") == alias:
        endpoint = _public(rec.item)  # move_alias has just made it serve the alias
    else:
        endpoint = serve_version(ports, name, model, number, rec.item.get("alias"))
    return {**endpoint, "previous_version": moved["previous_version"]}
