"""Regressions from probing the running service (issue 5): every input below was a 500, a lie
or lost data once. Each is now a 4xx naming the problem, or handled, and what is stored reads
back as strict JSON."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import Api, classification_csv

ROW = {"petal/len": 1.2, "sepal width": -0.3, "colour": "red", "count": 1}


def strict_json(value: Any) -> None:
    """The body as a strict JSON parser sees it: no NaN, no Infinity."""
    json.loads(json.dumps(value), parse_constant=lambda name: pytest.fail(f"{name} in {value}"))


def assert_4xx(result: tuple[int, Any], status: int, *needles: str) -> None:
    code, body = result
    assert code == status, body
    assert set(body) == {"Code", "Message"}, body
    for needle in needles:
        assert needle in body["Message"], body["Message"]


def upload(api: Api, name: str, data: str, fmt: str = "csv") -> tuple[int, Any]:
    body: dict[str, Any] = {"name": name, "source": {"type": "inline", "data": data}}
    if fmt != "csv":
        body["format"] = fmt
    return api.call("POST", "/datasets", body)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("[" * 3000 + "]" * 3000, "nested too deeply (more than 32 levels)"),
        (
            '{"name": "x", "z": ' + "[" * 33 + "]" * 33 + "}",
            "nested too deeply (more than 32 levels)",
        ),
        (
            '{"name": "x", "z": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}",
            "nested too deeply (more than 32 levels)",
        ),
        ('{"name": "x", "z": NaN}', "NaN is not a JSON value"),
        ('{"name": "x", "z": 1e999}', "out of range"),
    ],
)
def test_bodies_too_deep_or_not_finite_are_400_on_every_json_route(
    api: Api, raw: str, needle: str
) -> None:
    for method, path in (("POST", "/datasets"), ("POST", "/pipelines"), ("POST", "/endpoints")):
        assert_4xx(api.call(method, path, raw=raw), 400, needle)


def test_deep_nesting_inside_strings_does_not_count(api: Api) -> None:
    data = 'a,b\n"' + "[" * 100 + '",1\n"{{",2\n'
    status, body = upload(api, "brackets-in-text", data)
    assert status == 201, body


@pytest.mark.parametrize(
    ("data", "fmt", "needle"),
    [
        ('[{"a": 1e999, "b": 1}, {"a": 2, "b": 2}]', "json", "column 'a' holds an infinite"),
        ('[{"a": Infinity, "b": 1}]', "json", "Infinity is not a finite number"),
        ('[{"a": 10000000000000000000000}]', "json", "beyond 64 bits"),
        ('{"a": -Infinity}\n', "jsonl", "not a finite number"),
        (
            '[{"a": ' + "[" * 3000 + "]" * 3000 + "}]",
            "json",
            "nested too deeply (more than 32 levels)",
        ),
        (
            '{"a": ' + "[" * 40 + "]" * 40 + "}\n",
            "jsonl",
            "nested too deeply (more than 32 levels)",
        ),
        ("a,b\n1e999,1\n2,2\n", "csv", "column 'a' holds an infinite number (row 1)"),
        ("a,b\n1,inf\n2,2\n", "csv", "column 'b' holds an infinite number (row 1)"),
        ("a,b\n1,2\n-Infinity,2\n", "csv", "(row 2)"),
        ("a,b\n10000000000000000000000,1\n2,2\n", "csv", "beyond 64 bits"),
        ("a,b\n1,2,3\n4\n", "csv", "CSV line 2 has 3 fields"),
    ],
)
def test_bad_numbers_and_shapes_in_uploads_are_400(
    api: Api, data: str, fmt: str, needle: str
) -> None:
    assert_4xx(upload(api, "numbers", data, fmt), 400, needle)
    assert_4xx(api.call("GET", "/datasets/numbers"), 404)


def test_infinite_and_huge_parquet_cells_are_400(api: Api) -> None:
    for frame, needle in (
        (pd.DataFrame({"a": [np.inf, 1.0], "b": [1, 2]}), "column 'a' holds an infinite"),
        (pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, -np.inf]}), "(row 2)"),
    ):
        buf = io.BytesIO()
        frame.to_parquet(buf)
        result = api.call(
            "POST",
            "/datasets/pq/versions",
            raw=buf.getvalue(),
            content_type="application/vnd.apache.parquet",
        )
        assert_4xx(result, 400, needle)


@pytest.mark.parametrize(
    ("data", "fmt", "column"),
    [
        ('[{"a": true, "b": 1}, {"a": "x", "b": 2}, {"a": 3, "b": 3}]', "json", "a"),
        ('{"a": true}\n{"a": "x"}\n{"a": 3}\n', "jsonl", "a"),
    ],
)
def test_mixed_type_columns_become_text(api: Api, data: str, fmt: str, column: str) -> None:
    status, created = upload(api, f"mixed-{fmt}", data, fmt)
    assert status == 201, created
    version = api.ok("GET", f"/datasets/mixed-{fmt}/versions/1")
    types = {c["name"]: c["type"] for c in version["schema"]}
    assert types[column] == "string"
    strict_json(version)


def test_missing_and_extreme_finite_values_read_back_as_strict_json(api: Api) -> None:
    for name, data, fmt in (
        ("nan-json", '[{"a": NaN, "b": 1}, {"a": 2, "b": 2}]', "json"),
        ("nan-csv", "a,b\nnan,1\nNaN,2\n3,3\n", "csv"),
        ("big-csv", "a,b\n1e308,1\n-1e308,2\n", "csv"),
    ):
        status, created = upload(api, name, data, fmt)
        assert status == 201, created
        strict_json(api.ok("GET", f"/datasets/{name}/versions/1"))
        strict_json(api.ok("GET", f"/datasets/{name}"))


def test_a_deleted_version_number_is_never_given_again(api: Api) -> None:
    assert upload(api, "reuse", "a,b\n1,2\n")[0] == 201
    assert upload(api, "reuse", "a,b\n3,4\n5,6\n")[0] == 201
    assert api.ok("DELETE", "/datasets/reuse/versions/2")["deleted_versions"] == [2]
    status, third = upload(api, "reuse", "a,b\n7,8\n9,9\n10,10\n")
    assert status == 201 and third["version"] == 3 and third["rows"] == 3
    assert_4xx(api.call("GET", "/datasets/reuse/versions/2"), 404)
    assert api.ok("GET", "/datasets/reuse")["latest_version"] == 3
    assert [v["version"] for v in api.ok("GET", "/datasets/reuse")["versions"]] == [1, 3]
    # The latest deleted: its number stays taken too.
    api.ok("DELETE", "/datasets/reuse/versions/3")
    assert api.ok("GET", "/datasets/reuse")["latest_version"] == 1
    status, fourth = upload(api, "reuse", "a,b\n0,0\n")
    assert status == 201 and fourth["version"] == 4 and fourth["rows"] == 1


def test_names_with_a_trailing_newline_are_rejected(api: Api) -> None:
    result = upload(api, "abc\n", "a,b\n1,2\n")
    assert_4xx(result, 400, "not a safe identifier")


@pytest.fixture(scope="module")
def served(api: Api) -> Api:
    api.ok("POST", "/datasets", {"name": "rel", "source": {"type": "inline",
                                                          "data": classification_csv(120)}})  # fmt: skip
    api.ok(
        "POST",
        "/pipelines",
        {
            "name": "rel-lr",
            "dataset": {"name": "rel"},
            "target": "label",
            "task": "classification",
            "model": {"algorithm": "logistic_regression"},
            "deployment": {"endpoint": "rel"},
        },
    )
    run = api.wait_run(api.ok("POST", "/pipelines/rel-lr/runs")["run_id"])
    assert run["status"] == "SUCCEEDED", run["error"]
    return api


def test_non_finite_quality_gate_thresholds_are_400(api: Api) -> None:
    base = {
        "name": "gate",
        "dataset": {"name": "rel"},
        "target": "label",
        "task": "classification",
        "model": {"algorithm": "logistic_regression"},
    }
    for value in ("NaN", "Infinity", "1e999"):
        raw = json.dumps(base)[:-1] + f', "evaluation": {{"thresholds": {{"accuracy": {value}}}}}}}'
        assert api.call("POST", "/pipelines", raw=raw)[0] == 400
    assert_4xx(api.call("GET", "/pipelines/gate"), 404)
    strict_json(api.ok("GET", "/pipelines"))


def test_extreme_prediction_values_are_400_or_answered(served: Api) -> None:
    path = "/endpoints/rel/invocations"
    for value in (1e308, -1e308, 10**30):
        status, body = served.call(
            "POST", path, {"dataframe_records": [{**ROW, "petal/len": value}]}
        )
        assert status in (200, 400), body
        if status == 200:
            assert all(isinstance(p, str) for p in body["predictions"])
        strict_json(body)
    assert_4xx(served.call("POST", path, raw='{"dataframe_records": [' + "[" * 40 + "]" * 40 + "]}"),
               400, "nested too deeply (more than 32 levels)")  # fmt: skip


def test_endpoint_list_reports_the_live_status(served: Api) -> None:
    from chalicelib.runtime import ports

    runtime = ports().endpoints
    listed = {e["name"]: e for e in served.ok("GET", "/endpoints")["endpoints"]}
    assert listed["rel"]["status"] == "InService"
    runtime._failed["rel"] = "the artefact does not match its recorded sha256"  # type: ignore[attr-defined]
    try:
        listed = {e["name"]: e for e in served.ok("GET", "/endpoints")["endpoints"]}
        assert listed["rel"]["status"] == "Failed"
        assert "sha256" in listed["rel"]["failure_reason"]
        assert served.ok("GET", "/endpoints/rel")["status"] == "Failed"
    finally:
        runtime._failed.pop("rel", None)  # type: ignore[attr-defined]


def test_a_second_pipeline_cannot_take_over_an_endpoint_of_another_model(served: Api) -> None:
    """Created before the endpoint existed, its run fails in deploy and says why; created
    after, the pipeline is a 409. The endpoint keeps serving its own model either way."""
    # Make a fresh endpoint's owner pipeline and a rival, both before the endpoint exists.
    served.ok("POST", "/pipelines", {
        "name": "owner", "dataset": {"name": "rel"}, "target": "label",
        "task": "classification", "model": {"algorithm": "logistic_regression"},
        "deployment": {"endpoint": "contested"},
    })  # fmt: skip
    served.ok("POST", "/pipelines", {
        "name": "rival", "dataset": {"name": "rel"}, "target": "label",
        "task": "classification", "model": {"algorithm": "logistic_regression"},
        "deployment": {"endpoint": "contested"},
    })  # fmt: skip
    first = served.wait_run(served.ok("POST", "/pipelines/owner/runs")["run_id"])
    assert first["status"] == "SUCCEEDED", first["error"]
    second = served.wait_run(served.ok("POST", "/pipelines/rival/runs")["run_id"])
    assert second["status"] == "FAILED"
    assert second["error"]["step"] == "deploy"
    assert "serves model 'owner'" in second["error"]["message"]
    endpoint = served.ok("GET", "/endpoints/contested")
    assert endpoint["model"] == "owner" and endpoint["history"] == [1]
    answer = served.ok("POST", "/endpoints/contested/invocations", {"dataframe_records": [ROW]})
    assert answer["model"] == "owner"
    late = {
        "name": "late", "dataset": {"name": "rel"}, "target": "label",
        "task": "classification", "model": {"algorithm": "logistic_regression"},
        "deployment": {"endpoint": "contested"},
    }  # fmt: skip
    assert_4xx(served.call("POST", "/pipelines", late), 409, "serves model 'owner'")


def _wait_job(runner: Any, name: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        status = runner.describe(name, "training")
        if status.status != "InProgress" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.mark.parametrize("when", ["before", "after"])
def test_cancel_while_the_training_job_starts(
    served: Api, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A cancel that lands while StartTraining runs — before the job is started, or after it
    is started but before the step has recorded it — stops the job; the run ends ABORTED."""
    from chalicelib import runs
    from chalicelib.runtime import ports

    wired = ports()
    runner = wired.jobs
    real_start = runner.start
    seen: list[str] = []

    def start_with_a_cancel(spec: Any) -> None:
        if spec.kind != "training":
            return real_start(spec)
        seen.append(spec.name)
        run_id = spec.output_prefix.split("/")[1]
        if when == "before":
            runs.cancel(wired, run_id)
            real_start(spec)
        else:
            real_start(spec)
            runs.cancel(wired, run_id)
        return None

    monkeypatch.setattr(runner, "start", start_with_a_cancel)
    run_id = served.ok("POST", "/pipelines/rel-lr/runs")["run_id"]
    run = served.wait_run(run_id)
    assert run["status"] == "ABORTED"
    assert run["error"]["type"] == "Cancelled"
    (job,) = seen
    status = _wait_job(runner, job)
    assert status.status == "Stopped", status
    train = next(s for s in run["steps"] if s["name"] == "train")
    assert train["status"] == "ABORTED" and run["error"]["step"] == "train"
    assert {s["status"] for s in run["steps"]} <= {"SUCCEEDED", "ABORTED", "SKIPPED"}


def test_rollback_to_a_deleted_version_is_409_and_serving_goes_on(served: Api) -> None:
    served.ok("POST", "/pipelines", {
        "name": "rb-lr", "dataset": {"name": "rel"}, "target": "label",
        "task": "classification", "model": {"algorithm": "logistic_regression"},
    })  # fmt: skip
    for expected in (1, 2):
        run = served.wait_run(served.ok("POST", "/pipelines/rb-lr/runs")["run_id"])
        assert run["status"] == "SUCCEEDED" and run["model"]["version"] == expected, run
    served.ok("PUT", "/models/rb-lr/aliases/live", {"version": 1})
    served.ok("POST", "/endpoints", {"name": "rb", "model": "rb-lr", "alias": "live"})
    served.ok("PUT", "/models/rb-lr/aliases/live", {"version": 2})
    assert served.ok("GET", "/endpoints/rb")["history"] == [1, 2]
    served.ok("DELETE", "/models/rb-lr/versions/1")  # neither served nor behind an alias now
    assert_4xx(served.call("POST", "/endpoints/rb/rollback"), 409, "v1", "has been deleted")
    after = served.ok("GET", "/endpoints/rb")
    assert after["model_version"] == 2 and after["history"] == [1, 2]
    assert served.ok("GET", "/models/rb-lr")["aliases"] == {"live": 2}
    answer = served.ok("POST", "/endpoints/rb/invocations", {"dataframe_records": [ROW]})
    assert answer["model_version"] == 2 and len(answer["predictions"]) == 1


def test_a_run_cancelled_right_after_it_started_keeps_a_history_with_its_end(
    served: Api,
) -> None:
    """moto's interpreter failed a StopExecution that came before its worker began (and the
    execution then never recorded its end); the kept history gets the end."""
    import json as json_mod

    from chalicelib import runs
    from chalicelib.runtime import ports

    for _ in range(3):
        run_id = served.ok("POST", "/pipelines/rel-lr/runs")["run_id"]
        assert served.ok("POST", f"/runs/{run_id}/cancel")["status"] == "ABORTED"
        deadline = time.monotonic() + 30
        while True:
            kept = json_mod.loads(ports().store.get_bytes(runs.history_key(run_id)))
            if kept[-1]["type"] == "ExecutionAborted" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert kept[0]["type"] == "ExecutionStarted" and kept[-1]["type"] == "ExecutionAborted"
        assert served.events(run_id) == kept
