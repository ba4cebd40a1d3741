"""Optional: Evidently's DataDriftPreset on the same data as benchmarks/drift.py.

Evidently is not a dependency; run this with a throwaway virtualenv that has it:

    python3 -m venv /tmp/ev-venv && /tmp/ev-venv/bin/pip install "evidently>=0.7,<0.8" "pandas<3"
    /tmp/ev-venv/bin/python benchmarks/drift_evidently.py [--rows 1000000]

(evidently 0.7.23 imports a pandas internal that pandas 3 removed, hence pandas<3.)

Evidently compares raw reference rows (here the 200k training rows) with the current rows;
ours compares with the baseline profile, so the work is not identical, but it is what a user
of each would run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "sagemaker_jobs")]
spec = importlib.util.spec_from_file_location("bench_drift", HERE / "drift.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def main() -> None:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    reference = bench.make(200_000, 0, False)
    current = bench.make(args.rows, 1, True)
    for frame in (reference, current):
        for c in frame.columns:
            if c.startswith("c"):
                frame[c] = frame[c].astype(str)
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    took = time.perf_counter() - t
    result = snapshot.dict()
    shape = f"{args.rows:,} rows x {current.shape[1]} columns"
    print(f"evidently DataDriftPreset: {shape} in {took:.1f} s")
    print(f"  ({len(result.get('metrics', []))} metrics in the snapshot)")


if __name__ == "__main__":
    main()
