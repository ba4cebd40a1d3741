"""Cost of the model server's per-request metrics hook, in nanoseconds per call.

Side by side in one run: an empty hook (the floor: a Python call), ``Telemetry.record``
(lock-free, per-thread cumulative counters + log-linear histograms), and the same work done
under a ``threading.Lock`` (what a naive thread-safe aggregator pays). Also the cost of one
``collect()`` (the 10-second flush) after a million requests.

    .venv/bin/python benchmarks/telemetry.py
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sagemaker_jobs"))

import telemetry

N = 1_000_000


def noop(variant: str, status: int, model_us: int, overhead_us: int) -> None:
    pass


class Locked:
    def __init__(self) -> None:
        self.inner = telemetry.Telemetry("bench", 1)
        self.lock = threading.Lock()

    def record(self, variant: str, status: int, model_us: int, overhead_us: int) -> None:
        with self.lock:
            self.inner.record(variant, status, model_us, overhead_us)


def run(hook, latencies: list[int]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for lat in latencies:
            hook("AllTraffic", 200, lat, 95)
        best = min(best, (time.perf_counter_ns() - start) / len(latencies))
    return best


def main() -> None:
    rng = random.Random(0)
    latencies = [int(rng.lognormvariate(6.5, 0.7)) for _ in range(N)]
    floor = run(noop, latencies)
    tel = telemetry.Telemetry("bench", 1)
    ours = run(tel.record, latencies)
    locked = run(Locked().record, latencies)
    start = time.perf_counter()
    points = tel.collect()
    collect_ms = (time.perf_counter() - start) * 1000
    print(f"{N:,} calls, best of 3, ns per call (Python {sys.version.split()[0]})")
    print(f"  empty hook (floor)          {floor:7.1f}")
    print(f"  Telemetry.record            {ours:7.1f}   ({ours - floor:.1f} above the floor)")
    print(f"  same under threading.Lock   {locked:7.1f}   ({locked / ours:.2f}x ours)")
    print(f"  collect() after 3M calls    {collect_ms:7.2f} ms, {len(points)} data points")
    print("  for scale: a single-row request to the model server takes ~150,000-1,200,000 ns")
    api_layer()


class _Settings:
    profile = "local"
    metrics_namespace = "mlpipe"
    capture_prefix = "datacapture"


class _Ports:
    settings = _Settings()


def api_layer(n: int = 200_000) -> None:
    """The API's per-request monitoring (``chalicelib.monitoring.invocations.observe``): the
    context manager, inference id, timing, ``Telemetry.record``, the sampling decision and,
    at 100 % capture, queueing the request and response bytes — against a bare ``with``."""
    import contextlib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))
    from chalicelib.monitoring import invocations

    now = time.time()
    monitor = invocations.InvocationMonitor(lambda: _Ports(), interval=10.0, clock=lambda: now)
    monitor._ensure_flusher = lambda: None  # type: ignore[method-assign]  # no thread here
    invocations._monitor = monitor
    body, out = b'{"dataframe_split":{"columns":["a"],"data":[[1.0]]}}', b'{"predictions":[1]}'

    def bare() -> None:
        with contextlib.nullcontext():
            pass

    def observed() -> None:
        with invocations.observe("bench", None) as seen:
            seen.trace.update(version=1, model_ns=250_000, input=body, output=out)

    results = {}
    for name, fn, pct in (("bare with", bare, 0.0), ("observe, capture 0 %", observed, 0.0),
                          ("observe, capture 100 %", observed, 100.0)):  # fmt: skip
        monitor.set_sampling("bench", pct)
        best = float("inf")
        for _ in range(3):
            monitor._pending.clear()
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter_ns() - start) / n)
        results[name] = best
    floor = results["bare with"]
    print(f"API layer per request, {n:,} calls, best of 3, ns per call")
    for name, value in results.items():
        print(f"  {name:<27} {value:7.1f}   ({value - floor:.1f} above a bare with)")
    worst = max(results.values()) - floor
    print(
        f"  for scale: {worst / 1e4:.2f} % of a 1 ms request (the e2e's 20-tree forest spends "
        "~2-20 ms in the model alone per request here, ModelLatency p50)"
    )


if __name__ == "__main__":
    main()
