"""Endpoints: serve a model version, follow an alias, roll back, answer predictions.

Rules (the README states them for users):

- An endpoint serves one model. It either follows an alias (it serves whatever version the
  alias points at) or serves a fixed version.
- The runtime is updated before the alias moves: if the endpoint cannot take the new version
  (still updating, or the model fails to load), the alias stays where it was and the caller
  gets a 409.
- Pipeline deploys only move an alias forward, and go out in version order: a Deploy of vK
  first waits (bounded) for the older versions registered by runs still in flight to pass
  their own Deploy (``deploy_order``); a run whose version is older than the one already
  deployed skips its deploy (and says so). Users move aliases anywhere
  (``PUT /models/{m}/aliases/{a}``) and roll back.
- ``history`` holds the versions the endpoint really served, in order; rollback serves the
  one before the current and moves a followed alias back with it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from chalicelib import concurrency, deploy_order, registry, scoring, tables
from chalicelib.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    StepError,
)
from chalicelib.ports import (
    TERMINAL_ROLLOUTS,
    Deployment,
    EndpointNotReadyError,
    ForeignResourceError,
    ModelFailedError,
    ModelInputError,
    Write,
)
from chalicelib.runtime import Ports
from chalicelib.schemas import EndpointCreate
from chalicelib.timeutil import now_iso

HISTORY = 50

# Signatures of served versions: immutable per (model, version), so cached per process.
_signatures: dict[tuple[str, int], list[dict[str, str]]] = {}
_sig_lock = threading.Lock()


def as_deployment(endpoint: str, version: dict[str, Any]) -> Deployment:
    """What the runtime serves for a version: its archive, and its ONNX fast path when one
    was built and agrees with scikit-learn (``fast_path`` on the version)."""
    fast = version.get("fast_path") or {}
    use_fast = fast.get("runtime") == "onnx" and fast.get("agrees") and fast.get("key")
    return Deployment(
        endpoint=endpoint,
        model=version["name"],
        version=int(version["version"]),
        artefact_key=version["artefact_key"],
        sha256=version["sha256"],
        fastpath_key=fast["key"] if use_fast else None,
        fastpath_sha256=fast.get("sha256") if use_fast else None,
    )


_deployment = as_deployment


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item["name"],
        "model": item["model"],
        "alias": item.get("alias"),
        "model_version": item["version"],
        "status": item["status"],
        "history": item["history"],
        "deployment": item.get("deployment"),
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
    }


def _record(ports: Ports, name: str) -> dict[str, Any]:
    rec = ports.metadata.get(tables.ENDPOINTS, name)
    if rec is None:
        raise NotFoundError(f"endpoint {name!r} not found")
    return rec.item


record = _record


def get(ports: Ports, name: str) -> dict[str, Any]:
    item = _record(ports, name)
    in_flight = None
    active = item.get("deployment")
    if active and active.get("status") not in TERMINAL_ROLLOUTS:
        from chalicelib import deployments  # the guarded deployments build on this module

        # Brought up to the runtime's state first: if it has just ended, the record moved.
        in_flight = deployments.get(ports, name, active["id"])
        item = _record(ports, name)
    if ports.settings.profile == "aws":  # locally the stack's watcher does it
        from chalicelib import fast_path

        fast = fast_path.refresh(ports, item["model"], int(item["version"]))
        if fast and fast.get("status") == "READY" and fast.get("key"):
            fast_path.apply(ports, item["model"], int(item["version"]))
    return _live(ports, item, in_flight)


def _live(
    ports: Ports, item: dict[str, Any], in_flight: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record with the runtime's own view of its status: a SageMaker endpoint is
    Creating/Updating for minutes, and a local one whose model cannot be loaded is Failed
    (with the reason) — the status stored at deploy time would be stale."""
    name = item["name"]
    out = {**_public(item), "status": ports.endpoints.status(name)}
    reason = getattr(ports.endpoints, "failure_reason", lambda _: None)(name)
    if reason:
        out["failure_reason"] = reason
    describe = getattr(ports.endpoints, "describe", None)
    if describe is not None:
        # url, runtime (onnx | sklearn) and why, restarts, variants with weights.
        out.update(describe(name))
    if in_flight is not None:
        out["deployment"] = in_flight
    return out


def list_all(ports: Ports) -> list[dict[str, Any]]:
    return [_live(ports, r.item) for r in ports.metadata.query(tables.ENDPOINTS)]


def _deploy(ports: Ports, endpoint: str, version: dict[str, Any]) -> None:
    try:
        ports.endpoints.deploy(_deployment(endpoint, version))
    except EndpointNotReadyError as exc:
        raise ConflictError(f"endpoint {endpoint!r} cannot take a new version now: {exc}") from None
    except ForeignResourceError as exc:
        raise ConflictError(str(exc)) from None


def create(ports: Ports, req: EndpointCreate) -> dict[str, Any]:
    if ports.metadata.get(tables.ENDPOINTS, req.name) is not None:
        raise ConflictError(f"endpoint {req.name!r} already exists")
    number = (
        registry.resolve_alias(ports, req.model, req.alias)
        if req.alias is not None
        else int(req.version or 0)
    )
    version = registry.get_version(ports, req.model, number)
    with _lease(ports, req.name):
        if ports.metadata.get(tables.ENDPOINTS, req.name) is not None:
            raise ConflictError(f"endpoint {req.name!r} already exists")
        _deploy(ports, req.name, version)
        now = now_iso()
        item = {
            "name": req.name, "model": req.model, "alias": req.alias, "version": number,
            "history": [number], "status": "InService", "created_at": now, "updated_at": now,
        }  # fmt: skip
        ports.metadata.put(Write(tables.ENDPOINTS, req.name, item, expected_rev=0))
    return _public(item)


def served(ports: Ports, name: str, number: int, *, follow_alias: str | None = None) -> None:
    """Record that endpoint ``name`` now serves v``number`` (a guarded deployment that
    completed moved the traffic itself). Hold its lease."""

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        alias = follow_alias or current.get("alias")
        if current["version"] == number and current.get("alias") == alias:
            return None
        history = current["history"]
        if current["version"] != number:
            history = [*history, number][-HISTORY:]
        return {**current, "version": number, "history": history, "alias": alias,
                "updated_at": now_iso()}  # fmt: skip

    concurrency.update(ports.metadata, tables.ENDPOINTS, name, change, what=f"endpoint {name!r}")


def _lease(ports: Ports, name: str) -> Any:
    """One change to an endpoint at a time (runtime and record together), across processes:
    concurrent deploys are serialized, so the served history only moves as decided."""
    return concurrency.lease(ports.metadata, f"endpoint#{name}")


lease = _lease


def _serve(ports: Ports, name: str, number: int) -> dict[str, Any]:
    """Make endpoint ``name`` serve v``number`` of its model (runtime first, then the
    record); history grows only when the served version really changes. Hold its lease."""
    item = _record(ports, name)
    if item["version"] == number:
        return item
    version = registry.get_version(ports, item["model"], number)
    _deploy(ports, name, version)

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        if current["version"] == number:
            return None
        history = [*current["history"], number][-HISTORY:]
        return {**current, "version": number, "history": history, "updated_at": now_iso()}

    return concurrency.update(
        ports.metadata, tables.ENDPOINTS, name, change, what=f"endpoint {name!r}"
    )


def followers(ports: Ports, model: str, alias: str) -> list[str]:
    return [
        r.item["name"]
        for r in ports.metadata.query(tables.ENDPOINTS)
        if r.item["model"] == model and r.item.get("alias") == alias
    ]


def _follow(ports: Ports, name: str) -> dict[str, Any]:
    """Serve the version the endpoint's alias points at now (under its lease)."""
    with _lease(ports, name):
        item = _record(ports, name)
        alias = item.get("alias")
        if not alias:
            return item
        return _serve(ports, name, registry.resolve_alias(ports, item["model"], alias))


def move_alias(ports: Ports, model: str, alias: str, number: int) -> dict[str, Any]:
    """A user's alias move (any version, forward or back). Endpoints that follow the alias
    take the version first; if one cannot, the ones already moved go back and nothing
    changes (409)."""
    registry.get_version(ports, model, number)
    following = followers(ports, model, alias)
    done: list[tuple[str, int]] = []
    for name in following:
        with _lease(ports, name):
            before = int(_record(ports, name)["version"])
            try:
                _serve(ports, name, number)
            except ConflictError:
                for moved, served_before in done:
                    with _lease(ports, moved):
                        _serve(ports, moved, served_before)
                raise
            done.append((name, before))
    previous, _ = registry.set_alias(ports, model, alias, number)
    for name in following:  # a concurrent move may have won: follow the alias's last word
        _follow(ports, name)
    return {
        "model": model,
        "alias": alias,
        "version": number,
        "previous_version": previous,
        "endpoints": following,
    }


def check_pipeline_target(ports: Ports, endpoint: str, model: str) -> None:
    """A pipeline may deploy only to an endpoint of its own model (or a new one)."""
    rec = ports.metadata.get(tables.ENDPOINTS, endpoint)
    if rec is not None and rec.item["model"] != model:
        raise ConflictError(
            f"endpoint {endpoint!r} serves model {rec.item['model']!r}, not {model!r}; "
            "choose another endpoint name"
        )


def deploy_from_pipeline(
    ports: Ports, name: str, model: str, alias: str, number: int
) -> dict[str, Any]:
    """A pipeline's Deploy, under the endpoint's lease: the endpoint takes v``number``,
    then the alias moves to it — forward only. Returns ``deployed``, or ``skipped`` when a
    newer version is already deployed (runs that finish out of order never go backwards)."""
    try:
        check_pipeline_target(ports, name, model)
    except ConflictError as exc:
        raise StepError(exc.message) from None
    version = registry.get_version(ports, model, number)
    deploy_order.wait_for_older_deploys(ports, model, number)
    with _lease(ports, name):
        current = registry.get_model(ports, model)["aliases"].get(alias)
        if current is not None and int(current) > number:
            return {
                "status": "skipped",
                "reason": f"alias {alias!r} already points at the newer v{current}",
                "alias_version": int(current),
            }
        rec = ports.metadata.get(tables.ENDPOINTS, name)
        if rec is None:
            _deploy(ports, name, version)
            now = now_iso()
            item = {
                "name": name, "model": model, "alias": alias, "version": number,
                "history": [number], "status": "InService", "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            ports.metadata.put(Write(tables.ENDPOINTS, name, item, expected_rev=0))
        else:
            _serve(ports, name, number)
        previous, moved = registry.set_alias(ports, model, alias, number, forward_only=True)
    others = [e for e in followers(ports, model, alias) if e != name]
    for other in others:
        _follow(ports, other)
    if not moved and previous is not None and previous > number:
        # A user or a pipeline of another endpoint moved the alias further meanwhile.
        served = _follow(ports, name) if _record(ports, name).get("alias") == alias else None
        return {
            "status": "skipped",
            "reason": f"alias {alias!r} moved to the newer v{previous} meanwhile",
            "alias_version": previous,
            "served_version": served["version"] if served else number,
        }
    return {
        "status": "deployed",
        "alias_version": number,
        "previous_version": previous,
        "served_version": number,
    }


def rollback(ports: Ports, name: str) -> dict[str, Any]:
    """Serve the previously served version again; an alias the endpoint follows moves too."""
    with _lease(ports, name):
        item = _record(ports, name)
        if len(item["history"]) < 2:
            raise ConflictError(f"endpoint {name!r} has no previous version to roll back to")
        current, previous = item["history"][-1], item["history"][-2]
        try:
            version = registry.get_version(ports, item["model"], previous)
        except NotFoundError:
            raise ConflictError(
                f"endpoint {name!r} cannot roll back to {item['model']} v{previous}: that "
                "version has been deleted; it keeps serving "
                f"v{current}"
            ) from None
        _deploy(ports, name, version)
        if item.get("alias"):
            registry.set_alias(ports, item["model"], item["alias"], previous, expect=current)

        def change(cur: dict[str, Any]) -> dict[str, Any]:
            return {**cur, "version": previous, "history": cur["history"][:-1],
                    "updated_at": now_iso()}  # fmt: skip

        new = concurrency.update(ports.metadata, tables.ENDPOINTS, name, change, what=name)
    return {**_public(new), "rolled_back_from": current}


def delete(ports: Ports, name: str) -> None:
    with _lease(ports, name):
        _record(ports, name)
        try:
            ports.endpoints.delete(name)
        except ForeignResourceError as exc:
            raise ConflictError(str(exc)) from None
        ports.metadata.delete(tables.ENDPOINTS, name)


def serving(ports: Ports, model: str, version: int) -> list[str]:
    """The endpoints that serve ``model`` v``version``."""
    return [
        r.item["name"]
        for r in ports.metadata.query(tables.ENDPOINTS)
        if r.item["model"] == model and int(r.item["version"]) == version
    ]


def _signature(ports: Ports, model: str, number: int) -> list[dict[str, str]]:
    key = (model, number)
    sig = _signatures.get(key)
    if sig is None:
        sig = registry.get_version(ports, model, number)["signature"]
        with _sig_lock:
            _signatures[key] = sig
    return sig


def invoke(
    ports: Ports,
    name: str,
    body: bytes,
    content_type: str,
    trace: dict[str, Any] | None = None,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """Check the rows against the served version's signature (the 400s are the API's),
    forward them to the endpoint and say which version answered (during a canary, either).
    ``trace`` (monitoring) receives the served ``version``, the ``model_ns`` spent in the
    runtime, and the model's ``input``/``output`` bodies."""
    item = _record(ports, name)
    model, number = item["model"], int(item["version"])
    if trace is not None:
        trace["version"] = number
    canonical = scoring.parse(body, content_type, _signature(ports, model, number))
    forwarded = json.dumps(canonical).encode()
    variant = None
    started = time.perf_counter_ns()
    try:
        by_variant = getattr(ports.endpoints, "invoke_variant", None)
        if by_variant is not None:
            raw, variant = by_variant(name, forwarded, "application/json", inference_id)
        else:
            raw = ports.endpoints.invoke(name, forwarded, "application/json")
    except ModelInputError as exc:
        raise BadRequestError(f"the model rejected the input: {exc}") from None
    except ModelFailedError:
        raise ServiceUnavailableError(
            f"the model of endpoint {name!r} failed to answer; see its server log"
        ) from None
    except EndpointNotReadyError as exc:
        raise ConflictError(f"endpoint {name!r} cannot serve: {exc}") from None
    finally:
        if trace is not None:
            trace["model_ns"] = time.perf_counter_ns() - started
    result = json.loads(raw)
    served_version = number
    if variant and variant.startswith("v") and variant[1:].isdigit():
        served_version = int(variant[1:])
    if trace is not None:
        trace["input"], trace["output"] = forwarded, raw
        trace["version"] = served_version
        if variant:
            trace["variant"] = variant
    return {**result, "model": model, "model_version": served_version}
