"""Model registry: immutable numbered versions and movable aliases (conditional writes)."""

from __future__ import annotations

from typing import Any

from chalicelib import tables
from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.ports.metadata import ConditionFailedError, Record, Write
from chalicelib.runtime import Ports
from chalicelib.timeutil import now_iso

PUBLIC_VERSION_FIELDS = (
    "name", "version", "run_id", "pipeline", "task", "algorithm", "hyperparameters",
    "metrics", "data", "code_version", "artefact_uri", "sha256", "signature", "classes",
    "created_at",
)  # fmt: skip


def _head(ports: Ports, name: str) -> Record:
    head = ports.metadata.get(tables.MODELS, name)
    if head is None:
        raise NotFoundError(f"model {name!r} not found")
    return head


def register(ports: Ports, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Allocate the next version number and record it; the head and version move together."""
    for _ in range(10):
        head = ports.metadata.get(tables.MODELS, name)
        version = (head.item["latest_version"] if head else 0) + 1
        now = now_iso()
        record = {**fields, "name": name, "version": version, "created_at": now}
        head_item = {
            "name": name,
            "latest_version": version,
            "aliases": head.item["aliases"] if head else {},
            "created_at": head.item["created_at"] if head else now,
            "updated_at": now,
        }
        try:
            ports.metadata.put_many(
                [
                    Write(tables.model_versions(name), tables.version_sk(version), record, 0),
                    Write(tables.MODELS, name, head_item, head.rev if head else 0),
                ]
            )
        except ConditionFailedError:
            continue
        return record
    raise ConflictError(f"model {name!r} is being registered concurrently; try again")


def get_version(ports: Ports, name: str, version: int) -> dict[str, Any]:
    rec = ports.metadata.get(tables.model_versions(name), tables.version_sk(version))
    if rec is None:
        _head(ports, name)
        raise NotFoundError(f"model {name!r} has no version {version}")
    return rec.item


def public(version: dict[str, Any]) -> dict[str, Any]:
    return {k: version.get(k) for k in PUBLIC_VERSION_FIELDS}


def list_versions(ports: Ports, name: str) -> list[dict[str, Any]]:
    head = _head(ports, name)
    aliases_by_version: dict[int, list[str]] = {}
    for alias, v in head.item["aliases"].items():
        aliases_by_version.setdefault(v, []).append(alias)
    return [
        {**public(r.item), "aliases": sorted(aliases_by_version.get(r.item["version"], []))}
        for r in ports.metadata.query(tables.model_versions(name))
    ]


def get_model(ports: Ports, name: str) -> dict[str, Any]:
    return _head(ports, name).item


def list_models(ports: Ports) -> list[dict[str, Any]]:
    return [r.item for r in ports.metadata.query(tables.MODELS)]


def resolve_alias(ports: Ports, name: str, alias: str) -> int:
    head = _head(ports, name)
    if alias not in head.item["aliases"]:
        raise NotFoundError(f"model {name!r} has no alias {alias!r}")
    return int(head.item["aliases"][alias])


def set_alias(
    ports: Ports, name: str, alias: str, version: int, *, expect: int | None = None
) -> int | None:
    """Point ``alias`` at ``version``; returns the version it pointed at before.

    ``expect`` makes the move conditional on the alias's current target (compare-and-set),
    so two concurrent deploys or a deploy racing a rollback cannot silently overwrite.
    """
    get_version(ports, name, version)
    for _ in range(10):
        head = _head(ports, name)
        previous = head.item["aliases"].get(alias)
        if expect is not None and previous != expect:
            raise ConflictError(
                f"alias {alias!r} of {name!r} points at v{previous}, expected v{expect}"
            )
        item = {
            **head.item,
            "aliases": {**head.item["aliases"], alias: version},
            "updated_at": now_iso(),
        }
        try:
            ports.metadata.put(Write(tables.MODELS, name, item, head.rev))
        except ConditionFailedError:
            continue
        return int(previous) if previous is not None else None
    raise ConflictError(f"alias {alias!r} of {name!r} is being moved concurrently; try again")
