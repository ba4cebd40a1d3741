"""Ports: what the domain needs from the world, as protocols and plain value types.

Nothing here imports an AWS SDK or a local runtime. Each port has two implementations that
pass one contract test suite:

| port | AWS (``chalicelib/adapters``) | embedded local stack (``iac/local``) |
|---|---|---|
| ``ObjectStore`` | S3 | files under the data dir, same keys |
| ``MetadataStore`` | DynamoDB, conditional writes | SQLite, same semantics |
| ``JobRunner`` | SageMaker training/processing jobs | the same scripts as local processes |
| ``EndpointRuntime`` | SageMaker real-time endpoints | local model serving |
| ``Orchestrator`` | Step Functions | Step Functions on the embedded moto server |

Adapters translate their SDK's modeled errors into the errors below, so the domain never
matches an error by its message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

# --- errors the ports raise ----------------------------------------------------------------


class ConditionFailedError(Exception):
    """A conditional write found a different revision than it expected."""


class TooLargeError(Exception):
    """A record is larger than the metadata store can hold (DynamoDB: 400 KB)."""


class ModelInputError(ValueError):
    """The model rejected a request body (its message is meant for the caller)."""


class EndpointNotReadyError(Exception):
    """The endpoint exists but cannot serve yet (creating, updating, or its model failed)."""


class ForeignResourceError(Exception):
    """A resource of that name exists but this service did not create it: never touched."""


class OrchestratorUnavailableError(Exception):
    """The orchestrator refused or failed a call; the caller may retry."""


class ExecutionNotFoundError(Exception):
    """The orchestrator does not know this execution (or no longer keeps its history)."""


# --- object store --------------------------------------------------------------------------


def check_key(key: str) -> str:
    """Keys are relative, '/'-separated and never climb out of the store."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    def uri(self, key: str) -> str: ...
    def key_of(self, uri: str) -> str: ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def put_file(self, key: str, path: Path) -> str: ...
    def get_file(self, key: str, dest: Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...


# --- metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    pk: str
    sk: str
    item: dict[str, Any]
    rev: int


@dataclass(frozen=True)
class Write:
    pk: str
    sk: str
    item: dict[str, Any]
    # None: unconditional; 0: create only; n: only if the stored revision is n.
    expected_rev: int | None = None


@dataclass(frozen=True)
class Delete:
    pk: str
    sk: str
    # None: unconditional; n: only if the stored revision is n.
    expected_rev: int | None = None


class MetadataStore(Protocol):
    """Small JSON documents under (partition, sort) keys, each with a revision."""

    def get(self, pk: str, sk: str) -> Record | None: ...
    def query(self, pk: str, sk_prefix: str = "") -> list[Record]: ...
    def put(self, write: Write) -> int: ...
    def put_many(self, writes: list[Write | Delete]) -> None: ...
    def delete(self, pk: str, sk: str) -> None: ...


# --- jobs ----------------------------------------------------------------------------------

# transform: a batch prediction (SageMaker Batch Transform; locally run like processing).
JobKind = Literal["training", "processing", "transform"]
JobState = Literal["InProgress", "Completed", "Failed", "Stopped"]


@dataclass(frozen=True)
class JobSpec:
    name: str
    kind: JobKind
    entry_point: str  # a script in sagemaker_jobs/, e.g. "train.py"
    arguments: dict[str, str]  # hyperparameters (training) or CLI arguments (processing)
    inputs: dict[str, str]  # channel/input name -> object key (one file) or key prefix
    output_prefix: str  # where the job's outputs land in the object store
    max_runtime_seconds: int = 3600


@dataclass
class JobStatus:
    name: str
    status: JobState
    failure_reason: str | None = None
    # training: {"model": key of model.tar.gz}; processing, transform: {"output": key prefix}
    outputs: dict[str, str] = field(default_factory=dict)


class JobRunner(Protocol):
    """``start`` is idempotent per job name (a retried state reuses the name)."""

    def start(self, spec: JobSpec) -> None: ...
    def describe(self, name: str, kind: JobKind) -> JobStatus: ...
    def stop(self, name: str, kind: JobKind) -> None: ...


# --- endpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    model: str
    version: int
    artefact_key: str
    sha256: str


class EndpointRuntime(Protocol):
    def deploy(self, deployment: Deployment) -> None: ...
    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes: ...
    def status(self, endpoint: str) -> str: ...
    def delete(self, endpoint: str) -> None: ...


# --- dataset catalog ---------------------------------------------------------------------


class DataCatalog(Protocol):
    """Where users query dataset versions from (AWS: Glue tables for Athena)."""

    def register(self, dataset: str, version: int, location: str, columns: dict[str, str]) -> str:
        """Catalog one version's Parquet data under ``location`` (a URI prefix); ``columns``
        maps each column to its pyarrow type name. Returns the table's name."""
        ...

    def unregister(self, dataset: str, version: int) -> None: ...


# --- orchestrator --------------------------------------------------------------------------

ExecutionStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT", "LOST"]
TERMINAL_EVENTS = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
)


@dataclass(frozen=True)
class HistoryPage:
    events: list[dict[str, Any]]
    next_token: str | None


class Orchestrator(Protocol):
    """Runs the one state machine. Executions are named by the caller (idempotent)."""

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        """Start an execution; returns its reference (ARN)."""
        ...

    def status(self, ref: str) -> ExecutionStatus: ...
    def stop(self, ref: str, cause: str) -> None: ...
    def history(self, ref: str, token: str | None = None, limit: int = 100) -> HistoryPage: ...
