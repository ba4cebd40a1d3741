"""Model registry: immutable numbered versions and movable aliases (conditional writes)."""

from __future__ import annotations

from typing import Any

from chalicelib import concurrency, offload, tables
from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.ports import Delete, Record, Write
from chalicelib.runtime import Ports
from chalicelib.timeutil import now_iso

PUBLIC_VERSION_FIELDS = (
    "name", "version", "status", "run_id", "pipeline", "task", "algorithm", "hyperparameters",
    "metrics", "data", "code_version", "artefact_uri", "sha256", "signature", "classes",
    "excluded_columns", "preprocessing", "fast_path", "created_at",
    # Provenance and model-quality fields (issue "Models": chalicelib/model_steps.py).
    "seed", "training_data", "effective_hyperparameters", "class_weight", "cross_validation",
    "libraries", "tuning", "champion", "status_reason",
)  # fmt: skip


def _head(ports: Ports, name: str) -> Record:
    head = ports.metadata.get(tables.MODELS, name)
    if head is None:
        raise NotFoundError(f"model {name!r} not found")
    return head


def register(ports: Ports, name: str, run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Allocate the next version number and record it; the head, the version and the run's
    claim on it move together, so a retried Register returns the version it made."""

    # A signature has one entry per input column: past a few hundred it lives beside the
    # model's artefact, not in the version record (DynamoDB items stop at 400 KB).
    fields = offload.offload(
        ports.store, fields, "signature", f"runs/{run_id}/model/signature.json"
    )

    def attempt() -> dict[str, Any]:
        claimed = ports.metadata.get(tables.model_runs(name), run_id)
        if claimed is not None:
            return get_version(ports, name, int(claimed.item["version"]))
        head = ports.metadata.get(tables.MODELS, name)
        version = (head.item["latest_version"] if head else 0) + 1
        now = now_iso()
        record = {"status": "READY", **fields, "name": name, "version": version,
                  "run_id": run_id, "created_at": now}  # fmt: skip
        head_item = {
            "name": name,
            "latest_version": version,
            "aliases": head.item["aliases"] if head else {},
            "created_at": head.item["created_at"] if head else now,
            "updated_at": now,
        }
        ports.metadata.put_many(
            [
                Write(tables.model_versions(name), tables.version_sk(version), record, 0),
                Write(tables.MODELS, name, head_item, head.rev if head else 0),
                Write(tables.model_runs(name), run_id, {"version": version}, 0),
            ]
        )
        return record

    result: dict[str, Any] = concurrency.retry(attempt, what=f"model {name!r}")
    return offload.hydrate(ports.store, result, "signature")


def get_version(ports: Ports, name: str, version: int) -> dict[str, Any]:
    rec = ports.metadata.get(tables.model_versions(name), tables.version_sk(version))
    if rec is None:
        _head(ports, name)
        raise NotFoundError(f"model {name!r} has no version {version}")
    return offload.hydrate(ports.store, rec.item, "signature")


def public(version: dict[str, Any]) -> dict[str, Any]:
    return {k: version.get(k) for k in PUBLIC_VERSION_FIELDS}


def list_versions(ports: Ports, name: str) -> list[dict[str, Any]]:
    head = _head(ports, name)
    aliases_by_version: dict[int, list[str]] = {}
    for alias, v in head.item["aliases"].items():
        aliases_by_version.setdefault(v, []).append(alias)
    return [
        {
            **public(offload.hydrate(ports.store, r.item, "signature")),
            "aliases": sorted(aliases_by_version.get(r.item["version"], [])),
        }
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
    ports: Ports,
    name: str,
    alias: str,
    version: int,
    *,
    expect: int | None = None,
    forward_only: bool = False,
) -> tuple[int | None, bool]:
    """Point ``alias`` at ``version``; returns (the version it pointed at before, moved?).

    ``expect`` makes the move conditional on the alias's current target (compare-and-set),
    so a rollback racing a deploy fails instead of overwriting. ``forward_only`` (pipeline
    deploys) never moves an alias to an older version than it points at: when runs finish
    out of order, the newest version stays deployed.
    """
    get_version(ports, name, version)
    previous: list[int | None] = [None]
    moved = [False]

    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        current = item["aliases"].get(alias)
        previous[0] = int(current) if current is not None else None
        moved[0] = False
        if expect is not None and current != expect:
            raise ConflictError(
                f"alias {alias!r} of {name!r} points at v{current}, expected v{expect}"
            )
        if current == version or (forward_only and current is not None and current > version):
            return None
        moved[0] = True
        return {**item, "aliases": {**item["aliases"], alias: version}, "updated_at": now_iso()}

    concurrency.update(ports.metadata, tables.MODELS, name, change, what=f"model {name!r}")
    return previous[0], moved[0]


def delete_alias(ports: Ports, name: str, alias: str) -> None:
    def change(item: dict[str, Any]) -> dict[str, Any]:
        if alias not in item["aliases"]:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        aliases = {k: v for k, v in item["aliases"].items() if k != alias}
        return {**item, "aliases": aliases, "updated_at": now_iso()}

    concurrency.update(ports.metadata, tables.MODELS, name, change, what=f"model {name!r}")


def delete_version(ports: Ports, name: str, version: int, in_use: list[str]) -> None:
    """Delete a version (its record and artefacts). Refused (409) while an alias points at
    it or an endpoint (``in_use``: their names) serves it."""
    record = get_version(ports, name, version)
    if in_use:
        raise ConflictError(
            f"{name} v{version} is served by endpoint(s) {', '.join(sorted(in_use))}; "
            "move or delete them first"
        )

    def attempt() -> None:
        head = _head(ports, name)
        aliases = sorted(a for a, v in head.item["aliases"].items() if v == version)
        if aliases:
            raise ConflictError(
                f"{name} v{version} is behind alias(es) {', '.join(aliases)}; move them first"
            )
        rec = ports.metadata.get(tables.model_versions(name), tables.version_sk(version))
        if rec is None:
            return
        ports.metadata.put_many(
            [
                Delete(tables.model_versions(name), tables.version_sk(version), rec.rev),
                Write(tables.MODELS, name, {**head.item, "updated_at": now_iso()}, head.rev),
            ]
        )

    concurrency.retry(attempt, what=f"model {name!r}")
    run_id = record.get("run_id")
    if run_id:
        ports.metadata.delete(tables.model_runs(name), run_id)
    key = record.get("artefact_key")
    if isinstance(key, str) and key.endswith("/model.tar.gz"):
        ports.store.delete_prefix(key)
    if record.get("signature_key"):
        ports.store.delete_prefix(record["signature_key"])
