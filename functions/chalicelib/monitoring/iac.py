"""The CloudFormation resources monitoring adds to ``iac/template.yaml``, as data (the
integration merges them; ``tests/unit/test_monitoring_iac.py`` checks them).

- ``MonitoringAlarmTopic``: SNS topic every mlpipe alarm notifies; the ``alarm_actions``
  Lambda (rollback / retrain hooks) subscribes to it.
- ``MonitoringDashboard``: an overview of every pipeline and endpoint, with SEARCH
  expressions (endpoints and pipelines are created at run time); each endpoint also gets its
  own dashboard from ``dashboards.put_dashboard_args`` when it is created.
- ``RunsFailedAlarm``: any failed run (``alarms.pipeline_presets``).
- ``DriftCheckSchedule``: EventBridge rule starting the monitoring state machine every
  ``DriftScheduleMinutes``.

Endpoint alarms cannot be template resources (the endpoints do not exist at deploy time):
the API creates them with ``alarms.put_metric_alarm_args`` when an endpoint is deployed.
"""

from __future__ import annotations

import json
from typing import Any

from mlcontract import monitoring as mon

from . import alarms


def _search(dims: str, where: str, stat: str, period: int, qid: str) -> list[dict[str, Any]]:
    expression = f"SEARCH('{{{mon.NAMESPACE},{dims}}} {where}', '{stat}', {period})"
    return [{"expression": expression, "id": qid, "label": ""}]


def overview_body(region: str = "${AWS::Region}") -> dict[str, Any]:
    def widget(
        i: int, title: str, metrics: list[list[dict[str, Any]]], **extra: Any
    ) -> dict[str, Any]:
        props = {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "metrics": metrics,
            **extra,
        }
        return {
            "type": "metric",
            "x": (i % 3) * 8,
            "y": (i // 3) * 6,
            "width": 8,
            "height": 6,
            "properties": props,
        }

    e, p = mon.ENDPOINT, mon.PIPELINE
    return {
        "widgets": [
            widget(
                0,
                "Endpoint requests",
                [_search(e, f'MetricName="{mon.INVOCATIONS}"', "Sum", 60, "inv")],
            ),
            widget(
                1,
                "Endpoint 5xx",
                [_search(e, f'MetricName="{mon.ERRORS_5XX}"', "Sum", 60, "e5")],
            ),
            widget(
                2,
                "Model latency p99 (us)",
                [_search(e, f'MetricName="{mon.MODEL_LATENCY}"', "p99", 60, "p99")],
            ),
            widget(
                3,
                "Feature drift (PSI)",
                [
                    _search(
                        f"{e},{mon.FEATURE}",
                        f'MetricName="{mon.FEATURE_DRIFT}"',
                        "Maximum",
                        3600,
                        "drift",
                    )
                ],
                annotations={"horizontal": [{"label": "PSI 0.2", "value": 0.2}]},
            ),
            widget(
                4, "Accuracy", [_search(e, f'MetricName="{mon.ACCURACY}"', "Average", 3600, "acc")]
            ),
            widget(
                5,
                "Runs failed / succeeded",
                [
                    _search(p, f'MetricName="{mon.RUNS_FAILED}"', "Sum", 300, "failed"),
                    _search(p, f'MetricName="{mon.RUNS_SUCCEEDED}"', "Sum", 300, "ok"),
                ],
            ),
            widget(
                6,
                "Step duration (s)",
                [
                    _search(
                        f"{p},{mon.STEP}",
                        f'MetricName="{mon.STEP_DURATION}"',
                        "Average",
                        300,
                        "steps",
                    )
                ],
            ),
        ]
    }


def template_resources() -> dict[str, Any]:
    (runs_failed,) = alarms.pipeline_presets(None)
    alarm = alarms.cloudformation_resource(runs_failed, [{"Ref": "MonitoringAlarmTopic"}])
    alarm["Properties"]["AlarmName"] = {"Fn::Sub": "${AWS::StackName}-runs-failed"}
    return {
        "MonitoringAlarmTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": {"Fn::Sub": "${AWS::StackName}-alarms"}},
        },
        "MonitoringDashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": {"Fn::Sub": "${AWS::StackName}-monitoring"},
                "DashboardBody": {"Fn::Sub": json.dumps(overview_body(), indent=1)},
            },
        },
        "RunsFailedAlarm": alarm,
        "DriftCheckSchedule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": "mlpipe: drift checks, model quality and alarms for every endpoint",
                "ScheduleExpression": {"Fn::Sub": "rate(${DriftScheduleMinutes} minutes)"},
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "monitoring",
                        # The function that lists endpoints and starts one monitoring
                        # execution per endpoint (INTEGRATION-monitoring.md).
                        "Arn": {"Fn::GetAtt": ["ScheduleMonitoring", "Arn"]},
                    }
                ],
            },
        },
    }
