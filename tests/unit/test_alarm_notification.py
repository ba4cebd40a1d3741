"""The ``alarm_action`` Lambda: an SNS notification of an endpoint's CloudWatch alarm
entering ALARM runs that definition's actions; other states and foreign alarms do nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chalicelib.monitoring import alarms, schedule, service
from iac.local.sqlite import SqliteMetadata

DEFINITION = {
    "metric": {"metric_name": "Invocation5XXErrors", "statistic": "Sum",
               "dimensions": {"EndpointName": "flowers-eu"}},
    "threshold": 1, "comparison_operator": "GreaterThanOrEqualToThreshold",
    "actions": ["rollback", "retrain"],
}  # fmt: skip


@dataclass
class FakeSettings:
    profile: str = "aws"
    stack_name: str = "prod"


@dataclass
class FakePorts:
    metadata: SqliteMetadata
    settings: FakeSettings


def sns(alarm: str, state: str) -> dict[str, Any]:
    message = {"AlarmName": alarm, "NewStateValue": state, "OldStateValue": "OK",
               "NewStateReason": "Threshold Crossed", "StateChangeTime": "2026-11-28T10:00:00Z"}  # fmt: skip
    return {"Records": [{"Sns": {"Message": json.dumps(message)}}]}


def test_alarm_entering_alarm_runs_its_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = FakePorts(SqliteMetadata(tmp_path / "meta.sqlite3"), FakeSettings())
    service.put_alarm(ports.metadata, "flowers-eu", {**DEFINITION, "name": "errors"})
    service.put_alarm(ports.metadata, "other", {**DEFINITION, "name": "errors"})
    calls: list[tuple[str, str, str]] = []
    for action in ("rollback", "retrain"):
        monkeypatch.setitem(
            alarms.ACTIONS,
            action,
            lambda p, endpoint, d, result, action=action: calls.append(
                (action, endpoint, result.state)
            ),
        )
    done = schedule.on_alarm_notification(ports, sns("prod-flowers-eu-errors", "ALARM"))
    assert done == {"prod-flowers-eu-errors": ["rollback", "retrain"]}
    assert calls == [("rollback", "flowers-eu", "ALARM"), ("retrain", "flowers-eu", "ALARM")]
    calls.clear()
    assert schedule.on_alarm_notification(ports, sns("prod-flowers-eu-errors", "OK")) == {
        "prod-flowers-eu-errors": "ignored"
    }
    assert schedule.on_alarm_notification(ports, sns("someone-elses-alarm", "ALARM")) == {}
    assert schedule.on_alarm_notification(ports, {"Records": [{"Sns": {"Message": "x"}}]}) == {}
    assert calls == []
