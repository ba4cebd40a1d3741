"""Batch transform: ``sagemaker_jobs/batch_transform.py`` run by the LocalJobRunner (as the
local stack runs it, in the job environment) and its hooks as SageMaker's container calls
them; ``SageMakerJobRunner`` transform requests checked against moto."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import batch_transform
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chalicelib.adapters.s3 import S3ObjectStore
from chalicelib.adapters.sagemaker import SageMakerJobRunner, batch_model_name
from chalicelib.ports import JobSpec
from iac.local.jobs import wait_until_done
from mlcontract import archive
from tests.contract.conftest import (
    BUCKET,
    TrainedModel,
    aws_client,
    features_for_pipeline,
    load_pipeline,
    make_frame,
    to_parquet,
)

ROLE = "arn:aws:iam::123456789012:role/contract-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _sha256(trained: TrainedModel, tmp_path: Path) -> str:
    path = trained.store.get_file(trained.status.outputs["model"], tmp_path / "m.tar.gz")
    return archive.sha256_of(path)


def _spec(name: str, model_key: str, data_key: str, sha256: str, chunk_rows: int) -> JobSpec:
    return JobSpec(
        name=name,
        kind="transform",
        entry_point="batch_transform.py",
        arguments={
            "sha256": sha256,
            "chunk-rows": str(chunk_rows),
            "model-name": "m",
            "model-version": "1",
        },
        inputs={"model": model_key, "data": data_key},
        output_prefix=f"runs/{name}/batch",
    )


def _run(trained: TrainedModel, name: str, frame: pd.DataFrame, sha256: str, chunk_rows: int):  # type: ignore[no-untyped-def]
    data_key = f"datasets/{name}/data/data.parquet"
    trained.store.put_bytes(data_key, to_parquet(frame))
    spec = _spec(name, trained.status.outputs["model"], data_key, sha256, chunk_rows)
    trained.runner.start(spec)
    return spec, wait_until_done(trained.runner, spec.name, "transform", timeout=120)


def _log(trained: TrainedModel, name: str) -> str:
    return (trained.root / "jobs" / name / "job.log").read_text(errors="replace")


def test_scores_in_chunks_exactly_as_the_model_predicts_in_process(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    frame = make_frame(100, seed=5)
    frame.loc[3, "x1"] = np.nan  # a missing value is imputed, as at training
    sha = _sha256(trained_model, tmp_path)
    spec, status = _run(trained_model, "bt-chunks", frame, sha, chunk_rows=7)
    assert status.status == "Completed", _log(trained_model, spec.name)
    assert status.outputs == {"output": spec.output_prefix}
    out_path = trained_model.store.get_file(
        f"{spec.output_prefix}/predictions.parquet", tmp_path / "out.parquet"
    )
    source = pq.ParquetFile(out_path)
    assert source.metadata.num_row_groups == math.ceil(100 / 7)  # one row group per chunk
    assert source.metadata.row_group(0).num_rows == 7
    out = source.read().to_pandas()
    pipeline = load_pipeline(trained_model, tmp_path / "ref")
    features = features_for_pipeline(frame)
    classes = [str(c) for c in pipeline.classes_]
    assert list(out.columns) == [*frame.columns, "prediction", *[f"proba_{c}" for c in classes]]
    # The input columns pass through as they were stored, types included.
    stored = pq.read_table(io.BytesIO(to_parquet(frame)))
    assert source.read(columns=list(frame.columns)).equals(stored)
    assert out["prediction"].tolist() == pipeline.predict(features).tolist()
    np.testing.assert_array_equal(
        out[[f"proba_{c}" for c in classes]].to_numpy(), pipeline.predict_proba(features)
    )
    summary = json.loads(trained_model.store.get_bytes(f"{spec.output_prefix}/summary.json"))
    assert summary["rows"] == 100 and summary["chunks"] == math.ceil(100 / 7)

    # One chunk or fifteen: the same rows, the same values.
    spec, status = _run(trained_model, "bt-one-chunk", frame, sha, chunk_rows=100_000)
    assert status.status == "Completed", _log(trained_model, spec.name)
    whole = pd.read_parquet(
        io.BytesIO(trained_model.store.get_bytes(f"{spec.output_prefix}/predictions.parquet"))
    )
    pd.testing.assert_frame_equal(whole, out)


def test_a_different_archive_is_refused_before_loading(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    spec, status = _run(trained_model, "bt-sha", make_frame(10, seed=6), "0" * 64, 5)
    assert status.status == "Failed"
    assert "sha256" in (status.failure_reason or "") and "refusing" in status.failure_reason
    assert not trained_model.store.exists(f"{spec.output_prefix}/predictions.parquet")


def test_missing_or_clashing_columns_fail_with_a_reason(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    sha = _sha256(trained_model, tmp_path)
    frame = make_frame(10, seed=7)
    _, status = _run(trained_model, "bt-missing", frame.drop(columns=["x2"]), sha, 5)
    assert status.status == "Failed" and "'x2'" in (status.failure_reason or "")
    _, status = _run(trained_model, "bt-clash", frame.assign(prediction=1), sha, 5)
    assert status.status == "Failed" and "'prediction'" in (status.failure_reason or "")


def test_container_hooks_score_a_parquet_object_as_the_local_job_does(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """SageMaker Batch Transform on AWS: model_fn on the extracted archive, then one Parquet
    object per request through input_fn → predict_fn → output_fn."""
    load_pipeline(trained_model, tmp_path)  # extracts the archive to tmp_path/model
    model = batch_transform.model_fn(str(tmp_path / "model"))
    frame = make_frame(30, seed=8)
    body, content_type = batch_transform.output_fn(
        batch_transform.predict_fn(
            batch_transform.input_fn(to_parquet(frame), batch_transform.PARQUET), model
        ),
        batch_transform.PARQUET,
    )
    assert content_type == batch_transform.PARQUET
    scored = pd.read_parquet(io.BytesIO(body))
    expected = model.pipeline.predict(features_for_pipeline(frame)).tolist()
    assert scored["prediction"].tolist() == expected
    assert len(scored) == 30
    with pytest.raises(ValueError, match="parquet"):
        batch_transform.input_fn(b"a,b\n1,2\n", "text/csv")


def test_output_schema_is_fixed_by_the_model_not_the_chunk() -> None:
    """Every chunk writes the same types: a regression prediction is float64 even when a
    chunk's values happen to be whole numbers."""
    plan = batch_transform.Plan(pa.float64(), None)
    schema = plan.schema(pa.schema([("a", pa.int64())]))
    assert schema.names == ["a", "prediction"] and schema.field("prediction").type == pa.float64()
    labels = batch_transform.Plan(pa.string(), ["no", "yes"])
    assert labels.schema(pa.schema([("a", pa.int64())])).names == [
        "a", "prediction", "proba_no", "proba_yes",
    ]  # fmt: skip


# ----------------------------------------------------------------------- SageMaker (moto)


@pytest.fixture
def sm_runner(s3_client: Any) -> SageMakerJobRunner:
    return SageMakerJobRunner(
        aws_client("sagemaker"),
        S3ObjectStore(BUCKET, s3_client),
        role_arn=ROLE,
        image_uri=IMAGE,
        code_prefix="code/current/",
        instance_type="ml.m5.large",
        owner="contract",
    )


def test_sagemaker_transform_job_request(sm_runner: SageMakerJobRunner) -> None:
    store = sm_runner.store
    store.put_bytes("datasets/d/v00000001/abc/data/data.parquet", b"PAR1")
    spec = _spec(
        "mlp-run-transform-1",
        "runs/r1/model/model.tar.gz",
        "datasets/d/v00000001/abc/data/data.parquet",
        "f" * 64,
        1000,
    )
    sm_runner.start(spec)
    sm_runner.start(spec)  # a retried state: the existing (tagged) model is reused
    sm = sm_runner.sm
    model = sm.describe_model(ModelName=batch_model_name("m", "1"))
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/runs/r1/model/model.tar.gz"
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "batch_transform.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code/current/sourcedir.tar.gz",
    }
    tags = sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]
    assert {"Key": "mlpipe:owner", "Value": "contract"} in tags
    job = sm.describe_transform_job(TransformJobName=spec.name)
    assert job["ModelName"] == batch_model_name("m", "1")
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == f"s3://{BUCKET}/datasets/d/v00000001/abc/data/data.parquet"
    assert job["TransformInput"]["ContentType"] == batch_transform.PARQUET
    assert job["TransformInput"]["SplitType"] == "None"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/{spec.output_prefix}"
    assert job["TransformOutput"]["Accept"] == batch_transform.PARQUET
    assert job["MaxPayloadInMB"] == 100
    status = sm_runner.describe(spec.name, "transform")
    assert status.status in ("InProgress", "Completed")
    assert status.outputs == {"output": spec.output_prefix}


def test_parts_are_scored_in_name_order_into_one_output(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """A dataset handed over in parts (as StartTransformJob does for large versions)."""
    frame = make_frame(40, seed=9)
    prefix = "runs/bt-parts/batch-input"
    for i, start in enumerate(range(0, 40, 15)):
        part = frame.iloc[start : start + 15].reset_index(drop=True)
        trained_model.store.put_bytes(f"{prefix}/part-{i:05d}.parquet", to_parquet(part))
    spec = _spec("bt-parts", trained_model.status.outputs["model"], prefix,
                 _sha256(trained_model, tmp_path), 8)  # fmt: skip
    trained_model.runner.start(spec)
    status = wait_until_done(trained_model.runner, spec.name, "transform", timeout=120)
    assert status.status == "Completed", _log(trained_model, spec.name)
    out = pd.read_parquet(
        io.BytesIO(trained_model.store.get_bytes(f"{spec.output_prefix}/predictions.parquet"))
    )
    assert out["x1"].tolist() == frame["x1"].tolist()
    pipeline = load_pipeline(trained_model, tmp_path / "ref")
    assert out["prediction"].tolist() == pipeline.predict(features_for_pipeline(frame)).tolist()
