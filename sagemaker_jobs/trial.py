"""SageMaker PROCESSING job: one hyperparameter-tuning trial, scored by k-fold
cross-validation on the training split (the test split is never seen while tuning).

CLI (the training job's options, plus)::

    --train-dir     default /opt/ml/processing/train: the training split (*.parquet)
    --output-dir    default /opt/ml/processing/output: trial.json is written here
    --number        the trial's number in its run
    --metric        the objective metric (mlcontract.metrics)
    --cv-folds      folds (default 3)
    --prune-below   JSON list: per fold, the median running mean of earlier trials; the
                    trial stops (PRUNED) after a fold where its running mean is worse
                    (optuna's MedianPruner rule). Empty: never pruned.

Output ``trial.json``: ``{"number", "params", "status": "COMPLETE"|"PRUNED", "score",
"folds", "running_means", "seconds"}``; ``score`` is the mean over the folds it ran.
A failing trial writes its reason like every job (the run goes on without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jobkit
import modelkit
import train as trainlib
from jobkit import JobError
from mlcontract import catalog


def _build_parser() -> argparse.ArgumentParser:
    parser = trainlib._build_parser()
    parser.add_argument("--train-dir", default="/opt/ml/processing/train")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output")
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--metric", required=True)
    parser.add_argument("--params", default="{}")
    parser.add_argument("--prune-below", default="")
    return parser


def run_trial(args: argparse.Namespace) -> dict[str, Any]:
    watch = modelkit.Stopwatch()
    train_dir = Path(args.train_dir)
    params = json.loads(args.params)
    hyperparameters = {**trainlib._estimator_kwargs(args.hyperparameters), **params}
    steps = trainlib._preprocessing_steps(args.preprocessing, train_dir)
    estimator = trainlib.make_estimator(args.algorithm, args.task, hyperparameters, args.seed)
    data = jobkit.read_parquet_dir(train_dir, label="Training data", channel="train input")
    target = args.target
    if target not in data.columns:
        raise JobError(f"Target column {target!r} not found.")
    data = data[data[target].notna()]
    feature_names = [str(c) for c in data.columns if c != target]
    signature = [
        {"name": name, "type": trainlib.column_type(data[name])}
        for name in feature_names
        if not data[name].isna().all()
    ]
    excluded = {e["name"] for e in trainlib.featurelib.default_exclusions(data, signature, steps)}
    signature = [f for f in signature if f["name"] not in excluded]
    if not signature:
        raise JobError("No usable feature columns.")
    features = jobkit.coerce_features(data, signature)
    labels = jobkit.target_values(data, target, args.task)
    classes = None
    if args.task == "classification":
        classes = [jobkit.json_value(c) for c in sorted(set(labels.tolist()), key=repr)]
    pipeline = trainlib.build_pipeline(
        signature,
        estimator,
        dense=args.algorithm in catalog.DENSE_ONLY,
        steps=steps,
        task=args.task,
        seed=args.seed,
        classes=classes,
    )
    prune_below = json.loads(args.prune_below) if args.prune_below else None
    cv = modelkit.cross_validate(
        pipeline, features, labels, task=args.task, n_folds=args.cv_folds or 3,
        seed=args.seed, metric=args.metric,
        class_weight=trainlib.class_weight_argument(args.class_weight),
        prune_below=prune_below,
    )  # fmt: skip
    return {
        "number": args.number,
        "params": params,
        "status": "PRUNED" if cv["pruned"] else "COMPLETE",
        "score": cv["mean"],
        "folds": cv["folds"],
        "running_means": cv["running_means"],
        "seconds": watch.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args, _ = _build_parser().parse_known_args(
            trainlib._glue_option_values(list(sys.argv[1:] if argv is None else argv))
        )
        result = run_trial(args)
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trial.json").write_text(json.dumps(result, allow_nan=False), encoding="utf-8")
    except Exception as exc:
        return jobkit.report_failure(exc, "Trial failed", "processing")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
