"""The user's story through the REST API on the embedded stack: upload, define, run, watch,
predict, train a second version, roll back. The real ASL runs in moto's interpreter, the real
job scripts run as subprocesses, the real model serves predictions."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.e2e.conftest import Api, classification_csv, regression_csv

FEATURES = ["petal/len", "sepal width", "colour", "count"]


@pytest.fixture(scope="module")
def first_run(api: Api) -> dict:
    created = api.ok(
        "POST",
        "/datasets",
        {"name": "flowers", "source": {"type": "inline", "data": classification_csv()}},
    )
    assert created["version"] == 1 and created["status"] == "READY"
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "flowers-rf",
            "dataset": {"name": "flowers"},
            "target": "label",
            "task": "classification",
            "preprocessing": [{"op": "drop_duplicates"}],
            "model": {
                "algorithm": "random_forest",
                "hyperparameters": {"n_estimators": 30, "max_depth": 6},
            },
            "evaluation": {
                "test_size": 0.25,
                "metrics": ["accuracy", "f1_macro", "roc_auc"],
                "thresholds": {"accuracy": 0.7},
            },
            "deployment": {"endpoint": "flowers", "alias": "production"},
        },
    )
    status, started = api.call("POST", "/pipelines/flowers-rf/runs", {})
    assert status == 202 and started["status"] == "RUNNING"
    return api.wait_run(started["run_id"])


def test_run_succeeds_with_every_step_recorded(first_run: dict) -> None:
    assert first_run["status"] == "SUCCEEDED", first_run["error"]
    steps = {s["name"]: s for s in first_run["steps"]}
    assert list(steps) == [
        "ingest", "validate", "split", "train", "evaluate", "quality_gate", "register", "deploy",
    ]  # fmt: skip
    for step in steps.values():
        assert step["status"] == "SUCCEEDED", step
        assert step["started_at"] <= step["ended_at"]
    assert first_run["model"] == {"name": "flowers-rf", "version": 1}
    assert first_run["error"] is None


def test_metrics_are_measured_on_the_held_out_split(api: Api, first_run: dict) -> None:
    metrics = first_run["metrics"]
    assert set(metrics) == {"accuracy", "f1_macro", "roc_auc"}
    assert 0.7 <= metrics["accuracy"] <= 1.0
    assert 0.5 < metrics["roc_auc"] <= 1.0
    split = next(s for s in first_run["steps"] if s["name"] == "split")["detail"]
    assert split["test_rows"] == pytest.approx(
        0.25 * (split["train_rows"] + split["test_rows"]), abs=2
    )


def test_events_are_the_execution_history(api: Api, first_run: dict) -> None:
    events = api.events(first_run["run_id"])
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in events if e["type"] == "TaskStateEntered"
    ]
    for state in ("LoadDataset", "CleanData", "SplitTrainTest", "StartTrainingJob",
                  "DeployModelVersion"):  # fmt: skip
        assert state in entered


def test_model_version_records_lineage(api: Api, first_run: dict) -> None:
    version = api.ok("GET", "/models/flowers-rf/versions/1")
    assert version["hyperparameters"] == {"n_estimators": 30, "max_depth": 6}
    assert version["metrics"] == first_run["metrics"]
    assert version["data"] == {"dataset": "flowers", "version": 1}
    assert version["artefact_uri"].startswith("file://") and version["artefact_uri"].endswith(
        ".tar.gz"
    )
    assert len(version["sha256"]) == 64 and version["code_version"]
    assert [c["name"] for c in version["signature"]] == FEATURES
    assert sorted(version["classes"]) == ["no", "yes"]
    models = api.ok("GET", "/models")["models"]
    assert any(m["name"] == "flowers-rf" and m["aliases"] == {"production": 1} for m in models)


def test_every_scoring_format_gives_the_same_predictions(api: Api, first_run: dict) -> None:
    frame = pd.read_csv(io.StringIO(classification_csv())).head(5)
    frame["petal/len"] = frame["petal/len"].fillna(0.0)
    rows = frame[FEATURES].to_dict(orient="records")
    bodies = {
        "dataframe_split": {
            "dataframe_split": {"columns": FEATURES, "data": frame[FEATURES].values.tolist()}
        },
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {c: frame[c].tolist() for c in FEATURES}},
    }
    answers = {k: api.ok("POST", "/endpoints/flowers/invocations", b) for k, b in bodies.items()}
    csv_body = frame[FEATURES].to_csv(index=False)
    answers["csv"] = api.ok(
        "POST", "/endpoints/flowers/invocations", raw=csv_body, content_type="text/csv"
    )
    first = answers["dataframe_split"]["predictions"]
    assert len(first) == 5 and set(first) <= {"yes", "no"}
    for name, answer in answers.items():
        assert answer["predictions"] == first, name
        assert answer["model_version"] == 1
    # The served model agrees with the labels on most rows of this learnable problem.
    truth = frame["label"].tolist()
    assert sum(p == t for p, t in zip(first, truth, strict=True)) >= 3


def test_second_version_then_rollback(api: Api, first_run: dict) -> None:
    api.ok(
        "POST",
        "/datasets",
        {"name": "flowers", "source": {"type": "inline", "data": classification_csv(500, seed=7)}},
    )
    started = api.ok("POST", "/pipelines/flowers-rf/runs", {})
    second = api.wait_run(started["run_id"])
    assert second["status"] == "SUCCEEDED", second["error"]
    assert second["model"] == {"name": "flowers-rf", "version": 2}
    assert second["dataset"] == {"name": "flowers", "version": 2}
    endpoint = api.ok("GET", "/endpoints/flowers")
    assert endpoint["model_version"] == 2 and endpoint["history"] == [1, 2]
    row = {
        "dataframe_records": [{"petal/len": 2.0, "sepal width": -1.0, "colour": "red", "count": 1}]
    }
    assert api.ok("POST", "/endpoints/flowers/invocations", row)["model_version"] == 2

    rolled = api.ok("POST", "/endpoints/flowers/rollback")
    assert rolled["model_version"] == 1 and rolled["rolled_back_from"] == 2
    assert api.ok("GET", "/endpoints/flowers")["model_version"] == 1
    assert api.ok("GET", "/models/flowers-rf")["aliases"] == {"production": 1}
    answer = api.ok("POST", "/endpoints/flowers/invocations", row)
    assert answer["model_version"] == 1 and answer["predictions"] == ["yes"]

    status, error = api.call("POST", "/endpoints/flowers/rollback")
    assert status == 409 and "no previous version" in error["Message"]


def test_moving_an_alias_moves_the_endpoints_that_follow_it(api: Api, first_run: dict) -> None:
    moved = api.ok("PUT", "/models/flowers-rf/aliases/production", {"version": 2})
    assert moved["previous_version"] == 1 and moved["endpoints"] == ["flowers"]
    assert api.ok("GET", "/endpoints/flowers")["model_version"] == 2
    status, error = api.call("PUT", "/models/flowers-rf/aliases/production", {"version": 9})
    assert status == 404 and "no version 9" in error["Message"]


def test_regression_without_deployment_then_endpoint_by_version(api: Api) -> None:
    api.ok(
        "POST",
        "/datasets",
        {"name": "houses", "source": {"type": "inline", "data": regression_csv()}},
    )
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "houses-lr",
            "dataset": {"name": "houses", "version": 1},
            "target": "y",
            "task": "regression",
            "model": {"algorithm": "linear_regression"},
            "evaluation": {"thresholds": {"r2": 0.9, "rmse": 1.0}},
        },
    )
    run = api.wait_run(api.ok("POST", "/pipelines/houses-lr/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    assert set(run["metrics"]) == {"rmse", "mae", "r2"}
    assert run["metrics"]["r2"] > 0.95 and run["metrics"]["rmse"] < 0.5
    assert {s["name"]: s["status"] for s in run["steps"]}["deploy"] == "SKIPPED"

    created = api.ok("POST", "/endpoints", {"name": "houses", "model": "houses-lr", "version": 1})
    assert created["model_version"] == 1 and created["alias"] is None
    pred = api.ok(
        "POST", "/endpoints/houses/invocations", {"instances": [[1.0, 0.0, "n"], [0.0, 1.0, "s"]]}
    )["predictions"]
    assert pred[0] == pytest.approx(8.0, abs=0.5) and pred[1] == pytest.approx(-2.0, abs=0.5)


def test_quality_gate_failure_stops_before_registering(api: Api) -> None:
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "flowers-strict",
            "dataset": {"name": "flowers", "version": 1},
            "target": "label",
            "task": "classification",
            "model": {"algorithm": "logistic_regression"},
            "evaluation": {"thresholds": {"accuracy": 0.9999}},
            "deployment": {"endpoint": "never"},
        },
    )
    run = api.wait_run(api.ok("POST", "/pipelines/flowers-strict/runs")["run_id"])
    assert run["status"] == "FAILED"
    assert run["error"]["step"] == "quality_gate"
    assert run["error"]["type"] == "QualityGateFailed"
    assert "accuracy" in run["error"]["message"] and "below the floor" in run["error"]["message"]
    statuses = {s["name"]: s["status"] for s in run["steps"]}
    assert statuses["evaluate"] == "SUCCEEDED" and statuses["register"] == "SKIPPED"
    assert run["metrics"]["accuracy"] < 0.9999
    assert api.call("GET", "/models/flowers-strict")[0] == 404
    assert api.call("GET", "/endpoints/never")[0] == 404


def test_training_failure_names_the_step_and_the_reason(api: Api) -> None:
    # Valid for the catalog one by one, rejected by scikit-learn as a combination.
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "flowers-badcombo",
            "dataset": {"name": "flowers", "version": 1},
            "target": "label",
            "task": "classification",
            "model": {
                "algorithm": "logistic_regression",
                "hyperparameters": {"solver": "lbfgs", "penalty": "l1"},
            },
        },
    )
    run = api.wait_run(api.ok("POST", "/pipelines/flowers-badcombo/runs")["run_id"])
    assert run["status"] == "FAILED"
    assert run["error"]["step"] == "train" and run["error"]["type"] == "StepError"
    assert "train job" in run["error"]["message"] and "failed" in run["error"]["message"]
    assert "Traceback" not in run["error"]["message"]
    statuses = {s["name"]: s["status"] for s in run["steps"]}
    assert statuses["split"] == "SUCCEEDED" and statuses["train"] == "FAILED"
    assert statuses["evaluate"] == "SKIPPED"
    events = api.events(run["run_id"])
    assert events[-1]["type"] == "ExecutionFailed"


def test_run_list_is_newest_first(api: Api, first_run: dict) -> None:
    listed = api.ok("GET", "/pipelines/flowers-rf/runs")["runs"]
    assert len(listed) >= 2
    assert listed[-1]["run_id"] == first_run["run_id"]
    assert json.dumps(listed)  # plain JSON


def test_a_transient_failure_is_retried_by_the_state_machine(
    api: Api, first_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import steps
    from chalicelib.errors import TransientError

    calls = {"n": 0}
    real_split = steps.split

    def flaky_split(*args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("the metadata store is busy: database is locked")
        return real_split(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(steps, "split", flaky_split)
    run = api.wait_run(api.ok("POST", "/pipelines/houses-lr/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    assert calls["n"] == 2
    events = api.events(run["run_id"])
    failed = [e for e in events if e["type"] == "LambdaFunctionFailed"]
    assert (
        len(failed) == 1
        and failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "TransientError"
    )


def test_concurrent_runs_get_distinct_versions_and_a_consistent_endpoint(api: Api) -> None:
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "flowers-concurrent",
            "dataset": {"name": "flowers", "version": 1},
            "target": "label",
            "task": "classification",
            "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 5}},
            "deployment": {"endpoint": "flowers-concurrent", "alias": "live"},
        },
    )
    ids = [api.ok("POST", "/pipelines/flowers-concurrent/runs")["run_id"] for _ in range(3)]
    finished = [api.wait_run(run_id) for run_id in ids]
    assert [r["status"] for r in finished] == ["SUCCEEDED"] * 3, [r["error"] for r in finished]
    assert sorted(r["model"]["version"] for r in finished) == [1, 2, 3]
    live = api.ok("GET", "/models/flowers-concurrent")["aliases"]["live"]
    assert api.ok("GET", "/endpoints/flowers-concurrent")["model_version"] == live
