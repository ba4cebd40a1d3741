"""The batch prediction flow's Lambda steps (``workflow.TASKS`` of kind ``batch``).

The execution input carries ``batch``: the model version (artefact key and sha256), the
dataset version (data key), the output dataset's name and the chunk size, all resolved and
checked by ``chalicelib.batch.start``. The steps check again what may have changed since.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from chalicelib import datasets, registry
from chalicelib.errors import NotFoundError, StepError
from chalicelib.ports import JobSpec
from chalicelib.steps import StepContext, StepResult, _check, _start_job, job_name, task

# What the transform job writes: locally batch_transform.py's predictions.parquet; on AWS
# Batch Transform's "<input object>.out" (Parquet from the hooks' output_fn).
_OUTPUT_SUFFIXES = (".parquet", ".parquet.out")


def _batch(ctx: StepContext) -> dict[str, Any]:
    return dict(ctx.event["batch"])


@task("start_transform")
def start_transform(ctx: StepContext) -> StepResult:
    batch = _batch(ctx)
    model, data = batch["model"], batch["dataset"]
    try:
        version = registry.get_version(ctx.ports, model["name"], int(model["version"]))
        dataset = datasets.get_version(ctx.ports, data["name"], int(data["version"]))
    except NotFoundError as exc:
        raise StepError(f"{exc.message} (deleted since the batch prediction started)") from None
    if version.get("sha256") != model["sha256"]:
        raise StepError(f"model {model['name']!r} v{model['version']} changed since it was chosen")
    if dataset["status"] != "READY":
        raise StepError(f"dataset {data['name']!r} v{data['version']} is {dataset['status']}")
    return _start_job(
        ctx,
        JobSpec(
            name=job_name(ctx.run_id, "transform", 1),
            kind="transform",
            entry_point="batch_transform.py",
            arguments={
                "sha256": model["sha256"],
                "chunk-rows": str(batch.get("chunk_rows", 65536)),
                "model-name": model["name"],
                "model-version": str(model["version"]),
            },
            inputs={"model": model["artefact_key"], "data": data["key"]},
            output_prefix=f"{ctx.prefix}/batch",
            max_runtime_seconds=ctx.ports.settings.max_job_seconds,
        ),
    )


@task("check_transform")
def check_transform(ctx: StepContext) -> StepResult:
    return _check(ctx, "batch transform", "transform_job", done_step=True)


@task("register_output")
def register_output(ctx: StepContext) -> StepResult:
    batch = _batch(ctx)
    prefix = ctx.event["transform_job"]["outputs"]["output"]
    found = [k for k in ctx.ports.store.list(prefix + "/") if k.endswith(_OUTPUT_SUFFIXES)]
    if len(found) != 1:
        raise StepError(f"the transform job wrote {len(found)} output files, expected one")
    name = batch["output"]["dataset"]
    with tempfile.TemporaryDirectory() as scratch:
        local = ctx.ports.store.get_file(found[0], Path(scratch) / "predictions.parquet")
        source = {
            "type": "batch_prediction",
            "batch_id": ctx.run_id,
            "model": {"name": batch["model"]["name"], "version": batch["model"]["version"]},
            "dataset": {"name": batch["dataset"]["name"], "version": batch["dataset"]["version"]},
        }
        record = datasets.store_parquet_version(ctx.ports, name, local, source, ctx.run_id)
    output = {"dataset": name, "version": record["version"], "rows": record["rows"]}
    summary = {
        "model": {**{k: batch["model"][k] for k in ("name", "version")},
                  "alias": batch.get("alias")},
        "dataset": {k: batch["dataset"][k] for k in ("name", "version")},
        "output": {"dataset": name, "version": record["version"]},
        "rows": record["rows"],
    }  # fmt: skip
    return StepResult(output, detail={"detail": output}, run_fields={"batch": summary})
