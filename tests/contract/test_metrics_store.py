"""MetricsStore contract: SqliteMetricsStore (local) and CloudWatchMetricsStore (aws, on moto)
answer the same GetMetricData queries with the same numbers.

Not covered on the CloudWatch side, because moto 5.2.5 cannot: percentile statistics (its
GetMetricData computes Sum/Average/Minimum/Maximum/SampleCount only; a ``p99`` query fails
inside moto), and period alignment (moto starts periods at StartTime, CloudWatch and the
local store at multiples of the period), so every window here starts on a period boundary.
Percentiles are checked on the local store against numpy.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from chalicelib.adapters.cloudwatch import CloudWatchMetricsStore
from chalicelib.monitoring.store import MetricQuery, MetricsQueryError, MetricsStore
from iac.local.metrics_store import SqliteMetricsStore
from mlcontract import monitoring as mon
from tests.contract.conftest import aws_client

NS = "mlpipe"
DIMS = {mon.ENDPOINT: "flowers", mon.VARIANT: "AllTraffic"}


def _base() -> dt.datetime:
    # Recent (CloudWatch refuses data older than two weeks), aligned to the hour.
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=2)


@pytest.fixture(params=["sqlite", "cloudwatch"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetricsStore:
    if request.param == "sqlite":
        return SqliteMetricsStore(tmp_path / "metrics.sqlite3")
    request.getfixturevalue("moto_aws")
    return CloudWatchMetricsStore(aws_client("cloudwatch"))


def point(name: str, when: dt.datetime, value: float, dims=DIMS) -> dict:
    return mon.datum(name, dims, when, value=value)


def query(qid: str, name: str, stat: str, period: int = 60, dims=DIMS) -> MetricQuery:
    return MetricQuery(
        id=qid, metric_name=name, dimensions=dims, stat=stat, period=period, namespace=NS
    )


def test_counts_sum_per_period_and_empty_periods_are_absent(store: MetricsStore) -> None:
    base = _base()
    points = []
    for minute in (0, 1, 3):
        for second in (5, 15, 45):
            points.append(
                point(
                    mon.INVOCATIONS, base + dt.timedelta(minutes=minute, seconds=second), minute + 1
                )
            )
    store.put(NS, points)
    result = store.get_metric_data(
        [query("inv", mon.INVOCATIONS, "Sum")], base, base + dt.timedelta(minutes=5)
    )
    (series,) = result["MetricDataResults"]
    assert series["Id"] == "inv"
    assert series["Label"] == "Invocations Sum"
    assert series["StatusCode"] == "Complete"
    assert series["Timestamps"] == [mon.iso(base + dt.timedelta(minutes=m)) for m in (0, 1, 3)]
    assert series["Values"] == [3.0, 6.0, 12.0]


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("Sum", [65.0, 20.0]),
        ("Average", [16.25, 20.0]),
        ("Minimum", [5.0, 20.0]),
        ("Maximum", [30.0, 20.0]),
        ("SampleCount", [4.0, 1.0]),
    ],
)
def test_statistics_over_periods(store: MetricsStore, stat: str, expected: list[float]) -> None:
    base = _base()
    values = [(0, 10), (20, 20), (50, 30), (60, 5), (170, 20)]  # seconds after base
    store.put(NS, [point(mon.MODEL_LATENCY, base + dt.timedelta(seconds=s), v) for s, v in values])
    result = store.get_metric_data(
        [query("q", mon.MODEL_LATENCY, stat, period=120)], base, base + dt.timedelta(minutes=4)
    )
    assert result["MetricDataResults"][0]["Values"] == expected


def test_histograms_with_counts(store: MetricsStore) -> None:
    base = _base()
    store.put(
        NS,
        [
            {
                "MetricName": mon.MODEL_LATENCY,
                "Dimensions": mon.dimensions(**DIMS),
                "Timestamp": mon.iso(base + dt.timedelta(seconds=30)),
                "Unit": "Microseconds",
                "Values": [100.0, 200.0, 400.0],
                "Counts": [5.0, 3.0, 2.0],
            }
        ],
    )
    result = store.get_metric_data(
        [
            query("n", mon.MODEL_LATENCY, "SampleCount"),
            query("s", mon.MODEL_LATENCY, "Sum"),
            query("mx", mon.MODEL_LATENCY, "Maximum"),
        ],
        base,
        base + dt.timedelta(minutes=1),
    )
    got = {r["Id"]: r["Values"] for r in result["MetricDataResults"]}
    assert got == {"n": [10.0], "s": [1900.0], "mx": [400.0]}


def test_dimensions_match_exactly(store: MetricsStore) -> None:
    base = _base()
    when = base + dt.timedelta(seconds=10)
    store.put(
        NS,
        [
            point(mon.INVOCATIONS, when, 1, {mon.ENDPOINT: "a"}),
            point(mon.INVOCATIONS, when, 2, {mon.ENDPOINT: "a", mon.VARIANT: "v1"}),
            point(mon.INVOCATIONS, when, 4, {mon.ENDPOINT: "b"}),
        ],
    )
    queries = [
        query("a", mon.INVOCATIONS, "Sum", dims={mon.ENDPOINT: "a"}),
        query("av", mon.INVOCATIONS, "Sum", dims={mon.VARIANT: "v1", mon.ENDPOINT: "a"}),
        query("c", mon.INVOCATIONS, "Sum", dims={mon.ENDPOINT: "c"}),
    ]
    got = {
        r["Id"]: r["Values"]
        for r in store.get_metric_data(queries, base, base + dt.timedelta(minutes=1))[
            "MetricDataResults"
        ]
    }
    assert got == {"a": [1.0], "av": [2.0], "c": []}


def test_window_is_start_inclusive_end_exclusive(store: MetricsStore) -> None:
    base = _base()
    store.put(NS, [point(mon.INVOCATIONS, base + dt.timedelta(minutes=m), 1) for m in range(4)])
    result = store.get_metric_data(
        [query("q", mon.INVOCATIONS, "Sum")],
        base + dt.timedelta(minutes=1),
        base + dt.timedelta(minutes=3),
    )
    assert result["MetricDataResults"][0]["Values"] == [1.0, 1.0]


def test_list_metrics_filters_by_contained_dimensions(store: MetricsStore) -> None:
    base = _base()
    store.put(
        NS,
        [
            point(mon.FEATURE_DRIFT, base, 0.1, {mon.ENDPOINT: "e", mon.FEATURE: "x1"}),
            point(mon.FEATURE_DRIFT, base, 0.3, {mon.ENDPOINT: "e", mon.FEATURE: "x2"}),
            point(mon.FEATURE_DRIFT, base, 0.3, {mon.ENDPOINT: "other", mon.FEATURE: "x1"}),
            point(mon.ACCURACY, base, 0.9, {mon.ENDPOINT: "e"}),
        ],
    )
    found = store.list_metrics(NS, mon.FEATURE_DRIFT, {mon.ENDPOINT: "e"})
    features = sorted(
        next(d["Value"] for d in m["Dimensions"] if d["Name"] == mon.FEATURE) for m in found
    )
    assert features == ["x1", "x2"]
    assert {m["MetricName"] for m in store.list_metrics(NS, dimensions={mon.ENDPOINT: "e"})} == {
        mon.FEATURE_DRIFT,
        mon.ACCURACY,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"stat": "Median"},
        {"period": 7},
        {"period": 90},
        {"id": "Upper"},
    ],
)
def test_bad_queries_are_refused_before_any_call(store: MetricsStore, bad: dict) -> None:
    base = _base()
    args = {
        "id": "q",
        "metric_name": mon.INVOCATIONS,
        "dimensions": DIMS,
        "stat": "Sum",
        "period": 60,
    } | bad
    with pytest.raises(MetricsQueryError):
        store.get_metric_data([MetricQuery(**args)], base, base + dt.timedelta(minutes=1))
    with pytest.raises(MetricsQueryError):
        store.get_metric_data([query("q", mon.INVOCATIONS, "Sum")], base, base)


def test_bad_points_are_refused(store: MetricsStore) -> None:
    with pytest.raises(ValueError):
        store.put(NS, [{"MetricName": "x", "Dimensions": [], "Value": float("nan")}])
    with pytest.raises(ValueError):
        store.put(
            NS, [{"MetricName": "x", "Dimensions": [], "Values": [1.0], "Counts": [1.0, 2.0]}]
        )


# --- local only: what moto cannot check -----------------------------------------------------


def test_local_percentiles_merge_histograms_across_buckets_and_flushes(tmp_path: Path) -> None:
    store = SqliteMetricsStore(tmp_path / "m.sqlite3")
    base = _base()
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(7, 0.8, size=6000).astype(int) + 1
    # Six 10-second flushes of 1000 requests each, as a model server sends them.
    for i, chunk in enumerate(np.split(latencies, 6)):
        buckets = mon.histogram(chunk.tolist())
        store.put(
            NS,
            [
                mon.datum(
                    mon.MODEL_LATENCY,
                    DIMS,
                    base + dt.timedelta(seconds=10 * i),
                    buckets=buckets,
                    total=float(chunk.sum()),
                    minimum=float(chunk.min()),
                    maximum=float(chunk.max()),
                )
            ],
        )
    qs = [query(f"p{q}", mon.MODEL_LATENCY, f"p{q}") for q in (50, 90, 99)] + [
        query("avg", mon.MODEL_LATENCY, "Average")
    ]
    got = {
        r["Id"]: r["Values"]
        for r in store.get_metric_data(qs, base, base + dt.timedelta(minutes=1))[
            "MetricDataResults"
        ]
    }
    for q in (50, 90, 99):
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert got[f"p{q}"][0] == pytest.approx(exact, rel=1 / 64)
    assert got["avg"] == [pytest.approx(float(latencies.mean()))]  # exact sums kept


def test_local_store_survives_a_restart(tmp_path: Path) -> None:
    base = _base()
    SqliteMetricsStore(tmp_path / "m.sqlite3").put(NS, [point(mon.INVOCATIONS, base, 7)])
    again = SqliteMetricsStore(tmp_path / "m.sqlite3")
    again.put(NS, [point(mon.INVOCATIONS, base + dt.timedelta(seconds=3), 5)])  # same bucket
    result = again.get_metric_data(
        [query("q", mon.INVOCATIONS, "Sum", period=10)], base, base + dt.timedelta(minutes=1)
    )
    assert result["MetricDataResults"][0]["Values"] == [12.0]
    assert again.prune(base + dt.timedelta(minutes=1)) == 1
