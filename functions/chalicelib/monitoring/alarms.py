"""Alarms with CloudWatch's semantics, evaluated offline by a pure function over the
metrics store, and rendered as CloudWatch alarm definitions for AWS.

A definition names one metric (or a ratio of two, e.g. the 5xx rate), a statistic, a
period, ``evaluation_periods`` (N), ``datapoints_to_alarm`` (M, default N), a threshold with
a comparison operator and how missing data is treated. ``evaluate`` looks at the last N
complete periods before ``now`` and answers ``ALARM`` when at least M of them breach, as
CloudWatch does (``treat_missing_data``: ``missing`` — all missing is
``INSUFFICIENT_DATA``, otherwise only present points count; ``notBreaching`` / ``breaching``
— a missing period counts as that; ``ignore`` — all missing keeps the previous state).
The result carries the datapoints it looked at and a CloudWatch-style reason.

Actions: a definition lists what to do when it *enters* ALARM — ``rollback`` (roll a guarded
deployment back: the serving work's ``rollback_on``), ``retrain`` (start a run of the
pipeline that produced the model) or ``notify`` (logged; an SNS topic on AWS). The hooks are
registered in ``ACTIONS`` (see ``register_action``); the integration wires rollback and
retraining to the deployment and runs modules (INTEGRATION-monitoring.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.names import Name
from mlcontract import monitoring as mon

from .store import MetricQuery, MetricsStore, check_period

log = logging.getLogger("mlpipe.alarms")

State = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
Operator = Literal[
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
]
_OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


class MetricRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric_name: str = Field(min_length=1, max_length=255)
    namespace: str = mon.NAMESPACE
    dimensions: dict[str, str] = Field(default_factory=dict, max_length=30)
    statistic: str = "Average"


class AlarmDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field(default="", max_length=1024)
    metric: MetricRef
    # With a denominator the alarm watches metric / denominator (both by their statistic,
    # usually Sum): the 5xx error rate is Invocation5XXErrors / Invocations. A period
    # whose denominator is 0 or missing has no datapoint.
    denominator: MetricRef | None = None
    period: int = Field(default=60, ge=10, le=86_400)
    evaluation_periods: int = Field(default=1, ge=1, le=100)
    datapoints_to_alarm: int | None = Field(default=None, ge=1, le=100)
    threshold: float
    comparison_operator: Operator
    treat_missing_data: Literal["missing", "notBreaching", "breaching", "ignore"] = "missing"
    actions: list[Literal["rollback", "retrain", "notify"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> AlarmDefinition:
        check_period(self.period)
        if (
            self.datapoints_to_alarm is not None
            and self.datapoints_to_alarm > self.evaluation_periods
        ):
            raise ValueError("datapoints_to_alarm cannot exceed evaluation_periods")
        for ref in (self.metric, self.denominator):
            if ref is not None:
                MetricQuery(
                    "m", ref.metric_name, ref.dimensions, ref.statistic, self.period
                ).check()
        if not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        return self

    @property
    def m(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods


class Datapoint(BaseModel):
    timestamp: str
    value: float | None
    breaching: bool | None


class AlarmResult(BaseModel):
    name: str
    state: State
    previous_state: State
    reason: str
    datapoints: list[Datapoint]
    evaluated_at: str
    changed: bool
    threshold: float
    comparison_operator: str


def _series(
    store: MetricsStore, d: AlarmDefinition, start: dt.datetime, end: dt.datetime
) -> dict[str, float]:
    refs = [("m", d.metric)] + ([("d", d.denominator)] if d.denominator else [])
    queries = [
        MetricQuery(qid, r.metric_name, r.dimensions, r.statistic, d.period, r.namespace)
        for qid, r in refs
    ]
    got = {
        r["Id"]: dict(zip(r["Timestamps"], r["Values"], strict=True))
        for r in store.get_metric_data(queries, start, end)["MetricDataResults"]
    }
    values = got.get("m", {})
    if d.denominator is None:
        return values
    denominators = got.get("d", {})
    return {t: v / denominators[t] for t, v in values.items() if denominators.get(t)}


def _fmt_time(stamp: str) -> str:
    return mon.parse_time(stamp).strftime("%d/%m/%y %H:%M:%S")


def evaluate(
    store: MetricsStore,
    definition: AlarmDefinition,
    now: dt.datetime,
    previous_state: State = "INSUFFICIENT_DATA",
) -> AlarmResult:
    """The alarm's state at ``now`` over the last ``evaluation_periods`` complete periods."""
    d = definition
    end_epoch = math.floor(now.timestamp() / d.period) * d.period
    end = dt.datetime.fromtimestamp(end_epoch, dt.UTC)
    start = end - dt.timedelta(seconds=d.period * d.evaluation_periods)
    values = _series(store, d, start, end)
    compare, words = _OPS[d.comparison_operator]
    points: list[Datapoint] = []
    for i in range(d.evaluation_periods):
        stamp = mon.iso(start + dt.timedelta(seconds=i * d.period))
        value = values.get(stamp)
        if value is None:
            breaching = {"breaching": True, "notBreaching": False}.get(d.treat_missing_data)
        else:
            breaching = compare(value, d.threshold)
        points.append(Datapoint(timestamp=stamp, value=value, breaching=breaching))
    present = [p for p in points if p.value is not None]
    breaching_n = sum(1 for p in points if p.breaching)
    judged = [p for p in points if p.breaching is not None]
    shown = ", ".join(f"{p.value:g} ({_fmt_time(p.timestamp)})" for p in reversed(present))
    state: State
    if not judged:
        if d.treat_missing_data == "ignore":
            state = previous_state
            reason = (
                "no datapoints in the evaluation range; the state is kept (missing data is ignored)"
            )
        else:
            state = "INSUFFICIENT_DATA"
            reason = (
                f"Insufficient Data: {d.evaluation_periods} datapoint(s) were unknown "
                f"(no data for {d.metric.metric_name} in the last {d.evaluation_periods} "
                f"periods of {d.period} s)."
            )
    elif breaching_n >= d.m:
        state = "ALARM"
        reason = (
            f"Threshold Crossed: {breaching_n} out of the last {d.evaluation_periods} datapoints "
            f"[{shown}] were {words} the threshold ({d.threshold:g}) "
            f"(minimum {d.m} datapoint(s) for OK -> ALARM transition)."
        )
    else:
        state = "OK"
        reason = (
            f"Threshold Crossed: {breaching_n} out of the last {d.evaluation_periods} datapoints "
            f"[{shown}] were {words} the threshold ({d.threshold:g}); {d.m} needed for ALARM."
        )
    return AlarmResult(
        name=d.name,
        state=state,
        previous_state=previous_state,
        reason=reason,
        datapoints=points,
        evaluated_at=mon.iso(now),
        changed=state != previous_state,
        threshold=d.threshold,
        comparison_operator=d.comparison_operator,
    )


# --- actions ------------------------------------------------------------------------------

ActionHook = Callable[[Any, str, AlarmDefinition, AlarmResult], None]
ACTIONS: dict[str, ActionHook] = {}


def register_action(name: str, hook: ActionHook) -> None:
    """``hook(ports, endpoint, definition, result)`` runs when an alarm enters ALARM."""
    ACTIONS[name] = hook


def _notify(ports: Any, endpoint: str, definition: AlarmDefinition, result: AlarmResult) -> None:
    log.warning("alarm %s on %s: %s", definition.name, endpoint, result.reason)


register_action("notify", _notify)


def fire(ports: Any, endpoint: str, definition: AlarmDefinition, result: AlarmResult) -> list[str]:
    """Run the definition's actions if the alarm has just entered ALARM; the names run."""
    if not (result.changed and result.state == "ALARM"):
        return []
    done: list[str] = []
    for action in definition.actions:
        hook = ACTIONS.get(action)
        if hook is None:
            log.error("alarm %s: no hook registered for action %r", definition.name, action)
            continue
        try:
            hook(ports, endpoint, definition, result)
            done.append(action)
        except Exception:  # one failing action must not stop the others
            log.exception("alarm %s: action %s failed", definition.name, action)
    return done


# --- presets ------------------------------------------------------------------------------


def endpoint_presets(
    endpoint: str,
    *,
    error_rate: float | None = 0.05,
    p99_ms: float | None = None,
    drift: bool = True,
    accuracy_below: float | None = None,
    actions: Sequence[str] = (),
    namespace: str = mon.NAMESPACE,
) -> list[AlarmDefinition]:
    """The usual alarms of an endpoint: 5xx rate, p99 model latency, drift, accuracy drop
    (each only when its threshold is given). ``actions`` apply to all of them."""
    dims = {mon.ENDPOINT: endpoint}
    acts: Any = list(actions)
    out: list[AlarmDefinition] = []
    if error_rate is not None:
        out.append(
            AlarmDefinition(
                name=f"{endpoint}-5xx-rate",
                description=f"5xx responses above {error_rate:.1%} of invocations",
                metric=MetricRef(
                    metric_name=mon.ERRORS_5XX,
                    namespace=namespace,
                    dimensions=dims,
                    statistic="Sum",
                ),
                denominator=MetricRef(
                    metric_name=mon.INVOCATIONS,
                    namespace=namespace,
                    dimensions=dims,
                    statistic="Sum",
                ),
                period=60,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                threshold=error_rate,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                actions=acts,
            )
        )
    if p99_ms is not None:
        out.append(
            AlarmDefinition(
                name=f"{endpoint}-p99-latency",
                description=f"p99 model latency above {p99_ms:g} ms",
                metric=MetricRef(
                    metric_name=mon.MODEL_LATENCY,
                    namespace=namespace,
                    dimensions=dims,
                    statistic="p99",
                ),
                period=60,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                threshold=p99_ms * 1000.0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                actions=acts,
            )
        )
    if drift:
        out.append(
            AlarmDefinition(
                name=f"{endpoint}-drift",
                description="at least one feature drifted from the training baseline",
                metric=MetricRef(
                    metric_name=mon.DRIFTED_FEATURES, dimensions=dims, statistic="Maximum"
                ),
                period=3600,
                evaluation_periods=1,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="ignore",
                actions=acts,
            )
        )
    if accuracy_below is not None:
        out.append(
            AlarmDefinition(
                name=f"{endpoint}-accuracy",
                description=f"accuracy on labelled traffic below {accuracy_below:g}",
                metric=MetricRef(metric_name=mon.ACCURACY, dimensions=dims, statistic="Average"),
                period=3600,
                evaluation_periods=1,
                threshold=accuracy_below,
                comparison_operator="LessThanThreshold",
                treat_missing_data="ignore",
                actions=acts,
            )
        )
    return out


# --- AWS: CloudWatch alarms as data --------------------------------------------------------


def _stat(ref: MetricRef, period: int, qid: str, return_data: bool) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": ref.namespace,
                "MetricName": ref.metric_name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(ref.dimensions.items())],
            },
            "Period": period,
            "Stat": ref.statistic,
        },
        "ReturnData": return_data,
    }


def put_metric_alarm_args(d: AlarmDefinition, alarm_actions: Sequence[str] = ()) -> dict[str, Any]:
    """``cloudwatch.put_metric_alarm(**args)``: how the API creates an endpoint's alarms on
    AWS (endpoints are created at run time, so their alarms cannot be in the template)."""
    args: dict[str, Any] = {
        "AlarmName": d.name,
        "AlarmDescription": d.description or d.name,
        "EvaluationPeriods": d.evaluation_periods,
        "DatapointsToAlarm": d.m,
        "Threshold": d.threshold,
        "ComparisonOperator": d.comparison_operator,
        "TreatMissingData": d.treat_missing_data,
        "ActionsEnabled": bool(alarm_actions),
        "AlarmActions": list(alarm_actions),
    }
    if d.denominator is None:
        ref = d.metric
        args.update(
            Namespace=ref.namespace,
            MetricName=ref.metric_name,
            Dimensions=[{"Name": k, "Value": v} for k, v in sorted(ref.dimensions.items())],
            Period=d.period,
            **(
                {"ExtendedStatistic": ref.statistic}
                if mon.parse_percentile(ref.statistic) is not None
                else {"Statistic": ref.statistic}
            ),
        )
    else:
        args["Metrics"] = [
            _stat(d.metric, d.period, "numerator", False),
            _stat(d.denominator, d.period, "denominator", False),
            {
                "Id": "ratio",
                "Expression": "numerator / denominator",
                "Label": d.name,
                "ReturnData": True,
            },
        ]
    return args


def cloudformation_resource(
    d: AlarmDefinition, alarm_actions: Sequence[Any] = ()
) -> dict[str, Any]:
    """An ``AWS::CloudWatch::Alarm`` resource (for alarms on fixed resources, such as the
    pipeline's RunsFailed, which can live in iac/template.yaml)."""
    props = put_metric_alarm_args(d, [])
    props["AlarmActions"] = list(alarm_actions)
    props["ActionsEnabled"] = bool(alarm_actions)
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": props}


def pipeline_presets(pipeline: str | None = None) -> list[AlarmDefinition]:
    """A failed run (per pipeline, or over all pipelines with no dimension)."""
    dims = {mon.PIPELINE: pipeline} if pipeline else {}
    return [
        AlarmDefinition(
            name=f"{pipeline or 'all'}-runs-failed",
            description="a pipeline run failed",
            metric=MetricRef(metric_name=mon.RUNS_FAILED, dimensions=dims, statistic="Sum"),
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
        )
    ]
