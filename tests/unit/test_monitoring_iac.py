"""Dashboards and template resources for AWS are well-formed CloudWatch documents."""

from __future__ import annotations

import json

import pytest

from chalicelib.monitoring import dashboards, iac


@pytest.mark.parametrize(("kind", "name"), [("endpoint", "flowers"), ("pipeline", "flowers-rf")])
def test_cloudwatch_bodies_per_endpoint_and_pipeline(kind: str, name: str) -> None:
    body = dashboards.cloudwatch_body(kind, name, region="us-east-1")
    assert body["widgets"]
    for w in body["widgets"]:
        assert w["type"] == "metric" and 0 <= w["x"] < 24 and w["width"] <= 24
        metrics = w["properties"]["metrics"]
        assert metrics
        for row in metrics:
            if "expression" in row[0]:
                assert name in row[0]["expression"] and row[0]["expression"].startswith("SEARCH(")
            else:
                namespace, _metric, *dims, opts = row
                assert namespace == "mlpipe" and opts["stat"]
                assert (
                    dict(zip(dims[::2], dims[1::2], strict=True))[
                        ("EndpointName" if kind == "endpoint" else "Pipeline")
                    ]
                    == name
                )
    args = dashboards.put_dashboard_args(kind, name, region="us-east-1")
    assert json.loads(args["DashboardBody"]) == body
    assert args["DashboardName"] == f"mlpipe-{kind}-{name}"


def test_the_page_and_cloudwatch_share_one_definition() -> None:
    page = dashboards.html_page()
    for widget in dashboards.ENDPOINT_WIDGETS + dashboards.PIPELINE_WIDGETS:
        assert f'"id":"{widget["id"]}"' in page


def test_template_resources() -> None:
    res = iac.template_resources()
    assert {r["Type"] for r in res.values()} == {
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Dashboard",
        "AWS::CloudWatch::Alarm",
        "AWS::Events::Rule",
    }
    body = res["MonitoringDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    parsed = json.loads(body)
    assert all(w["properties"]["region"] == "${AWS::Region}" for w in parsed["widgets"])
    # Fn::Sub must find no variables other than the pseudo parameter.
    assert body.count("${") == body.count("${AWS::Region}")
    alarm = res["RunsFailedAlarm"]["Properties"]
    assert alarm["MetricName"] == "RunsFailed" and alarm["AlarmActions"] == [
        {"Ref": "MonitoringAlarmTopic"}
    ]
