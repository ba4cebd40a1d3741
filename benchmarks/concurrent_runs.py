"""20 concurrent runs of one pipeline through the REST API of the served local stack.

Checks what issue 5 found broken (deploys from concurrent runs going backwards): every run
SUCCEEDED, the versions are 1..N, the endpoint's history only moves forward, the alias ends
on vN, and a rollback goes N -> N-1. Prints the timings; exits 1 if a check fails.

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/concurrent_runs.py
    ... benchmarks/concurrent_runs.py --runs 20 --rows 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from benchmarks._server import LocalServer
from tests.e2e.conftest import classification_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    n = args.runs
    with LocalServer(MLPIPE_MAX_CONCURRENT_RUNS=str(n)) as api:
        api.ok("POST", "/datasets", {"name": "conc", "source": {
            "type": "inline", "data": classification_csv(args.rows)}})  # fmt: skip
        api.ok("POST", "/pipelines", {
            "name": "conc-lr", "dataset": {"name": "conc"}, "target": "label",
            "task": "classification", "model": {"algorithm": "logistic_regression"},
            "deployment": {"endpoint": "conc", "alias": "production"},
        })  # fmt: skip
        started = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            ids = list(pool.map(lambda _: api.ok("POST", "/pipelines/conc-lr/runs")["run_id"],
                                range(n)))  # fmt: skip
        submitted = time.monotonic() - started
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + args.timeout
        while len(done) < n and time.monotonic() < deadline:
            for run_id in ids:
                if run_id not in done:
                    run = api.ok("GET", f"/runs/{run_id}")
                    if run["status"] != "RUNNING":
                        done[run_id] = run
            time.sleep(0.5)
        wall = time.monotonic() - started
        durations = [
            _seconds(r["created_at"], r["ended_at"]) for r in done.values() if r.get("ended_at")
        ]
        statuses = sorted(r["status"] for r in done.values())
        versions = sorted(r["model"]["version"] for r in done.values() if r.get("model"))
        deploys = [next(s for s in r["steps"] if s["name"] == "deploy") for r in done.values()]
        skipped = sum(1 for s in deploys if s["status"] == "SKIPPED")
        endpoint = api.ok("GET", "/endpoints/conc")
        history = endpoint["history"]
        alias = api.ok("GET", "/models/conc-lr")["aliases"].get("production")
        rolled = api.ok("POST", "/endpoints/conc/rollback")
        after = api.ok("GET", "/endpoints/conc")
    print(f"{n} concurrent runs through the REST API (served local stack, loopback HTTP)")
    print(f"  submit all {n}:            {submitted:8.2f} s")
    print(f"  all ended (wall):          {wall:8.2f} s")
    if durations:
        print(f"  run duration p50 / max:    {statistics.median(durations):8.2f} s / "
              f"{max(durations):.2f} s")  # fmt: skip
    print(f"  statuses:                  {dict((s, statuses.count(s)) for s in set(statuses))}")
    print(f"  versions registered:       {versions}")
    print(f"  deploys skipped (a newer version was already deployed): {skipped}")
    print(f"  endpoint history:          {history}")
    print(f"  alias production:          v{alias}")
    print(f"  rollback:                  v{rolled['rolled_back_from']} -> "
          f"v{after['model_version']}")  # fmt: skip
    checks = {
        "every run SUCCEEDED": statuses == ["SUCCEEDED"] * n,
        "versions are 1..N": versions == list(range(1, n + 1)),
        "history only moves forward": all(a < b for a, b in itertools.pairwise(history)),
        "history ends on vN": bool(history) and history[-1] == n,
        "alias on vN": alias == n,
        "rollback goes N -> N-1": rolled["rolled_back_from"] == n
        and after["model_version"] == n - 1,
    }
    for name, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")
    return 0 if all(checks.values()) else 1


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
