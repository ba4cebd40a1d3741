"""runs.py and concurrency.py over the in-memory fakes: admission under the cap, recording,
ending, reconciling with the orchestrator, paged events, cancelling, and the one optimistic
read-modify-write loop everything goes through."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from chalicelib import concurrency, runs, tables, workflow
from chalicelib.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from chalicelib.ports import ConditionFailedError, JobSpec, OrchestratorUnavailableError, Write
from chalicelib.runtime import Ports
from tests.fakes import MemoryMetadata, make_ports


@pytest.fixture
def ports(tmp_path: Path) -> Ports:
    return make_ports(tmp_path, max_concurrent_runs=2)


def launch(ports: Ports) -> str:
    out = runs.launch(ports, "pipeline", {"pipeline": "p"}, {"pipeline": {"name": "p"}})
    return str(out["run_id"])


def arn_of(ports: Ports, run_id: str) -> str:
    record = ports.metadata.get(tables.RUNS, run_id)
    assert record is not None
    return str(record.item["execution_arn"])


# --- launching and the cap ---------------------------------------------------------------


def test_a_launched_run_is_recorded_running_and_its_execution_started(ports: Ports) -> None:
    run_id = launch(ports)
    run = runs.get(ports, run_id)
    assert run["status"] == "RUNNING" and run["kind"] == "pipeline"
    assert [s["name"] for s in run["steps"]] == list(workflow.STEPS_BY_KIND["pipeline"])
    assert {s["status"] for s in run["steps"]} == {"PENDING"}
    assert "execution_arn" not in run  # an internal reference, never shown
    execution = ports.orchestrator.executions[arn_of(ports, run_id)]  # type: ignore[attr-defined]
    assert execution["kind"] == "pipeline" and execution["run_id"] == run_id
    assert execution["poll_seconds"] == ports.settings.poll_seconds


def test_the_cap_refuses_a_third_run_until_one_ends(ports: Ports) -> None:
    first, _second = launch(ports), launch(ports)
    with pytest.raises(TooManyRequestsError, match="limit is 2"):
        launch(ports)
    assert len(ports.metadata.query(tables.RUNS)) == 2  # nothing half-written
    runs.end(ports, first, "SUCCEEDED")
    launch(ports)


def test_a_leaked_slot_heals(ports: Ports) -> None:
    """A run that ended without releasing its slot (a crash between the two writes) does not
    hold it forever."""
    first, _ = launch(ports), launch(ports)
    record = ports.metadata.get(tables.RUNS, first)
    assert record is not None
    ended = {**record.item, "status": "FAILED"}
    ports.metadata.put(Write(tables.RUNS, first, ended, record.rev))
    launch(ports)


def test_concurrent_launches_never_pass_the_cap(ports: Ports) -> None:
    outcomes: list[str] = []

    def go() -> None:
        try:
            launch(ports)
            outcomes.append("ok")
        except TooManyRequestsError:
            outcomes.append("429")

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["429"] * 6 + ["ok"] * 2


def test_an_orchestrator_outage_fails_the_run_and_frees_its_slot(
    ports: Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(name: str, execution_input: dict[str, Any]) -> str:
        raise OrchestratorUnavailableError("throttled")

    monkeypatch.setattr(ports.orchestrator, "start", down)
    with pytest.raises(ServiceUnavailableError, match="try again"):
        launch(ports)
    (record,) = ports.metadata.query(tables.RUNS)
    assert record.item["status"] == "FAILED"
    slots = ports.metadata.get(tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK)
    assert slots is not None and slots.item["runs"] == []


# --- recording and ending ----------------------------------------------------------------


def test_end_names_the_failing_step_and_skips_the_rest(ports: Ports) -> None:
    run_id = launch(ports)
    runs.record_step(ports, run_id, "ingest", "SUCCEEDED", rows=3)
    runs.record_step(ports, run_id, "validate", "RUNNING")
    ended = runs.end(ports, run_id, "FAILED", {"step": None, "type": "X", "message": "boom"})
    by_name = {s["name"]: s for s in ended["steps"]}
    assert ended["error"] == {"step": "validate", "type": "X", "message": "boom"}
    assert by_name["ingest"]["status"] == "SUCCEEDED" and by_name["ingest"]["rows"] == 3
    assert by_name["validate"]["status"] == "FAILED" and by_name["validate"]["ended_at"]
    assert by_name["train"]["status"] == "SKIPPED"


def test_an_ended_run_is_final(ports: Ports) -> None:
    run_id = launch(ports)
    runs.end(ports, run_id, "SUCCEEDED")
    before = ports.metadata.get(tables.RUNS, run_id)
    runs.record_step(ports, run_id, "ingest", "RUNNING")
    runs.end(ports, run_id, "FAILED", {"step": "ingest", "type": "X", "message": "late"})
    after = ports.metadata.get(tables.RUNS, run_id)
    assert before is not None and after is not None
    assert after.rev == before.rev and after.item["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("execution", "status", "error_type"),
    [("ABORTED", "ABORTED", "Cancelled"), ("LOST", "FAILED", "Interrupted"),
     ("TIMED_OUT", "FAILED", "Interrupted")],
)  # fmt: skip
def test_reading_a_run_reconciles_it_with_its_execution(
    ports: Ports, execution: str, status: str, error_type: str
) -> None:
    run_id = launch(ports)
    ports.orchestrator.statuses[arn_of(ports, run_id)] = execution  # type: ignore[attr-defined]
    run = runs.get(ports, run_id)
    assert run["status"] == status and run["error"]["type"] == error_type
    slots = ports.metadata.get(tables.ACTIVE_RUNS, tables.ACTIVE_RUNS_SK)
    assert slots is not None and run_id not in slots.item["runs"]


def test_an_unreachable_orchestrator_leaves_the_run_as_it_is(
    ports: Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = launch(ports)

    def down(ref: str) -> str:
        raise OrchestratorUnavailableError("throttled")

    monkeypatch.setattr(ports.orchestrator, "status", down)
    assert runs.get(ports, run_id)["status"] == "RUNNING"


# --- events --------------------------------------------------------------------------------


def _history(n: int, last: str = "ExecutionSucceeded") -> list[dict[str, Any]]:
    return [{"id": i + 1, "type": "PassStateEntered"} for i in range(n - 1)] + [
        {"id": n, "type": last}
    ]


def test_events_come_in_pages_and_an_ended_history_is_kept(ports: Ports) -> None:
    run_id = launch(ports)
    arn = arn_of(ports, run_id)
    ports.orchestrator.histories[arn] = _history(250)  # type: ignore[attr-defined]
    pages, token = [], None
    while True:
        page = runs.events(ports, run_id, token, limit=100)
        pages.append(len(page["events"]))
        token = page["next_token"]
        if token is None:
            break
    assert pages == [100, 100, 50]
    # Read whole once, the ended history is kept; the orchestrator may then forget it.
    runs.events(ports, run_id, None, limit=1000)
    del ports.orchestrator.histories[arn]  # type: ignore[attr-defined]
    kept = runs.events(ports, run_id, "200", limit=100)
    assert [e["id"] for e in kept["events"]] == list(range(201, 251))
    assert kept["next_token"] is None


def test_a_bad_token_is_a_400_and_a_forgotten_history_a_404(ports: Ports) -> None:
    run_id = launch(ports)
    arn = arn_of(ports, run_id)
    ports.orchestrator.histories[arn] = _history(3, "ExecutionFailed")  # type: ignore[attr-defined]
    runs.events(ports, run_id, None, limit=1000)  # kept
    with pytest.raises(BadRequestError, match="next_token"):
        runs.events(ports, run_id, "x1", limit=10)
    other = launch_after_end(ports, run_id)
    del ports.orchestrator.histories[arn_of(ports, other)]  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError, match="no longer available"):
        runs.events(ports, other)


def launch_after_end(ports: Ports, run_id: str) -> str:
    runs.end(ports, run_id, "FAILED", {"step": "ingest", "type": "X", "message": "m"})
    return launch(ports)


def test_the_step_of_a_silent_death_is_read_from_the_history(ports: Ports) -> None:
    run_id = launch(ports)
    entered = [
        {"id": i, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}
        for i, name in enumerate(("LoadDataset", "CleanData", "StartTrainingJob"), start=2)
    ]
    ports.orchestrator.histories[arn_of(ports, run_id)] = [  # type: ignore[attr-defined]
        {"id": 1, "type": "ExecutionStarted"},
        *entered,
    ]
    assert runs.step_from_history(ports, run_id) == "train"


# --- cancelling ----------------------------------------------------------------------------


def test_cancel_stops_the_execution_and_the_running_job(ports: Ports) -> None:
    run_id = launch(ports)
    ports.jobs.start(JobSpec("job-1", "training", "train.py", {}, {}, "runs/x/train"))
    runs.record_step(ports, run_id, "train", "RUNNING", job={"name": "job-1", "kind": "training"})
    out = runs.cancel(ports, run_id)
    assert out["status"] == "ABORTED" and out["error"]["type"] == "Cancelled"
    assert ports.orchestrator.statuses[arn_of(ports, run_id)] == "ABORTED"  # type: ignore[attr-defined]
    assert ports.jobs.stopped == ["job-1"]  # type: ignore[attr-defined]
    with pytest.raises(ConflictError, match="already ended"):
        runs.cancel(ports, run_id)


# --- the optimistic loop -------------------------------------------------------------------


class Contended(MemoryMetadata):
    """A store where another writer gets in first ``losses`` times."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses

    def put(self, write: Write) -> int:
        if self.losses > 0 and write.expected_rev is not None and write.expected_rev > 0:
            self.losses -= 1
            current = self.items[(write.pk, write.sk)]
            self.items[(write.pk, write.sk)] = (current[0] + 1, current[1])  # someone wrote
            raise ConditionFailedError("lost the race")
        return super().put(write)


def test_update_retries_a_lost_race_and_applies_the_change_to_fresh_data() -> None:
    store = Contended(losses=3)
    store.put(Write("pk", "sk", {"n": 1}, 0))
    seen: list[int] = []

    def bump(item: dict[str, Any]) -> dict[str, Any]:
        seen.append(item["n"])
        return {"n": item["n"] + 1}

    assert concurrency.update(store, "pk", "sk", bump, what="it") == {"n": 2}
    assert len(seen) == 4
    assert store.get("pk", "sk").item == {"n": 2}  # type: ignore[union-attr]


def test_update_gives_up_with_a_409_and_none_leaves_the_item() -> None:
    store = Contended(losses=10**6)
    store.put(Write("pk", "sk", {"n": 1}, 0))
    with pytest.raises(ConflictError, match="concurrently"):
        concurrency.update(store, "pk", "sk", lambda i: {"n": 2}, what="it", attempts=3)
    assert concurrency.update(store, "pk", "sk", lambda i: None, what="it") == {"n": 1}
    with pytest.raises(NotFoundError, match="missing not found"):
        concurrency.update(store, "pk", "nope", lambda i: i, what="missing")


def test_a_lease_has_one_holder_and_expires() -> None:
    store = MemoryMetadata()
    with concurrency.lease(store, "endpoint:a"):
        with (
            pytest.raises(ConflictError, match="busy"),
            concurrency.lease(store, "endpoint:a", wait=0.05),
        ):
            pass
        with concurrency.lease(store, "endpoint:b"):  # another name is independent
            pass
    with concurrency.lease(store, "endpoint:a"):  # released on exit
        pass
    # A holder that died: its lease lapses after the ttl.
    store.put(Write(tables.LEASES, "endpoint:c", {"owner": "dead", "expires_at": 0.0}, 0))
    with concurrency.lease(store, "endpoint:c", wait=0.05):
        pass
