"""Latency of the local API (`make run`: waitress) for a keep-alive client and for a client
that opens a new connection per call, side by side.

Issue 5 measured p50 64 ms with keep-alive vs 22 ms with new connections on the dev server
(a response written in pieces without TCP_NODELAY meets the client's delayed ACK: ~40 ms per
call). With waitress both should be in the same few milliseconds. Prints ratios; never fails
on timings.

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/api_keepalive.py
    ... benchmarks/api_keepalive.py --calls 300 --path /datasets
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import LocalServer

BODY = '{"name": "ka", "source": {"type": "inline", "data": "a,b\\n1,2\\n3,4\\n"}}'


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: str | None) -> float:
    headers = {"Content-Type": "application/json"}
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - start
    if resp.status >= 400:
        raise RuntimeError(f"{method} {path}: {resp.status}")
    return elapsed


def measure(
    port: int, method: str, path: str, body: str | None, calls: int, keep: bool
) -> list[float]:
    times: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(calls):
        if not keep:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start = time.perf_counter()
            conn.connect()
            connect = time.perf_counter() - start
            times.append(connect + _timed(conn, method, path, body))
        else:
            times.append(_timed(conn, method, path, body))
    conn.close()
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--path", default="/datasets/ka")
    args = parser.parse_args(argv)
    with LocalServer() as api:
        api.ok("POST", "/datasets", json.loads(BODY))
        cases = [("GET", args.path, None), ("GET", "/health", None)]
        print(f"local API (waitress) on loopback, {args.calls} calls per cell, ms")
        print(f"{'call':<22}{'keep-alive p50':>15}{'p90':>8}{'new conn p50':>14}{'p90':>8}"
              f"{'ratio p50':>11}")  # fmt: skip
        for method, path, body in cases:
            for keep in (True, False):  # warm both paths
                measure(api.port, method, path, body, 10, keep)
            kept = measure(api.port, method, path, body, args.calls, True)
            fresh = measure(api.port, method, path, body, args.calls, False)
            print(f"{method + ' ' + path:<22}{_pct(kept, .5):>15.2f}{_pct(kept, .9):>8.2f}"
                  f"{_pct(fresh, .5):>14.2f}{_pct(fresh, .9):>8.2f}"
                  f"{statistics.median(kept) / statistics.median(fresh):>11.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
