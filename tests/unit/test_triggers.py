"""Retraining triggers (chalicelib/triggers.py + the template's EventBridge rules), offline:
new data under incoming/<dataset>/ becomes a dataset version and retrains the pipelines that
follow it; a schedule retrains its pipeline; a repeated event starts nothing twice."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import pipelines, runs, tables, triggers
from chalicelib.errors import BadRequestError
from chalicelib.schemas import PipelineCreate
from tests.fakes import make_ports
from tests.unit.test_iac import TEMPLATE_PATH, load_yaml

CSV = "x,y,label\n" + "".join(f"{i},{i % 3},{'a' if i % 2 else 'b'}\n" for i in range(30))


def _s3_event(key: str, bucket: str = "mlpipe-artifacts", etag: str = "e1") -> dict[str, Any]:
    # The shape S3 sends to EventBridge ("Object Created").
    return {"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "etag": etag}}}  # fmt: skip


def _pipeline(ports: Any, name: str, version: int | None = None) -> None:
    spec = PipelineCreate.model_validate({
        "name": name, "dataset": {"name": "d", "version": version}, "target": "label",
        "task": "classification", "model": {"algorithm": "random_forest"},
    })  # fmt: skip
    pipelines.create(ports, spec)


def test_new_data_becomes_a_version_and_retrains_the_pipelines_that_follow_it() -> None:
    ports = make_ports()
    ports.store.put_bytes("incoming/d/first.csv", CSV.encode())
    first = triggers.handle(ports, _s3_event("incoming/d/first.csv"))
    assert first["dataset"]["version"] == 1 and first["runs"] == []
    _pipeline(ports, "follows")
    _pipeline(ports, "pinned", version=1)
    ports.store.put_bytes("incoming/d/second.csv", CSV.encode())
    second = triggers.handle(ports, _s3_event("incoming/d/second.csv", etag="e2"))
    assert second["dataset"]["version"] == 2
    (run_id,) = second["runs"]
    run = runs.get(ports, run_id)
    assert run["pipeline"] == "follows" and run["dataset"]["version"] == 2
    # EventBridge delivers at least once: the same object version starts nothing again.
    again = triggers.handle(ports, _s3_event("incoming/d/second.csv", etag="e2"))
    assert again == {"trigger": "new_data", "duplicate": "incoming/d/second.csv"}
    assert len(ports.metadata.query(tables.RUNS)) == 1


def test_a_schedule_starts_its_pipeline() -> None:
    ports = make_ports()
    ports.store.put_bytes("incoming/d/data.csv", CSV.encode())
    triggers.handle(ports, _s3_event("incoming/d/data.csv"))
    _pipeline(ports, "weekly")
    out = triggers.handle(ports, {"trigger": "schedule", "pipeline": "weekly"})
    (run_id,) = out["runs"]
    assert runs.get(ports, run_id)["pipeline"] == "weekly"


@pytest.mark.parametrize(
    "event",
    [_s3_event("incoming/d/x.csv", bucket="someone-elses"), {"detail-type": "Anything"},
     {"trigger": "schedule", "pipeline": "../etc"}],
)  # fmt: skip
def test_foreign_or_malformed_events_are_refused(event: dict[str, Any]) -> None:
    with pytest.raises((BadRequestError, ValueError)):
        triggers.handle(make_ports(), event)


def test_other_keys_are_ignored() -> None:
    ports = make_ports()
    for key in ("incoming/d/notes.txt", "incoming/d/deeper/x.csv", "datasets/d/x.csv"):
        assert triggers.handle(ports, _s3_event(key)) == {"trigger": "new_data", "ignored": key}


def test_the_template_routes_both_triggers_to_the_retrain_function() -> None:
    resources = load_yaml(TEMPLATE_PATH)["Resources"]
    bucket = resources["ArtefactBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    new_data = resources["RetrainOnNewDataRule"]["Properties"]
    assert new_data["EventPattern"]["detail"]["object"]["key"] == [{"prefix": triggers.INCOMING}]
    assert new_data["EventPattern"]["detail"]["bucket"]["name"] == [{"Ref": "ArtefactBucket"}]
    schedule = resources["RetrainOnScheduleRule"]
    assert schedule["Condition"] == "RetrainOnSchedule"
    assert '"trigger": "schedule"' in schedule["Properties"]["Targets"][0]["Input"]["Fn::Sub"]
    for rule in ("RetrainOnNewDataRule", "RetrainOnScheduleRule"):
        (target,) = resources[rule]["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["Retrain", "Arn"]}
    permissions = [r["Properties"] for r in resources.values()
                   if r.get("Type") == "AWS::Lambda::Permission"
                   and r["Properties"]["FunctionName"] == {"Ref": "Retrain"}]  # fmt: skip
    assert {p["SourceArn"]["Fn::GetAtt"][0] for p in permissions} == {
        "RetrainOnNewDataRule",
        "RetrainOnScheduleRule",
    }
    assert all(p["Principal"] == "events.amazonaws.com" for p in permissions)
