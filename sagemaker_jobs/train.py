"""SageMaker script-mode TRAINING job: fit one scikit-learn Pipeline on parquet data.

Runs unchanged in the prebuilt SageMaker scikit-learn container and as a local subprocess
started by the local job runner, so it depends only on the SageMaker environment contract:

CLI (hyperparameters arrive as ``--name value`` strings; anything unknown is ignored)::

    --algorithm {logistic_regression,linear_regression,random_forest,hist_gradient_boosting}
    --task {classification,regression}
    --target <column name>
    --hyperparameters <JSON object, default "{}">   estimator keyword arguments
    --seed <int, default 42>
    --preprocessing <JSON list, default none>        the pipeline's normalized preprocessing
                                                     steps (mlcontract.preprocessing); the job
                                                     compiles the learned ones. Longer specs
                                                     may come as preprocessing.json in the
                                                     training channel instead.

Environment:
    SM_CHANNEL_TRAIN  directory with one or more ``*.parquet`` files (read in name order)
    SM_MODEL_DIR      where model.joblib, metadata.json and code/ (inference.py, mlcontract/,
                      modelserver.py, fastpath.py) are written
    SM_OUTPUT_DIR     on failure a one-paragraph reason goes to ``$SM_OUTPUT_DIR/failure``
                      (SageMaker shows it as FailureReason); default /opt/ml/output
    SM_HPS            optional; set by the SageMaker training toolkit (see _estimator_kwargs)

The script runs from a copy of the sagemaker_jobs directory (jobkit.py, features.py and
inference.py must sit next to it), so it imports only the standard library, numpy, pandas,
pyarrow (through pandas), scikit-learn, joblib and its sibling modules jobkit and features.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline

import features as featurelib  # imported as 'features': the name pickles refer to
import jobkit
import modelkit
from jobkit import JobError
from mlcontract import catalog, columns
from mlcontract import preprocessing as prep

FORMAT_VERSION = 1
# Copied into the model's code/ next to inference.py (see train()).
SERVING_FILES = ("modelserver.py", "fastpath.py", "telemetry.py", "datacapture.py")
TASKS = ("classification", "regression")

ALGORITHMS = catalog.ALGORITHMS

_OPTIONS = (
    "--algorithm", "--task", "--target", "--hyperparameters", "--seed", "--preprocessing",
    "--cv-folds", "--cv-metric", "--class-weight", "--data-version",
)  # fmt: skip
# Where a preprocessing spec too long for a hyperparameter (SageMaker: 2500 chars) may sit.
PREPROCESSING_FILE = "preprocessing.json"


def _build_parser() -> argparse.ArgumentParser:
    parser = jobkit.JobArgumentParser(
        description="Train one scikit-learn pipeline (SageMaker script mode).", allow_abbrev=False
    )
    parser.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--target", required=True)
    parser.add_argument("--hyperparameters", default="{}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--preprocessing", default="")
    # Training options: k-fold cross-validation on the training split before the final fit
    # (0: none), the metric it scores, class weights ("balanced" or a JSON object label ->
    # weight) and the dataset version the split came from (recorded with the model).
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--cv-metric", default="")
    parser.add_argument("--class-weight", default="")
    parser.add_argument("--data-version", default="")
    return parser


def class_weight_argument(value: str) -> Any:
    if not value:
        return None
    if value == "balanced":
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in parsed.values()
    ):
        raise JobError(
            "--class-weight must be 'balanced' or a JSON object of positive weights, "
            f"got {value!r}."
        )
    return parsed


def _glue_option_values(argv: list[str]) -> list[str]:
    """Turn ``--target -x`` into ``--target=-x`` for our own options.

    A column name may start with "-", which argparse would otherwise read as another option.
    SageMaker always passes ``--name value`` pairs, so the token after one of our options is
    its value whatever it looks like.
    """
    glued: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _OPTIONS and i + 1 < len(argv):
            glued.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            glued.append(token)
            i += 1
    return glued


def _sm_hps() -> dict[str, Any]:
    raw = os.environ.get("SM_HPS")
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _estimator_kwargs(cli_value: str) -> dict[str, Any]:
    """Parse ``--hyperparameters``.

    The SageMaker training toolkit json-decodes every hyperparameter value and renders a dict
    on the command line as ``k=v,k2=v2`` (lossy). So when the CLI value is not a JSON object,
    the decoded dict is taken from SM_HPS, which the toolkit fills with the same values as JSON.
    Callers that JSON-encode each value (as the SageMaker Python SDK does) never hit this path.
    """
    try:
        parsed = json.loads(cli_value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    from_env = _sm_hps().get("hyperparameters")
    if isinstance(from_env, str):
        try:
            from_env = json.loads(from_env)
        except ValueError:
            from_env = None
    if isinstance(from_env, dict):
        return from_env
    raise JobError(
        f"--hyperparameters must be a JSON object of estimator arguments, got {cli_value!r}."
    )


def _target_name(cli_value: str) -> str:
    """Undo the toolkit's json-decoding of a target name such as "true", "null" or "123"."""
    hps = _sm_hps()
    if "target" not in hps:
        return cli_value
    decoded = hps["target"]
    # The toolkit printed str(decoded) ("True", "" for null); JSON gives back the sent text.
    if decoded is None or isinstance(decoded, (bool, int, float)):
        return json.dumps(decoded)
    return cli_value


def column_type(series: pd.Series) -> str:
    """Signature type of a feature column (``mlcontract.columns``; ISO 8601 text is a
    datetime). Datetimes are expanded into parts and served from ISO 8601 strings."""
    return featurelib.signature_type(series)


def make_estimator(algorithm: str, task: str, hyperparameters: dict[str, Any], seed: int) -> Any:
    try:
        path = catalog.estimator_path(algorithm, task)
    except catalog.HyperparameterError as exc:
        raise JobError(str(exc)[:1].upper() + str(exc)[1:] + ".") from None
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    valid = cls().get_params()
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise JobError(
            f"Unknown hyperparameter(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid names are: {', '.join(sorted(valid))}."
        )
    kwargs = dict(hyperparameters)
    if isinstance(kwargs.get("hidden_layer_sizes"), list):
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
    if "random_state" in valid and "random_state" not in kwargs:
        kwargs["random_state"] = seed
    estimator = cls(**kwargs)
    # sklearn only validates values inside fit(), i.e. after preprocessing the whole data set;
    # checking up front fails a bad value in seconds. Private API, hence the guard.
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise JobError(f"Invalid hyperparameter for {cls.__name__}: {exc}") from exc
    return estimator


def build_pipeline(
    signature: list[dict[str, str]],
    estimator: Any,
    dense: bool,
    steps: list[dict[str, Any]] | None = None,
    *,
    task: str = "",
    seed: int = 0,
    classes: list[Any] | None = None,
    notes: list[str] | None = None,
) -> Pipeline:
    """The learned preprocessing steps (defaults where the spec is silent: numbers
    median-imputed and scaled, text one-hot encoded, datetimes expanded; see features.py)
    followed by the estimator. What the defaults did is appended to ``notes``."""
    try:
        preprocess, made = featurelib.build_preprocessing(
            signature, steps or [], task=task, dense=dense, seed=seed, classes=classes
        )
    except featurelib.FeatureSpecError as exc:
        raise JobError(f"Preprocessing: {exc}") from None
    if notes is not None:
        notes.extend(made)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def _preprocessing_steps(cli_value: str, train_dir: Path) -> list[dict[str, Any]]:
    spec_file = train_dir / PREPROCESSING_FILE
    if not cli_value and spec_file.is_file():
        cli_value = spec_file.read_text(encoding="utf-8")
    try:
        return featurelib.steps_from_argument(cli_value, _sm_hps().get("preprocessing"))
    except (featurelib.FeatureSpecError, ValueError) as exc:
        raise JobError(f"Invalid --preprocessing: {exc}") from None


def train(args: argparse.Namespace, train_dir: Path, model_dir: Path) -> dict[str, Any]:
    inference_src = Path(__file__).with_name("inference.py")
    if not inference_src.is_file():
        raise JobError(
            "inference.py must be shipped next to train.py (upload the whole sagemaker_jobs "
            "directory as source_dir) so the model artifact is servable."
        )
    target = _target_name(args.target)
    if not target:
        raise JobError("--target must name a column.")
    hyperparameters = _estimator_kwargs(args.hyperparameters)
    steps = _preprocessing_steps(args.preprocessing, train_dir)
    estimator = make_estimator(args.algorithm, args.task, hyperparameters, args.seed)

    data = jobkit.read_parquet_dir(train_dir, label="Training data", channel="training channel")
    if target not in data.columns:
        available = ", ".join(repr(str(c)) for c in list(data.columns)[:50])
        raise JobError(f"Target column {target!r} not found; columns are: {available}.")
    data = data[data[target].notna()]
    if data.empty:
        raise JobError(f"No training rows: every value of target {target!r} is missing.")

    feature_names = [str(c) for c in data.columns if c != target]
    dropped = [name for name in feature_names if data[name].isna().all()]
    signature = [
        {"name": name, "type": column_type(data[name])}
        for name in feature_names
        if name not in dropped
    ]
    # Id-like and constant columns are not features (unless a step names them): left out of
    # the signature, so predictions need not send them.
    excluded = featurelib.default_exclusions(data, signature, steps)
    left_out = {e["name"] for e in excluded}
    signature = [f for f in signature if f["name"] not in left_out]
    notes = [f"column {e['name']!r} left out: {e['reason']}" for e in excluded]
    if not signature:
        hint = (
            f" (left out: {', '.join(sorted(left_out))}; keep_columns uses them)"
            if excluded
            else ""
        )
        raise JobError(f"No usable feature columns besides target {target!r}{hint}.")
    features = jobkit.coerce_features(data, signature)

    labels = jobkit.target_values(data, target, args.task)
    target_classes = None
    if args.task == "classification":
        target_classes = [jobkit.json_value(c) for c in np.unique(labels)]

    pipeline = build_pipeline(
        signature,
        estimator,
        dense=args.algorithm in catalog.DENSE_ONLY,
        steps=steps,
        task=args.task,
        seed=args.seed,
        classes=target_classes,
        notes=notes,
    )
    print(
        f"Fitting {type(estimator).__name__} on {len(features)} rows, "
        f"{len(signature)} features (dropped all-null: {dropped})",
        flush=True,
    )
    for note in notes:
        print(f"Note: {note}", flush=True)
    # Callers that build the namespace themselves may predate the training options.
    class_weight = class_weight_argument(getattr(args, "class_weight", ""))
    cv_folds = int(getattr(args, "cv_folds", 0) or 0)
    cv = None
    if cv_folds:
        if not 2 <= cv_folds <= 20:
            raise JobError(f"--cv-folds must be 0 or between 2 and 20, got {cv_folds}.")
        metric = getattr(args, "cv_metric", "") or (
            "accuracy" if args.task == "classification" else "r2"
        )
        cv = modelkit.cross_validate(
            pipeline, features, labels, task=args.task, n_folds=cv_folds,
            seed=args.seed, metric=metric, class_weight=class_weight,
        )  # fmt: skip
        cv.pop("running_means")
        cv.pop("pruned")
        print(f"Cross-validation: {json.dumps(cv)}", flush=True)
    fit_kwargs = modelkit.fit_kwargs(estimator, class_weight, labels)
    pipeline.fit(features, labels, **fit_kwargs)

    classes = None
    if args.task == "classification":
        classes = [jobkit.json_value(c) for c in pipeline.classes_]
    metadata = {
        "format_version": FORMAT_VERSION,
        "task": args.task,
        "algorithm": args.algorithm,
        "target": target,
        "hyperparameters": hyperparameters,
        "seed": args.seed,
        "signature": {"inputs": signature},
        "classes": classes,
        "training_rows": len(features),
        "dropped_columns": dropped,
        "excluded_columns": excluded,
        "preprocessing": [s for s in steps if s["op"] not in prep.ROW_OPS],
        "notes": notes,
        "sklearn_version": sklearn.__version__,
        "pandas_version": pd.__version__,
        # Provenance: what a model version records to be reproduced.
        "effective_hyperparameters": modelkit.json_params(estimator),
        "class_weight": class_weight,
        "cross_validation": cv,
        "data": {
            "version": getattr(args, "data_version", "") or None,
            "sha256": modelkit.data_hash(train_dir),
        },
        "libraries": modelkit.library_versions(),
    }

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_dir / "model.joblib")
    (model_dir / "metadata.json").write_text(
        json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    code_dir = model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    shutil.copyfile(inference_src, code_dir / "inference.py")
    # The pipeline pickles classes from features.py: the model unpickles only beside it.
    shutil.copyfile(Path(featurelib.__file__), code_dir / "features.py")
    # The standalone model server and its fast path runtime travel with the model, so that
    # `python code/modelserver.py serve .` serves an unpacked archive anywhere.
    for name in SERVING_FILES:
        source = inference_src.with_name(name)
        if source.is_file():
            shutil.copyfile(source, code_dir / name)
        else:
            print(
                f"warning: {name} is not next to train.py; the model ships without it", flush=True
            )
    # The hooks parse requests with the contract package: it travels with the model.
    contract = Path(columns.__file__).resolve().parent
    shutil.copytree(
        contract,
        code_dir / "mlcontract",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    return metadata


def main(argv: list[str] | None = None) -> int:
    try:
        args, unknown = _build_parser().parse_known_args(
            _glue_option_values(list(sys.argv[1:] if argv is None else argv))
        )
        if unknown:
            print(f"Ignoring unknown arguments: {unknown}", flush=True)
        train_dir = Path(os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
        model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
        metadata = train(args, train_dir, model_dir)
    except Exception as exc:
        return jobkit.report_failure(exc, "Training failed", "training")
    print(f"Model written to {model_dir} ({metadata['training_rows']} rows)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
