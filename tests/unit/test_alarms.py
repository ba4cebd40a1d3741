"""Alarms: CloudWatch's M-out-of-N evaluation over the local store, missing-data treatment,
ratio alarms (5xx rate) and actions on entering ALARM. The AWS definitions are checked in
tests/contract/test_alarm_definitions.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.monitoring import alarms
from chalicelib.monitoring.alarms import AlarmDefinition, MetricRef
from iac.local.metrics_store import SqliteMetricsStore
from mlcontract import monitoring as mon

NOW = dt.datetime(2026, 11, 28, 10, 5, 30, tzinfo=dt.UTC)  # last complete minute: 10:04
DIMS = {mon.ENDPOINT: "ep"}


@pytest.fixture
def store(tmp_path: Path) -> SqliteMetricsStore:
    return SqliteMetricsStore(tmp_path / "m.sqlite3")


def put(store, name, minute, value, dims=DIMS):
    when = dt.datetime(2026, 11, 28, 10, minute, 15, tzinfo=dt.UTC)
    store.put("mlpipe", [mon.datum(name, dims, when, value=value)])


def latency_alarm(**kw) -> AlarmDefinition:
    args = {
        "name": "lat",
        "metric": MetricRef(metric_name=mon.MODEL_LATENCY, dimensions=DIMS, statistic="Maximum"),
        "period": 60,
        "evaluation_periods": 3,
        "threshold": 1000,
        "comparison_operator": "GreaterThanThreshold",
    } | kw
    return AlarmDefinition(**args)


def test_m_out_of_n_and_the_reason(store) -> None:
    for minute, value in [(2, 1500), (3, 900), (4, 2000), (5, 99999)]:  # 10:05 is incomplete
        put(store, mon.MODEL_LATENCY, minute, value)
    result = alarms.evaluate(store, latency_alarm(datapoints_to_alarm=2), NOW)
    assert result.state == "ALARM" and result.changed
    assert [p.value for p in result.datapoints] == [1500, 900, 2000]
    assert [p.breaching for p in result.datapoints] == [True, False, True]
    assert result.reason.startswith(
        "Threshold Crossed: 2 out of the last 3 datapoints [2000 (28/11/26 10:04:00)"
    )
    assert "greater than the threshold (1000)" in result.reason
    assert alarms.evaluate(store, latency_alarm(), NOW, previous_state="ALARM").state == "OK"


@pytest.mark.parametrize(
    ("treat", "previous", "expected"),
    [
        ("missing", "OK", "INSUFFICIENT_DATA"),
        ("notBreaching", "ALARM", "OK"),
        ("breaching", "OK", "ALARM"),
        ("ignore", "ALARM", "ALARM"),
        ("ignore", "OK", "OK"),
    ],
)
def test_all_missing(store, treat, previous, expected) -> None:
    result = alarms.evaluate(
        store, latency_alarm(treat_missing_data=treat), NOW, previous_state=previous
    )
    assert result.state == expected
    assert all(p.value is None for p in result.datapoints)


def test_some_missing_counts_only_present_points_by_default(store) -> None:
    put(store, mon.MODEL_LATENCY, 4, 5000)
    assert alarms.evaluate(store, latency_alarm(datapoints_to_alarm=1), NOW).state == "ALARM"
    assert alarms.evaluate(store, latency_alarm(datapoints_to_alarm=2), NOW).state == "OK"
    assert (
        alarms.evaluate(
            store, latency_alarm(datapoints_to_alarm=2, treat_missing_data="breaching"), NOW
        ).state
        == "ALARM"
    )


def test_error_rate_preset_divides_5xx_by_invocations(store) -> None:
    for minute, inv, errors in [(2, 100, 1), (3, 100, 9), (4, 50, 5)]:
        put(store, mon.INVOCATIONS, minute, inv)
        put(store, mon.ERRORS_5XX, minute, errors)
    (rate,) = [a for a in alarms.endpoint_presets("ep") if a.name == "ep-5xx-rate"]
    result = alarms.evaluate(store, rate, NOW)
    assert [p.value for p in result.datapoints] == [0.01, 0.09, 0.1]
    assert result.state == "ALARM"  # 2 of 3 above 5 %


def test_p99_preset_uses_merged_histograms(store) -> None:
    for minute in (2, 3, 4):
        buckets = mon.histogram([1000.0] * 98 + [80_000.0] * 2)
        when = dt.datetime(2026, 11, 28, 10, minute, 5, tzinfo=dt.UTC)
        store.put("mlpipe", [mon.datum(mon.MODEL_LATENCY, DIMS, when, buckets=buckets)])
    presets = {a.name: a for a in alarms.endpoint_presets("ep", p99_ms=50, accuracy_below=0.8)}
    assert set(presets) == {"ep-5xx-rate", "ep-p99-latency", "ep-drift", "ep-accuracy"}
    result = alarms.evaluate(store, presets["ep-p99-latency"], NOW)
    assert result.state == "ALARM" and result.datapoints[0].value == pytest.approx(
        80_000, rel=1 / 64
    )


def test_actions_fire_once_on_entering_alarm(store) -> None:
    calls = []
    alarms.register_action(
        "rollback", lambda ports, ep, d, r: calls.append(("rollback", ep, r.state))
    )
    alarms.register_action("retrain", lambda ports, ep, d, r: 1 / 0)  # a failing hook is logged
    d = latency_alarm(actions=["rollback", "retrain"], evaluation_periods=1)
    put(store, mon.MODEL_LATENCY, 4, 5000)
    first = alarms.evaluate(store, d, NOW)
    assert alarms.fire(None, "ep", d, first) == ["rollback"]
    again = alarms.evaluate(store, d, NOW, previous_state="ALARM")
    assert alarms.fire(None, "ep", d, again) == []
    assert calls == [("rollback", "ep", "ALARM")]
    alarms.ACTIONS.pop("rollback")
    alarms.ACTIONS.pop("retrain")


@pytest.mark.parametrize(
    "bad",
    [
        {"period": 45},
        {"datapoints_to_alarm": 4},
        {"threshold": float("inf")},
        {"actions": ["explode"]},
        {"metric": {"metric_name": "x", "statistic": "Median"}},
        {"name": "../x"},
        {"unknown": 1},
    ],
)
def test_bad_definitions_are_refused(bad) -> None:
    with pytest.raises(ValidationError):
        latency_alarm(**bad)
