"""In-memory fakes of every port, for unit tests of the domain: no files, no processes, no
AWS SDK. They keep the ports' contracts (revisions, conditional writes, idempotent starts)
so that domain logic is tested as it runs on either real implementation."""

from __future__ import annotations

import copy
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

from chalicelib.errors import NotFoundError
from chalicelib.ports import (
    ConditionFailedError,
    Delete,
    Deployment,
    EndpointNotReadyError,
    ExecutionNotFoundError,
    ExecutionStatus,
    HistoryPage,
    JobKind,
    JobSpec,
    JobStatus,
    Record,
    TooLargeError,
    Write,
    check_key,
)
from chalicelib.runtime import Ports
from chalicelib.settings import Settings

MAX_DOC_BYTES = 390_000


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def uri(self, key: str) -> str:
        return f"mem://{check_key(key)}"

    def key_of(self, uri: str) -> str:
        if not uri.startswith("mem://"):
            raise ValueError(uri)
        return check_key(uri[len("mem://") :])

    def put_bytes(self, key: str, data: bytes) -> str:
        self.objects[check_key(key)] = bytes(data)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.objects[check_key(key)]
        except KeyError:
            raise NotFoundError(f"object {key!r} not found") from None

    def put_file(self, key: str, path: Path) -> str:
        return self.put_bytes(key, path.read_bytes())

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.get_bytes(key))
        return dest

    def exists(self, key: str) -> bool:
        return check_key(key) in self.objects

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete_prefix(self, prefix: str) -> None:
        base = prefix.rstrip("/")
        for key in [k for k in self.objects if k == base or k.startswith(base + "/")]:
            del self.objects[key]


class MemoryMetadata:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[int, str]] = {}
        self.lock = threading.Lock()
        self.writes = 0

    def get(self, pk: str, sk: str) -> Record | None:
        with self.lock:
            found = self.items.get((pk, sk))
        return Record(pk, sk, json.loads(found[1]), found[0]) if found else None

    def query(self, pk: str, sk_prefix: str = "") -> list[Record]:
        with self.lock:
            rows = [(k[1], v) for k, v in self.items.items() if k[0] == pk]
        return [
            Record(pk, sk, json.loads(doc), rev)
            for sk, (rev, doc) in sorted(rows)
            if sk.startswith(sk_prefix)
        ]

    def _check(self, pk: str, sk: str, expected: int | None) -> int:
        current = self.items.get((pk, sk), (0, ""))[0]
        if expected is not None and current != expected:
            raise ConditionFailedError(f"{pk}/{sk}: revision {current}")
        return current

    def _apply(self, write: Write) -> int:
        doc = json.dumps(write.item, separators=(",", ":"), allow_nan=False)
        if len(doc.encode()) > MAX_DOC_BYTES:
            raise TooLargeError(f"{write.pk}/{write.sk}")
        current = self._check(write.pk, write.sk, write.expected_rev)
        self.items[(write.pk, write.sk)] = (current + 1, doc)
        self.writes += 1
        return current + 1

    def put(self, write: Write) -> int:
        with self.lock:
            return self._apply(write)

    def put_many(self, writes: list[Write | Delete]) -> None:
        with self.lock:
            for w in writes:  # check everything first: all or nothing
                self._check(w.pk, w.sk, w.expected_rev)
            snapshot = copy.copy(self.items)
            try:
                for w in writes:
                    if isinstance(w, Delete):
                        self.items.pop((w.pk, w.sk), None)
                    else:
                        self._apply(w)
            except Exception:
                self.items = snapshot
                raise

    def delete(self, pk: str, sk: str) -> None:
        with self.lock:
            self.items.pop((pk, sk), None)


class FakeJobs:
    """Jobs end as the test says (``finish``); starting a name twice is a no-op."""

    def __init__(self) -> None:
        self.started: dict[str, JobSpec] = {}
        self.statuses: dict[str, JobStatus] = {}
        self.stopped: list[str] = []

    def start(self, spec: JobSpec) -> None:
        if spec.name in self.started:
            return
        self.started[spec.name] = spec
        self.statuses[spec.name] = JobStatus(spec.name, "InProgress")

    def describe(self, name: str, kind: JobKind) -> JobStatus:
        if name not in self.statuses:
            raise NotFoundError(f"job {name!r} not found")
        return self.statuses[name]

    def stop(self, name: str, kind: JobKind) -> None:
        status = self.statuses.get(name)
        if status is not None and status.status == "InProgress":
            self.statuses[name] = JobStatus(name, "Stopped", "Stopped by request")
            self.stopped.append(name)

    def finish(self, name: str, status: str = "Completed", **outputs: str) -> None:
        self.statuses[name] = JobStatus(name, status, None, dict(outputs))  # type: ignore[arg-type]


class FakeEndpoints:
    """Records what each endpoint serves; ``refuse`` makes the next deploys fail."""

    def __init__(self) -> None:
        self.serving: dict[str, Deployment] = {}
        self.deploys: list[tuple[str, int]] = []
        self.refuse: set[str] = set()

    def deploy(self, deployment: Deployment) -> None:
        if deployment.endpoint in self.refuse:
            raise EndpointNotReadyError(f"{deployment.endpoint} is updating")
        self.serving[deployment.endpoint] = deployment
        self.deploys.append((deployment.endpoint, deployment.version))

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        served = self.serving[endpoint]
        rows = json.loads(body)["dataframe_split"]["data"]
        return json.dumps({"predictions": [served.version] * len(rows)}).encode()

    def status(self, endpoint: str) -> str:
        return "InService" if endpoint in self.serving else "NotFound"

    def delete(self, endpoint: str) -> None:
        self.serving.pop(endpoint, None)


class FakeOrchestrator:
    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, ExecutionStatus] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        arn = f"arn:aws:states:us-east-1:123456789012:execution:mlpipe:{name}"
        self.executions.setdefault(arn, execution_input)
        self.statuses.setdefault(arn, "RUNNING")
        self.histories.setdefault(arn, [{"type": "ExecutionStarted", "id": 1}])
        return arn

    def status(self, ref: str) -> ExecutionStatus:
        return self.statuses.get(ref, "LOST")

    def stop(self, ref: str, cause: str) -> None:
        if ref not in self.statuses:
            raise ExecutionNotFoundError(ref)
        self.statuses[ref] = "ABORTED"

    def history(self, ref: str, token: str | None = None, limit: int = 100) -> HistoryPage:
        if ref not in self.histories:
            raise ExecutionNotFoundError(ref)
        start = int(token or 0)
        events = self.histories[ref]
        more = start + limit < len(events)
        return HistoryPage(events[start : start + limit], str(start + limit) if more else None)


def make_ports(tmp_path: Path | None = None, **settings: Any) -> Ports:
    """Ports over in-memory fakes; the metrics store is the local SQLite one (its own
    arithmetic is tested by the metrics store contract suite) in a temporary folder."""
    from iac.local.metrics_store import SqliteMetricsStore

    values: dict[str, Any] = {"profile": "local", "poll_seconds": 0, "code_version": "test"}
    if tmp_path is not None:
        values["data_dir"] = tmp_path
    folder = tmp_path or Path(tempfile.mkdtemp(prefix="mlpipe-fakes-"))
    return Ports(
        settings=Settings(**{**values, **settings}),
        store=MemoryStore(),
        metadata=MemoryMetadata(),
        jobs=FakeJobs(),
        endpoints=FakeEndpoints(),
        orchestrator=FakeOrchestrator(),
        metrics=SqliteMetricsStore(folder / "metrics.sqlite3"),
    )
