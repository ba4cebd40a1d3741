"""Pipeline metrics: ``RunsStarted``, ``RunsSucceeded``, ``RunsFailed`` (dimension
``Pipeline``, plus an undimensioned total), ``StepDuration`` (``Pipeline``, ``Step``) and
``JobCPUUtilization`` / ``JobMemoryUtilization`` (``Pipeline``, ``Step``).

Computed as data points by pure functions of the run document (the ``GET /runs/{id}``
shape) and emitted by a ``MetricEmitter``:

- AWS (in a Lambda): ``PowertoolsEmitter`` — Powertools for AWS Lambda ``single_metric``,
  EMF on stdout, which CloudWatch Logs turns into metrics (no API call, no IAM for
  ``PutMetricData``);
- local: ``StoreEmitter`` — straight into the metrics store.

Where they are called (INTEGRATION-monitoring.md): ``runs.start`` -> ``run_started``; the
``Finish`` and ``FailRun`` steps -> ``run_ended`` with the final run document (step
durations come from its ``started_at``/``ended_at``); the local job runner, when a job
process exits -> ``job_usage`` from its ``os.wait4`` resource usage (on AWS SageMaker
publishes the jobs' CPU and memory itself, in ``/aws/sagemaker/TrainingJobs`` and
``/aws/sagemaker/ProcessingJobs``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mlcontract import monitoring as mon

from .store import MetricsStore

Datum = dict[str, Any]
log = logging.getLogger("mlpipe.monitoring.pipeline")


class MetricEmitter(Protocol):
    def emit(self, points: Sequence[Datum]) -> None: ...


class StoreEmitter:
    def __init__(self, store: MetricsStore, namespace: str = mon.NAMESPACE) -> None:
        self.store = store
        self.namespace = namespace

    def emit(self, points: Sequence[Datum]) -> None:
        if points:
            self.store.put(self.namespace, list(points))


class PowertoolsEmitter:
    """EMF through Powertools (imported lazily: only Lambdas on AWS need it)."""

    def __init__(self, namespace: str = mon.NAMESPACE) -> None:
        self.namespace = namespace

    def emit(self, points: Sequence[Datum]) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        for point in points:
            unit = MetricUnit(point.get("Unit") or "None")
            value = point.get("Value")
            if value is None:  # histograms are not emitted by pipelines
                continue
            with single_metric(
                name=point["MetricName"], unit=unit, value=float(value), namespace=self.namespace
            ) as metric:
                for d in point["Dimensions"]:
                    metric.add_dimension(name=d["Name"], value=d["Value"])


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return mon.parse_time(value)
    except ValueError:
        return None


def run_started(pipeline: str, when: dt.datetime | None = None) -> list[Datum]:
    now = when or dt.datetime.now(dt.UTC)
    return [
        mon.datum(mon.RUNS_STARTED, {mon.PIPELINE: pipeline}, now, value=1),
        mon.datum(mon.RUNS_STARTED, {}, now, value=1),
    ]


def run_ended(run: Mapping[str, Any], when: dt.datetime | None = None) -> list[Datum]:
    """``RunsSucceeded`` or ``RunsFailed`` and one ``StepDuration`` per finished step."""
    now = when or _time(run.get("ended_at")) or dt.datetime.now(dt.UTC)
    pipeline = str(run["pipeline"])
    status = run.get("status")
    points: list[Datum] = []
    name = {"SUCCEEDED": mon.RUNS_SUCCEEDED, "FAILED": mon.RUNS_FAILED}.get(str(status))
    if name:
        points.append(mon.datum(name, {mon.PIPELINE: pipeline}, now, value=1))
        points.append(mon.datum(name, {}, now, value=1))
    for step in run.get("steps") or []:
        started, ended = _time(step.get("started_at")), _time(step.get("ended_at"))
        if started and ended and ended >= started:
            points.append(
                mon.datum(
                    mon.STEP_DURATION,
                    {mon.PIPELINE: pipeline, mon.STEP: str(step["name"])},
                    ended,
                    value=(ended - started).total_seconds(),
                )
            )
    return points


def job_usage(
    pipeline: str,
    step: str,
    rusage: Any,
    wall_seconds: float,
    when: dt.datetime | None = None,
    total_memory: int | None = None,
) -> list[Datum]:
    """Job CPU (percent of one core, averaged over the job) and peak memory (percent of
    physical memory) from a finished process's ``resource.struct_rusage`` (``os.wait4``)."""
    now = when or dt.datetime.now(dt.UTC)
    if total_memory is None:
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = 100.0 * (rusage.ru_utime + rusage.ru_stime) / wall_seconds if wall_seconds > 0 else 0.0
    memory = 100.0 * rusage.ru_maxrss * 1024 / total_memory if total_memory else 0.0  # KiB on Linux
    dims = {mon.PIPELINE: pipeline, mon.STEP: step}
    return [
        mon.datum(mon.JOB_CPU, dims, now, value=round(cpu, 3)),
        mon.datum(mon.JOB_MEMORY, dims, now, value=round(memory, 3)),
    ]


def emitter(ports: Any) -> MetricEmitter:
    """EMF through Powertools in a Lambda on AWS; the metrics store port elsewhere."""
    namespace = ports.settings.metrics_namespace
    if ports.settings.profile == "aws":
        return PowertoolsEmitter(namespace)
    return StoreEmitter(ports.metrics, namespace)


def _emit(ports: Any, points: Sequence[Datum]) -> None:
    try:
        emitter(ports).emit(points)
    except Exception:  # metrics never fail a run
        log.warning("could not emit pipeline metrics", exc_info=True)


def on_run_started(ports: Any, run: Mapping[str, Any]) -> None:
    """``runs.launch``: a run of a pipeline started."""
    if run.get("pipeline"):
        _emit(ports, run_started(str(run["pipeline"])))


def on_run_ended(ports: Any, run: Mapping[str, Any]) -> None:
    """The success and failure recorders: RunsSucceeded/RunsFailed and step durations."""
    if run.get("pipeline"):
        _emit(ports, run_ended(run))
