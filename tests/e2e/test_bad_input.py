"""Every caller mistake gets a 4xx JSON error that names the problem, and nothing is
half-written. Never a 500, never a stack trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Api, classification_csv


def assert_error(result: tuple[int, object], status: int, *needles: str) -> None:
    code, body = result
    assert code == status, body
    assert isinstance(body, dict) and set(body) == {"Code", "Message"}, body
    message = str(body["Message"])
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message


@pytest.fixture(scope="module")
def ready(api: Api) -> Api:
    api.ok(
        "POST",
        "/datasets",
        {"name": "good", "source": {"type": "inline", "data": classification_csv(60)}},
    )
    return api


PIPELINE = {
    "name": "p1",
    "dataset": {"name": "good"},
    "target": "label",
    "task": "classification",
    "model": {"algorithm": "random_forest"},
}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("a,b\n1,2\n3,4,5\n", "CSV line 3 has 3 fields"),
        ("", "empty"),
        ("   \n", "empty"),
        ("a,b\n", "no rows"),
        ("a,a\n1,2\n", None),
    ],
)
def test_bad_csv_is_rejected_and_nothing_is_written(
    ready: Api, data: str, needle: str | None
) -> None:
    result = ready.call(
        "POST", "/datasets", {"name": "broken", "source": {"type": "inline", "data": data}}
    )
    assert_error(result, 400, *([needle] if needle else []))
    assert_error(ready.call("GET", "/datasets/broken"), 404, "not found")


def test_dataset_formats_and_sources(
    ready: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jsonl = '{"x": 1, "y": "a"}\n{"x": 2, "y": "b"}\n'
    created = ready.ok(
        "POST",
        "/datasets",
        {"name": "lines", "format": "jsonl", "source": {"type": "inline", "data": jsonl}},
    )
    assert created["rows"] == 2
    version = ready.ok("GET", "/datasets/lines/versions/1")
    assert version["schema"] == [{"name": "x", "type": "integer"}, {"name": "y", "type": "string"}]
    assert_error(
        ready.call("POST", "/datasets", {"name": "j", "format": "json", "source": {"type": "inline", "data": "{\"a\": 1}"}}),
        400, "array of objects",
    )  # fmt: skip
    assert_error(
        ready.call("POST", "/datasets", {"name": "pq", "format": "parquet", "source": {"type": "inline", "data": "not parquet"}}),
        400, "base64",
    )  # fmt: skip


def test_file_source_is_confined_to_the_allowed_roots(
    ready: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.runtime import ports

    settings = ports().settings
    # By default only <data dir>/files is readable, never the server's working directory.
    assert settings.allowed_file_roots == [(settings.data_dir / "files").resolve()]
    assert_error(
        ready.call("POST", "/datasets", {"name": "git", "source": {"type": "file", "path": ".git/config"}}),
        404, "not found",
    )  # fmt: skip
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "data.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "secret.csv").write_text("k\nv\n")
    monkeypatch.setattr(settings, "file_roots", str(allowed))
    ok = ready.ok(
        "POST",
        "/datasets",
        {"name": "fromfile", "source": {"type": "file", "path": "data.csv"}},
    )
    assert ok["rows"] == 2
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "/etc/passwd"):
        assert_error(
            ready.call("POST", "/datasets", {"name": "leak", "source": {"type": "file", "path": path}}),
            400, "outside the allowed file roots",
        )  # fmt: skip
    assert_error(
        ready.call("POST", "/datasets", {"name": "leak", "source": {"type": "file", "path": "missing.csv"}}),
        404, "not found",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"target": "nope"}, 400, "target column 'nope'"),
        ({"model": {"algorithm": "xgboost"}}, 400, "unknown algorithm"),
        (
            {"model": {"algorithm": "random_forest", "hyperparameters": {"n_estimator": 5}}},
            400,
            "n_estimators",
        ),
        (
            {"model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": "many"}}},
            400,
            "n_estimators",
        ),
        (
            {"model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": -3}}},
            400,
            "n_estimators",
        ),
        ({"model": {"algorithm": "linear_regression"}}, 400, "classification"),
        ({"name": "../etc"}, 400, "not a safe identifier"),
        ({"name": "a/b"}, 400, "not a safe identifier"),
        ({"dataset": {"name": "missing"}}, 404, "dataset 'missing' not found"),
        ({"dataset": {"name": "good", "version": 9}}, 404, "no version 9"),
        ({"evaluation": {"metrics": ["rmse"]}}, 400, "not available for classification"),
        ({"evaluation": {"test_size": 1.5}}, 400, "test_size"),
        ({"task": "clustering"}, 400, "task"),
        ({"tuning": {"strategy": "grid"}}, 400, "tuning"),
        (
            {"preprocessing": [{"op": "drop_columns", "columns": ["label"]}]},
            400,
            "cannot drop the target",
        ),
        ({"preprocessing": [{"op": "drop_columns", "columns": ["ghost"]}]}, 400, "ghost"),
        (
            {"task": "regression", "model": {"algorithm": "linear_regression"}},
            400,
            "numeric target",
        ),
    ],
)
def test_bad_pipelines_are_rejected(ready: Api, change: dict, status: int, needle: str) -> None:
    assert_error(ready.call("POST", "/pipelines", {**PIPELINE, **change}), status, needle)
    assert_error(ready.call("GET", "/pipelines/p1"), 404)


def test_duplicate_pipeline_is_a_conflict(ready: Api) -> None:
    ready.ok("POST", "/pipelines", {**PIPELINE, "name": "dup"})
    assert_error(
        ready.call("POST", "/pipelines", {**PIPELINE, "name": "dup"}), 409, "already exists"
    )


@pytest.mark.parametrize(
    "path",
    ["/datasets/nope", "/datasets/good/versions/7", "/pipelines/nope", "/runs/nope", "/runs/nope/events",
     "/models/nope", "/models/nope/versions", "/models/nope/versions/1", "/endpoints/nope"],
)  # fmt: skip
def test_unknown_things_are_404(ready: Api, path: str) -> None:
    code, body = ready.call("GET", path)
    assert_error((code, body), 404)
    assert "not found" in body["Message"] or "has no version" in body["Message"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [("/datasets/good/versions/abc", "positive integer"), ("/datasets/..%2Fetc", "safe identifier"),
     ("/datasets/good/versions/0", "positive integer")],
)  # fmt: skip
def test_bad_path_parameters_are_400(ready: Api, path: str, needle: str) -> None:
    assert_error(ready.call("GET", path), 400, needle)


def test_non_json_bodies_are_400(ready: Api) -> None:
    for path in ("/datasets", "/pipelines", "/endpoints", "/pipelines/p1/runs"):
        assert_error(ready.call("POST", path, raw="{not json"), 400, "not valid JSON")
    assert_error(ready.call("POST", "/datasets", ["a list"]), 400)


def test_unknown_endpoint_model_and_alias(ready: Api) -> None:
    assert_error(
        ready.call("POST", "/endpoints", {"name": "e", "model": "nope", "version": 1}),
        404,
        "not found",
    )
    assert_error(
        ready.call("POST", "/endpoints", {"name": "e", "model": "nope"}), 400, "exactly one"
    )
    assert_error(
        ready.call("POST", "/endpoints/nope/invocations", {"instances": []}), 404, "not found"
    )
    assert_error(ready.call("POST", "/endpoints/nope/rollback"), 404, "not found")
    assert_error(ready.call("PUT", "/models/nope/aliases/prod", {"version": 1}), 404, "not found")
    assert_error(ready.call("PUT", "/models/nope/aliases/prod", {"version": 0}), 400, "version")


@pytest.fixture(scope="module")
def served(ready: Api) -> Api:
    ready.ok("POST", "/pipelines", {**PIPELINE, "name": "served", "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 5}}, "deployment": {"endpoint": "served"}})  # fmt: skip
    run = ready.wait_run(ready.ok("POST", "/pipelines/served/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    return ready


GOOD_ROW = {"petal/len": 0.1, "sepal width": 1.0, "colour": "red", "count": 2}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"dataframe_records": [{"petal/len": 0.1, "colour": "red", "count": 2}]},
            "missing column(s) 'sepal width'",
        ),
        (
            {"dataframe_records": [{**GOOD_ROW, "count": "two"}]},
            "column 'count' expects an integer",
        ),
        ({"dataframe_records": [{**GOOD_ROW, "colour": 3}]}, "column 'colour' expects a string"),
        ({"dataframe_records": [{**GOOD_ROW, "count": True}]}, "expects an integer"),
        ({"dataframe_records": [GOOD_ROW], "instances": [GOOD_ROW]}, "exactly one"),
        ({"rows": [GOOD_ROW]}, "exactly one"),
        ({"dataframe_records": []}, "no rows"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "row 0"),
        ({"instances": [[1, 2]]}, "row 0"),
        ([GOOD_ROW], "must be an object"),
    ],
)
def test_bad_prediction_requests_are_400(served: Api, body: object, needle: str) -> None:
    assert_error(served.call("POST", "/endpoints/served/invocations", body), 400, needle)


def test_bad_prediction_bodies(served: Api) -> None:
    path = "/endpoints/served/invocations"
    assert_error(served.call("POST", path, raw="{oops"), 400, "not valid JSON")
    assert_error(
        served.call("POST", path, raw="petal/len,colour\n1,red\n", content_type="text/csv"),
        400,
        "missing column(s)",
    )
    assert_error(
        served.call(
            "POST",
            path,
            raw="petal/len,sepal width,colour,count\nx,1,red,2\n",
            content_type="text/csv",
        ),
        400,
        "expects a number",
    )
    status, _ = served.call("POST", path, raw="<a/>", content_type="application/xml")
    assert status == 415
    ok = served.ok("POST", path, {"dataframe_records": [GOOD_ROW, {**GOOD_ROW, "petal/len": None}]})
    assert len(ok["predictions"]) == 2  # a missing value is imputed, not an error


def test_roc_auc_needs_a_binary_target(ready: Api) -> None:
    three = "x,y\n" + "".join(f"{i},{'abc'[i % 3]}\n" for i in range(30))
    ready.ok("POST", "/datasets", {"name": "three", "source": {"type": "inline", "data": three}})
    body = {**PIPELINE, "name": "auc", "dataset": {"name": "three"}, "target": "y",
            "evaluation": {"metrics": ["roc_auc"]}}  # fmt: skip
    assert_error(
        ready.call("POST", "/pipelines", body), 400, "roc_auc needs a binary target", "3 classes"
    )


def test_orchestrator_refusal_is_503_and_the_run_is_recorded_failed(
    ready: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.runtime import ports

    ready.ok("POST", "/pipelines", {**PIPELINE, "name": "orphan"})
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"
    monkeypatch.setattr(ports().orchestrator, "state_machine_arn", missing)
    assert_error(ready.call("POST", "/pipelines/orphan/runs"), 503, "could not start this run")
    monkeypatch.undo()
    (run,) = ready.ok("GET", "/pipelines/orphan/runs")["runs"]
    detail = ready.ok("GET", f"/runs/{run['run_id']}")
    assert detail["status"] == "FAILED" and detail["error"]["type"] == "ServiceUnavailableError"
    assert "does-not-exist" not in str(detail)


def test_upload_a_version_as_the_request_body(ready: Api) -> None:
    import io

    import pandas as pd

    csv = "a,b/c\n1,x\n2,y\n3,z\n"
    created = ready.ok("POST", "/datasets/uploaded/versions", raw=csv, content_type="text/csv")
    assert created["version"] == 1 and created["rows"] == 3
    buf = io.BytesIO()
    pd.DataFrame({"a": [1.5, 2.5], "flag": [True, False]}).to_parquet(buf)
    for media in ("application/vnd.apache.parquet", "application/octet-stream"):
        created = ready.ok(
            "POST", "/datasets/uploaded/versions", raw=buf.getvalue(), content_type=media
        )
        assert created["rows"] == 2
    version = ready.ok("GET", f"/datasets/uploaded/versions/{created['version']}")
    assert version["source"] == {"type": "upload"} and version["format"] == "parquet"
    assert version["schema"] == [
        {"name": "a", "type": "number"},
        {"name": "flag", "type": "boolean"},
    ]
    jsonl = '{"x": 1}\n{"x": 2}\n'
    assert (
        ready.ok(
            "POST", "/datasets/uploaded/versions", raw=jsonl, content_type="application/x-ndjson"
        )["rows"]
        == 2
    )
    assert ready.ok("GET", "/datasets/uploaded")["latest_version"] == 4


def test_bad_uploads(ready: Api) -> None:
    path = "/datasets/upbad/versions"
    assert_error(
        ready.call("POST", path, raw="a,b\n1,2\n3,4,5\n", content_type="text/csv"),
        400,
        "CSV line 3 has 3 fields",
    )
    assert_error(ready.call("POST", path, raw="", content_type="text/csv"), 400, "empty")
    assert_error(
        ready.call("POST", path, raw=b"PAR1 nope", content_type="application/octet-stream"),
        400,
        "parquet",
    )
    assert_error(
        ready.call("POST", "/datasets/..%2Fx/versions", raw="a\n1\n", content_type="text/csv"),
        400,
        "safe identifier",
    )
    status, _ = ready.call("POST", path, raw="<a/>", content_type="application/xml")
    assert status == 415
    assert_error(ready.call("GET", "/datasets/upbad"), 404)
