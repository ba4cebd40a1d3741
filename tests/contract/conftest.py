"""Shared fixtures for the port contract tests.

Every port has an AWS implementation and a local one; each contract suite is parametrized
over both. The AWS side runs against moto in-process (``mock_aws``), with fake credentials and
no AWS_ENDPOINT_URL, so nothing can reach a real account or the embedded local stack. Boto3
clients are only created inside the fixtures, after moto has started.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from moto import mock_aws

from chalicelib.ports import JobSpec, JobStatus
from iac.local.files import FileObjectStore
from iac.local.jobs import LocalJobRunner, wait_until_done

REGION = "us-east-1"
BUCKET = "contract-bucket"
TABLE = "contract-metadata"

# The synthetic classification problem every trained-model test uses.
FEATURES = ["x1", "x2", "colour"]
TARGET = "label"
TRAIN_KEY = "runs/r1/split/train/data.parquet"
TEST_KEY = "runs/r1/split/test/data.parquet"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a fixed region and no endpoint override: boto3 talks only to moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


def aws_client(service: str) -> Any:
    """Only call this with moto running (inside a fixture or test that uses ``moto_aws``)."""
    return boto3.session.Session().client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture
def s3_client(moto_aws: None) -> Any:
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """A learnable binary problem with string labels and one categorical feature."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    score = 2.0 * x1 - x2 + 1.0 * (colour == "red") + rng.normal(0, 0.3, size=n)
    return pd.DataFrame(
        {
            "x1": x1.astype(np.float64),
            "x2": x2.astype(np.float64),
            "colour": pd.Series(colour.tolist(), dtype=object),
            TARGET: pd.Series(np.where(score > 0.3, "yes", "no").tolist(), dtype=object),
        }
    )


def to_parquet(frame: pd.DataFrame) -> bytes:
    return frame.to_parquet(index=False)


def features_for_pipeline(frame: pd.DataFrame) -> pd.DataFrame:
    """The representation train.py fits on: float64 numbers, object-dtype text."""
    return pd.DataFrame(
        {
            "x1": frame["x1"].to_numpy(dtype=np.float64),
            "x2": frame["x2"].to_numpy(dtype=np.float64),
            "colour": np.array([str(v) for v in frame["colour"]], dtype=object),
        }
    )


def train_spec(name: str, hyperparameters: dict[str, Any] | None = None) -> JobSpec:
    return JobSpec(
        name=name,
        kind="training",
        entry_point="train.py",
        arguments={
            "algorithm": "random_forest",
            "task": "classification",
            "target": TARGET,
            "hyperparameters": json.dumps(
                {"n_estimators": 8, "max_depth": 4} if hyperparameters is None else hyperparameters
            ),
            "seed": "7",
        },
        inputs={"train": TRAIN_KEY.rsplit("/", 1)[0]},
        output_prefix="runs/r1/model",
    )


def evaluate_spec(name: str, model_key: str) -> JobSpec:
    return JobSpec(
        name=name,
        kind="processing",
        entry_point="evaluate.py",
        arguments={"metrics": "accuracy,f1_macro"},
        inputs={"model": model_key, "test": TEST_KEY.rsplit("/", 1)[0]},
        output_prefix="runs/r1/evaluation",
    )


@dataclass
class TrainedModel:
    """One real training job run by the LocalJobRunner, shared by the jobs and endpoint
    suites (training is the slow part of the contract suite)."""

    root: Path
    store: FileObjectStore
    runner: LocalJobRunner
    spec: JobSpec
    status: JobStatus
    train: pd.DataFrame
    test: pd.DataFrame


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    root = tmp_path_factory.mktemp("trained")
    store = FileObjectStore(root / "objects")
    train = make_frame(200, seed=1)
    test = make_frame(60, seed=2)
    store.put_bytes(TRAIN_KEY, to_parquet(train))
    store.put_bytes(TEST_KEY, to_parquet(test))
    runner = LocalJobRunner(root / "jobs", store)
    spec = train_spec("train-ok")
    runner.start(spec)
    status = wait_until_done(runner, spec.name, "training", timeout=120)
    assert status.status == "Completed", (
        status,
        (root / "jobs" / spec.name / "job.log").read_text(errors="replace"),
    )
    return TrainedModel(root, store, runner, spec, status, train, test)


def load_pipeline(trained: TrainedModel, dest: Path) -> Any:
    """The fitted scikit-learn pipeline inside the trained model's model.tar.gz."""
    import joblib

    archive = trained.store.get_file(trained.status.outputs["model"], dest / "model.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest / "model", filter="data")
    return joblib.load(dest / "model" / "model.joblib")
