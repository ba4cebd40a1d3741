"""The CloudWatch alarm definitions the product would create are accepted by PutMetricAlarm
(moto validates the parameters; it does not evaluate alarms, which the local evaluator's
tests cover)."""

from __future__ import annotations

from chalicelib.monitoring import alarms
from tests.contract.conftest import aws_client


def test_cloudwatch_definitions_are_accepted_by_put_metric_alarm(moto_aws) -> None:
    cw = aws_client("cloudwatch")
    definitions = alarms.endpoint_presets(
        "ep", p99_ms=50, accuracy_below=0.8
    ) + alarms.pipeline_presets("p")
    for d in definitions:
        cw.put_metric_alarm(
            **alarms.put_metric_alarm_args(d, ["arn:aws:sns:us-east-1:123456789012:mlpipe-alarms"])
        )
    described = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert set(described) == {d.name for d in definitions}
    assert described["ep-p99-latency"]["ExtendedStatistic"] == "p99"
    assert described["ep-p99-latency"]["Threshold"] == 50_000
    assert [m["Id"] for m in described["ep-5xx-rate"]["Metrics"]] == [
        "numerator",
        "denominator",
        "ratio",
    ]
    resource = alarms.cloudformation_resource(definitions[-1], [{"Ref": "AlarmTopic"}])
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
