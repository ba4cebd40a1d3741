"""Retraining triggers: EventBridge events that start pipeline runs (the ``retrain`` Lambda).

- **New data**: a file dropped under ``incoming/<dataset>/`` in the artefact bucket (S3 sends
  "Object Created" to EventBridge; a rule in iac/template.yaml targets this function). It
  becomes the next version of ``<dataset>`` (csv, parquet, json or jsonl by its extension),
  and every pipeline that follows that dataset's latest version starts a run on it.
- **Schedule**: an EventBridge schedule whose input is ``{"trigger": "schedule",
  "pipeline": "<name>"}`` starts a run of that pipeline.

EventBridge delivers at least once: each object version (key and ETag) is taken once, by a
create-only record, so a repeated event starts nothing twice.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib import datasets, pipelines, runs
from chalicelib.errors import BadRequestError, MLPipeError
from chalicelib.names import check_name
from chalicelib.ports import ConditionFailedError, Write
from chalicelib.runtime import Ports
from chalicelib.schemas import RunCreate
from chalicelib.timeutil import now_iso

log = logging.getLogger("mlpipe.triggers")

INCOMING = "incoming/"
TRIGGERS = "triggers"  # pk of the records that make each event count once
FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "jsonl",
           ".ndjson": "jsonl"}  # fmt: skip


def handle(ports: Ports, event: dict[str, Any]) -> dict[str, Any]:
    if event.get("trigger") == "schedule":
        name = check_name(str(event.get("pipeline", "")), "pipeline name")
        started = runs.start(ports, name, RunCreate())
        return {"trigger": "schedule", "runs": [started["run_id"]]}
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        return _new_data(ports, event["detail"])
    raise BadRequestError(f"not a retraining event: {sorted(event)}")


def _new_data(ports: Ports, detail: dict[str, Any]) -> dict[str, Any]:
    key = str(detail["object"]["key"])
    bucket = str(detail["bucket"]["name"])
    if bucket != ports.settings.bucket:
        raise BadRequestError(f"s3://{bucket}/{key} is not in this service's bucket")
    parts = key.removeprefix(INCOMING).split("/")
    suffix = "." + parts[-1].rsplit(".", 1)[-1].lower() if "." in parts[-1] else ""
    if not key.startswith(INCOMING) or len(parts) != 2 or suffix not in FORMATS:
        log.info("ignored %s: not incoming/<dataset>/<file>.{csv,parquet,json,jsonl}", key)
        return {"trigger": "new_data", "ignored": key}
    dataset = check_name(parts[0], "dataset name")
    seen = f"{key}@{detail['object'].get('etag', '')}"
    try:
        ports.metadata.put(Write(TRIGGERS, seen, {"key": key, "at": now_iso()}, expected_rev=0))
    except ConditionFailedError:
        return {"trigger": "new_data", "duplicate": key}
    version = datasets.store_version(
        ports, dataset, FORMATS[suffix], "s3-event", ports.store.get_bytes(key)
    )
    started = []
    for name in pipelines.using_dataset(ports, dataset, version["version"], version["version"]):
        spec = pipelines.load_spec(ports, name)
        if spec.dataset.version is not None:  # pinned to an older version: not retrained
            continue
        try:
            started.append(runs.start(ports, name, RunCreate())["run_id"])
        except MLPipeError as exc:  # one pipeline's refusal (429, 409) stops no other
            log.warning("retraining %s on %s v%s: %s", name, dataset, version["version"], exc)
    return {"trigger": "new_data", "dataset": version, "runs": started}
