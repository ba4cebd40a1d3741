"""What declarative preprocessing costs, side by side in one run (ratios, not thresholds).

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/features_overhead.py
    ... --rows 50000 --repeat 5

Three models, the same data and estimator (logistic regression), built by train.py's own
``build_pipeline``:

- ``default``: numbers and text only, no steps: the platform's ColumnTransformer (the baseline);
- ``+datetime``: the same plus one datetime column, expanded into parts by default;
- ``every step``: the e2e test's spec (every learned step kind; row steps excluded).

For each: fit time on ``--rows`` rows, batch transform of 10k rows, and single-row latency
through the serving hooks (``input_fn`` + ``predict_fn``, what an endpoint does per request;
p50 over 300 requests). Also the API-side cost of validating the spec (stdlib only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import jobkit
from mlcontract import preprocessing as prep
from sagemaker_jobs import inference
from sagemaker_jobs import train as train_job

SPEC = [
    {"op": "impute", "columns": ["age"], "strategy": "median", "add_indicator": True},
    {"op": "clip_outliers", "columns": ["income"]},
    {"op": "log_transform", "columns": ["income"]},
    {"op": "power_transform", "columns": ["score_b"]},
    {"op": "expression", "name": "ratio", "expression": "score_a / price"},
    {
        "op": "datetime_parts",
        "columns": ["signup"],
        "parts": ["month", "weekday"],
        "cyclical": True,
    },
    {"op": "bin", "columns": ["age"], "n_bins": 4, "encode": "ordinal"},
    {"op": "polynomial", "columns": ["score_a", "score_b"], "interaction_only": True},
    {"op": "standard_scale", "columns": ["ratio"]},
    {"op": "minmax_scale", "columns": ["score_a"]},
    {"op": "robust_scale", "columns": ["income"]},
    {"op": "one_hot", "columns": ["channel"]},
    {"op": "ordinal_encode", "columns": ["plan"], "categories": {"plan": ["S", "M", "L"]}},
    {"op": "target_encode", "columns": ["city"]},
    {"op": "tfidf", "column": "review", "max_features": 50},
    {"op": "variance_threshold"},
    {"op": "select_k_best", "k": 15},
]


def data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.05, np.nan, rng.integers(18, 80, n)),
            "income": rng.lognormal(10, 1, n),
            "price": rng.uniform(5, 50, n),
            "city": rng.choice(["Oslo", "Rome", "Lima", "Pune"], n).astype(object),
            "plan": rng.choice(["S", "M", "L"], n).astype(object),
            "channel": rng.choice(["web", "app", "store"], n).astype(object),
            "review": rng.choice(["great value", "slow delivery", "great app", "bad"], n),
            "score_a": rng.normal(size=n),
            "score_b": rng.exponential(size=n),
            "signup": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
        }
    )
    frame["review"] = frame["review"].astype(object)
    y = np.where(frame["score_a"] + (frame["channel"] == "app") > 0.5, "yes", "no")
    return frame, y


def build(frame: pd.DataFrame, y: np.ndarray, steps: list[dict[str, Any]]) -> Any:
    signature = [{"name": str(c), "type": train_job.column_type(frame[c])} for c in frame.columns]
    pipeline = train_job.build_pipeline(
        signature,
        LogisticRegression(max_iter=300),
        dense=False,
        steps=prep.validate_steps(steps),
        task="classification",
        classes=sorted(set(y.tolist())),
    )
    return pipeline, signature


def timed(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def single_row_p50(pipeline: Any, signature: list[dict[str, str]], frame: pd.DataFrame) -> float:
    metadata = {"signature": {"inputs": signature}, "task": "classification", "classes": None}
    loaded = inference.LoadedModel(pipeline, metadata)
    rows = frame.head(300).copy()
    if "signup" in rows:
        rows["signup"] = rows["signup"].dt.strftime("%Y-%m-%d")
    bodies = [
        json.dumps({"dataframe_records": [{k: (None if v != v else v) for k, v in r.items()}]})
        for r in rows.to_dict(orient="records")
    ]
    latencies = []
    for body in bodies:
        start = time.perf_counter()
        inference.predict_fn(inference.input_fn(body, "application/json", loaded), loaded)
        latencies.append(time.perf_counter() - start)
    return statistics.median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    frame, y = data(args.rows)
    sides = {
        "default": (frame.drop(columns=["signup"]), []),
        "+datetime": (frame, []),
        "every step": (frame, SPEC),
    }
    results = {}
    for name, (x, steps) in sides.items():
        pipeline, signature = build(x, y, steps)
        rows = jobkit.coerce_features(x, signature)
        fit = timed(lambda p=pipeline, r=rows: p.fit(r, y), args.repeat)
        batch = rows.head(10_000)
        predict = timed(lambda p=pipeline, b=batch: p.predict(b), args.repeat)
        single = single_row_p50(pipeline, signature, x)
        results[name] = {"fit_s": fit, "predict_10k_s": predict, "single_row_ms": single * 1e3}

    validate = timed(lambda: prep.validate_steps(SPEC, task="classification"), 200)
    base = results["default"]
    print(f"{args.rows} rows, median of {args.repeat}; single row: p50 of 300 requests")
    header = ("model", "fit s", "x", "10k pred s", "x", "1 row ms", "x")
    print("{:<12} {:>8} {:>6} {:>11} {:>6} {:>9} {:>6}".format(*header))
    for name, r in results.items():
        print(
            f"{name:<12} {r['fit_s']:8.3f} {r['fit_s'] / base['fit_s']:6.2f} "
            f"{r['predict_10k_s']:11.4f} {r['predict_10k_s'] / base['predict_10k_s']:6.2f} "
            f"{r['single_row_ms']:9.3f} {r['single_row_ms'] / base['single_row_ms']:6.2f}"
        )
    print(f"validate_steps on the {len(SPEC)}-step spec: {validate * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
