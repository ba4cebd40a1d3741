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
# Batch Transform's "<input object>.out" per input part (Parquet from the hooks' output_fn).
_OUTPUT_SUFFIXES = (".parquet", ".parquet.out")
# SageMaker Batch Transform sends each input object whole, at most 100 MB (MaxPayloadInMB):
# a dataset version larger than this is handed to the job as Parquet parts of about this size
# (both runners read every part of the input in name order).
PART_BYTES = 48 * 2**20


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
    data_input = data["key"]
    if int(dataset.get("bytes") or 0) > PART_BYTES:
        data_input = _split(ctx, data["key"], int(dataset["rows"]), int(dataset["bytes"]))
    return _start_job(
        ctx,
        "transform",
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
            inputs={"model": model["artefact_key"], "data": data_input},
            output_prefix=f"{ctx.prefix}/batch",
            max_runtime_seconds=ctx.ports.settings.max_job_seconds,
        ),
    )


def _split(ctx: StepContext, key: str, rows: int, size: int) -> str:
    """The dataset as Parquet parts of about PART_BYTES under the run's prefix; returns the
    prefix. Deterministic names: a retried step rewrites the same parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = f"{ctx.prefix}/batch-input"
    per_part = max(1, rows * PART_BYTES // max(size, 1))
    with tempfile.TemporaryDirectory() as scratch:
        source = pq.ParquetFile(ctx.ports.store.get_file(key, Path(scratch) / "data.parquet"))
        for i, batch in enumerate(source.iter_batches(batch_size=per_part)):
            part = Path(scratch) / "part.parquet"
            pq.write_table(pa.Table.from_batches([batch]), part)
            ctx.ports.store.put_file(f"{prefix}/part-{i:05d}.parquet", part)
    return prefix


def _merge(ctx: StepContext, keys: list[str], dest: Path) -> Path:
    """The job's output files (one per input part on AWS), in order, as one Parquet file,
    a row group at a time."""
    import pyarrow.parquet as pq

    if len(keys) == 1:
        return ctx.ports.store.get_file(keys[0], dest)
    writer = None
    try:
        for i, key in enumerate(keys):
            part = ctx.ports.store.get_file(key, dest.with_name(f"part-{i:05d}.parquet"))
            with pq.ParquetFile(part) as source:
                if writer is None:
                    writer = pq.ParquetWriter(dest, source.schema_arrow)
                elif not source.schema_arrow.equals(writer.schema, check_metadata=False):
                    raise StepError(f"the transform job's output {key!r} has another schema")
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group))
            part.unlink()
    finally:
        if writer is not None:
            writer.close()
    return dest


@task("check_transform")
def check_transform(ctx: StepContext) -> StepResult:
    return _check(ctx, "batch transform", "transform_job", done_step=True)


@task("register_output")
def register_output(ctx: StepContext) -> StepResult:
    batch = _batch(ctx)
    prefix = ctx.event["transform_job"]["outputs"]["output"]
    found = sorted(k for k in ctx.ports.store.list(prefix + "/") if k.endswith(_OUTPUT_SUFFIXES))
    if not found:
        raise StepError("the transform job wrote no output file")
    name = batch["output"]["dataset"]
    with tempfile.TemporaryDirectory() as scratch:
        local = _merge(ctx, found, Path(scratch) / "predictions.parquet")
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
