"""A model version's evaluation report (written by evaluate.py beside evaluation.json)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib import registry
from chalicelib.errors import NotFoundError
from chalicelib.runtime import Ports


def plot(ports: Ports, name: str, version: int, plot: str) -> bytes:
    body = report(ports, name, version)
    available = body.get("plots") or []
    if plot not in available:
        raise NotFoundError(
            f"model {name!r} v{version} has no plot {plot!r}; it has: "
            f"{', '.join(available) or 'none'}"
        )
    key = str(registry.get_version(ports, name, version)["report_key"])
    return ports.store.get_bytes(key.rsplit("/", 1)[0] + f"/plots/{plot}.png")


def report(ports: Ports, name: str, version: int) -> dict[str, Any]:
    record = registry.get_version(ports, name, version)
    key = record.get("report_key")
    if not isinstance(key, str) or not ports.store.exists(key):
        raise NotFoundError(f"model {name!r} v{version} has no evaluation report")
    body: dict[str, Any] = json.loads(ports.store.get_bytes(key))
    return {
        "name": name,
        "version": version,
        "status": record.get("status"),
        "status_reason": record.get("status_reason"),
        "champion": record.get("champion"),
        "tuning": record.get("tuning"),
        **body,
    }
