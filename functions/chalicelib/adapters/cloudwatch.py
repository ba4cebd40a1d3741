"""The metrics store on CloudWatch (``chalicelib.monitoring.store`` has the port's shapes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.monitoring.store import Datum, MetricQuery, check_points, check_window, dims_key
from mlcontract import monitoring as mon


class CloudWatchMetricsStore:
    """AWS profile: ``PutMetricData`` / ``GetMetricData`` / ``ListMetrics``.

    ``put`` sends histograms as ``Values``/``Counts`` (at most 150 per datum, so larger ones
    are split) and drops the exact ``StatisticValues`` beside them (CloudWatch takes one or
    the other), so an Average there is within the bucket width (1.6 %) of ours."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cw = cloudwatch

    def put(self, namespace: str, points: Sequence[Datum]) -> None:
        data: list[dict[str, Any]] = []
        for point in check_points(points):
            base = {
                "MetricName": point["MetricName"],
                "Dimensions": sorted(point.get("Dimensions", []), key=lambda d: d["Name"]),
                "Timestamp": mon.parse_time(point.get("Timestamp") or dt.datetime.now(dt.UTC)),
                "Unit": point.get("Unit") or mon.UNITS.get(point["MetricName"], "None"),
            }
            if "Values" in point:
                for part in mon.split_histogram(point, mon.PUT_MAX_VALUES):
                    data.append({**base, "Values": part["Values"], "Counts": part["Counts"]})
            elif "StatisticValues" in point:
                data.append({**base, "StatisticValues": point["StatisticValues"]})
            else:
                data.append({**base, "Value": float(point["Value"])})
        for start in range(0, len(data), 1000):
            self.cw.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])

    def get_metric_data(
        self, queries: Sequence[MetricQuery], start: dt.datetime, end: dt.datetime
    ) -> dict[str, Any]:
        check_window(start, end, queries)
        results: dict[str, dict[str, Any]] = {
            q.id: {
                "Id": q.id,
                "Label": q.default_label,
                "Timestamps": [],
                "Values": [],
                "StatusCode": "Complete",
            }
            for q in queries
        }
        messages: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "MetricDataQueries": [q.to_cloudwatch() for q in queries],
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            page = self.cw.get_metric_data(**kwargs)
            for item in page.get("MetricDataResults", []):
                out = results[item["Id"]]
                for ts, value in zip(
                    item.get("Timestamps", []), item.get("Values", []), strict=False
                ):
                    if value is None:
                        continue
                    out["Timestamps"].append(mon.iso(ts))
                    out["Values"].append(float(value))
                if item.get("StatusCode") not in (None, "Complete"):
                    out["StatusCode"] = item["StatusCode"]
            messages.extend(page.get("Messages", []))
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        for out in results.values():  # pages may interleave; keep each series ascending
            pairs = sorted(zip(out["Timestamps"], out["Values"], strict=True))
            out["Timestamps"] = [t for t, _ in pairs]
            out["Values"] = [v for _, v in pairs]
        return {"MetricDataResults": list(results.values()), "Messages": messages}

    def list_metrics(
        self,
        namespace: str,
        metric_name: str | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Namespace": namespace}
        if metric_name:
            kwargs["MetricName"] = metric_name
        if dimensions:
            kwargs["Dimensions"] = [{"Name": k, "Value": v} for k, v in dimensions.items()]
        found: list[dict[str, Any]] = []
        for page in self.cw.get_paginator("list_metrics").paginate(**kwargs):
            for m in page.get("Metrics", []):
                found.append(
                    {
                        "Namespace": m["Namespace"],
                        "MetricName": m["MetricName"],
                        "Dimensions": sorted(m.get("Dimensions", []), key=lambda d: d["Name"]),
                    }
                )
        unique = {(m["MetricName"], dims_key(m["Dimensions"])): m for m in found}
        return [unique[k] for k in sorted(unique)]


class CloudWatchAlarms:
    """AWS profile: an endpoint's alarms as CloudWatch alarms (``PUT/DELETE
    /endpoints/{name}/alarms/{alarm}``); CloudWatch evaluates them and notifies the topic."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cw = cloudwatch

    def put(self, args: Mapping[str, Any]) -> None:
        """``args`` from ``chalicelib.monitoring.alarms.put_metric_alarm_args``."""
        self.cw.put_metric_alarm(**args)

    def delete(self, name: str) -> None:
        self.cw.delete_alarms(AlarmNames=[name])
