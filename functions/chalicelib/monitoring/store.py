"""Metrics store port: write data points, read them back in the shape of CloudWatch
``GetMetricData``.

- ``put(namespace, points)``: ``PutMetricData``-shaped data points (``mlcontract.monitoring``).
  On AWS the model servers and Lambdas emit EMF to their logs, which CloudWatch turns into
  metrics without any API call, so ``put`` there is for the few writers that are neither
  (the drift and performance computations, tests); locally it is how everything arrives
  (the local stack pulls each model server's ``GET /metrics`` and puts it here).
- ``get_metric_data(queries, start, end)``: ``{"MetricDataResults": [{"Id", "Label",
  "Timestamps", "Values", "StatusCode"}], "Messages": []}``, timestamps ascending (ISO 8601
  strings), one value per period that has data. Statistics: ``Sum``, ``Average``,
  ``Minimum``, ``Maximum``, ``SampleCount`` and percentiles ``pNN`` / ``pNN.N``.
- ``list_metrics(namespace, metric_name, dimensions)``: ``ListMetrics``: the metrics whose
  dimensions include the given ones.

Implementations: ``CloudWatchMetricsStore`` (``chalicelib/adapters/cloudwatch.py``) and
``SqliteMetricsStore``
(``iac/local/metrics_store.py``, 10-second resolution, histograms kept so percentiles over a
period are exact to the bucket width). CloudWatch semantics on both: a query's dimensions
must match a metric's dimensions exactly; periods are aligned to multiples of the period
since the epoch.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlcontract import monitoring as mon

Datum = dict[str, Any]

# Local resolution: data points are merged into 10-second buckets.
RESOLUTION_SECONDS = 10
MAX_QUERIES = 500  # GetMetricData's limit
MAX_DATAPOINTS = 100_800  # GetMetricData's limit per call


class MetricsQueryError(ValueError):
    """A query the store cannot answer (bad statistic, period or time range): a 400."""


@dataclass(frozen=True)
class MetricQuery:
    """One ``MetricDataQuery`` with a ``MetricStat``."""

    id: str
    metric_name: str
    dimensions: Mapping[str, str]
    stat: str
    period: int
    namespace: str = mon.NAMESPACE
    label: str | None = None

    def check(self) -> None:
        if not self.id or not (self.id[0].islower() and self.id.replace("_", "a").isalnum()):
            raise MetricsQueryError(
                f"query id {self.id!r} must start with a lowercase letter and hold only "
                "letters, digits and '_'"
            )
        if self.stat not in mon.STATISTICS and mon.parse_percentile(self.stat) is None:
            raise MetricsQueryError(
                f"statistic {self.stat!r} is not one of {', '.join(mon.STATISTICS)} or pNN"
            )
        check_period(self.period)

    def to_cloudwatch(self) -> dict[str, Any]:
        query: dict[str, Any] = {
            "Id": self.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.metric_name,
                    # Sorted by name, as put() sends them: CloudWatch ignores the order, but
                    # moto 5.2.5 compares dimension lists in the order given.
                    "Dimensions": [
                        {"Name": k, "Value": v} for k, v in sorted(self.dimensions.items())
                    ],
                },
                "Period": self.period,
                "Stat": self.stat,
            },
            "ReturnData": True,
        }
        if self.label:
            query["Label"] = self.label
        return query

    @property
    def default_label(self) -> str:
        return self.label or f"{self.metric_name} {self.stat}"


def check_period(period: int) -> None:
    if period < RESOLUTION_SECONDS or not (period in (10, 30) or period % 60 == 0):
        raise MetricsQueryError(f"period must be 10, 30 or a multiple of 60 seconds, got {period}")


def check_window(start: dt.datetime, end: dt.datetime, queries: Sequence[MetricQuery]) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise MetricsQueryError("start and end must carry a time zone")
    if end <= start:
        raise MetricsQueryError("end must be after start")
    if not queries:
        raise MetricsQueryError("no metric queries")
    if len(queries) > MAX_QUERIES:
        raise MetricsQueryError(f"at most {MAX_QUERIES} queries per request")
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise MetricsQueryError("query ids must be unique")
    seconds = (end - start).total_seconds()
    points = sum(math.ceil(seconds / q.period) for q in queries)
    if points > MAX_DATAPOINTS:
        raise MetricsQueryError(
            f"the request spans {points} data points; at most {MAX_DATAPOINTS}: use a longer "
            "period or a shorter window"
        )
    for q in queries:
        q.check()


class MetricsStore(Protocol):
    def put(self, namespace: str, points: Sequence[Datum]) -> None: ...
    def get_metric_data(
        self, queries: Sequence[MetricQuery], start: dt.datetime, end: dt.datetime
    ) -> dict[str, Any]: ...
    def list_metrics(
        self,
        namespace: str,
        metric_name: str | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]: ...


# --- aggregation (the local store's arithmetic, also used by the alarm evaluator's tests) ---


@dataclass
class Aggregate:
    """Everything needed for any statistic over a set of values: count, exact sum, min, max
    and the histogram (bucket key -> count)."""

    count: float = 0.0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    buckets: dict[int, float] = field(default_factory=dict)

    def add_value(self, value: float, count: float = 1.0) -> None:
        self.count += count
        self.total += value * count
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        key = mon.bucket_key(value)
        self.buckets[key] = self.buckets.get(key, 0.0) + count

    def merge(self, other: Aggregate) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0.0) + n

    @classmethod
    def of_datum(cls, point: Datum) -> Aggregate:
        agg = cls()
        if "Values" in point:
            counts = point.get("Counts") or [1.0] * len(point["Values"])
            for value, n in zip(point["Values"], counts, strict=True):
                if n > 0:
                    agg.add_value(float(value), float(n))
            stats = point.get("StatisticValues")
            if stats:  # exact figures beside the buckets win
                agg.count = float(stats["SampleCount"])
                agg.total = float(stats["Sum"])
                agg.minimum = float(stats["Minimum"])
                agg.maximum = float(stats["Maximum"])
        elif "StatisticValues" in point:
            s = point["StatisticValues"]
            agg.count = float(s["SampleCount"])
            agg.total = float(s["Sum"])
            agg.minimum = float(s["Minimum"])
            agg.maximum = float(s["Maximum"])
            # No distribution: percentiles see the mean (CloudWatch gives none at all).
            if agg.count > 0:
                agg.buckets[mon.bucket_key(agg.total / agg.count)] = agg.count
        else:
            agg.add_value(float(point["Value"]))
        return agg

    def statistic(self, stat: str) -> float | None:
        if self.count <= 0:
            return None
        if stat == "Sum":
            return self.total
        if stat == "Average":
            return self.total / self.count
        if stat == "Minimum":
            return self.minimum
        if stat == "Maximum":
            return self.maximum
        if stat == "SampleCount":
            return self.count
        q = mon.parse_percentile(stat)
        if q is None:
            raise MetricsQueryError(f"unknown statistic {stat!r}")
        return mon.percentile(self.buckets, q, minimum=self.minimum, maximum=self.maximum)


def check_points(points: Iterable[Datum]) -> list[Datum]:
    """Validate data points (a caller's mistake is a ``ValueError`` naming the point)."""
    out = []
    for i, point in enumerate(points):
        where = f"data point {i} ({point.get('MetricName')!r})"
        if not isinstance(point.get("MetricName"), str) or not point["MetricName"]:
            raise ValueError(f"data point {i} has no MetricName")
        dims = point.get("Dimensions", [])
        if len(dims) > 30 or not all(
            isinstance(d.get("Value"), str) and d.get("Name") for d in dims
        ):
            raise ValueError(f"{where}: Dimensions must be at most 30 {{Name, Value}} strings")
        kinds = [k for k in ("Value", "Values", "StatisticValues") if k in point]
        if not kinds:
            raise ValueError(f"{where} needs Value, Values or StatisticValues")
        numbers = [point["Value"]] if "Value" in point else []
        numbers += list(point.get("Values", [])) + list(point.get("Counts", []))
        numbers += list((point.get("StatisticValues") or {}).values())
        if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers):
            raise ValueError(f"{where} has a value that is not a finite number")
        if "Counts" in point and len(point["Counts"]) != len(point.get("Values", [])):
            raise ValueError(f"{where}: Values and Counts differ in length")
        mon.parse_time(point.get("Timestamp") or dt.datetime.now(dt.UTC))
        out.append(point)
    return out


def dims_key(dims: Iterable[Mapping[str, str]] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if isinstance(dims, Mapping):
        return tuple(sorted(dims.items()))
    return tuple(sorted((d["Name"], d["Value"]) for d in dims))
