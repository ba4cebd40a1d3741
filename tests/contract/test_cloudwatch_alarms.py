"""On AWS an endpoint's alarm definitions become CloudWatch alarms (on moto): named
``<stack>-<endpoint>-<alarm>``, notifying the alarm topic when they have actions, deleted
with the definition; locally nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import aws
from chalicelib.monitoring import schedule
from tests.contract.conftest import aws_client

DEFINITION = {
    "name": "slow",
    "metric": {"metric_name": "ModelLatency", "statistic": "p99",
               "dimensions": {"EndpointName": "flowers"}},
    "period": 60, "evaluation_periods": 3, "datapoints_to_alarm": 2, "threshold": 50000,
    "comparison_operator": "GreaterThanThreshold", "actions": ["rollback"],
}  # fmt: skip


@dataclass
class FakeSettings:
    profile: str
    stack_name: str = "mlpipe-test"
    alarm_topic_arn: str = ""


@dataclass
class FakePorts:
    settings: FakeSettings


@pytest.fixture
def cloudwatch(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    client = aws_client("cloudwatch")
    monkeypatch.setattr(aws, "client", lambda service: aws_client(service))
    return client


def test_alarm_definitions_become_cloudwatch_alarms(cloudwatch: Any) -> None:
    topic = aws_client("sns").create_topic(Name="alarms")["TopicArn"]
    ports = FakePorts(FakeSettings("aws", alarm_topic_arn=topic))
    schedule.sync_alarm(ports, "flowers", "slow", DEFINITION)
    (alarm,) = cloudwatch.describe_alarms(AlarmNamePrefix="mlpipe-test-")["MetricAlarms"]
    assert alarm["AlarmName"] == "mlpipe-test-flowers-slow"
    assert (alarm["MetricName"], alarm["Namespace"], alarm["ExtendedStatistic"]) == (
        "ModelLatency", "mlpipe", "p99",
    )  # fmt: skip
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "flowers"}]
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
    assert alarm["AlarmActions"] == [topic] and alarm["ActionsEnabled"]
    schedule.sync_alarm(ports, "flowers", "slow", None)
    assert cloudwatch.describe_alarms(AlarmNamePrefix="mlpipe-test-")["MetricAlarms"] == []


def test_locally_nothing_is_sent(cloudwatch: Any) -> None:
    schedule.sync_alarm(FakePorts(FakeSettings("local")), "flowers", "slow", DEFINITION)
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
