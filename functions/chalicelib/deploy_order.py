"""Pipeline deploys of one model go out in version order.

Concurrent runs register v1..vN in one order and reach Deploy in another. Deploys only move
forward (``deployment.deploy_from_pipeline``), so without an order a run whose version was
overtaken would skip its deploy, and the endpoint's history would jump (1, 8, 9, 12, 20):
honest, but a rollback from v20 would go to v12. So a Deploy of vK first waits, for a bounded
time, until every older version of the same model registered by a run still in flight has
passed its own Deploy (deployed, skipped or failed). Only older versions are waited for, so
two deploys never wait for each other; a run that died between Register and Deploy holds the
others back for at most ``WAIT_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chalicelib import tables
from chalicelib.runtime import Ports

log = logging.getLogger("mlpipe.deploy")

WAIT_SECONDS = 60.0
POLL_SECONDS = 0.1
_DONE = ("SUCCEEDED", "FAILED", "SKIPPED", "ABORTED")


def older_deploys_pending(ports: Ports, model: str, number: int) -> list[str]:
    """Runs in flight that registered an older version of ``model`` and have not deployed."""
    slots = ports.metadata.get(tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK)
    pending = []
    for run_id in slots.item["runs"] if slots else []:
        rec = ports.metadata.get(tables.RUNS, run_id)
        if rec is None or rec.item["status"] != "RUNNING":
            continue
        registered: dict[str, Any] | None = rec.item.get("model")
        if not registered or registered.get("name") != model:
            continue
        if int(registered.get("version", 0)) >= number:
            continue
        deploy = next((s for s in rec.item["steps"] if s["name"] == "deploy"), None)
        if deploy is not None and deploy["status"] not in _DONE:
            pending.append(run_id)
    return pending


def wait_for_older_deploys(
    ports: Ports, model: str, number: int, timeout: float = WAIT_SECONDS
) -> list[str]:
    """Block until no older version's deploy is pending (or ``timeout``); returns the runs
    still pending when it gave up (empty: in order)."""
    deadline = time.monotonic() + timeout
    while True:
        pending = older_deploys_pending(ports, model, number)
        if not pending or time.monotonic() >= deadline:
            if pending:
                log.warning("deploying %s v%s before runs %s deployed", model, number, pending)
            return pending
        time.sleep(POLL_SECONDS)
