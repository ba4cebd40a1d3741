"""Endpoint metrics and data capture of ``POST /endpoints/{name}/invocations``, at the API.

Predictions are answered by whichever runtime serves the endpoint (the local in-process
runtime, a local model server, SageMaker); this module measures and captures them where
the API handles the request, with the model servers' own modules, so the metrics and the
capture layout are the same whatever serves:

- metrics: one ``telemetry.Telemetry`` per (endpoint, model version) — the model server's
  lock-free aggregator — records each answer (``Invocations``, ``Invocation4XXErrors``,
  ``Invocation5XXErrors``, ``ModelLatency`` = time in the runtime, ``OverheadLatency`` =
  the rest of the request, in microseconds) and, every ``metrics_flush_seconds``, its data
  points go with the per-endpoint and per-variant rollups into ``Ports.metrics`` (locally the
  SQLite store; on AWS EMF lines on stdout, which CloudWatch Logs turns into metrics);
- capture: a sampled request (the endpoint's ``sampling_percent``, cached for a few seconds)
  is queued as raw bytes (no serialization on the hot path) and written at the same flush as
  JSON lines in SageMaker's data-capture format (``mlcontract.capture``) under
  ``<capture_prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/`` through the object store port.

The inference id (``X-Inference-Id``) is generated per request (or taken from the caller's
header when it is a valid id) and returned in the response header; feedback joins on it.

The flush runs on a daemon thread every ``metrics_flush_seconds`` (and in-line when it is
overdue); in a Lambda (profile ``aws``) after every request, since nothing may wait in a
Lambda's memory. ``benchmarks/telemetry.py`` measures the per-request cost.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from chalicelib.errors import MLPipeError
from mlcontract import capture
from mlcontract import monitoring as mon

log = logging.getLogger("mlpipe.monitoring.invocations")

VARIANT = "AllTraffic"
SAMPLING_TTL_SECONDS = 5.0
MAX_PENDING = 100_000
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_Pending = tuple[str, str, str, float, bytes, str, bytes]


def inference_id(given: str | None) -> str:
    """The caller's id when it is a valid one (SageMaker's InferenceId rules), else new."""
    if given and _ID.match(given):
        return given
    return capture.new_inference_id()


class InvocationMonitor:
    def __init__(
        self,
        ports_of: Callable[[], Any],
        *,
        interval: float = 10.0,
        inline: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ports_of = ports_of
        self.interval = interval
        self.inline = inline
        self._clock = clock
        self._telemetry: dict[tuple[str, str], Any] = {}
        self._pending: deque[_Pending] = deque()
        self._sampling: dict[str, tuple[float, float]] = {}  # endpoint -> (percent, read at)
        self._lock = threading.Lock()  # new Telemetry objects and flushes, never per request
        self._last_flush = clock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self.captured = 0

    # --- hot path ---------------------------------------------------------------------------

    def sampling_percent(self, endpoint: str) -> float:
        now = self._clock()
        cached = self._sampling.get(endpoint)
        if cached is not None and now - cached[1] < SAMPLING_TTL_SECONDS:
            return cached[0]
        from . import service

        config = service.get_capture(self._ports_of().metadata, endpoint)
        pct = float(config["sampling_percent"]) if config.get("enabled", True) else 0.0
        self._sampling[endpoint] = (pct, now)
        return pct

    def set_sampling(self, endpoint: str, percent: float) -> None:
        """A ``PUT .../data-capture`` in this process takes effect at once."""
        self._sampling[endpoint] = (percent, self._clock())

    def sampled(self, endpoint: str) -> bool:
        pct = self.sampling_percent(endpoint)
        # Sampling, not security.
        return pct >= 100 or (pct > 0 and random.random() * 100.0 < pct)  # noqa: S311

    def record(
        self, endpoint: str, version: int | str, status: int, model_us: int, overhead_us: int
    ) -> None:
        tel = self._telemetry.get((endpoint, str(version)))
        if tel is None:
            tel = self._new_telemetry(endpoint, str(version))
        tel.record(VARIANT, status, model_us, overhead_us)
        self._ensure_flusher()

    def capture(
        self, endpoint: str, inference: str, body: bytes, content_type: str, output: bytes
    ) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append(
            (endpoint, VARIANT, inference, self._clock(), body, content_type, output)
        )

    def after_request(self) -> None:
        """Flush in-line when overdue, and after every request in a Lambda: its threads
        sleep between invocations and its memory is gone when AWS reclaims it, so nothing
        may wait there (one EMF line, and one object per sampled request)."""
        if self.inline or self._clock() - self._last_flush >= 2 * self.interval:
            self.flush()

    # --- flushing ---------------------------------------------------------------------------

    def _new_telemetry(self, endpoint: str, version: str) -> Any:
        import telemetry  # the model server's aggregator (sagemaker_jobs/, vendored on AWS)

        with self._lock:
            tel = self._telemetry.get((endpoint, version))
            if tel is None:
                tel = telemetry.Telemetry(endpoint, version, variant=VARIANT, clock=self._clock)
                self._telemetry[(endpoint, version)] = tel
        return tel

    def flush(self) -> int:
        """Metrics and captured records since the last flush into the ports; returns the
        number of data points written."""
        with self._lock:
            self._last_flush = self._clock()
            try:
                ports = self._ports_of()
            except MLPipeError:  # no ports installed (yet, or any more): keep it all
                return 0
            points: list[dict[str, Any]] = []
            # Locally the in-process runtime serves in this process, so its CPU and memory
            # are the endpoint's; a Lambda's are not (SageMaker publishes the instances').
            host = ports.settings.profile != "aws"
            for tel in list(self._telemetry.values()):
                collected = tel.collect()
                # CPU and memory only beside requests: a version no longer served is quiet.
                busy = host and any(p["MetricName"] == mon.INVOCATIONS for p in collected)
                points.extend(
                    p for p in collected if busy or p["MetricName"] not in (mon.CPU, mon.MEMORY)
                )
            if points:
                rolled = list(mon.with_rollups(points))
                namespace = ports.settings.metrics_namespace
                if ports.settings.profile == "aws":  # EMF: no API call, no IAM
                    import telemetry

                    telemetry.EmfSink(namespace=namespace).emit(rolled)
                else:
                    ports.metrics.put(namespace, rolled)
            self._write_captures(ports)
            return len(points)

    def _write_captures(self, ports: Any) -> None:
        items: list[_Pending] = []
        while True:
            try:
                items.append(self._pending.popleft())
            except IndexError:
                break
        if not items:
            return
        groups: dict[tuple[str, str, dt.datetime], list[str]] = {}
        for endpoint, variant, inference, ts, body, ctype, out in items:
            when = dt.datetime.fromtimestamp(ts, dt.UTC)
            line = json.dumps(
                capture.record(inference, when, body, ctype, out),
                separators=(",", ":"),
                ensure_ascii=False,
            )
            hour = when.replace(minute=0, second=0, microsecond=0)
            groups.setdefault((endpoint, variant, hour), []).append(line)
        prefix = ports.settings.capture_prefix
        stamp = f"{int(self._clock() * 1000)}-{threading.get_ident() % 100000:05d}"
        for (endpoint, variant, hour), lines in groups.items():
            key = capture.file_key(prefix, endpoint, variant, hour, f"{stamp}-{len(lines)}")
            ports.store.put_bytes(key, ("\n".join(lines) + "\n").encode())
            self.captured += len(lines)

    def _ensure_flusher(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name="invocation-monitor", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # metrics must never take the API down
                log.exception("invocation metrics flush failed")

    def stop(self) -> None:
        """Stop the flusher and write what is left (the local stack calls it at stop)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        try:
            self.flush()
        except Exception:
            log.exception("last invocation metrics flush failed")


_monitor: InvocationMonitor | None = None
_monitor_lock = threading.Lock()


def monitor() -> InvocationMonitor:
    """The process's monitor, over the installed ports."""
    global _monitor
    if _monitor is None:
        with _monitor_lock:
            if _monitor is None:
                from chalicelib import runtime

                settings = runtime.settings()
                _monitor = InvocationMonitor(
                    runtime.ports,
                    interval=settings.metrics_flush_seconds,
                    inline=settings.profile == "aws",
                )
    return _monitor


def reset() -> None:
    """Stop and forget the process's monitor (the local stack's stop; tests)."""
    global _monitor
    with _monitor_lock:
        current, _monitor = _monitor, None
    if current is not None:
        current.stop()


class observe:  # noqa: N801 - used as a function: ``with observe(...) as seen``
    """Around one ``/invocations`` request: counts it with its status (4xx/5xx from the
    error it raises), times it, and captures it when sampled. Requests to an endpoint that
    does not exist (nothing was served: no ``version`` in the trace) are not counted.
    ``seen.inference_id`` is the request's id; the domain fills ``seen.trace``."""

    __slots__ = ("endpoint", "inference_id", "started", "trace")

    def __init__(self, endpoint: str, given_id: str | None) -> None:
        self.endpoint = endpoint
        self.inference_id = inference_id(given_id)
        self.trace: dict[str, Any] = {}
        self.started = 0

    def __enter__(self) -> observe:
        self.started = time.perf_counter_ns()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if self.trace.get("version") is None:
            return
        status = 200 if exc is None else _status_of(exc)
        try:
            _account(self.endpoint, self, status)
        except Exception:  # monitoring never fails a prediction
            log.exception("could not record the invocation of %s", self.endpoint)


Observed = observe


def _status_of(exc: BaseException) -> int:
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else 500


def _account(endpoint: str, seen: Observed, status: int) -> None:
    mon_ = monitor()
    total_ns = time.perf_counter_ns() - seen.started
    model_ns = int(seen.trace.get("model_ns", 0))
    mon_.record(
        endpoint,
        seen.trace["version"],
        status,
        model_ns // 1000,
        max(total_ns - model_ns, 0) // 1000,
    )
    if status < 400 and "output" in seen.trace and mon_.sampled(endpoint):
        mon_.capture(
            endpoint, seen.inference_id, seen.trace["input"], "application/json",
            seen.trace["output"],
        )  # fmt: skip
    mon_.after_request()
