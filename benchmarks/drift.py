"""Drift check speed: 1M captured rows x 50 features against a baseline, in one run:

- ours: ``driftstats.check_drift`` (PSI on the baseline's decile edges + KS against its
  sample for 40 numeric features; PSI + chi-square for 10 categorical ones);
- naive: the same statistics with the obvious pandas/scipy calls per feature
  (``np.histogram`` + ``scipy.stats.ks_2samp`` + ``value_counts`` + ``chi2_contingency``).

Also how fast captured JSONL is read back into rows (the job's other cost), on 100k rows.

    .venv/bin/python benchmarks/drift.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "sagemaker_jobs")]

import driftstats  # noqa: E402
from mlcontract import capture  # noqa: E402
from tests.monitoring_helpers import baseline_of  # noqa: E402

N_NUM, N_CAT = 40, 10


def make(n: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(N_NUM):
        col = rng.normal(i % 7, 1 + i % 3, size=n)
        if shift and i % 10 == 0:
            col += 0.6 * (1 + i % 3)
        if i % 5 == 4:
            col = np.round(col * 3)  # integer-like, many ties
        data[f"n{i:02d}"] = col
    for j in range(N_CAT):
        k = 3 + j * 4
        p = np.arange(1, k + 1, dtype=float)
        p = p[::-1] if shift and j % 3 == 0 else p
        values = np.array([f"c{c}" for c in range(k)], dtype=object)
        data[f"c{j}"] = pd.Categorical(rng.choice(values, size=n, p=p / p.sum()))
    return pd.DataFrame(data)


def naive(baseline: dict, frame: pd.DataFrame) -> dict[str, float]:
    out = {}
    for spec in baseline["columns"]:
        col = frame[spec["name"]]
        if spec["type"] == "number":
            values = col.dropna().to_numpy()
            edges = np.array(spec["histogram"]["edges"])
            clipped = np.clip(values, edges[0], edges[-1])
            current = np.histogram(clipped, bins=edges)[0]
            psi = driftstats.psi(
                np.array(spec["histogram"]["counts"], float), current.astype(float)
            )
            p = stats.ks_2samp(np.array(spec["sample"]), values).pvalue
        else:
            counts = col.astype(str).value_counts()
            top = [v for v, _ in spec["top"]]
            base = np.array([c for _, c in spec["top"]] + [spec["other"]], float)
            cur = np.array(
                [counts.get(v, 0) for v in top] + [counts[~counts.index.isin(top)].sum()], float
            )
            psi = driftstats.psi(base, cur)
            table = np.vstack([base, cur])
            p = stats.chi2_contingency(table[:, table.sum(0) > 0], correction=False).pvalue
        out[spec["name"]] = psi if p < 0.05 else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    train = make(200_000, 0, False)
    types = {c: ("number" if c.startswith("n") else "string") for c in train.columns}
    baseline = baseline_of(train, types)
    current = make(args.rows, 1, True)
    kinds = f"{N_NUM} numeric, {N_CAT} categorical"
    print(f"{args.rows:,} captured rows x {len(types)} features ({kinds})")

    t = time.perf_counter()
    report = driftstats.check_drift(baseline, current)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    reference = naive(baseline, current)
    base_s = time.perf_counter() - t
    flagged_naive = {k for k, v in reference.items() if v >= 0.2}
    ours_flagged = sorted(report["drifted_features"])
    print(f"  ours  (driftstats.check_drift)      {ours:6.2f} s   drifted: {ours_flagged}")
    print(
        f"  naive (np.histogram + ks_2samp ...) {base_s:6.2f} s   drifted: {sorted(flagged_naive)}"
    )
    goal = "met" if ours <= 10 else "NOT met"
    print(f"  ratio naive/ours {base_s / ours:.2f}x; goal <= 10 s: {goal}")

    # Reading captures back: 100k rows in 5k requests of 20 rows, canonical bodies.
    sig = [{"name": c, "type": types[c]} for c in current.columns]
    part = current.iloc[:100_000].astype(object)
    when = dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC)
    lines = []
    for i in range(0, len(part), 20):
        chunk = part.iloc[i : i + 20]
        body = json.dumps(
            {"dataframe_split": {"columns": list(part.columns), "data": chunk.to_numpy().tolist()}}
        )
        lines.append(
            json.dumps(
                capture.record(
                    str(i),
                    when,
                    body.encode(),
                    "application/json",
                    json.dumps({"predictions": [0] * len(chunk)}).encode(),
                )
            )
        )
    t = time.perf_counter()
    frame = driftstats.frame_from_captures(lines, sig)
    read_s = time.perf_counter() - t
    rate = len(frame) / read_s
    print(f"  reading captures: {len(frame):,} rows in {read_s:.2f} s ({rate:,.0f} rows/s)")


if __name__ == "__main__":
    main()
