"""Monitoring's domain functions behind the routes and the scheduled steps.

Each takes the ports it needs explicitly (the metrics store, the object store, the metadata
store), so the routes stay one line and tests need no wired runtime. ``Ports.metrics`` does
not exist on main yet: ``metrics_of(ports)`` bridges until the integration adds it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.errors import BadRequestError, NotFoundError
from chalicelib.ports import MetadataStore, Write
from chalicelib.settings import get_settings as get_monitoring_settings
from mlcontract import monitoring as mon

from . import alarms as alarms_mod
from . import feedback as feedback_mod
from .store import MetricQuery, MetricsQueryError, MetricsStore

if TYPE_CHECKING:
    from chalicelib.ports import ObjectStore

MONITORING_TABLE = "monitoring"  # metadata partition: capture configs, alarms, states
MAX_POINTS_PER_SERIES = 1440

ENDPOINT_DEFAULTS: tuple[tuple[str, str], ...] = (
    (mon.INVOCATIONS, "Sum"),
    (mon.ERRORS_4XX, "Sum"),
    (mon.ERRORS_5XX, "Sum"),
    (mon.MODEL_LATENCY, "p50"),
    (mon.MODEL_LATENCY, "p90"),
    (mon.MODEL_LATENCY, "p99"),
    (mon.MODEL_LATENCY, "Average"),
    (mon.OVERHEAD_LATENCY, "p50"),
    (mon.OVERHEAD_LATENCY, "p99"),
    (mon.CPU, "Average"),
    (mon.MEMORY, "Average"),
)
PIPELINE_DEFAULTS: tuple[tuple[str, str], ...] = (
    (mon.RUNS_STARTED, "Sum"),
    (mon.RUNS_SUCCEEDED, "Sum"),
    (mon.RUNS_FAILED, "Sum"),
)


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: Any) -> M:
    """A request body through its pydantic model; a caller's mistake is a 400 naming it."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}".lstrip(": ")
            for e in exc.errors(include_url=False)
        ]
        raise BadRequestError("; ".join(parts)) from None


def model_of_endpoint(ports: Any, endpoint: str) -> dict[str, Any]:
    """What monitoring needs to know about the model an endpoint serves: ``task``,
    ``signature``, ``baseline_key``, ``variants``, the version record. One place that reads
    the deployment and registry modules (their names may change in the refactor)."""
    from chalicelib import deployment, registry

    info = deployment.get(ports, endpoint)
    version = registry.get_version(ports, info["model"], int(info["model_version"]))
    baseline = version.get("baseline_key") or (version.get("baseline") or {}).get("key")
    return {
        "endpoint": endpoint,
        "model": info["model"],
        "model_version": info["model_version"],
        "task": version["task"],
        "signature": version["signature"],
        "baseline_key": baseline,
        # Captures are written per endpoint under SageMaker's one-variant name (the API
        # captures, whichever version answered); the serving variants are not capture keys.
        "variants": ["AllTraffic"],
        "version": version,
    }


def drift_check_now(ports: Any, endpoint: str, now: dt.datetime) -> dict[str, Any]:
    """``POST /endpoints/{name}/drift-checks`` and the schedule: the last
    ``drift_window_hours`` of captured traffic against the served version's baseline."""
    model = model_of_endpoint(ports, endpoint)
    if not model["baseline_key"]:
        raise BadRequestError(
            f"model {model['model']!r} v{model['model_version']} has no drift baseline "
            "(versions trained before baselines were recorded have none)"
        )
    window = dt.timedelta(hours=get_monitoring_settings().drift_window_hours)
    return run_drift_check(
        ports.store,
        metrics_of(ports),
        endpoint,
        {**model["version"], "signature": model["signature"]},
        model["baseline_key"],
        now - window,
        now,
        model["variants"],
    )


def metrics_of(ports: Any) -> MetricsStore:
    """The metrics store port."""
    store: MetricsStore = ports.metrics
    return store


# --- GET .../metrics ------------------------------------------------------------------------


class MetricsParams(BaseModel):
    """Query string of ``GET /endpoints/{name}/metrics`` and ``GET /pipelines/{name}/metrics``:
    ``metric`` and ``stat`` comma-separated (every pair is queried; default: the area's usual
    set), ``period`` seconds (default: the window / 360, rounded up to a valid period),
    ``start``/``end`` ISO 8601 or epoch seconds (default: the last 3 hours), and dimensions
    ``variant``, ``version`` (endpoints) or ``step`` (pipelines)."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(default=None, max_length=2000)
    stat: str | None = Field(default=None, max_length=200)
    period: int | None = Field(default=None, ge=10, le=86_400)
    start: str | None = None
    end: str | None = None
    variant: str | None = Field(default=None, max_length=63)
    version: str | None = Field(default=None, max_length=20)
    step: str | None = Field(default=None, max_length=80)

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_time(value)
        return value

    @classmethod
    def parse(cls, query: Mapping[str, str] | None) -> MetricsParams:
        try:
            return cls.model_validate(dict(query or {}))
        except ValidationError as exc:
            parts = [
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False)
            ]
            raise BadRequestError("; ".join(parts)) from None

    def window(self, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime, int]:
        end = _parse_time(self.end) if self.end else (now or dt.datetime.now(dt.UTC))
        start = _parse_time(self.start) if self.start else end - dt.timedelta(hours=3)
        if end <= start:
            raise BadRequestError("end must be after start")
        if end - start > dt.timedelta(days=455):
            raise BadRequestError("the window may span at most 455 days")
        period = self.period or auto_period((end - start).total_seconds())
        if (end - start).total_seconds() / period > MAX_POINTS_PER_SERIES:
            raise BadRequestError(
                f"period {period} s gives more than {MAX_POINTS_PER_SERIES} points per series "
                "in this window; use a longer period"
            )
        return start, end, period


def _parse_time(value: str) -> dt.datetime:
    try:
        return mon.parse_time(float(value) if value.replace(".", "", 1).isdigit() else value)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not an ISO 8601 time or epoch seconds") from None


def auto_period(seconds: float, points: int = 360) -> int:
    raw = seconds / points
    for p in (10, 30, 60):
        if raw <= p:
            return p
    return int(math.ceil(raw / 60) * 60)


def _pairs(params: MetricsParams, defaults: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if params.metric is None and params.stat is None:
        return list(defaults)
    metrics = [m for m in (params.metric or "").split(",") if m] or list(
        dict.fromkeys(m for m, _ in defaults)
    )
    stats = [s for s in (params.stat or "").split(",") if s] or ["Average"]
    return [(m, s) for m in metrics for s in stats]


def _query_id(i: int, metric: str, stat: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in f"{metric}_{stat}").lower()
    return f"m{i}_{clean}"[:255]


def query_metrics(
    store: MetricsStore,
    dims: Mapping[str, str],
    params: MetricsParams,
    defaults: Sequence[tuple[str, str]],
    namespace: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    start, end, period = params.window(now)
    queries = [
        MetricQuery(_query_id(i, m, s), m, dict(dims), s, period, namespace, label=f"{m} {s}")
        for i, (m, s) in enumerate(_pairs(params, defaults))
    ]
    try:
        result = store.get_metric_data(queries, start, end)
    except MetricsQueryError as exc:
        raise BadRequestError(str(exc)) from None
    return {**result, "Period": period, "StartTime": mon.iso(start), "EndTime": mon.iso(end)}


def endpoint_metrics(
    store: MetricsStore, endpoint: str, params: MetricsParams, now: dt.datetime | None = None
) -> dict[str, Any]:
    dims = {mon.ENDPOINT: endpoint}
    if params.variant:
        dims[mon.VARIANT] = params.variant
        if params.version:
            dims[mon.MODEL_VERSION] = params.version
    elif params.version:
        raise BadRequestError(
            "version needs variant (metrics are per endpoint, variant and version)"
        )
    if params.step:
        raise BadRequestError("step is a pipeline dimension")
    namespace = get_monitoring_settings().endpoint_metrics_namespace
    return query_metrics(store, dims, params, ENDPOINT_DEFAULTS, namespace, now)


def pipeline_metrics(
    store: MetricsStore, pipeline: str, params: MetricsParams, now: dt.datetime | None = None
) -> dict[str, Any]:
    if params.variant or params.version:
        raise BadRequestError("variant and version are endpoint dimensions")
    namespace = get_monitoring_settings().metrics_namespace
    dims = {mon.PIPELINE: pipeline}
    if params.step:
        dims[mon.STEP] = params.step
        return query_metrics(store, dims, params, ((mon.STEP_DURATION, "Average"),), namespace, now)
    result = query_metrics(store, dims, params, PIPELINE_DEFAULTS, namespace, now)
    if params.metric is None:  # and each step's duration
        steps = sorted(
            {
                d["Value"]
                for m in store.list_metrics(namespace, mon.STEP_DURATION, dims)
                for d in m["Dimensions"]
                if d["Name"] == mon.STEP
            }
        )
        if steps:
            start, end, period = params.window(now)
            queries = [
                MetricQuery(
                    f"step{i}",
                    mon.STEP_DURATION,
                    {**dims, mon.STEP: s},
                    "Average",
                    period,
                    namespace,
                    label=s,
                )
                for i, s in enumerate(steps)
            ]
            result["MetricDataResults"] += store.get_metric_data(queries, start, end)[
                "MetricDataResults"
            ]
    return result


# --- data capture configuration ------------------------------------------------------------


class CaptureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampling_percent: float = Field(ge=0, le=100)
    enabled: bool = True


def set_capture(meta: MetadataStore, endpoint: str, config: CaptureConfig) -> dict[str, Any]:
    """``PUT /endpoints/{name}/data-capture``: stored; the serving side applies it (local
    model server flag; on AWS a new endpoint config with ``DataCaptureConfig``)."""
    item = {
        "endpoint": endpoint,
        **config.model_dump(),
        "updated_at": mon.iso(dt.datetime.now(dt.UTC)),
    }
    meta.put(Write(MONITORING_TABLE, f"capture/{endpoint}", item))
    return item


def get_capture(meta: MetadataStore, endpoint: str) -> dict[str, Any]:
    rec = meta.get(MONITORING_TABLE, f"capture/{endpoint}")
    if rec is None:
        pct = get_monitoring_settings().default_sampling_percent
        return {"endpoint": endpoint, "sampling_percent": pct, "enabled": pct > 0}
    return rec.item


# --- feedback and performance --------------------------------------------------------------


def post_feedback(store: ObjectStore, endpoint: str, raw: Any) -> dict[str, Any]:
    try:
        items = feedback_mod.FeedbackBody.model_validate(raw).items()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        raise BadRequestError(
            f"feedback {where}: {first['msg']}" if where else str(first["msg"])
        ) from None
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    return {"endpoint": endpoint, **feedback_mod.record(store, endpoint, items)}


def endpoint_performance(
    store: ObjectStore,
    metrics: MetricsStore | None,
    endpoint: str,
    task: str,
    params: MetricsParams,
    variants: Sequence[str] = ("AllTraffic",),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``GET /endpoints/{name}/performance``: computed from captures + feedback (and put
    into the metrics store, so the same numbers are metrics and can be alarmed on)."""
    start, end, _ = params.window(now)
    period = params.period or 3600
    report = feedback_mod.performance(store, endpoint, task, start, end, period, variants, now)
    if metrics is not None and report["windows"]:
        metrics.put(get_monitoring_settings().metrics_namespace, feedback_mod.metric_points(report))
    return report


# --- drift ---------------------------------------------------------------------------------


def drift_key(endpoint: str, name: str) -> str:
    return f"monitoring/{endpoint}/drift/{name}.json"


def run_drift_check(
    store: ObjectStore,
    metrics: MetricsStore,
    endpoint: str,
    model_version: Mapping[str, Any],
    baseline_key: str,
    start: dt.datetime,
    end: dt.datetime,
    variants: Sequence[str] = ("AllTraffic",),
) -> dict[str, Any]:
    """One drift check, in-process (the local stack; on AWS the same computation runs as the
    ``drift.py`` processing job). Stores the report and puts the FeatureDrift metrics."""
    import driftstats  # sagemaker_jobs/ (on the local stack's path)

    from . import capture as capture_reader

    settings = get_monitoring_settings()
    try:
        baseline = json.loads(store.get_bytes(baseline_key))
    except NotFoundError:
        raise NotFoundError(f"model version has no drift baseline at {baseline_key!r}") from None
    signature = model_version["signature"]
    frame = capture_reader.load_frame(
        store, endpoint, signature, start, end, variants, settings.capture_prefix
    )
    if frame.empty:
        raise BadRequestError(
            f"no captured requests for {endpoint!r} between {mon.iso(start)} and {mon.iso(end)}"
        )
    report = driftstats.check_drift(
        baseline,
        frame,
        features=[f["name"] for f in signature],
        psi_threshold=settings.drift_psi_threshold,
        p_value_threshold=settings.drift_p_value_threshold,
    )
    report.update(
        endpoint=endpoint,
        model=model_version.get("name"),
        model_version=model_version.get("version"),
        start=mon.iso(start),
        end=mon.iso(end),
        checked_at=mon.iso(dt.datetime.now(dt.UTC)),
    )
    body = json.dumps(report, allow_nan=False).encode()
    store.put_bytes(drift_key(endpoint, f"{int(end.timestamp())}"), body)
    store.put_bytes(drift_key(endpoint, "latest"), body)
    metrics.put(
        settings.metrics_namespace, driftstats.metric_points(report, endpoint, end.timestamp())
    )
    return report


def latest_drift(store: ObjectStore, endpoint: str) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(store.get_bytes(drift_key(endpoint, "latest")))
    except NotFoundError:
        raise NotFoundError(f"no drift check has run for endpoint {endpoint!r} yet") from None
    return report


# --- alarms --------------------------------------------------------------------------------


def put_alarm(meta: MetadataStore, endpoint: str, raw: Any) -> dict[str, Any]:
    definition = parse_body(alarms_mod.AlarmDefinition, raw)
    item = {
        "endpoint": endpoint,
        "definition": definition.model_dump(),
        "state": "INSUFFICIENT_DATA",
    }
    meta.put(Write(MONITORING_TABLE, f"alarm/{endpoint}/{definition.name}", item))
    return item


def delete_alarm(meta: MetadataStore, endpoint: str, name: str) -> dict[str, Any]:
    if meta.get(MONITORING_TABLE, f"alarm/{endpoint}/{name}") is None:
        raise NotFoundError(f"endpoint {endpoint!r} has no alarm {name!r}")
    meta.delete(MONITORING_TABLE, f"alarm/{endpoint}/{name}")
    return {"endpoint": endpoint, "alarm": name, "deleted": True}


def list_alarms(meta: MetadataStore, endpoint: str) -> list[dict[str, Any]]:
    return [r.item for r in meta.query(MONITORING_TABLE, f"alarm/{endpoint}/")]


def evaluate_alarms(
    ports: Any, meta: MetadataStore, metrics: MetricsStore, endpoint: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Evaluate the endpoint's alarms (the local scheduler calls this every
    ``alarm_evaluation_seconds``), record state changes and fire actions on entering ALARM."""
    out = []
    for rec in meta.query(MONITORING_TABLE, f"alarm/{endpoint}/"):
        definition = alarms_mod.AlarmDefinition.model_validate(rec.item["definition"])
        result = alarms_mod.evaluate(
            metrics, definition, now, rec.item.get("state", "INSUFFICIENT_DATA")
        )
        fired = alarms_mod.fire(ports, endpoint, definition, result)
        item = {**rec.item, "state": result.state, "last": result.model_dump(), "fired": fired}
        if result.changed:
            item["state_changed_at"] = result.evaluated_at
        meta.put(Write(MONITORING_TABLE, rec.sk, item))
        out.append(item)
    return out
