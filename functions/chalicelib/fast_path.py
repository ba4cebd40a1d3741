"""The ONNX fast path of a model version, built off the pipeline's critical path.

Register starts one processing job per run (``evaluate.py --fast-path only``: the whole
sklearn Pipeline converted to one ONNX graph and checked against scikit-learn on the held-out
split) and does not wait for it: the version is registered and deployed, and served by
scikit-learn, at once. Converting a large forest costs about twice its fit (measured in
INTEGRATION-serving.md), which inside Evaluate would break the pipeline's speed goal.

The version records ``fast_path``: ``{"status": "PENDING", "job", "output"}`` at first, then
(``refresh``) ``{"status": "READY", "runtime": "onnx"|"sklearn", "agrees", "reason",
"checked_rows", "max_abs_diff", "key", "sha256"}`` or ``{"status": "FAILED", "runtime":
"sklearn", "reason"}``. ``apply`` then restarts the endpoints serving the version on the fast
path (same URL; the model server verifies the ONNX file's sha256 and serves it only if its
report says it agrees). Locally a watcher thread of the stack calls both; on AWS they run
when the endpoint is read (``GET /endpoints/{name}``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from chalicelib import concurrency, registry, tables
from chalicelib.errors import MLPipeError, NotFoundError
from chalicelib.ports import EndpointNotReadyError, JobSpec
from chalicelib.runtime import Ports

log = logging.getLogger("mlpipe.fast_path")

JOB_STATE = "fastpath"


def start(ports: Ports, spec: JobSpec) -> dict[str, Any]:
    """Start the fast-path job (idempotent per name); never fails the caller."""
    try:
        ports.jobs.start(spec)
    except Exception as exc:  # the model still serves with scikit-learn
        log.warning("could not start the fast-path job %s: %s", spec.name, exc)
        return {"status": "FAILED", "runtime": "sklearn", "reason": "the job did not start"}
    return {"status": "PENDING", "job": spec.name, "output": spec.output_prefix}


def refresh(ports: Ports, model: str, number: int) -> dict[str, Any] | None:
    """Bring a PENDING fast path up to its job's outcome; returns the fast path now."""
    version = registry.get_version(ports, model, number)
    fast = version.get("fast_path")
    if not isinstance(fast, dict) or fast.get("status") != "PENDING":
        return fast if isinstance(fast, dict) else None
    try:
        status = ports.jobs.describe(fast["job"], "processing")
    except NotFoundError:
        status = None
    if status is not None and status.status == "InProgress":
        return fast
    if status is not None and status.status == "Completed":
        new = _outcome(ports, fast["output"])
    else:
        why = status.failure_reason if status is not None else "the job is gone"
        new = {"status": "FAILED", "runtime": "sklearn", "reason": f"fast-path job: {why}"}

    def change(item: dict[str, Any]) -> dict[str, Any] | None:
        current = item.get("fast_path") or {}
        if current.get("status") != "PENDING":
            return None
        return {**item, "fast_path": {**new, "job": fast["job"]}}

    updated = concurrency.update(
        ports.metadata,
        tables.model_versions(model),
        tables.version_sk(number),
        change,
        what=f"model {model!r} v{number}",
    )
    result = updated.get("fast_path")
    return result if isinstance(result, dict) else None


def _outcome(ports: Ports, output: str) -> dict[str, Any]:
    try:
        report = json.loads(ports.store.get_bytes(f"{output}/report.json"))
    except (FileNotFoundError, ValueError) as exc:
        return {"status": "FAILED", "runtime": "sklearn", "reason": f"no report: {exc}"}
    fields = {
        "status": "READY",
        "runtime": report.get("runtime", "sklearn"),
        "agrees": bool(report.get("agrees")),
        "reason": report.get("reason"),
        "checked_rows": report.get("checked_rows"),
        "max_abs_diff": report.get("max_abs_diff"),
    }
    if fields["runtime"] == "onnx" and fields["agrees"]:
        key = f"{output}/model.onnx"
        try:
            data = ports.store.get_bytes(key)
        except FileNotFoundError:
            return {**fields, "runtime": "sklearn", "reason": "model.onnx is missing"}
        # The sha256 the server checks before it loads the graph: taken from stored bytes.
        fields.update(key=output, sha256=hashlib.sha256(data).hexdigest())
    return fields


def apply(ports: Ports, model: str, number: int) -> list[str]:
    """Redeploy the endpoints serving v``number`` so they pick up its fast path; returns
    the endpoints restarted (one busy with a guarded deployment is left for later)."""
    from chalicelib import deployment  # deployment builds on registry; this on both

    version = registry.get_version(ports, model, number)
    restarted = []
    for name in deployment.serving(ports, model, number):
        try:
            with deployment.lease(ports, name):
                ports.endpoints.deploy(deployment.as_deployment(name, version))
            restarted.append(name)
        except (EndpointNotReadyError, MLPipeError) as exc:
            log.info("endpoint %s keeps scikit-learn for now: %s", name, exc)
    return restarted


def pending(ports: Ports) -> list[tuple[str, int]]:
    """(model, version) of the versions served by endpoints whose fast path is PENDING."""
    out = []
    for rec in ports.metadata.query(tables.ENDPOINTS):
        model, number = rec.item["model"], int(rec.item["version"])
        try:
            fast = registry.get_version(ports, model, number).get("fast_path") or {}
        except NotFoundError:
            continue
        if fast.get("status") == "PENDING" and (model, number) not in out:
            out.append((model, number))
    return out


def settle(ports: Ports) -> None:
    """One round of the local watcher: refresh pending fast paths, apply the finished."""
    for model, number in pending(ports):
        fast = refresh(ports, model, number)
        if fast and fast.get("status") == "READY" and fast.get("key"):
            apply(ports, model, number)
