"""The model server's in-process metrics: exact counts, bucketed latencies, lock-free
recording from several threads, EMF output and the local drain."""

from __future__ import annotations

import ast
import io
import json
import random
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import telemetry
from mlcontract import monitoring as mon

REPO = Path(__file__).resolve().parents[2]


class FixedSampler(telemetry.ProcessSampler):
    def __init__(self) -> None:
        pass

    def sample(self) -> tuple[float, float]:
        return 12.5, 3.25


def make(**kwargs) -> telemetry.Telemetry:
    return telemetry.Telemetry(
        "ep", 3, clock=lambda: 1_800_000_000.0, sampler=FixedSampler(), **kwargs
    )


def by_name(points, variant=None):
    out = {}
    for p in points:
        dims = {d["Name"]: d["Value"] for d in p["Dimensions"]}
        if variant is None or dims.get(mon.VARIANT) == variant:
            out[p["MetricName"]] = p
    return out


@pytest.mark.parametrize(
    "module",
    ["telemetry.py", "datacapture.py", "mlcontract/monitoring.py", "mlcontract/capture.py"],
)
def test_shipped_modules_import_only_the_standard_library(module):
    tree = ast.parse((REPO / "sagemaker_jobs" / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    assert names - set(sys.stdlib_module_names) <= {"mlcontract"}, names


def test_buckets_sort_like_values_and_midpoints_are_within_1_6_percent():
    rng = random.Random(0)
    values = sorted(
        [0.0, 1e-9, 0.5, 1.0, 3.0, 63.0, 64.0, 1e6]
        + [rng.lognormvariate(5, 3) for _ in range(2000)]
    )
    keys = [mon.bucket_key(v) for v in values]
    assert keys == sorted(keys)
    for v in values:
        k = mon.bucket_key(v)
        mid = mon.bucket_value(k)
        assert mon.bucket_key(mid) == k  # representatives re-bucket to themselves
        low, high = mon.bucket_bounds(k)
        assert low <= v < high or v == 0
        if v:
            assert abs(mid - v) / v <= 1 / 64 + 1e-12
    assert mon.bucket_key(-5.0) < mon.bucket_key(0.0) < mon.bucket_key(5.0)


def test_integer_latency_keys_agree_with_the_shared_buckets():
    t = make()
    for v in [0, 1, 31, 32, 63, 64, 65, 127, 128, 1000, 12_345, 10**6, 2**39 + 7]:
        t.record("v", 200, v, 0)
    (points,) = [
        p
        for p in t.collect()
        if p["MetricName"] == mon.MODEL_LATENCY and p["Dimensions"][1]["Value"] == "v"
    ]
    for rep in points["Values"]:
        assert mon.bucket_value(mon.bucket_key(rep)) == pytest.approx(rep, rel=1e-12) or rep < 64
    reps = sorted(points["Values"])
    for v, rep in zip([0, 1, 31, 32, 63], reps[:5], strict=True):
        assert rep == v  # exact below 64
    for v in [64, 65, 127, 128, 1000, 12_345, 10**6, 2**39 + 7]:
        assert mon.bucket_key(v) in {mon.bucket_key(r) for r in reps}


def test_percentiles_from_buckets_match_numpy_within_bucket_width():
    rng = np.random.default_rng(1)
    latencies = rng.lognormal(7, 0.6, size=20_000).astype(int) + 1
    buckets = mon.histogram(latencies.tolist())
    for q in (50, 90, 99):
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert mon.percentile(buckets, q) == pytest.approx(exact, rel=1 / 64)
    assert mon.percentile({}, 50) is None
    assert mon.percentile(buckets, 100, maximum=float(latencies.max())) == latencies.max()


def test_counts_per_variant_and_status_are_exact():
    t = make()
    for i in range(1000):
        t.record("AllTraffic", 200 if i % 10 else 500, 800 + i, 50)
    for _ in range(7):
        t.record("AllTraffic", 400, 10, 20)
    for _ in range(3):
        t.record("shadow", 200, 900, 40)
    points = t.collect()
    main = by_name(points, "AllTraffic")
    assert main[mon.INVOCATIONS]["Value"] == 1007
    assert main[mon.ERRORS_4XX]["Value"] == 7
    assert main[mon.ERRORS_5XX]["Value"] == 100
    lat = main[mon.MODEL_LATENCY]
    assert lat["StatisticValues"]["SampleCount"] == 1007
    assert lat["StatisticValues"]["Sum"] == sum(800 + i for i in range(1000)) + 70
    assert sum(lat["Counts"]) == 1007
    assert lat["Unit"] == "Microseconds"
    assert {d["Name"]: d["Value"] for d in lat["Dimensions"]} == {
        mon.ENDPOINT: "ep",
        mon.VARIANT: "AllTraffic",
        mon.MODEL_VERSION: "3",
    }
    assert by_name(points, "shadow")[mon.INVOCATIONS]["Value"] == 3
    assert main[mon.CPU]["Value"] == 12.5 and main[mon.MEMORY]["Value"] == 3.25
    assert main[mon.INVOCATIONS]["Timestamp"] == "2027-01-15T08:00:00.000Z"
    # The next collection holds only what came after.
    t.record("AllTraffic", 200, 5, 5)
    again = by_name(t.collect(), "AllTraffic")
    assert again[mon.INVOCATIONS]["Value"] == 1
    assert again[mon.MODEL_LATENCY]["Values"] == [5.0]
    # Nothing recorded: only the process gauges.
    assert {p["MetricName"] for p in t.collect()} == {mon.CPU, mon.MEMORY}


def test_many_threads_recording_while_collecting_lose_nothing():
    t = make()
    threads_n, per_thread = 4, 20_000
    collected: list[dict] = []
    stop = threading.Event()

    def worker(seed: int) -> None:
        for i in range(per_thread):
            t.record("AllTraffic", 500 if i % 100 == 0 else 200, (i * seed) % 5000, 7)

    def collector() -> None:
        while not stop.is_set():
            collected.extend(t.collect())

    c = threading.Thread(target=collector)
    c.start()
    workers = [threading.Thread(target=worker, args=(s,)) for s in range(1, threads_n + 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    c.join()
    collected.extend(t.collect())
    inv = sum(p["Value"] for p in collected if p["MetricName"] == mon.INVOCATIONS)
    err = sum(p["Value"] for p in collected if p["MetricName"] == mon.ERRORS_5XX)
    hist = sum(sum(p["Counts"]) for p in collected if p["MetricName"] == mon.MODEL_LATENCY)
    overhead_sum = sum(
        p["StatisticValues"]["Sum"] for p in collected if p["MetricName"] == mon.OVERHEAD_LATENCY
    )
    assert inv == threads_n * per_thread
    assert err == threads_n * per_thread / 100
    assert hist == threads_n * per_thread
    assert overhead_sum == 7 * threads_n * per_thread


def test_emf_documents_are_valid_and_histograms_split_at_100_values():
    t = make()
    for v in range(64, 64 * 2**8, 37):  # spans many buckets
        t.record("AllTraffic", 200, v, 3)
    out = io.StringIO()
    telemetry.EmfSink(out).emit(t.collect())
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    total = 0.0
    for doc in docs:
        meta = doc["_aws"]
        assert meta["Timestamp"] == 1_800_000_000_000
        (directive,) = meta["CloudWatchMetrics"]
        assert directive["Namespace"] == "mlpipe"
        assert [mon.ENDPOINT] in directive["Dimensions"]
        assert [mon.ENDPOINT, mon.VARIANT, mon.MODEL_VERSION] in directive["Dimensions"]
        for metric in directive["Metrics"]:
            assert metric["Name"] in doc
        if mon.MODEL_LATENCY in doc:
            h = doc[mon.MODEL_LATENCY]
            assert len(h["Values"]) <= 100 and len(h["Values"]) == len(h["Counts"])
            assert h["Count"] == sum(h["Counts"])
            total += h["Count"]
    assert total == len(range(64, 64 * 2**8, 37))
    assert sum(1 for d in docs if mon.MODEL_LATENCY in d) >= 2


def test_buffer_sink_drain_returns_each_point_once():
    t = make()
    sink = telemetry.BufferSink()
    t._sink = sink  # as start() would, without the thread
    t.record("AllTraffic", 200, 100, 10)
    t.flush()
    t.record("AllTraffic", 200, 100, 10)
    body = t.drain()
    assert body["Namespace"] == "mlpipe"
    assert sum(p["Value"] for p in body["MetricData"] if p["MetricName"] == mon.INVOCATIONS) == 2
    assert not [p for p in t.drain()["MetricData"] if p["MetricName"] == mon.INVOCATIONS]
    status, raw, ctype = telemetry.metrics_response(t)
    assert status == 200 and ctype == b"application/json" and json.loads(raw)["MetricData"]


def test_start_flushes_in_the_background_and_stop_flushes_the_rest():
    t = make()
    sink = telemetry.BufferSink()
    with pytest.raises(ValueError):
        t.start(sink, interval=30)
    t.start(sink, interval=10)
    t.record("AllTraffic", 200, 100, 10)
    t.stop()  # no sleep: stop() flushes what is left
    assert any(p["MetricName"] == mon.INVOCATIONS for p in sink.take())


def test_process_sampler_reads_this_process():
    sampler = telemetry.ProcessSampler()
    sum(i * i for i in range(200_000))
    cpu, mem = sampler.sample()
    assert cpu >= 0 and 0 < mem < 100
    assert telemetry.ProcessSampler.rss_bytes() > 1_000_000
