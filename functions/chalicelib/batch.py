"""Batch predictions: score a whole dataset version with a model version (or alias) and keep
the scored rows as a new version of an output dataset.

A batch prediction is a run of kind ``batch`` (one execution of the one state machine, with
its own status, like a pipeline run): StartTransformJob → wait/check → RegisterOutputDataset.
The job is a SageMaker Batch Transform job on AWS and ``sagemaker_jobs/batch_transform.py``
under the local job runner (same hooks, chunked). Everything a caller can get wrong is
checked here, before anything is launched.
"""

from __future__ import annotations

from typing import Any

from chalicelib import datasets, pipelines, registry, runs, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError
from chalicelib.runtime import Ports
from chalicelib.schemas import BatchPredictionCreate

KIND = "batch"
PREDICTION = "prediction"  # the columns scoring adds: sagemaker_jobs/batch_transform.py
PROBA_PREFIX = "proba_"
_NUMERIC_INPUTS = frozenset({"integer", "number", "boolean"})


def added_columns(version: dict[str, Any]) -> list[str]:
    names = [PREDICTION]
    if version.get("task") == "classification":
        names += [f"{PROBA_PREFIX}{c}" for c in version.get("classes") or []]
    return names


def resolve_model(
    ports: Ports, name: str, version: int | None, alias: str | None
) -> dict[str, Any]:
    """The model version to score with (an alias is resolved now: the run keeps scoring
    with that version even if the alias moves meanwhile)."""
    number = version if version is not None else registry.resolve_alias(ports, name, str(alias))
    record = registry.get_version(ports, name, number)
    if record.get("status", "READY") != "READY":
        raise ConflictError(f"model {name!r} v{number} is {record['status']}")
    if not record.get("artefact_key") or not record.get("sha256"):
        raise ConflictError(f"model {name!r} v{number} has no verifiable artefact to score with")
    return record


def check_fits(model: dict[str, Any], dataset: dict[str, Any], profile: dict[str, Any]) -> None:
    """The dataset has every column the model reads, with values it can take, and none of
    the columns scoring adds."""
    where = f"dataset {dataset['name']!r} v{dataset['version']}"
    columns = {c["name"]: c["type"] for c in dataset["schema"]}
    signature: list[dict[str, str]] = model["signature"]
    missing = [f["name"] for f in signature if f["name"] not in columns]
    if missing:
        shown = ", ".join(map(repr, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise BadRequestError(
            f"{where} lacks column(s) {shown} that model {model['name']!r} "
            f"v{model['version']} reads"
        )
    empty = {
        c["name"] for c in profile.get("columns", []) if c.get("missing") == profile.get("rows")
    }
    for field in signature:
        have = columns[field["name"]]
        # An all-missing column is imputed, whatever its type.
        numeric = field["type"] in _NUMERIC_INPUTS
        if numeric and have not in _NUMERIC_INPUTS and field["name"] not in empty:
            raise BadRequestError(
                f"column {field['name']!r} is {have} in {where}; model {model['name']!r} "
                f"v{model['version']} reads it as {field['type']}"
            )
    taken = [c for c in added_columns(model) if c in columns]
    if taken:
        raise BadRequestError(
            f"{where} already has column(s) {', '.join(map(repr, taken))}, which scoring adds"
        )


def start(ports: Ports, body: BatchPredictionCreate) -> dict[str, Any]:
    model = resolve_model(ports, body.model, body.model_version, body.alias)
    dataset = datasets.get_version(ports, body.dataset.name, body.dataset.version)
    if dataset["status"] != "READY":
        raise ConflictError(
            f"dataset {dataset['name']!r} v{dataset['version']} is {dataset['status']}"
        )
    output = body.output.dataset
    if output == dataset["name"]:
        raise BadRequestError(
            "output.dataset must differ from the scored dataset: a scored version would "
            "become its latest version"
        )
    readers = pipelines.using_dataset(ports, output, None)
    if readers:
        raise ConflictError(
            f"pipeline(s) {', '.join(sorted(readers))} read dataset {output!r}: a new version "
            "of scored rows would change what they train on; choose another output dataset"
        )
    check_fits(model, dataset, datasets.get_profile(ports, dataset))
    summary = {
        "model": {"name": model["name"], "version": model["version"], "alias": body.alias},
        "dataset": {"name": dataset["name"], "version": dataset["version"]},
        "output": {"dataset": output, "version": None},
        "rows": None,
    }
    started = runs.launch(
        ports,
        KIND,
        {"batch": summary},
        {
            "batch": {
                "model": {"name": model["name"], "version": model["version"],
                          "artefact_key": model["artefact_key"], "sha256": model["sha256"]},
                "dataset": {"name": dataset["name"], "version": dataset["version"],
                            "key": dataset["key"]},
                "alias": body.alias,
                "output": {"dataset": output},
                "chunk_rows": body.chunk_rows,
            }
        },
    )  # fmt: skip
    return get(ports, started["run_id"])


def view(run: dict[str, Any]) -> dict[str, Any]:
    """A batch prediction as the API shows it."""
    summary = run["batch"]
    return {
        "id": run["run_id"],
        "status": run["status"],
        **summary,
        "steps": run.get("steps", []),
        "error": run.get("error"),
        "created_at": run.get("created_at"),
        "ended_at": run.get("ended_at"),
    }


def get(ports: Ports, batch_id: str) -> dict[str, Any]:
    try:
        run = runs.get(ports, batch_id)
    except NotFoundError:
        raise NotFoundError(f"batch prediction {batch_id!r} not found") from None
    if run.get("kind") != KIND:
        raise NotFoundError(f"batch prediction {batch_id!r} not found")
    return view(run)


def list_all(ports: Ports) -> list[dict[str, Any]]:
    """Every batch prediction, newest first (without steps: GET one for those)."""
    found = [r.item for r in ports.metadata.query(tables.RUNS) if r.item.get("kind") == KIND]
    found.sort(key=lambda r: (r["created_at"], r["run_id"]), reverse=True)
    return [{k: v for k, v in view(r).items() if k != "steps"} for r in found]


def cancel(ports: Ports, batch_id: str) -> dict[str, Any]:
    get(ports, batch_id)
    return view(runs.cancel(ports, batch_id))
