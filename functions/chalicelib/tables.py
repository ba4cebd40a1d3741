"""Where each entity lives in the metadata store (partition key, sort key). One place."""

from __future__ import annotations


def version_sk(version: int) -> str:
    return f"v{version:08d}"


DATASETS = "datasets"  # sk = dataset name -> {name, latest_version, ...}
PIPELINES = "pipelines"  # sk = pipeline name -> the pipeline spec
RUNS = "runs"  # sk = run id -> the run record
MODELS = "models"  # sk = model name -> {name, latest_version, aliases}
ENDPOINTS = "endpoints"  # sk = endpoint name -> served version and history
ACTIVE_RUNS = "runs-active"  # one item: the ids of the runs in flight (the concurrency cap)
ACTIVE_RUNS_SK = "slots"
LEASES = "leases"  # sk = what is held (e.g. "endpoint#name") -> {owner, expires_at}


def dataset_versions(name: str) -> str:
    return f"dataset#{name}"


def model_versions(name: str) -> str:
    return f"model#{name}"


def model_runs(name: str) -> str:
    """sk = run id -> the version that run registered (a retried Register finds it)."""
    return f"model-runs#{name}"


def dataset_runs(name: str) -> str:
    """sk = run id -> the version of ``name`` that run wrote (a retried step finds it)."""
    return f"dataset-runs#{name}"
