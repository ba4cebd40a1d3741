"""Batch predictions over in-memory ports: what is refused before anything is launched, what
the execution is given, and the steps that start the job and register its output."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from chalicelib import batch, datasets, registry, runs, runtime, steps, tables
from chalicelib.errors import BadRequestError, ConflictError, NotFoundError, StepError
from chalicelib.ports import Write
from chalicelib.runtime import Ports
from chalicelib.schemas import BatchPredictionCreate
from tests.fakes import FakeJobs, FakeOrchestrator, make_ports

SIGNATURE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "string"}]
CSV = "x,colour,label\n1.5,red,yes\n-0.5,blue,no\n2.0,red,yes\n"


@pytest.fixture
def ports() -> Iterator[Ports]:
    wired = make_ports()
    datasets.store_version(wired, "scores-in", "csv", "inline", CSV.encode())
    registry.register(
        wired,
        "m",
        "run-1",
        {
            "task": "classification",
            "signature": SIGNATURE,
            "classes": ["no", "yes"],
            "artefact_key": "runs/run-1/model/model.tar.gz",
            "sha256": "a" * 64,
        },
    )
    registry.set_alias(wired, "m", "production", 1)
    runtime.install(wired)
    yield wired
    runtime.install(None)


def body(**over: Any) -> BatchPredictionCreate:
    doc: dict[str, Any] = {
        "model": "m",
        "model_version": 1,
        "dataset": {"name": "scores-in"},
        "output": {"dataset": "scores-out"},
        **over,
    }
    return BatchPredictionCreate.model_validate({k: v for k, v in doc.items() if v is not None})


def executions(ports: Ports) -> dict[str, dict[str, Any]]:
    assert isinstance(ports.orchestrator, FakeOrchestrator)
    return ports.orchestrator.executions


def test_start_launches_a_batch_run_with_everything_resolved(ports: Ports) -> None:
    started = batch.start(ports, body(model_version=None, alias="production", chunk_rows=10))
    assert started["status"] == "RUNNING"
    assert started["model"] == {"name": "m", "version": 1, "alias": "production"}
    assert started["dataset"] == {"name": "scores-in", "version": 1}
    assert started["output"] == {"dataset": "scores-out", "version": None}
    (execution,) = executions(ports).values()
    assert execution["kind"] == "batch" and execution["run_id"] == started["id"]
    given = execution["batch"]
    assert given["model"]["sha256"] == "a" * 64
    assert given["model"]["artefact_key"] == "runs/run-1/model/model.tar.gz"
    assert given["dataset"]["key"].endswith("/data/data.parquet")
    assert given["chunk_rows"] == 10
    shown = batch.get(ports, started["id"])
    assert [s["name"] for s in shown["steps"]] == ["transform", "register_output"]
    assert shown["status"] == "RUNNING"


@pytest.mark.parametrize(
    ("over", "error", "words"),
    [
        ({"model": "nope"}, NotFoundError, "model 'nope'"),
        ({"model_version": 7}, NotFoundError, "no version 7"),
        ({"model_version": None, "alias": "staging"}, NotFoundError, "alias 'staging'"),
        ({"dataset": {"name": "absent"}}, NotFoundError, "dataset 'absent'"),
        ({"dataset": {"name": "scores-in", "version": 4}}, NotFoundError, "no version 4"),
        ({"output": {"dataset": "scores-in"}}, BadRequestError, "must differ"),
    ],
)
def test_bad_references_are_refused_before_launching(
    ports: Ports, over: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        batch.start(ports, body(**over))
    assert executions(ports) == {}
    assert ports.metadata.query(tables.RUNS) == []  # no run recorded, no slot taken


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        ("x,label\n1,yes\n", "lacks column\\(s\\) 'colour'"),
        ("x,colour\nabc,red\n", "'x' is string .* reads it as number"),
        ("x,colour,prediction\n1,red,3\n", "already has column\\(s\\) 'prediction'"),
        ("x,colour,proba_yes\n1,red,3\n", "'proba_yes'"),
    ],
)
def test_a_dataset_that_does_not_fit_the_model_is_refused(
    ports: Ports, csv: str, words: str
) -> None:
    datasets.store_version(ports, "other", "csv", "inline", csv.encode())
    with pytest.raises(BadRequestError, match=words):
        batch.start(ports, body(dataset={"name": "other"}))
    assert executions(ports) == {}


def test_an_all_missing_column_of_another_type_is_imputed_not_refused(ports: Ports) -> None:
    datasets.store_version(ports, "gaps", "json", "inline", b'[{"x": null, "colour": "red"}]')
    batch.start(ports, body(dataset={"name": "gaps"}))
    assert len(executions(ports)) == 1


def test_an_output_dataset_a_pipeline_trains_on_is_refused(ports: Ports) -> None:
    ports.metadata.put(
        Write(
            tables.PIPELINES,
            "p",
            {"name": "p", "dataset": {"name": "scores-out", "version": None}},
        )
    )
    with pytest.raises(ConflictError, match="pipeline\\(s\\) p read dataset 'scores-out'"):
        batch.start(ports, body())


@pytest.mark.parametrize(
    "doc",
    [
        {"model_version": 1, "alias": "production"},  # both
        {},  # neither
        {"model_version": 1, "output": {"dataset": "../x"}},
        {"model_version": 1, "output": {}},
        {"model_version": 0},
        {"model_version": 1, "chunk_rows": 0},
        {"model_version": 1, "extra": True},
    ],
)
def test_request_validation(doc: dict[str, Any]) -> None:
    full = {"model": "m", "dataset": {"name": "d"}, "output": {"dataset": "o"}, **doc}
    with pytest.raises(ValidationError):
        BatchPredictionCreate.model_validate(full)


def test_a_pipeline_run_is_not_a_batch_prediction(ports: Ports) -> None:
    started = batch.start(ports, body())
    with pytest.raises(NotFoundError):
        batch.get(ports, "0" * 32)
    ports.metadata.put(
        Write(
            tables.RUNS,
            "r-pipeline",
            {**runs.get(ports, started["id"]), "run_id": "r-pipeline", "kind": "pipeline"},
        )
    )
    with pytest.raises(NotFoundError, match="batch prediction 'r-pipeline'"):
        batch.get(ports, "r-pipeline")


def test_steps_start_the_job_and_register_the_output_once(ports: Ports) -> None:
    started = batch.start(ports, body(chunk_rows=5))
    (event,) = executions(ports).values()
    job = steps.HANDLERS["start_transform"](event, None)
    jobs = ports.jobs
    assert isinstance(jobs, FakeJobs)
    spec = jobs.started[job["name"]]
    assert spec.kind == "transform" and spec.entry_point == "batch_transform.py"
    assert spec.arguments["sha256"] == "a" * 64 and spec.arguments["chunk-rows"] == "5"
    assert spec.inputs == {
        "model": "runs/run-1/model/model.tar.gz",
        "data": event["batch"]["dataset"]["key"],
    }
    assert batch.get(ports, started["id"])["steps"][0]["status"] == "RUNNING"

    # The job writes its output; Check sees it Completed; Register makes a dataset version.
    scored = pd.DataFrame(
        {"x": [1.5, -0.5], "colour": ["red", "blue"], "prediction": ["yes", "no"],
         "proba_no": [0.1, 0.8], "proba_yes": [0.9, 0.2]}
    )  # fmt: skip
    ports.store.put_bytes(f"{spec.output_prefix}/predictions.parquet", scored.to_parquet())
    ports.store.put_bytes(f"{spec.output_prefix}/summary.json", b"{}")
    jobs.finish(spec.name, output=spec.output_prefix)
    checked = steps.HANDLERS["check_transform"]({**event, "transform_job": job}, None)
    assert checked["status"] == "Completed"
    state = {**event, "transform_job": checked}
    first = steps.HANDLERS["register_output"](state, None)
    again = steps.HANDLERS["register_output"](state, None)  # a retried step
    assert first == again == {"dataset": "scores-out", "version": 1, "rows": 2}
    assert datasets.describe(ports, "scores-out")["latest_version"] == 1
    version = datasets.get_version(ports, "scores-out", 1)
    assert version["source"]["type"] == "batch_prediction"
    assert version["source"]["batch_id"] == started["id"]
    assert [c["name"] for c in version["schema"]] == list(scored.columns)
    profile = datasets.get_profile(ports, version)
    assert profile["rows"] == 2
    proba = next(c for c in profile["columns"] if c["name"] == "proba_yes")
    assert proba["type"] == "number" and proba["max"] == pytest.approx(0.9)
    stored = pd.read_parquet(io.BytesIO(ports.store.get_bytes(version["key"])))
    pd.testing.assert_frame_equal(stored, pd.read_parquet(io.BytesIO(scored.to_parquet())))

    steps.HANDLERS["finish"](state, None)
    shown = batch.get(ports, started["id"])
    assert shown["status"] == "SUCCEEDED"
    assert shown["output"] == {"dataset": "scores-out", "version": 1}
    assert shown["rows"] == 2
    assert [s["status"] for s in shown["steps"]] == ["SUCCEEDED", "SUCCEEDED"]


def test_the_start_step_fails_when_the_model_changed_meanwhile(ports: Ports) -> None:
    batch.start(ports, body())
    (event,) = executions(ports).values()
    event["batch"]["model"]["sha256"] = "b" * 64
    with pytest.raises(StepError, match="changed since"):
        steps.HANDLERS["start_transform"](event, None)


def test_the_output_of_a_sagemaker_transform_job_is_registered(ports: Ports) -> None:
    """On AWS Batch Transform writes ``<input object>.out``: Parquet from the hooks."""
    batch.start(ports, body())
    (event,) = executions(ports).values()
    job = steps.HANDLERS["start_transform"](event, None)
    prefix = f"runs/{event['run_id']}/batch"
    scored = pd.DataFrame({"x": [1.0], "colour": ["red"], "prediction": ["yes"]})
    ports.store.put_bytes(f"{prefix}/data.parquet.out", scored.to_parquet())
    state = {**event, "transform_job": {**job, "status": "Completed",
                                        "outputs": {"output": prefix}}}  # fmt: skip
    assert steps.HANDLERS["register_output"](state, None)["rows"] == 1


def test_no_output_file_fails_the_register_step(ports: Ports) -> None:
    batch.start(ports, body())
    (event,) = executions(ports).values()
    state = {**event, "transform_job": {"outputs": {"output": "runs/x/batch"}}}
    with pytest.raises(StepError, match="wrote no output file"):
        steps.HANDLERS["register_output"](state, None)
    assert [d["name"] for d in datasets.list_all(ports)] == ["scores-in"]  # nothing written


def test_cancel_stops_the_job_and_ends_aborted(ports: Ports) -> None:
    started = batch.start(ports, body())
    (event,) = executions(ports).values()
    job = steps.HANDLERS["start_transform"](event, None)
    cancelled = batch.cancel(ports, started["id"])
    assert cancelled["status"] == "ABORTED"
    assert cancelled["steps"][0]["status"] == "ABORTED"
    jobs = ports.jobs
    assert isinstance(jobs, FakeJobs) and jobs.stopped == [job["name"]]
    with pytest.raises(ConflictError):
        batch.cancel(ports, started["id"])


def test_a_large_dataset_goes_to_the_job_in_parts_and_comes_back_whole(
    ports: Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch Transform takes one object per request (at most 100 MB): a larger version is
    handed over as Parquet parts, and the outputs (one per part) are merged in order."""
    from chalicelib import batch_steps

    rows = 500
    frame = pd.DataFrame({"x": [float(i) for i in range(rows)], "colour": ["red"] * rows})
    datasets.store_version(ports, "big", "parquet", "upload", frame.to_parquet(index=False))
    size = datasets.get_version(ports, "big", 1)["bytes"]
    monkeypatch.setattr(batch_steps, "PART_BYTES", size // 4)
    batch.start(ports, body(dataset={"name": "big"}))
    (event,) = executions(ports).values()
    job = steps.HANDLERS["start_transform"](event, None)
    jobs = ports.jobs
    assert isinstance(jobs, FakeJobs)
    prefix = jobs.started[job["name"]].inputs["data"]
    assert prefix == f"runs/{event['run_id']}/batch-input"
    parts = ports.store.list(prefix)
    assert len(parts) >= 4 and parts == sorted(parts)
    read = [pd.read_parquet(io.BytesIO(ports.store.get_bytes(k))) for k in parts]
    pd.testing.assert_frame_equal(pd.concat(read, ignore_index=True), frame)

    # What SageMaker writes: <part>.out for each part; registered as one version, in order.
    out = f"runs/{event['run_id']}/batch"
    for key, part in zip(parts, read, strict=True):
        scored = part.assign(prediction="yes")
        ports.store.put_bytes(f"{out}/{key.rsplit('/', 1)[1]}.out", scored.to_parquet())
    state = {**event, "transform_job": {**job, "outputs": {"output": out}}}
    assert steps.HANDLERS["register_output"](state, None)["rows"] == rows
    version = datasets.get_version(ports, "scores-out", 1)
    whole = pd.read_parquet(io.BytesIO(ports.store.get_bytes(version["key"])))
    pd.testing.assert_frame_equal(whole, frame.assign(prediction="yes"))


def test_list_shows_batch_predictions_newest_first(ports: Ports) -> None:
    first = batch.start(ports, body())
    second = batch.start(ports, body(output={"dataset": "scores-out-2"}))
    listed = batch.list_all(ports)
    assert {b["id"] for b in listed} == {first["id"], second["id"]}
    assert listed[0]["created_at"] >= listed[1]["created_at"]
    assert all("steps" not in b and b["status"] == "RUNNING" for b in listed)
