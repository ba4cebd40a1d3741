"""Declarative preprocessing through the REST API: a pipeline using every step kind is
validated at creation, trains through the state machine, deploys, and predicts from raw
input rows (dates as ISO text, numbers as text where the spec casts them)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.e2e.conftest import Api
from tests.e2e.test_feature_steps import EVERY_STEP, TARGET, raw_table

pytestmark = pytest.mark.e2e


def test_every_step_kind_trains_deploys_and_predicts_from_raw_rows(api: Api) -> None:
    frame = raw_table(400, seed=3)
    api.ok(
        "POST",
        "/datasets/customers/versions",
        raw=frame.to_csv(index=False),
        content_type="text/csv",
    )
    schema = {
        c["name"]: c["type"] for c in api.ok("GET", "/datasets/customers/versions/1")["schema"]
    }
    assert schema["signup"] == "datetime"  # ISO 8601 text is typed at ingestion
    created = api.ok(
        "POST",
        "/pipelines",
        {
            "name": "customers-rf",
            "dataset": {"name": "customers"},
            "target": TARGET,
            "task": "classification",
            "preprocessing": EVERY_STEP,
            "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 20}},
            "deployment": {"endpoint": "customers"},
        },
    )
    # Defaults were filled in, and what training will leave out is said up front.
    assert all("op" in s for s in created["preprocessing"])
    assert {e["name"] for e in created["excluded_columns"]} >= {"row_id", "source"}
    run = api.wait_run(api.ok("POST", "/pipelines/customers-rf/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    assert any("row_id" in note for note in run["notes"])
    version = api.ok("GET", "/models/customers-rf/versions/1")
    assert version["preprocessing"][0]["op"] == "impute"
    assert "row_id" not in {c["name"] for c in version["signature"]}

    rows = frame.drop(columns=[TARGET]).head(5)
    as_csv = api.ok(
        "POST", "/endpoints/customers/invocations", raw=rows.to_csv(index=False),
        content_type="text/csv",
    )["predictions"]  # fmt: skip
    assert len(as_csv) == 5 and set(as_csv) <= {"low", "mid", "high"}
    # The same dates in another ISO 8601 form give the same predictions.
    shifted = rows.copy()
    shifted["signup"] = pd.to_datetime(rows["signup"]).dt.strftime("%Y-%m-%dT00:00:00Z")
    again = api.ok(
        "POST", "/endpoints/customers/invocations", raw=shifted.to_csv(index=False),
        content_type="text/csv",
    )["predictions"]  # fmt: skip
    assert again == as_csv


def test_bad_steps_are_400_at_creation_naming_the_step(api: Api) -> None:
    api.ok(
        "POST",
        "/datasets",
        {
            "name": "tiny",
            "source": {
                "type": "inline",
                "data": "a,b,f,y\n"
                + "".join(f"{i % 2},{'xy'[i % 2]},{i / 7:.4f},{i % 2}\n" for i in range(40)),
            },
        },
    )
    base = {"name": "tiny-p", "dataset": {"name": "tiny"}, "target": "y",
            "task": "classification", "model": {"algorithm": "logistic_regression"}}  # fmt: skip
    for steps, needle in [
        ([{"op": "nope"}], "preprocessing[0]"),
        ([{"op": "standard_scale", "columns": ["b"]}], "preprocessing[0] (standard_scale)"),
        ([{"op": "drop_columns", "columns": ["missing"]}], "missing"),
        ([{"op": "expression", "name": "z", "expression": "__import__('os')"}], "preprocessing[0]"),
    ]:
        status, body = api.call("POST", "/pipelines", {**base, "preprocessing": steps})
        assert status == 400, body
        assert needle in body["Message"], body
    # A continuous target with a classification task is refused before any training.
    status, body = api.call("POST", "/pipelines", {**base, "name": "tiny-q", "target": "f"})
    assert status == 400, body
    steps = api.ok("GET", "/preprocessing/steps")["steps"]
    assert {s["kind"] for s in steps} == {"row", "learned"}
