"""Guarded deployments: a new model version reaches an endpoint by a traffic strategy, with
automatic rollback (SageMaker deployment guardrails semantics).

``POST /endpoints/{name}/deployments`` takes a ``model_version`` (or an ``alias``: the version
it points at, and the endpoint follows that alias from then on), a ``strategy`` and optional
``rollback_on`` conditions, and answers 202 with the deployment's id. The runtime does the
traffic moves (locally: both versions run as variants and the router shifts weights;
on AWS: SageMaker's blue/green ``DeploymentConfig`` with CloudWatch alarms), and reports the
state: ``IN_PROGRESS`` (the new version is starting), ``BAKING`` (it takes a share of traffic
and is watched), ``COMPLETED`` or ``ROLLED_BACK`` (with the reason).

- The alias the endpoint follows moves to the new version when traffic starts moving, and
  moves back on a rollback (only if it still points at the new version: a user's later move
  wins). Other endpoints following the same alias are not changed by a guarded deployment.
- A ``shadow`` deployment never takes live traffic: the new version gets a copy of every
  request for ``bake_seconds``, its answers are recorded (``GET /endpoints/{name}``
  ``shadow``), and the endpoint keeps serving the current version.
- One deployment at a time per endpoint; a plain deploy (pipeline, alias move, rollback)
  during one gets a 409.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from chalicelib import concurrency, deployment, registry, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError
from chalicelib.names import Name
from chalicelib.ports import (
    TERMINAL_ROLLOUTS,
    Deployment,
    EndpointNotReadyError,
    ForeignResourceError,
    Rollout,
    Write,
)
from chalicelib.runtime import Ports
from chalicelib.schemas import Strict
from chalicelib.timeutil import now_iso

MAX_SECONDS = 86400.0


class AllAtOnce(Strict):
    type: Literal["all_at_once"]
    bake_seconds: float = Field(
        default=0.0, ge=0, le=MAX_SECONDS, description="Watch the new version this long."
    )


class Canary(Strict):
    type: Literal["canary"]
    percent: float = Field(gt=0, lt=100, description="The canary's share of traffic.")
    bake_seconds: float = Field(ge=0, le=MAX_SECONDS)


class Linear(Strict):
    type: Literal["linear"]
    step_percent: float = Field(gt=0, lt=100)
    interval_seconds: float = Field(ge=0, le=MAX_SECONDS)


class Shadow(Strict):
    type: Literal["shadow"]
    bake_seconds: float = Field(gt=0, le=MAX_SECONDS)


Strategy = Annotated[AllAtOnce | Canary | Linear | Shadow, Field(discriminator="type")]


class RollbackOn(Strict):
    error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Roll back above this 5xx rate of the new version."
    )
    p99_ms: float | None = Field(
        default=None, gt=0, description="Roll back above this p99 latency of the new version."
    )
    min_requests: int = Field(
        default=10, ge=1, le=1_000_000, description="Decide only after this many requests."
    )


class DeploymentCreate(Strict):
    model_version: int | None = Field(default=None, ge=1)
    alias: Name | None = None
    strategy: Strategy = Field(default_factory=lambda: AllAtOnce(type="all_at_once"))
    rollback_on: RollbackOn = Field(default_factory=RollbackOn)

    @model_validator(mode="before")
    @classmethod
    def _strategy_by_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("strategy"), str):
            return {**data, "strategy": {"type": data["strategy"]}}
        return data

    @model_validator(mode="after")
    def _one_target(self) -> DeploymentCreate:
        if (self.alias is None) == (self.model_version is None):
            raise ValueError("give exactly one of 'model_version' or 'alias'")
        return self


def _pk(endpoint: str) -> str:
    return f"endpoint-deployments#{endpoint}"


def _new_id() -> str:
    # Sortable by creation time, unique across processes.
    return f"d-{int(time.time() * 1000):013d}-{os.urandom(3).hex()}"


def _public(item: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id", "endpoint", "model", "from_version", "to_version", "alias", "strategy",
        "rollback_on", "status", "reason", "traffic_percent", "observed", "created_at",
        "updated_at", "ended_at",
    )  # fmt: skip
    return {k: item.get(k) for k in keys}


def _rollout(item: dict[str, Any], current: dict[str, Any], new: dict[str, Any]) -> Rollout:
    strategy = item["strategy"]
    kind = strategy["type"]
    rollback = item["rollback_on"]
    percent = {"canary": strategy.get("percent"), "linear": strategy.get("step_percent")}
    bake = strategy.get("interval_seconds", strategy.get("bake_seconds", 0.0))
    return Rollout(
        id=item["id"],
        current=deployment.as_deployment(item["endpoint"], current),
        new=deployment.as_deployment(item["endpoint"], new),
        strategy="all_at_once" if kind == "shadow" else kind,
        percent=float(percent.get(kind) or 100.0),
        bake_seconds=float(bake or 0.0),
        error_rate=rollback.get("error_rate"),
        p99_ms=rollback.get("p99_ms"),
        min_requests=int(rollback.get("min_requests", 10)),
        shadow=kind == "shadow",
    )


def create(ports: Ports, endpoint: str, req: DeploymentCreate) -> dict[str, Any]:
    """Start a guarded deployment; 202 with its id (and its state so far)."""
    runtime = _guarded(ports)
    with deployment.lease(ports, endpoint):
        item = deployment.record(ports, endpoint)
        active = item.get("deployment")
        if active and active.get("status") not in TERMINAL_ROLLOUTS:
            raise ConflictError(
                f"endpoint {endpoint!r} has a deployment in progress ({active['id']})"
            )
        model = item["model"]
        number = (
            registry.resolve_alias(ports, model, req.alias)
            if req.alias is not None
            else int(req.model_version or 0)
        )
        if number == int(item["version"]):
            raise ConflictError(f"endpoint {endpoint!r} already serves {model} v{number}")
        new = registry.get_version(ports, model, number)
        current = registry.get_version(ports, model, int(item["version"]))
        shadow = req.strategy.type == "shadow"
        now = now_iso()
        record: dict[str, Any] = {
            "id": _new_id(),
            "endpoint": endpoint,
            "model": model,
            "from_version": int(item["version"]),
            "to_version": number,
            # The alias that moves with the traffic (the endpoint's own); with ``alias`` the
            # endpoint starts following that alias, which already points at the version.
            "alias": None if shadow or req.alias is not None else item.get("alias"),
            "follow_alias": req.alias,
            "alias_moved": False,
            "strategy": req.strategy.model_dump(),
            "rollback_on": req.rollback_on.model_dump(),
            "status": "IN_PROGRESS",
            "reason": None,
            "traffic_percent": 0.0,
            "observed": {},
            "created_at": now,
            "updated_at": now,
            "ended_at": None,
        }
        ports.metadata.put(Write(_pk(endpoint), record["id"], record, expected_rev=0))
        _mark_endpoint(ports, endpoint, record)
        try:
            runtime.start_rollout(_rollout(record, current, new))
        except (EndpointNotReadyError, ForeignResourceError) as exc:
            record = _update(ports, endpoint, record["id"], status="ROLLED_BACK", reason=str(exc))
            _mark_endpoint(ports, endpoint, record)
            return _public(record)
        if record["alias"]:
            try:
                registry.set_alias(
                    ports, model, record["alias"], number, expect=int(item["version"])
                )
                record = _update(ports, endpoint, record["id"], alias_moved=True)
            except ConflictError:  # the alias had moved elsewhere: leave it
                pass
    return get(ports, endpoint, record["id"])


def get(ports: Ports, endpoint: str, deployment_id: str) -> dict[str, Any]:
    rec = ports.metadata.get(_pk(endpoint), deployment_id)
    if rec is None:
        deployment.record(ports, endpoint)
        raise NotFoundError(f"endpoint {endpoint!r} has no deployment {deployment_id!r}")
    item = rec.item
    if item["status"] not in TERMINAL_ROLLOUTS:
        item = finish(ports, endpoint, deployment_id) or item
    return _public(item)


def list_for(ports: Ports, endpoint: str) -> list[dict[str, Any]]:
    deployment.record(ports, endpoint)
    return [_public(r.item) for r in ports.metadata.query(_pk(endpoint))]


def finish(ports: Ports, endpoint: str, deployment_id: str) -> dict[str, Any] | None:
    """Bring the record up to the runtime's state; when the rollout has ended, make the
    endpoint record (served version, history) and the alias say what serves now.
    Idempotent: called by the runtime when a rollout ends, and by every read."""
    rec = ports.metadata.get(_pk(endpoint), deployment_id)
    if rec is None or rec.item["status"] in TERMINAL_ROLLOUTS:
        return rec.item if rec is not None else None
    target = Deployment(endpoint, rec.item["model"], int(rec.item["to_version"]), "", "")
    state = _guarded(ports).rollout_state(endpoint, deployment_id, target)
    if state is None:
        return rec.item
    fields: dict[str, Any] = {
        "status": state.status,
        "reason": state.reason,
        "traffic_percent": state.new_percent,
        "observed": state.observed,
    }
    if state.status not in TERMINAL_ROLLOUTS:
        return _update(ports, endpoint, deployment_id, **fields)
    with deployment.lease(ports, endpoint):
        again = ports.metadata.get(_pk(endpoint), deployment_id)
        if again is None or again.item["status"] in TERMINAL_ROLLOUTS:
            return again.item if again is not None else None
        record = again.item
        model, new, old = record["model"], int(record["to_version"]), int(record["from_version"])
        shadow = record["strategy"]["type"] == "shadow"
        if state.status == "COMPLETED" and not shadow:
            deployment.served(ports, endpoint, new, follow_alias=record.get("follow_alias"))
        elif state.status == "ROLLED_BACK" and record.get("alias_moved"):
            try:
                registry.set_alias(ports, model, record["alias"], old, expect=new)
            except ConflictError:  # a user moved it since: their word stands
                fields["reason"] = f"{state.reason}; alias {record['alias']!r} was moved since"
        fields["ended_at"] = now_iso()
        record = _update(ports, endpoint, deployment_id, **fields)
        _mark_endpoint(ports, endpoint, record)
        return record


def _update(ports: Ports, endpoint: str, deployment_id: str, **fields: Any) -> dict[str, Any]:
    def change(current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **fields, "updated_at": now_iso()}

    return concurrency.update(
        ports.metadata, _pk(endpoint), deployment_id, change, what=f"deployment {deployment_id}"
    )


def _mark_endpoint(ports: Ports, endpoint: str, record: dict[str, Any]) -> None:
    summary = {
        "id": record["id"],
        "status": record["status"],
        "from_version": record["from_version"],
        "to_version": record["to_version"],
        "reason": record.get("reason"),
    }

    def change(current: dict[str, Any]) -> dict[str, Any]:
        return {**current, "deployment": summary, "updated_at": now_iso()}

    concurrency.update(ports.metadata, tables.ENDPOINTS, endpoint, change, what=endpoint)


def _guarded(ports: Ports) -> Any:
    runtime = ports.endpoints
    if not hasattr(runtime, "start_rollout"):
        raise BadRequestError("this endpoint runtime does not run guarded deployments")
    return runtime


def abort(ports: Ports, endpoint: str, reason: str) -> dict[str, Any] | None:
    """Roll back the endpoint's deployment in flight (monitoring's ``rollback`` alarm
    action); returns it, or None when none is in flight. On AWS SageMaker rolls back by
    itself when the deployment's alarms fire; there is no call to cancel it early."""
    item = deployment.record(ports, endpoint)
    active = item.get("deployment")
    if not active or active.get("status") in TERMINAL_ROLLOUTS:
        return None
    runtime = _guarded(ports)
    cancel = getattr(runtime, "abort_rollout", None)
    if cancel is None:
        raise ConflictError("this runtime rolls back guarded deployments by its own alarms")
    cancel(endpoint, active["id"], reason)
    return get(ports, endpoint, active["id"])
