"""Batch predictions through the REST API on the embedded stack: train a model with a
pipeline run, score a dataset version in chunks, read the scored rows back as a dataset
version, and compare every value with the same model's predictions in this process."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from chalicelib import batch_steps, datasets, registry
from iac.local import stack
from jobkit import coerce_features
from tests.e2e.conftest import Api, classification_csv, regression_csv

FEATURES = ["petal/len", "sepal width", "colour", "count"]


def wait_batch(api: Api, batch_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.ok("GET", f"/batch-predictions/{batch_id}")
        if found["status"] != "RUNNING":
            return dict(found)
        time.sleep(0.1)
    raise AssertionError(f"batch prediction {batch_id} still RUNNING after {timeout}s")


def train(api: Api, name: str, dataset: str, csv: str, spec: dict[str, Any]) -> int:
    api.ok("POST", "/datasets", {"name": dataset, "source": {"type": "inline", "data": csv}})
    api.ok("POST", "/pipelines", {"name": name, "dataset": {"name": dataset}, **spec})
    run = api.wait_run(api.ok("POST", f"/pipelines/{name}/runs", {})["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    return int(run["model"]["version"])


def in_process(local_stack: stack.LocalStack, model: str, version: int, tmp: Path) -> Any:
    """The registered model, loaded here from its archive (the reference predictions)."""
    ports = local_stack.ports
    record = registry.get_version(ports, model, version)
    packed = ports.store.get_file(record["artefact_key"], tmp / "model.tar.gz")
    with tarfile.open(packed, "r:gz") as tar:
        tar.extractall(tmp / "model", filter="data")
    return joblib.load(tmp / "model" / "model.joblib"), record["signature"]


def scored_rows(local_stack: stack.LocalStack, name: str, version: int) -> pq.ParquetFile:
    record = datasets.get_version(local_stack.ports, name, version)
    return pq.ParquetFile(io.BytesIO(local_stack.ports.store.get_bytes(record["key"])))


@pytest.fixture(scope="module")
def classifier(api: Api) -> int:
    return train(
        api,
        "batch-flowers",
        "batch-flowers-train",
        classification_csv(300, seed=3),
        {
            "target": "label",
            "task": "classification",
            "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 20}},
        },
    )


def test_scores_a_dataset_version_in_chunks_like_the_model_in_process(
    api: Api, local_stack: stack.LocalStack, classifier: int, tmp_path: Path
) -> None:
    api.ok("PUT", "/models/batch-flowers/aliases/production", {"version": classifier})
    to_score = pd.read_csv(io.StringIO(classification_csv(230, seed=11))).drop(columns="label")
    uploaded = api.ok(
        "POST",
        "/datasets/batch-flowers-new/versions",
        raw=to_score.to_csv(index=False),
        content_type="text/csv",
    )
    status, started = api.call(
        "POST",
        "/batch-predictions",
        {
            "model": "batch-flowers",
            "alias": "production",
            "dataset": {"name": "batch-flowers-new", "version": uploaded["version"]},
            "output": {"dataset": "batch-flowers-scored"},
            "chunk_rows": 50,
        },
    )
    assert status == 202, started
    assert started["status"] == "RUNNING"
    assert started["model"] == {"name": "batch-flowers", "version": classifier,
                                "alias": "production"}  # fmt: skip
    done = wait_batch(api, started["id"])
    assert done["status"] == "SUCCEEDED", done["error"]
    assert [(s["name"], s["status"]) for s in done["steps"]] == [
        ("transform", "SUCCEEDED"), ("register_output", "SUCCEEDED"),
    ]  # fmt: skip
    assert done["output"] == {"dataset": "batch-flowers-scored", "version": 1}
    assert done["rows"] == 230
    assert api.ok("GET", f"/runs/{started['id']}")["kind"] == "batch"  # a run like any other
    listed = api.ok("GET", "/batch-predictions")["batch_predictions"]
    assert started["id"] in [b["id"] for b in listed]

    # The output is a dataset version like any other, with its schema and profile.
    version = api.ok("GET", "/datasets/batch-flowers-scored/versions/1")
    assert version["status"] == "READY" and version["rows"] == 230
    assert version["format"] == "parquet"
    assert version["source"]["type"] == "batch_prediction"
    names = [c["name"] for c in version["schema"]]
    assert names == [*FEATURES, "prediction", "proba_no", "proba_yes"]
    profile = {c["name"]: c for c in version["profile"]["columns"]}
    assert profile["prediction"]["type"] == "string"
    assert sum(profile["prediction"]["top"].values()) == 230
    assert 0.0 <= profile["proba_yes"]["min"] <= profile["proba_yes"]["max"] <= 1.0

    # Every value equals the model's own predictions on the same rows, in this process.
    source = scored_rows(local_stack, "batch-flowers-scored", 1)
    assert source.metadata.num_row_groups == 5  # 230 rows in chunks of 50
    out = source.read().to_pandas()
    pipeline, signature = in_process(local_stack, "batch-flowers", classifier, tmp_path)
    stored = datasets.get_version(local_stack.ports, "batch-flowers-new", uploaded["version"])
    original = pd.read_parquet(io.BytesIO(local_stack.ports.store.get_bytes(stored["key"])))
    features = coerce_features(original, signature)
    assert out["prediction"].tolist() == pipeline.predict(features).tolist()
    np.testing.assert_array_equal(
        out[["proba_no", "proba_yes"]].to_numpy(), pipeline.predict_proba(features)
    )
    pd.testing.assert_frame_equal(out[FEATURES], original)


def test_regression_output_is_numeric_and_parts_come_back_whole(
    api: Api, local_stack: stack.LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for a version larger than one Batch Transform request: the job gets Parquet parts.
    monkeypatch.setattr(batch_steps, "PART_BYTES", 2000)
    version = train(
        api,
        "batch-houses",
        "batch-houses-train",
        regression_csv(),
        {"target": "y", "task": "regression", "model": {"algorithm": "linear_regression"}},
    )
    status, started = api.call(
        "POST",
        "/batch-predictions",
        {
            "model": "batch-houses",
            "model_version": version,
            "dataset": {"name": "batch-houses-train"},  # the latest version; y is kept
            "output": {"dataset": "batch-houses-scored"},
        },
    )
    assert status == 202, started
    done = wait_batch(api, started["id"])
    assert done["status"] == "SUCCEEDED", done["error"]
    parts = local_stack.ports.store.list(f"runs/{started['id']}/batch-input")
    assert len(parts) > 2
    out = scored_rows(local_stack, "batch-houses-scored", 1).read().to_pandas()
    assert list(out.columns) == ["x1", "x2", "zone", "y", "prediction"]
    assert done["rows"] == len(out) == 300
    source = datasets.get_version(local_stack.ports, "batch-houses-train", 1)
    original = pd.read_parquet(io.BytesIO(local_stack.ports.store.get_bytes(source["key"])))
    pd.testing.assert_frame_equal(out[["x1", "x2", "zone", "y"]], original)  # same order
    pipeline, signature = in_process(local_stack, "batch-houses", version, tmp_path)
    expected = pipeline.predict(coerce_features(out, signature))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
    assert np.abs(out["prediction"] - out["y"]).max() < 1.0  # a learnable problem


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"model": "nope"}, 404, "model 'nope' not found"),
        ({"model_version": 99}, 404, "no version 99"),
        ({"model_version": None, "alias": "missing"}, 404, "no alias 'missing'"),
        ({"dataset": {"name": "nothing-here"}}, 404, "dataset 'nothing-here' not found"),
        ({"output": {"dataset": "no/slash"}}, 400, "output.dataset"),
        ({"output": {"dataset": "batch-flowers-train"}}, 400, "must differ"),
        ({"alias": "production"}, 400, "exactly one of 'model_version' or 'alias'"),
        ({"chunk_rows": 0}, 400, "chunk_rows"),
        ({"dataset": {"name": "batch-flowers-half"}}, 400, "lacks column(s) 'colour'"),
    ],
)
def test_bad_requests_are_4xx_and_launch_nothing(
    api: Api, classifier: int, change: dict[str, Any], status: int, words: str
) -> None:
    half = "petal/len,sepal width,count\n1,2,3\n"
    api.call("POST", "/datasets/batch-flowers-half/versions", raw=half, content_type="text/csv")
    body = {
        "model": "batch-flowers",
        "model_version": classifier,
        "dataset": {"name": "batch-flowers-train"},
        "output": {"dataset": "batch-flowers-never"},
        **change,
    }
    got, error = api.call(
        "POST", "/batch-predictions", {k: v for k, v in body.items() if v is not None}
    )
    assert got == status, error
    assert set(error) == {"Code", "Message"} and words in error["Message"]
    assert api.call("GET", "/datasets/batch-flowers-never")[0] == 404


def test_unknown_batch_prediction_is_404(api: Api) -> None:
    status, error = api.call("GET", "/batch-predictions/0123456789abcdef")
    assert status == 404 and "batch prediction" in error["Message"]


def test_openapi_describes_the_routes(api: Api) -> None:
    paths = api.ok("GET", "/openapi.json")["paths"]
    assert set(paths["/batch-predictions"]) == {"post", "get"}
    assert "202" in paths["/batch-predictions"]["post"]["responses"]
    assert "get" in paths["/batch-predictions/{batch_id}"]
