"""Tuning benchmark: Bayesian (optuna TPE) vs random search, and 1 vs 2 parallel trials.

    python benchmarks/tuning.py [--trials 50] [--seeds 3] [--throughput-trials 8]

Both searches use the platform's own planner (chalicelib.tuning: ``random_point`` and
``bayesian``, the code PlanTrials runs) on the same space and objective: 3-fold CV accuracy of
a histogram gradient-boosting classifier on scikit-learn's breast-cancer data (569 rows), the
shape of a trial job without its process start. Per seed: random search's best score after
``--trials`` trials, and how many trials the Bayesian search needed to reach it (same budget;
"never" if it did not). Throughput: the same trials run one at a time and two at a time
(a process pool, as trial jobs are processes), trials per second side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# One thread per trial, as one trial job per core: threads of concurrent trials would fight
# over the cores and blur the 1-vs-2-parallel comparison.
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "functions", ROOT / "sagemaker_jobs"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from chalicelib import tuning  # noqa: E402
from chalicelib.modelspec import TuningSpec  # noqa: E402

SPACE = {
    "learning_rate": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
    "max_leaf_nodes": {"type": "int", "low": 2, "high": 64, "log": True},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 80, "log": True},
    "l2_regularization": {"type": "float", "low": 1e-6, "high": 10.0, "log": True},
    "max_iter": {"type": "int", "low": 10, "high": 60},
}


def objective(params: dict[str, Any]) -> float:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(random_state=0, **params)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    return float(cross_val_score(model, x, y, cv=folds, scoring="accuracy").mean())


def search(strategy: str, spec: TuningSpec, seed: int, trials: int) -> list[float]:
    """Scores in trial order (one trial per batch, as with parallel=1)."""
    history: list[dict[str, Any]] = []
    scores: list[float] = []
    for number in range(trials):
        if strategy == "random":
            params = tuning.random_point(spec, seed, number)
        else:
            [params] = tuning.bayesian(spec, seed, "maximize", history, 1)
        score = objective(params)
        scores.append(score)
        history.append({"number": number, "params": params, "status": "COMPLETE",
                        "score": score, "running_means": None})  # fmt: skip
    return scores


def trials_to_reach(scores: list[float], target: float) -> int | None:
    best = -1.0
    for index, score in enumerate(scores, start=1):
        best = max(best, score)
        if best >= target:
            return index
    return None


def throughput(spec: TuningSpec, trials: int, workers: int) -> float:
    points = [tuning.random_point(spec, 99, n) for n in range(trials)]
    start = time.perf_counter()
    if workers == 1:
        for params in points:
            objective(params)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(objective, points))
    return trials / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--throughput-trials", type=int, default=8)
    args = parser.parse_args()
    spec = TuningSpec.model_validate(
        {"strategy": "bayesian", "max_trials": args.trials, "space": SPACE}
    )
    print(f"search: {args.trials} trials per strategy, {args.seeds} seeds")
    print(f"{'seed':>4} {'random best':>12} {'bayes best':>11} {'bayes trials to reach':>22}")
    needed: list[float] = []
    for seed in range(args.seeds):
        random_scores = search("random", spec, seed, args.trials)
        bayes_scores = search("bayesian", spec, seed, args.trials)
        target = max(random_scores)
        reach = trials_to_reach(bayes_scores, target)
        needed.append(reach if reach is not None else float("inf"))
        shown = "never" if reach is None else f"{reach} ({reach / args.trials:.2f}x budget)"
        print(f"{seed:>4} {target:>12.4f} {max(bayes_scores):>11.4f} {shown:>22}", flush=True)
    finite = [n for n in needed if n != float("inf")]
    if finite:
        print(
            f"median trials for Bayesian to reach random's best-of-{args.trials}: "
            f"{statistics.median(finite):.0f} ({statistics.median(finite) / args.trials:.2f}x); "
            f"reached in {len(finite)}/{args.seeds} seeds"
        )
    one = throughput(spec, args.throughput_trials, 1)
    two = throughput(spec, args.throughput_trials, 2)
    print(
        f"throughput: 1 parallel {one:.2f} trials/s, 2 parallel {two:.2f} trials/s "
        f"(ratio {two / one:.2f}x)"
    )


if __name__ == "__main__":
    main()
