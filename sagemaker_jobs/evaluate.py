"""SageMaker PROCESSING job: score a model written by train.py on held-out parquet data.

Runs unchanged in the prebuilt SageMaker scikit-learn container and as a local subprocess.

CLI::

    --model-dir   default /opt/ml/processing/model: model.tar.gz (as SageMaker writes it) or
                  the extracted model.joblib + metadata.json
    --test-dir    default /opt/ml/processing/test: *.parquet files (searched recursively)
    --output-dir  default /opt/ml/processing/evaluation: evaluation.json is written here
    --metrics     comma-separated; default every metric that applies to the model
    --fast-path   off (default) or on: also convert the whole pipeline to ONNX, check it
                  against scikit-learn on the test rows, and write
                  ``<output-dir>/fastpath/model.onnx`` (only if it agrees) and
                  ``<output-dir>/fastpath/report.json`` (see fastpath.py). Never fails the job:
                  a model that cannot be converted gets a report saying why.
                  ``only``: nothing but the fast path, written straight into
                  ``<output-dir>`` (the separate fast-path job the pipeline starts after
                  Register, off its critical path); no evaluation.json.

Metrics: classification accuracy, precision_macro, recall_macro, f1_macro, roc_auc (binary
only; included by default when the model is binary and has predict_proba); regression rmse,
mae, r2. Target column and task come from the model's metadata.json.

Output: ``{"metrics": {name: float}, "rows": int, "task": str}`` (a metric that is undefined on
the data, e.g. r2 on one row, is null).

On failure the reason is printed to stderr and written to ``$SM_OUTPUT_DIR/failure`` when
SM_OUTPUT_DIR is set (local runner), else to /opt/ml/output/message inside a SageMaker
processing container (shown as ExitMessage); the exit code is non-zero.

Like train.py, it imports its shared helpers from the sibling module jobkit.py, which must sit
next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

import jobkit
import modelkit
import plotkit
import reportkit
from jobkit import JobError
from mlcontract import archive, metrics

METRICS_BY_TASK = {task: metrics.for_task(task) for task in ("classification", "regression")}


def _build_parser() -> argparse.ArgumentParser:
    parser = jobkit.JobArgumentParser(
        description="Evaluate a trained model on parquet test data.", allow_abbrev=False
    )
    parser.add_argument("--model-dir", default="/opt/ml/processing/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    parser.add_argument("--metrics", default=None)
    parser.add_argument("--fast-path", choices=("off", "on", "only"), default="off")
    # Champion/challenger: the version behind the deployment alias, scored on the same rows
    # on --champion-metric (absent: no champion yet).
    parser.add_argument("--champion-dir", default=None)
    parser.add_argument("--champion-metric", default="")
    return parser


def safe_extract(model_archive: Path, destination: Path) -> None:
    """Extract a model.tar.gz, refusing members that could write outside ``destination``."""
    try:
        archive.safe_extract(model_archive, destination)
    except archive.ArchiveError as exc:
        raise JobError(str(exc)[:1].upper() + str(exc)[1:] + ".") from None


def locate_model(model_dir: Path, scratch: Path) -> Path:
    """Directory holding model.joblib and metadata.json (extracting model.tar.gz if needed)."""
    if (model_dir / "model.joblib").is_file() and (model_dir / "metadata.json").is_file():
        return model_dir
    packed = model_dir / "model.tar.gz"
    if not packed.is_file():
        raise JobError(
            f"No model found in {str(model_dir)!r}: expected model.tar.gz or "
            "model.joblib with metadata.json."
        )
    safe_extract(packed, scratch)
    if not (scratch / "model.joblib").is_file() or not (scratch / "metadata.json").is_file():
        raise JobError("model.tar.gz does not contain model.joblib and metadata.json at its root.")
    return scratch


def choose_metrics(requested: str | None, task: str, pipeline: Any) -> list[str]:
    available = METRICS_BY_TASK[task]
    if requested is None or not requested.strip():
        n_classes = len(pipeline.classes_) if task == "classification" else None
        return metrics.defaults(task, n_classes, modelkit.has_proba(pipeline))
    names = []
    for raw in requested.split(","):
        name = raw.strip().lower()
        if not name or name in names:
            continue
        if name not in available:
            other = [t for t, metrics in METRICS_BY_TASK.items() if name in metrics]
            if other:
                raise JobError(
                    f"Metric {name!r} is for {other[0]} models but this model's task is {task}; "
                    f"use one of: {', '.join(available)}."
                )
            raise JobError(f"Unknown metric {name!r}; for {task} use: {', '.join(available)}.")
        names.append(name)
    if not names:
        raise JobError("--metrics names no metric.")
    if "roc_auc" in names:
        n_classes = len(pipeline.classes_)
        if n_classes != 2:
            raise JobError(
                f"roc_auc is only computed for binary classification; this model has "
                f"{n_classes} classes."
            )
        if not modelkit.has_scores(pipeline):
            raise JobError("roc_auc needs class scores but the model has none.")
    for name in names:
        if metrics.BY_NAME[name].needs_proba and not modelkit.has_proba(pipeline):
            raise JobError(
                f"{name} needs class probabilities but the model has none (e.g. an SVM "
                "without probability=true)."
            )
    return names


def compute_metrics(
    names: list[str], task: str, pipeline: Any, features: pd.DataFrame, y_true: np.ndarray
) -> dict[str, float | None]:
    return modelkit.metric_values(names, pipeline, features, y_true)


def artefact_facts(model_dir: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """The sha256 of the model archive this job evaluated (None when it was given unpacked)
    and the facts from its metadata.json that the registry keeps."""
    packed = model_dir / "model.tar.gz"
    return {
        "sha256": archive.sha256_of(packed) if packed.is_file() else None,
        "signature": metadata["signature"]["inputs"],
        "classes": metadata.get("classes"),
        "training_rows": metadata.get("training_rows"),
        "excluded_columns": metadata.get("excluded_columns", [])[:200],
        "preprocessing": metadata.get("preprocessing", []),
        "notes": metadata.get("notes", [])[:50],
        # Provenance (train.py): recorded on the model version.
        "seed": metadata.get("seed"),
        "effective_hyperparameters": metadata.get("effective_hyperparameters"),
        "class_weight": metadata.get("class_weight"),
        "cross_validation": metadata.get("cross_validation"),
        "data": metadata.get("data"),
        "libraries": metadata.get("libraries"),
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        location = locate_model(Path(args.model_dir), Path(scratch))
        metadata = json.loads((location / "metadata.json").read_text(encoding="utf-8"))
        pipeline = joblib.load(location / "model.joblib")
    task = metadata.get("task")
    if task not in METRICS_BY_TASK:
        raise JobError(f"metadata.json has an unknown task {task!r}.")
    target: str = metadata["target"]
    signature: list[dict[str, str]] = metadata["signature"]["inputs"]
    names = choose_metrics(args.metrics, task, pipeline) if args.fast_path != "only" else []

    data = jobkit.read_parquet_dir(Path(args.test_dir), label="Test data")
    if target not in data.columns:
        raise JobError(f"Test data has no target column {target!r}.")
    data = data[data[target].notna()]
    if data.empty:
        raise JobError(f"No test rows: every value of target {target!r} is missing.")
    missing = [f["name"] for f in signature if f["name"] not in data.columns]
    if missing:
        raise JobError(f"Test data is missing feature column(s): {', '.join(map(repr, missing))}.")
    features = jobkit.coerce_features(data, signature)
    if args.fast_path == "only":
        return build_fast_path(pipeline, metadata, features, Path(args.output_dir))

    y_true = jobkit.target_values(data, target, task)
    if task == "classification":
        classes = {jobkit.json_value(c) for c in pipeline.classes_}
        if not any(jobkit.json_value(label) in classes for label in np.unique(y_true)):
            raise JobError(
                f"No test label matches a model class (model classes: "
                f"{sorted(map(repr, classes))[:10]}); check the target column's type."
            )

    metrics = compute_metrics(names, task, pipeline, features, y_true)
    champion = None
    if args.champion_metric:
        champion = score_champion(args, task, data, target, pipeline, features, y_true)
    report = {
        "metrics": metrics,
        "rows": len(features),
        "task": task,
        # What Register records on the model version, so it needs no second download.
        "artefact": artefact_facts(Path(args.model_dir), metadata),
        "champion": champion,
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The full report (per class, confusion matrix, curves, residuals) beside the summary.
    full = reportkit.build(task, pipeline, features, y_true)
    full["metrics"] = metrics
    full["cross_validation"] = metadata.get("cross_validation")
    full["champion"] = champion
    full["importance"], full["plots"] = importance_and_plots(
        full, pipeline, features, y_true, output_dir / "plots", seed=int(metadata.get("seed") or 0)
    )
    (output_dir / "report.json").write_text(
        json.dumps(full, allow_nan=False, default=str), encoding="utf-8"
    )
    if args.fast_path == "on":
        build_fast_path(pipeline, metadata, features, output_dir / "fastpath")
    (output_dir / "evaluation.json").write_text(
        json.dumps(report, indent=2, allow_nan=False), encoding="utf-8"
    )
    return report


def importance_and_plots(
    full: dict[str, Any],
    pipeline: Any,
    features: pd.DataFrame,
    y_true: np.ndarray,
    plots_dir: Path,
    seed: int,
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Permutation importance of each input column (on at most 1,000 test rows, top 20) and
    the PNG plots. Trouble here is printed, never raised: the evaluation stands without them."""
    importance: list[dict[str, Any]] | None = None
    try:
        from sklearn.inspection import permutation_importance

        rows = features.sample(min(len(features), 1000), random_state=seed)
        result = permutation_importance(
            pipeline, rows, y_true[features.index.get_indexer(rows.index)], n_repeats=3,
            random_state=seed,
        )  # fmt: skip
        ranked = sorted(
            zip(features.columns, result.importances_mean, result.importances_std, strict=True),
            key=lambda item: -item[1],
        )[:20]
        importance = [
            {"feature": str(name), "mean": float(mean), "std": float(std)}
            for name, mean, std in ranked
        ]
    except Exception as exc:
        print(f"Permutation importance skipped: {type(exc).__name__}: {exc}", flush=True)
    try:
        values = [float(item["mean"]) for item in importance] if importance else None
        return importance, plotkit.write_all(full, values, plots_dir)
    except Exception as exc:
        print(f"Plots skipped: {type(exc).__name__}: {exc}", flush=True)
        return importance, []


def score_champion(
    args: argparse.Namespace,
    task: str,
    data: pd.DataFrame,
    target: str,
    pipeline: Any,
    features: pd.DataFrame,
    y_true: np.ndarray,
) -> dict[str, Any]:
    """The candidate and the champion on the same rows and metric. A champion that cannot be
    scored (e.g. it needs columns this data lacks) is reported, not raised."""
    metric = args.champion_metric
    candidate = modelkit.metric_values([metric], pipeline, features, y_true)[metric]
    out: dict[str, Any] = {"metric": metric, "candidate": candidate, "champion": None}
    if not args.champion_dir or not Path(args.champion_dir).is_dir():
        out["error"] = "no champion model was given"
        return out
    try:
        with tempfile.TemporaryDirectory() as scratch:
            location = locate_model(Path(args.champion_dir), Path(scratch))
            their_meta = json.loads((location / "metadata.json").read_text(encoding="utf-8"))
            champion = joblib.load(location / "model.joblib")
        signature = their_meta["signature"]["inputs"]
        missing = [f["name"] for f in signature if f["name"] not in data.columns]
        if missing:
            raise JobError(f"the champion needs column(s) {', '.join(missing[:10])}")
        their_features = jobkit.coerce_features(data, signature)
        out["champion"] = modelkit.metric_values([metric], champion, their_features, y_true)[metric]
    except Exception as exc:
        out["error"] = f"the champion could not be scored: {type(exc).__name__}: {exc}"[:500]
    return out


def build_fast_path(
    pipeline: Any, metadata: dict[str, Any], features: pd.DataFrame, out_dir: Path
) -> dict[str, Any]:
    """The ONNX fast path and its agreement report (fastpath.py). A failure here is reported,
    never raised: the model is still served by scikit-learn."""
    try:
        import fastpath

        report: dict[str, Any] = fastpath.build_fast_path(
            pipeline,
            metadata["signature"]["inputs"],
            features,
            out_dir,
            task=metadata["task"],
            classes=metadata.get("classes"),
        )
    except Exception as exc:
        report = {
            "runtime": "sklearn",
            "agrees": False,
            "reason": f"building the fast path failed: {type(exc).__name__}: {exc}",
            "checked_rows": 0,
            "max_abs_diff": None,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.onnx").unlink(missing_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"Fast path: {json.dumps(report)}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        report = evaluate(args)
    except Exception as exc:
        return jobkit.report_failure(exc, "Evaluation failed", "processing")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
