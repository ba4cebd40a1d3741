"""Monitoring vocabulary shared by the model server, the jobs, the API and the metric stores.

Standard library only (it ships inside every model archive as ``code/mlcontract``).

- **Metric names, units and dimensions**: SageMaker's names for endpoint metrics, ours for
  pipelines and model quality. One table (``METRICS``) so every emitter and every reader
  agrees on the unit.
- **Data points** in the shape of CloudWatch ``PutMetricData``'s ``MetricDatum`` (plain
  dicts, JSON-ready): ``MetricName``, ``Dimensions`` ``[{"Name", "Value"}]``, ``Timestamp``
  (ISO 8601, UTC, ``Z``), ``Unit``, and one of ``Value``, ``Values`` + ``Counts`` (a
  histogram: each value occurred ``count`` times) or ``StatisticValues`` (``SampleCount``,
  ``Sum``, ``Minimum``, ``Maximum``). A histogram datum may carry ``StatisticValues`` too:
  the exact sum/min/max beside the bucketed values (our stores keep both; CloudWatch gets
  the histogram).
- **Histogram buckets**: log-linear, 32 buckets per power of two, so a value's bucket
  midpoint is within 1.6 % of it. Percentiles over any period are computed from the merged
  buckets (never as averages of percentiles).
- **EMF**: CloudWatch embedded metric format documents (one JSON line each), with
  histograms as ``{"Values", "Counts", "Max", "Min", "Count", "Sum"}`` and at most 100
  distinct values per metric per document (CloudWatch drops larger ones).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

NAMESPACE: Final = "mlpipe"

# Endpoint metrics (SageMaker's names and units; CPU is per-core percent summed over cores,
# as SageMaker reports it, so 2 busy cores read 200).
INVOCATIONS: Final = "Invocations"
ERRORS_4XX: Final = "Invocation4XXErrors"
ERRORS_5XX: Final = "Invocation5XXErrors"
MODEL_LATENCY: Final = "ModelLatency"
OVERHEAD_LATENCY: Final = "OverheadLatency"
CPU: Final = "CPUUtilization"
MEMORY: Final = "MemoryUtilization"
# Pipelines.
RUNS_STARTED: Final = "RunsStarted"
RUNS_SUCCEEDED: Final = "RunsSucceeded"
RUNS_FAILED: Final = "RunsFailed"
STEP_DURATION: Final = "StepDuration"
JOB_CPU: Final = "JobCPUUtilization"
JOB_MEMORY: Final = "JobMemoryUtilization"
# Model quality.
FEATURE_DRIFT: Final = "FeatureDrift"
DRIFTED_FEATURES: Final = "DriftedFeatures"
CAPTURED_ROWS: Final = "CapturedRows"
ACCURACY: Final = "Accuracy"
F1: Final = "F1"
RMSE: Final = "RMSE"
MAE: Final = "MAE"
LABELLED_ROWS: Final = "LabelledRows"

UNITS: Final[Mapping[str, str]] = {
    INVOCATIONS: "Count",
    ERRORS_4XX: "Count",
    ERRORS_5XX: "Count",
    MODEL_LATENCY: "Microseconds",
    OVERHEAD_LATENCY: "Microseconds",
    CPU: "Percent",
    MEMORY: "Percent",
    RUNS_STARTED: "Count",
    RUNS_SUCCEEDED: "Count",
    RUNS_FAILED: "Count",
    STEP_DURATION: "Seconds",
    JOB_CPU: "Percent",
    JOB_MEMORY: "Percent",
    FEATURE_DRIFT: "None",
    DRIFTED_FEATURES: "Count",
    CAPTURED_ROWS: "Count",
    ACCURACY: "None",
    F1: "None",
    RMSE: "None",
    MAE: "None",
    LABELLED_ROWS: "Count",
}

ENDPOINT_METRICS: Final = (
    INVOCATIONS,
    ERRORS_4XX,
    ERRORS_5XX,
    MODEL_LATENCY,
    OVERHEAD_LATENCY,
    CPU,
    MEMORY,
)
PIPELINE_METRICS: Final = (
    RUNS_STARTED,
    RUNS_SUCCEEDED,
    RUNS_FAILED,
    STEP_DURATION,
    JOB_CPU,
    JOB_MEMORY,
)
QUALITY_METRICS: Final = (
    FEATURE_DRIFT,
    DRIFTED_FEATURES,
    CAPTURED_ROWS,
    ACCURACY,
    F1,
    RMSE,
    MAE,
    LABELLED_ROWS,
)

# Dimension names.
ENDPOINT: Final = "EndpointName"
VARIANT: Final = "VariantName"
MODEL_VERSION: Final = "ModelVersion"
PIPELINE: Final = "Pipeline"
STEP: Final = "Step"
FEATURE: Final = "Feature"

# CloudWatch matches a metric's dimensions exactly, so totals need their own data points:
# every endpoint datum is also published per (endpoint, variant) and per endpoint.
ENDPOINT_ROLLUPS: Final = ((ENDPOINT,), (ENDPOINT, VARIANT), (ENDPOINT, VARIANT, MODEL_VERSION))

STATISTICS: Final = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
PERCENTILES: Final = ("p50", "p90", "p95", "p99")

EMF_MAX_VALUES: Final = 100  # distinct values per metric per EMF document
PUT_MAX_VALUES: Final = 150  # distinct values per MetricDatum in PutMetricData

Datum = dict[str, Any]


# --- histogram buckets ----------------------------------------------------------------------

_SUB: Final = 64  # frexp mantissa m in [0.5, 1) -> int(m * 64) in [32, 63]: 32 per octave
_EXP_OFFSET: Final = 1100  # keeps keys of positive values positive (subnormals reach 2**-1074)


def bucket_key(value: float) -> int:
    """The bucket of ``value``: keys sort like values; 0 is exactly zero."""
    if value == 0:
        return 0
    if value < 0:
        return -bucket_key(-value)
    mantissa, exponent = math.frexp(value)
    return (exponent + _EXP_OFFSET) * _SUB + int(mantissa * _SUB)


def bucket_bounds(key: int) -> tuple[float, float]:
    """``[lower, upper)`` of a bucket (for negative keys, the mirror image)."""
    if key == 0:
        return 0.0, 0.0
    if key < 0:
        low, high = bucket_bounds(-key)
        return -high, -low
    exponent, sub = divmod(key, _SUB)
    scale = math.ldexp(1.0, exponent - _EXP_OFFSET)
    return sub / _SUB * scale, (sub + 1) / _SUB * scale


def bucket_value(key: int) -> float:
    """The representative of a bucket: its midpoint (re-bucketing it gives the same key)."""
    low, high = bucket_bounds(key)
    return (low + high) / 2


def histogram(values: Iterable[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        key = bucket_key(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def percentile(
    buckets: Mapping[int, float],
    q: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """The ``q``-th percentile (0 < q <= 100) of bucketed data: the representative of the
    bucket holding the value of rank ``ceil(q/100 * n)`` (nearest rank, as CloudWatch does),
    clamped to the exact ``minimum``/``maximum`` when they are known."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1.0, math.ceil(q / 100.0 * total - 1e-9))
    seen = 0.0
    chosen = max(buckets)
    for key in sorted(buckets):
        seen += buckets[key]
        if seen >= rank:
            chosen = key
            break
    value = bucket_value(chosen)
    if minimum is not None:
        value = max(value, minimum)
    if maximum is not None:
        value = min(value, maximum)
    return value


def parse_percentile(stat: str) -> float | None:
    """``"p99"`` -> 99.0, ``"p99.9"`` -> 99.9; anything else -> None."""
    if len(stat) < 2 or stat[0] != "p":
        return None
    try:
        q = float(stat[1:])
    except ValueError:
        return None
    return q if 0 < q <= 100 and math.isfinite(q) else None


# --- data points ---------------------------------------------------------------------------


def iso(ts: float | _dt.datetime) -> str:
    """Epoch seconds or an aware datetime -> ``2026-11-28T10:00:10.000Z``."""
    when = ts if isinstance(ts, _dt.datetime) else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return (
        when.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def parse_time(value: str | float | int | _dt.datetime) -> _dt.datetime:
    """ISO 8601 (``Z`` or an offset; a naive time is UTC) or epoch seconds -> aware UTC."""
    if isinstance(value, _dt.datetime):
        when = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    elif isinstance(value, str):
        when = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a time: {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc)


def dimensions(**names: str) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in names.items()]


def datum(
    name: str,
    dims: Mapping[str, str],
    timestamp: float | _dt.datetime,
    *,
    value: float | None = None,
    buckets: Mapping[int, int] | None = None,
    total: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    unit: str | None = None,
) -> Datum:
    """One data point: a single ``value``, or a histogram (``buckets`` from ``bucket_key``)
    optionally with the exact ``total``/``minimum``/``maximum`` of the bucketed values."""
    point: Datum = {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": str(v)} for k, v in dims.items()],
        "Timestamp": iso(timestamp),
        "Unit": unit or UNITS.get(name, "None"),
    }
    if buckets is not None:
        keys = sorted(k for k, c in buckets.items() if c > 0)
        point["Values"] = [bucket_value(k) for k in keys]
        point["Counts"] = [float(buckets[k]) for k in keys]
        if total is not None:
            count = float(sum(point["Counts"]))
            point["StatisticValues"] = {
                "SampleCount": count,
                "Sum": float(total),
                "Minimum": float(minimum if minimum is not None else point["Values"][0]),
                "Maximum": float(maximum if maximum is not None else point["Values"][-1]),
            }
    elif value is not None:
        point["Value"] = float(value)
    else:
        raise ValueError("a data point needs a value or buckets")
    return point


def with_rollups(
    points: Iterable[Datum], rollups: Sequence[Sequence[str]] = ENDPOINT_ROLLUPS
) -> Iterator[Datum]:
    """Each point once per rollup whose dimension names it has (CloudWatch matches
    dimensions exactly, so a per-endpoint total is a separate metric)."""
    for point in points:
        dims = {d["Name"]: d["Value"] for d in point["Dimensions"]}
        emitted = False
        for names in rollups:
            if all(n in dims for n in names):
                emitted = True
                yield {**point, "Dimensions": [{"Name": n, "Value": dims[n]} for n in names]}
        if not emitted:
            yield point


def split_histogram(point: Datum, limit: int) -> list[Datum]:
    """A histogram datum with more than ``limit`` distinct values as several data points
    (same metric and time; the exact statistics stay on the first)."""
    values = point.get("Values")
    if not values or len(values) <= limit:
        return [point]
    parts = []
    for start in range(0, len(values), limit):
        part = {k: v for k, v in point.items() if k not in ("Values", "Counts", "StatisticValues")}
        part["Values"] = values[start : start + limit]
        part["Counts"] = point["Counts"][start : start + limit]
        parts.append(part)
    return parts


# --- embedded metric format ----------------------------------------------------------------


def _epoch_ms(timestamp: str) -> int:
    return int(parse_time(timestamp).timestamp() * 1000)


def emf_documents(
    points: Iterable[Datum],
    *,
    namespace: str = NAMESPACE,
    rollups: Sequence[Sequence[str]] = ENDPOINT_ROLLUPS,
    storage_resolution: int = 60,
) -> list[str]:
    """CloudWatch EMF JSON lines for data points. Points with the same dimensions and
    timestamp share a document; every rollup the dimensions allow is declared, so CloudWatch
    extracts the per-endpoint and per-variant metrics from the same line."""
    groups: dict[tuple[Any, ...], list[Datum]] = {}
    for point in points:
        key = (point["Timestamp"], tuple((d["Name"], d["Value"]) for d in point["Dimensions"]))
        for part in split_histogram(point, EMF_MAX_VALUES):
            groups.setdefault(key, []).append(part)
    lines: list[str] = []
    for (timestamp, dims), group in groups.items():
        names = [n for n, _ in dims]
        sets = [list(r) for r in rollups if all(n in names for n in r)] or [names]
        # One document per distinct metric occurrence: a split histogram needs several.
        pending = list(group)
        while pending:
            doc: dict[str, Any] = dict(dims)
            metrics: list[dict[str, Any]] = []
            rest = []
            for point in pending:
                name = point["MetricName"]
                if name in doc:
                    rest.append(point)
                    continue
                definition: dict[str, Any] = {"Name": name, "Unit": point.get("Unit", "None")}
                if storage_resolution == 1:
                    definition["StorageResolution"] = 1
                metrics.append(definition)
                if "Values" in point:
                    counts = point["Counts"]
                    values = point["Values"]
                    stats = point.get("StatisticValues") or {
                        "SampleCount": sum(counts),
                        "Sum": sum(v * c for v, c in zip(values, counts, strict=True)),
                        "Minimum": min(values),
                        "Maximum": max(values),
                    }
                    doc[name] = {
                        "Values": values,
                        "Counts": counts,
                        "Max": stats["Maximum"],
                        "Min": stats["Minimum"],
                        "Count": stats["SampleCount"],
                        "Sum": stats["Sum"],
                    }
                elif "StatisticValues" in point:
                    s = point["StatisticValues"]
                    doc[name] = {
                        "Values": [s["Sum"] / s["SampleCount"]] if s["SampleCount"] else [0.0],
                        "Counts": [s["SampleCount"]],
                        "Max": s["Maximum"],
                        "Min": s["Minimum"],
                        "Count": s["SampleCount"],
                        "Sum": s["Sum"],
                    }
                else:
                    doc[name] = point["Value"]
            doc["_aws"] = {
                "Timestamp": _epoch_ms(timestamp),
                "CloudWatchMetrics": [
                    {"Namespace": namespace, "Dimensions": sets, "Metrics": metrics}
                ],
            }
            lines.append(json.dumps(doc, separators=(",", ":"), allow_nan=False))
            pending = rest
    return lines
