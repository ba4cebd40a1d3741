"""BATCH TRANSFORM: score a dataset version with a model written by train.py.

One set of hooks, two ways to run them:

* On AWS, a SageMaker Batch Transform job serves this file's hooks in the prebuilt
  scikit-learn container (``SAGEMAKER_PROGRAM=batch_transform.py`` from the job code's
  ``sourcedir.tar.gz``; the model archive is the SageMaker Model's ``ModelDataUrl``). SageMaker
  sends each input object -- a Parquet file, ``application/vnd.apache.parquet`` -- to
  ``input_fn``, and writes what ``output_fn`` returns as ``<object>.out`` (Parquet).
* Locally, the local job runner runs it as a job (``--model-dir --data-dir --output-dir``) and
  this file plays SageMaker's part: it checks the archive's sha256 before anything is
  unpickled, reads the data a chunk of ``--chunk-rows`` rows at a time (Parquet record
  batches), calls the same hooks on each chunk and appends each scored chunk to one Parquet
  file as its own row group -- so memory holds one chunk, not the dataset.

The output has every input column unchanged, then ``prediction`` (the class label, or the
number for regression), then for classifiers with ``predict_proba`` one ``proba_<class>``
column per class in the model's class order. Features are given the representation the model
was trained on (``jobkit.coerce_features``, as evaluate.py does), so a row scores exactly as in
the evaluation and on the model server.

CLI (local)::

    --model-dir   holds model.tar.gz
    --data-dir    *.parquet files (searched recursively, in name order)
    --output-dir  predictions.parquet and summary.json are written here
    --sha256      the archive's recorded sha256: a different archive is never loaded
    --chunk-rows  rows per chunk (default 65536)
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import inference
import jobkit
from jobkit import JobError
from mlcontract import archive

PARQUET = "application/vnd.apache.parquet"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
OUTPUT_FILE = "predictions.parquet"
SUMMARY_FILE = "summary.json"
DEFAULT_CHUNK_ROWS = 65536


# --- what is added to each row -------------------------------------------------------------


def output_columns(metadata: dict[str, Any]) -> list[str]:
    """The columns scoring adds, in order (the API checks them against the input's)."""
    names = [PREDICTION]
    if metadata.get("task") == "classification":
        names += [proba_column(c) for c in metadata.get("classes") or []]
    return names


def proba_column(label: Any) -> str:
    return f"{PROBA_PREFIX}{label}"


@dataclass(frozen=True)
class Plan:
    """How a chunk is scored and what the output's schema adds: fixed once per model, so
    every chunk writes the same types."""

    prediction_type: pa.DataType
    classes: list[Any] | None  # probability columns, in the model's class order

    @classmethod
    def of(cls, model: inference.LoadedModel) -> Plan:
        if model.task != "classification":
            return cls(pa.float64(), None)
        classes = [jobkit.json_value(c) for c in model.pipeline.classes_]
        with_proba = hasattr(model.pipeline, "predict_proba")
        return cls(pa.array(classes).type, classes if with_proba else None)

    def fields(self) -> list[pa.Field]:
        added = [pa.field(PREDICTION, self.prediction_type)]
        for label in self.classes or []:
            added.append(pa.field(proba_column(label), pa.float64()))
        return added

    def schema(self, inputs: pa.Schema) -> pa.Schema:
        taken = sorted(set(inputs.names) & {f.name for f in self.fields()})
        if taken:
            raise JobError(
                f"The input already has column(s) {', '.join(map(repr, taken))}, which scoring "
                "adds; rename them first."
            )
        return pa.schema([*inputs, *self.fields()], metadata=inputs.metadata)


def score(table: pa.Table, model: inference.LoadedModel, plan: Plan | None = None) -> pa.Table:
    """``table`` with the prediction (and class probability) columns appended."""
    plan = plan or Plan.of(model)
    signature: list[dict[str, str]] = model.metadata["signature"]["inputs"]
    missing = [f["name"] for f in signature if f["name"] not in table.column_names]
    if missing:
        raise JobError(f"The data lacks the model's column(s): {', '.join(map(repr, missing))}.")
    # Only the model's columns go through pandas; the rest pass through as Arrow untouched.
    frame = table.select([f["name"] for f in signature]).to_pandas()
    features = jobkit.coerce_features(frame, signature)
    arrays: list[pa.Array] = list(table.columns)
    predictions = np.asarray(model.pipeline.predict(features))
    if plan.prediction_type == pa.float64():
        arrays.append(pa.array(predictions.astype(np.float64)))
    else:
        values = [jobkit.json_value(v) for v in predictions.tolist()]
        arrays.append(pa.array(values, type=plan.prediction_type))
    if plan.classes is not None:
        proba = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
        arrays.extend(pa.array(proba[:, i]) for i in range(len(plan.classes)))
    return pa.Table.from_arrays(arrays, schema=plan.schema(table.schema))


# --- the SageMaker serving hooks (Batch Transform on AWS) ----------------------------------


def model_fn(model_dir: str) -> inference.LoadedModel:
    return inference.model_fn(model_dir)


def input_fn(request_body: bytes | bytearray | str, content_type: str | None) -> pa.Table:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (PARQUET, "application/x-parquet", "application/octet-stream"):
        raise ValueError(f"batch transform reads {PARQUET}, got {content_type!r}")
    body = request_body.encode() if isinstance(request_body, str) else bytes(request_body)
    return pq.read_table(io.BytesIO(body))


def predict_fn(data: pa.Table, model: inference.LoadedModel) -> pa.Table:
    return score(data, model)


def output_fn(prediction: pa.Table, accept: str | None = PARQUET) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    pq.write_table(prediction, buffer)
    return buffer.getvalue(), PARQUET


# --- the local driver: SageMaker's part, chunked -------------------------------------------


def _build_parser() -> jobkit.JobArgumentParser:
    parser = jobkit.JobArgumentParser(
        description="Score parquet data with a trained model.", allow_abbrev=False
    )
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    # Name the SageMaker Model on AWS; recorded in the summary here.
    parser.add_argument("--model-name", default=None)
    parser.add_argument("--model-version", default=None)
    return parser


def load_checked(model_dir: Path, sha256: str, scratch: Path) -> inference.LoadedModel:
    """The model from ``model_dir/model.tar.gz``, only if the archive is the one recorded:
    joblib runs code when it loads, so a changed archive is refused before extraction."""
    packed = model_dir / "model.tar.gz"
    if not packed.is_file():
        raise JobError(f"No model.tar.gz in {str(model_dir)!r}.")
    actual = archive.sha256_of(packed)
    if actual != sha256:
        raise JobError(
            f"The model archive's sha256 is {actual}, the registry recorded {sha256}: "
            "refusing to load it."
        )
    try:
        archive.safe_extract(packed, scratch)
    except archive.ArchiveError as exc:
        raise JobError(str(exc)) from None
    return model_fn(str(scratch))


def transform(args: Any) -> dict[str, Any]:
    if args.chunk_rows < 1:
        raise JobError("--chunk-rows must be at least 1.")
    data_dir = Path(args.data_dir)
    files = sorted(p for p in data_dir.rglob("*.parquet") if p.is_file())
    if not files:
        raise JobError(f"No *.parquet files found in {str(data_dir)!r}.")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = chunks = 0
    with tempfile.TemporaryDirectory() as scratch:
        model = load_checked(Path(args.model_dir), args.sha256, Path(scratch))
        plan = Plan.of(model)
        inputs = pq.read_schema(files[0])
        schema = plan.schema(inputs)
        partial = output_dir / (OUTPUT_FILE + ".partial")
        with pq.ParquetWriter(partial, schema) as writer:
            for path in files:
                source = pq.ParquetFile(path)
                if not source.schema_arrow.equals(inputs, check_metadata=False):
                    raise JobError(f"{path.name} has a different schema from {files[0].name}.")
                for batch in source.iter_batches(batch_size=args.chunk_rows):
                    scored = score(pa.Table.from_batches([batch], schema=inputs), model, plan)
                    writer.write_table(scored, row_group_size=args.chunk_rows)
                    rows += scored.num_rows
                    chunks += 1
        # Only a complete file carries the final name: a killed job leaves no output.
        partial.replace(output_dir / OUTPUT_FILE)
    summary = {
        "rows": rows,
        "chunks": chunks,
        "chunk_rows": args.chunk_rows,
        "task": model.task,
        "added_columns": [f.name for f in plan.fields()],
        "model": {"name": args.model_name, "version": args.model_version, "sha256": args.sha256},
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        summary = transform(args)
    except Exception as exc:
        return jobkit.report_failure(exc, "Batch transform failed", "processing")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
