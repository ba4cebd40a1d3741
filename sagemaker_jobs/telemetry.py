"""Endpoint metrics aggregated inside the model server: standard library only.

Shipped in every model archive's ``code/`` beside ``modelserver.py``. The server calls
``Telemetry.record`` once per ``/invocations`` answer (``ModelApp(..., hook=telemetry.record)``)::

    telemetry = Telemetry(endpoint="flowers", model_version="3")
    telemetry.start(EmfSink())                     # on AWS: EMF JSON lines on stdout
    telemetry.start(BufferSink())                  # locally: GET /metrics -> telemetry.drain()

**Hot path.** ``record(variant, status, model_us, overhead_us)`` takes no lock: each thread
writes only its own shard of *cumulative* counters and histograms (the model server has one
event-loop thread, so one shard), and the flusher reads them and subtracts what it read
last time. A read may miss an increment that is in flight; it is counted at the next flush,
never lost and never counted twice. Latencies go into log-linear buckets (32 per power of
two, ``mlcontract.monitoring``), so p50/p90/p99 over any period come out of merged
histograms. ``benchmarks/telemetry.py`` measures the cost per call.

**Flush** every ``interval`` seconds (<= 10): per (endpoint, model version, variant) the
deltas of ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors`` (only when there
were requests, the errors then also as 0, as SageMaker does), ``ModelLatency`` and
``OverheadLatency`` histograms with exact sum, and the process's ``CPUUtilization`` /
``MemoryUtilization`` (always). Data points are ``PutMetricData``-shaped dicts
(``mlcontract.monitoring``), timestamped at the end of the interval.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mlcontract import monitoring as mon  # noqa: E402

DEFAULT_INTERVAL = 10.0

# Integer bucket keys for latencies in microseconds: exact below 64, then 32 buckets per
# power of two, the same boundaries as ``mlcontract.monitoring.bucket_key`` (tested).
_EXACT = 64


def _key_value(key: int) -> float:
    """The representative (bucket midpoint) of an integer latency key."""
    if key < _EXACT:
        return float(key)
    shift = key >> 6
    return float(((key & 63) << shift) + (1 << (shift - 1)))


# Latencies of 2**40 us (12 days) and more share the last bucket.
_MAX_SHIFT = 35
_N_KEYS = _MAX_SHIFT << 6

# One variant's cumulative counters in one thread, written by that thread only:
# [invocations, 4xx, 5xx, model latency sum, overhead latency sum], and the model and
# overhead latency histograms as flat lists indexed by integer key.
_Series = tuple[list[int], list[int], list[int]]


class Sink(Protocol):
    def emit(self, points: list[dict[str, Any]]) -> None: ...


class ProcessSampler:
    """CPU (percent of one core, summed over cores, like SageMaker's CPUUtilization) and
    memory (resident set as a percent of physical memory) of this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_cpu = self._cpu_seconds()
        self._last_wall = clock()
        try:
            self._total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            self._total = 0

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    @staticmethod
    def rss_bytes() -> int:
        try:
            with open("/proc/self/statm", "rb") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            import resource  # no /proc (macOS): the peak is the best we have

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return int(peak if sys.platform == "darwin" else peak * 1024)

    def sample(self) -> tuple[float, float]:
        cpu, wall = self._cpu_seconds(), self._clock()
        elapsed = wall - self._last_wall
        cpu_pct = 100.0 * (cpu - self._last_cpu) / elapsed if elapsed > 0 else 0.0
        self._last_cpu, self._last_wall = cpu, wall
        mem_pct = 100.0 * self.rss_bytes() / self._total if self._total else 0.0
        return max(cpu_pct, 0.0), mem_pct


class Telemetry:
    def __init__(
        self,
        endpoint: str,
        model_version: str | int,
        *,
        variant: str = "AllTraffic",
        clock: Callable[[], float] = time.time,
        sampler: ProcessSampler | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.model_version = str(model_version)
        self.variant = variant  # this process's variant: CPU and memory are reported on it
        self._clock = clock
        self._sampler = sampler if sampler is not None else ProcessSampler()
        self._local = threading.local()
        self._shards: list[dict[str, _Series]] = []
        self._register = threading.Lock()  # taken once per thread, never per request
        self._flush_lock = threading.Lock()
        self._seen: dict[tuple[int, str], _Series] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sink: Sink | None = None

    # --- hot path -------------------------------------------------------------------------

    def record(self, variant: str, status: int, model_us: int, overhead_us: int) -> None:
        """One answered request (any status). Lock-free; see the module docstring."""
        try:
            c, mh, oh = self._local.shard[variant]
        except (AttributeError, KeyError):
            c, mh, oh = self._new_series(variant)
        c[0] += 1
        if status >= 400:
            if status >= 500:
                c[2] += 1
            else:
                c[1] += 1
        c[3] += model_us
        c[4] += overhead_us
        if model_us < _EXACT:
            mh[model_us if model_us > 0 else 0] += 1
        else:
            s = model_us.bit_length() - 6
            mh[(s << 6) + (model_us >> s) if s < _MAX_SHIFT else -1] += 1
        if overhead_us < _EXACT:
            oh[overhead_us if overhead_us > 0 else 0] += 1
        else:
            s = overhead_us.bit_length() - 6
            oh[(s << 6) + (overhead_us >> s) if s < _MAX_SHIFT else -1] += 1

    __call__ = record  # a Telemetry is itself a ModelApp hook

    def _new_series(self, variant: str) -> _Series:
        shard: dict[str, _Series] | None = getattr(self._local, "shard", None)
        if shard is None:
            shard = {}
            self._local.shard = shard
            with self._register:
                self._shards.append(shard)
        series: _Series = ([0, 0, 0, 0, 0], [0] * _N_KEYS, [0] * _N_KEYS)
        shard[variant] = series
        return series

    # --- collection -----------------------------------------------------------------------

    def collect(self) -> list[dict[str, Any]]:
        """Data points for everything recorded since the previous ``collect``."""
        with self._flush_lock:
            now = self._clock()
            totals: dict[str, tuple[list[int], dict[int, int], dict[int, int]]] = {}
            with self._register:
                shards = list(enumerate(self._shards))
            for index, shard in shards:
                for variant, series in list(shard.items()):
                    # Copies are single C calls: consistent per list under the GIL.
                    now_series = (list(series[0]), list(series[1]), list(series[2]))
                    prev = self._seen.get((index, variant))
                    self._seen[(index, variant)] = now_series
                    total = totals.setdefault(variant, ([0, 0, 0, 0, 0], {}, {}))
                    for i in range(5):
                        total[0][i] += now_series[0][i] - (prev[0][i] if prev else 0)
                    for into, now_hist, before in (
                        (total[1], now_series[1], prev[1] if prev else None),
                        (total[2], now_series[2], prev[2] if prev else None),
                    ):
                        for k, v in enumerate(now_hist):
                            if v:
                                d = v - before[k] if before else v
                                if d:
                                    into[k] = into.get(k, 0) + d
            points: list[dict[str, Any]] = []
            for variant, (counts, model, overhead) in sorted(totals.items()):
                if counts[0] <= 0:
                    continue
                dims = {
                    mon.ENDPOINT: self.endpoint,
                    mon.VARIANT: variant,
                    mon.MODEL_VERSION: self.model_version,
                }
                points.append(mon.datum(mon.INVOCATIONS, dims, now, value=counts[0]))
                points.append(mon.datum(mon.ERRORS_4XX, dims, now, value=counts[1]))
                points.append(mon.datum(mon.ERRORS_5XX, dims, now, value=counts[2]))
                for name, hist, total_us in (
                    (mon.MODEL_LATENCY, model, counts[3]),
                    (mon.OVERHEAD_LATENCY, overhead, counts[4]),
                ):
                    if hist:
                        points.append(_latency_datum(name, dims, now, hist, total_us))
            cpu, memory = self._sampler.sample()
            host = {
                mon.ENDPOINT: self.endpoint,
                mon.VARIANT: self.variant,
                mon.MODEL_VERSION: self.model_version,
            }
            points.append(mon.datum(mon.CPU, host, now, value=round(cpu, 3)))
            points.append(mon.datum(mon.MEMORY, host, now, value=round(memory, 3)))
            return points

    # --- background flushing --------------------------------------------------------------

    def flush(self) -> None:
        if self._sink is not None:
            points = self.collect()
            if points:
                self._sink.emit(points)

    def start(self, sink: Sink, interval: float = DEFAULT_INTERVAL) -> None:
        """Flush to ``sink`` every ``interval`` seconds (<= 10) on a daemon thread."""
        if not 0 < interval <= 10:
            raise ValueError("the flush interval must be in (0, 10] seconds")
        self._sink = sink
        self._sampler.sample()  # start the CPU window now
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="telemetry", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as exc:  # metrics must never take the server down
                print(f"telemetry flush failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def stop(self) -> None:
        """Stop the flusher and flush what is left (call at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()

    def drain(self) -> dict[str, Any]:
        """For ``GET /metrics`` on a local model server: the buffered data points (and
        anything recorded since the last flush), removed from the buffer."""
        if not isinstance(self._sink, BufferSink):
            raise RuntimeError("drain() needs Telemetry.start(BufferSink())")
        self.flush()
        return {"Namespace": mon.NAMESPACE, "MetricData": self._sink.take()}


def _latency_datum(
    name: str, dims: dict[str, str], now: float, hist: dict[int, int], total_us: int
) -> dict[str, Any]:
    keys = sorted(hist)
    point: dict[str, Any] = {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        "Timestamp": mon.iso(now),
        "Unit": mon.UNITS[name],
    }
    point["Values"] = [_key_value(k) for k in keys]
    point["Counts"] = [float(hist[k]) for k in keys]
    point["StatisticValues"] = {
        "SampleCount": float(sum(hist.values())),
        "Sum": float(total_us),
        "Minimum": point["Values"][0],
        "Maximum": point["Values"][-1],
    }
    return point


# --- sinks ----------------------------------------------------------------------------------


class EmfSink:
    """CloudWatch embedded metric format, one JSON document per line (AWS containers)."""

    def __init__(self, stream: TextIO | None = None, namespace: str = mon.NAMESPACE) -> None:
        self.stream = stream
        self.namespace = namespace

    def emit(self, points: list[dict[str, Any]]) -> None:
        out = self.stream if self.stream is not None else sys.stdout
        lines = mon.emf_documents(points, namespace=self.namespace)
        out.write("".join(line + "\n" for line in lines))
        out.flush()


class BufferSink:
    """Keeps flushed data points until ``take()``; bounded (the oldest are dropped) so a
    server nobody pulls from does not grow."""

    def __init__(self, max_points: int = 50_000) -> None:
        self._points: deque[dict[str, Any]] = deque(maxlen=max_points)

    def emit(self, points: list[dict[str, Any]]) -> None:
        self._points.extend(points)

    def take(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._points.popleft())
            except IndexError:
                return out


def metrics_response(telemetry: Telemetry) -> tuple[int, bytes, bytes]:
    """What a local model server answers to ``GET /metrics``: (status, body, content type)."""
    return 200, json.dumps(telemetry.drain(), separators=(",", ":")).encode(), b"application/json"
