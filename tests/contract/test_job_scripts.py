"""The SageMaker job scripts, run as subprocesses with the SM_* contract, on synthetic data."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcontract import scoring
from sagemaker_jobs import evaluate as evaluate_module
from sagemaker_jobs import inference

JOBS_DIR = Path(__file__).resolve().parents[2] / "sagemaker_jobs"

NUMBER = "a/b c"  # "/" and a space: names must never be parsed or sanitised
COLOUR = "colour"
FLAG = "flag"
COUNT = "count"
EMPTY = "empty"  # all null: must be dropped, not crash training
TARGET = "label / ü"
FEATURES = [NUMBER, COLOUR, FLAG, COUNT]
SIGNATURE = [
    {"name": NUMBER, "type": "number"},
    {"name": COLOUR, "type": "string"},
    {"name": FLAG, "type": "boolean"},
    {"name": COUNT, "type": "integer"},
]


def make_columns(seed: int, n: int, task: str) -> dict[str, list[Any]]:
    """Learnable data as plain Python lists (None = missing), ready for JSON and parquet."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.random(n) < 0.5
    count = rng.integers(0, 10, size=n)
    signal = 2.0 * x + 1.5 * (colour == "red") - 1.0 * flag + 0.05 * count
    if task == "binary":
        target: list[Any] = np.where(signal + rng.normal(0, 0.3, n) > 0.5, "yes", "no").tolist()
    elif task == "multiclass":
        target = np.select([signal < -0.5, signal < 1.5], ["low", "mid"], "high").tolist()
    else:
        target = (signal + rng.normal(0, 0.1, n)).tolist()
    numbers: list[Any] = x.tolist()
    colours: list[Any] = colour.tolist()
    for i in range(0, n, 7):
        numbers[i] = None
    for i in range(3, n, 11):
        colours[i] = None
    for i in range(5, n, 29):
        target[i] = None
    return {
        NUMBER: numbers,
        COLOUR: colours,
        FLAG: flag.tolist(),
        COUNT: count.tolist(),
        EMPTY: [None] * n,
        TARGET: target,
    }


def write_parquet(directory: Path, columns: dict[str, list[Any]], parts: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(columns)
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(directory / f"part-{index:03d}.parquet", index=False)
    return directory


def run_job(
    script: str,
    args: list[str],
    tmp: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    job_env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    job_env["SM_OUTPUT_DIR"] = str(tmp / "output")
    job_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(JOBS_DIR / script), *args],
        env=job_env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def train(
    tmp: Path,
    columns: dict[str, list[Any]],
    algorithm: str,
    task: str,
    hyperparameters: str = "{}",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    write_parquet(tmp / "train", columns, parts=2)
    job_env = {"SM_CHANNEL_TRAIN": str(tmp / "train"), "SM_MODEL_DIR": str(tmp / "model")}
    job_env.update(env or {})
    args = ["--algorithm", algorithm, "--task", task, "--target", TARGET]
    args += ["--hyperparameters", hyperparameters, *(extra_args or [])]
    return run_job("train.py", args, tmp, job_env)


def failure_text(tmp: Path) -> str:
    return (tmp / "output" / "failure").read_text(encoding="utf-8")


def make_tarball(model_dir: Path, destination: Path) -> Path:
    """model.tar.gz laid out like SageMaker's: the model directory's files at the root."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary random forest with string labels, trained through the SageMaker contract."""
    tmp = tmp_path_factory.mktemp("classifier")
    result = train(
        tmp,
        make_columns(seed=1, n=300, task="binary"),
        "random_forest",
        "classification",
        hyperparameters='{"n_estimators": 20, "max_depth": 6}',
        # SageMaker appends its own hyperparameters; they must be ignored.
        extra_args=["--seed", "7", "--sagemaker_program", "train.py"],
    )
    assert result.returncode == 0, result.stderr
    return tmp


@pytest.fixture(scope="module")
def loaded(classifier: Path) -> inference.LoadedModel:
    return inference.model_fn(str(classifier / "model"))


# --- train.py -------------------------------------------------------------------------------


def test_train_writes_servable_model(classifier: Path) -> None:
    model_dir = classifier / "model"
    assert (model_dir / "model.joblib").is_file()
    assert (model_dir / "code" / "inference.py").read_bytes() == (
        JOBS_DIR / "inference.py"
    ).read_bytes()
    metadata = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["format_version"] == 1
    assert metadata["task"] == "classification"
    assert metadata["algorithm"] == "random_forest"
    assert metadata["target"] == TARGET
    assert metadata["hyperparameters"] == {"n_estimators": 20, "max_depth": 6}
    assert metadata["seed"] == 7
    assert metadata["signature"] == {"inputs": SIGNATURE}
    assert metadata["classes"] == ["no", "yes"]
    assert metadata["dropped_columns"] == [EMPTY]
    assert metadata["training_rows"] == 300 - len(range(5, 300, 29))
    assert metadata["sklearn_version"] and metadata["pandas_version"]


def test_seed_reaches_the_estimator(loaded: inference.LoadedModel) -> None:
    estimator = loaded.pipeline.named_steps["estimator"]
    assert estimator.random_state == 7
    assert estimator.n_estimators == 20


def test_bad_hyperparameter_value_fails_with_reason(tmp_path: Path) -> None:
    result = train(
        tmp_path,
        make_columns(seed=2, n=60, task="binary"),
        "random_forest",
        "classification",
        hyperparameters='{"n_estimators": -3}',
    )
    assert result.returncode != 0
    assert "n_estimators" in failure_text(tmp_path)
    assert not (tmp_path / "model" / "model.joblib").exists()


def test_linear_regression_cannot_classify(tmp_path: Path) -> None:
    result = train(
        tmp_path, make_columns(seed=3, n=60, task="binary"), "linear_regression", "classification"
    )
    assert result.returncode != 0
    reason = failure_text(tmp_path)
    assert "linear_regression" in reason
    assert "classification" in reason


# --- evaluate.py ----------------------------------------------------------------------------


def test_evaluate_tarred_classifier(classifier: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    make_tarball(classifier / "model", packed)
    test_dir = write_parquet(tmp_path / "test", make_columns(seed=11, n=200, task="binary"))
    result = run_job(
        "evaluate.py",
        ["--model-dir", str(packed), "--test-dir", str(test_dir), "--output-dir", "eval"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text(encoding="utf-8"))
    assert report["task"] == "classification"
    assert report["rows"] == 200 - len(range(5, 200, 29))
    metrics = report["metrics"]
    assert set(metrics) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["accuracy"] > 0.75
    assert metrics["roc_auc"] > 0.8


def test_regression_train_and_evaluate(tmp_path: Path) -> None:
    result = train(
        tmp_path, make_columns(seed=4, n=200, task="regression"), "linear_regression", "regression"
    )
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "model" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["classes"] is None
    test_columns = make_columns(seed=12, n=150, task="regression")
    test_dir = write_parquet(tmp_path / "test", test_columns)
    result = run_job(
        "evaluate.py",
        [
            "--model-dir",
            str(tmp_path / "model"),
            "--test-dir",
            str(test_dir),
            "--output-dir",
            str(tmp_path / "eval"),
            "--metrics",
            "rmse, mae,r2",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["metrics"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    target_std = float(np.nanstd(np.array(test_columns[TARGET], dtype=float)))
    assert 0.0 <= metrics["mae"] <= metrics["rmse"] < target_std
    assert metrics["r2"] > 0.7


def test_roc_auc_on_three_classes_fails(tmp_path: Path) -> None:
    # Hyperparameters the way the SageMaker training toolkit delivers a JSON-object value:
    # rendered "k=v" on the command line, intact in SM_HPS.
    result = train(
        tmp_path,
        make_columns(seed=5, n=150, task="multiclass"),
        "hist_gradient_boosting",
        "classification",
        hyperparameters="max_iter=15",
        env={"SM_HPS": json.dumps({"hyperparameters": {"max_iter": 15}, "target": TARGET})},
    )
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "model" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["classes"] == ["high", "low", "mid"]
    assert metadata["hyperparameters"] == {"max_iter": 15}
    test_dir = write_parquet(tmp_path / "test", make_columns(seed=13, n=60, task="multiclass"))
    result = run_job(
        "evaluate.py",
        [
            "--model-dir",
            str(tmp_path / "model"),
            "--test-dir",
            str(test_dir),
            "--output-dir",
            str(tmp_path / "eval"),
            "--metrics",
            "accuracy,roc_auc",
        ],
        tmp_path,
    )
    assert result.returncode != 0
    reason = failure_text(tmp_path)
    assert "roc_auc" in reason
    assert "3 classes" in reason
    assert "roc_auc" in result.stderr
    assert not (tmp_path / "eval" / "evaluation.json").exists()


def test_safe_extract_rejects_parent_paths(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../escape.txt")
    with pytest.raises(evaluate_module.JobError, match="unsafe path"):
        evaluate_module.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


# --- what is shipped -----------------------------------------------------------------------


def isolated_env(**extra: str) -> dict[str, str]:
    """The environment without PYTHONPATH or SM_*: only the script's own directory helps."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SM_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("train.py", "Training failed: Invalid arguments: the following arguments are required"),
        ("evaluate.py", "Evaluation failed: Invalid arguments: unrecognized arguments: --bogus."),
    ],
)
def test_scripts_run_from_the_shipped_files(tmp_path: Path, script: str, expected: str) -> None:
    # deploy.sh ships sagemaker_jobs/*.py flat with the mlcontract package beside them.
    code = tmp_path / "code"
    code.mkdir()
    for path in JOBS_DIR.glob("*.py"):
        shutil.copy(path, code)
    shutil.copytree(JOBS_DIR / "mlcontract", code / "mlcontract")
    result = subprocess.run(
        [sys.executable, str(code / script), "--bogus"],
        env=isolated_env(SM_OUTPUT_DIR=str(tmp_path / "output")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert failure_text(tmp_path).startswith(expected)


def test_inference_is_standalone(tmp_path: Path) -> None:
    # model.tar.gz holds code/inference.py with code/mlcontract: nothing else of ours.
    shutil.copy(JOBS_DIR / "inference.py", tmp_path)
    shutil.copytree(JOBS_DIR / "mlcontract", tmp_path / "mlcontract")
    result = subprocess.run(
        [sys.executable, "-c", "import inference"],
        env=isolated_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- inference.py ---------------------------------------------------------------------------

ROWS = 12


@pytest.fixture(scope="module")
def sample() -> dict[str, list[Any]]:
    columns = make_columns(seed=21, n=ROWS, task="binary")
    return {name: columns[name] for name in FEATURES}


@pytest.fixture(scope="module")
def expected(loaded: inference.LoadedModel, sample: dict[str, list[Any]]) -> list[Any]:
    # The raw frame, as pandas builds it, straight into the pipeline.
    return loaded.pipeline.predict(pd.DataFrame(sample)).tolist()


def records(sample: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{name: sample[name][i] for name in FEATURES} for i in range(ROWS)]


def payloads(sample: dict[str, list[Any]]) -> dict[str, Any]:
    rows = [[sample[name][i] for name in FEATURES] for i in range(ROWS)]
    with_extra = [{**record, EMPTY: None, "unused": "x"} for record in records(sample)]
    return {
        "dataframe_split": {"dataframe_split": {"columns": FEATURES, "data": rows}},
        "dataframe_split_index": {
            "dataframe_split": {"index": list(range(ROWS)), "columns": FEATURES, "data": rows}
        },
        "dataframe_split_reordered": {
            "dataframe_split": {
                "columns": FEATURES[::-1],
                "data": [row[::-1] for row in rows],
            }
        },
        "dataframe_records": {"dataframe_records": with_extra},
        "instances_dicts": {"instances": records(sample)},
        "instances_lists": {"instances": rows},
        "inputs_columns": {"inputs": sample},
        "inputs_dicts": {"inputs": records(sample)},
        "inputs_lists": {"inputs": rows},
    }


@pytest.mark.parametrize("kind", list(payloads(make_columns(seed=21, n=ROWS, task="binary"))))
def test_every_mlflow_format_predicts_like_the_pipeline(
    kind: str, loaded: inference.LoadedModel, sample: dict[str, list[Any]], expected: list[Any]
) -> None:
    body = json.dumps(payloads(sample)[kind])
    frame = inference.input_fn(body.encode(), "application/json; charset=utf-8")
    assert list(frame.signature.columns) == FEATURES
    predictions = inference.predict_fn(frame, loaded)
    assert predictions == expected
    assert set(predictions) <= {"yes", "no"}
    response, content_type = inference.output_fn(predictions, "application/json")
    assert content_type == "application/json"
    assert json.loads(response) == {"predictions": expected}


def test_csv_request(
    loaded: inference.LoadedModel, sample: dict[str, list[Any]], expected: list[Any]
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FEATURES)
    for record in records(sample):
        writer.writerow(["" if record[name] is None else record[name] for name in FEATURES])
    frame = inference.input_fn(buffer.getvalue(), "text/csv", loaded)
    assert inference.predict_fn(frame, loaded) == expected


def test_predict_fn_validates_frames_built_elsewhere(
    loaded: inference.LoadedModel, sample: dict[str, list[Any]], expected: list[Any]
) -> None:
    assert inference.predict_fn(pd.DataFrame(sample), loaded) == expected
    batch = scoring.parse(json.dumps({"dataframe_records": records(sample)}), None, SIGNATURE)
    assert loaded.pipeline.predict(inference.to_frame(batch)).tolist() == expected


def test_regression_predictions_are_plain_floats() -> None:
    # A tiny in-process model is enough to check output types; training is covered above.
    from sklearn.linear_model import LinearRegression

    pipeline = LinearRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}), [0.0, 2.0, 4.0])
    model = inference.LoadedModel(
        pipeline,
        {"task": "regression", "signature": {"inputs": [{"name": "x", "type": "integer"}]}},
    )
    frame = inference.input_fn('{"inputs": {"x": [3, 4]}}', "application/json", model)
    predictions = inference.predict_fn(frame, model)
    assert all(type(value) is float for value in predictions)
    body, _ = inference.output_fn(predictions, None)
    assert json.loads(body)["predictions"] == pytest.approx([6.0, 8.0])


def test_missing_column_is_named(loaded: inference.LoadedModel, sample: dict[str, Any]) -> None:
    partial = [{k: v for k, v in record.items() if k != NUMBER} for record in records(sample)]
    with pytest.raises(ValueError, match="a/b c"):
        inference.input_fn(json.dumps({"dataframe_records": partial}), "application/json")


@pytest.mark.parametrize(
    ("column", "value", "expected_text"),
    [
        (NUMBER, "not a number", "a number"),
        (NUMBER, True, "a number"),
        (COUNT, 2.5, "an integer"),
        (COLOUR, 3, "a string"),
        (FLAG, "maybe", "a boolean"),
    ],
)
def test_wrong_type_is_rejected(
    loaded: inference.LoadedModel,
    sample: dict[str, Any],
    column: str,
    value: Any,
    expected_text: str,
) -> None:
    rows = records(sample)
    rows[4][column] = value
    with pytest.raises(ValueError, match=expected_text) as info:
        inference.input_fn(json.dumps({"instances": rows}), "application/json", loaded)
    assert repr(column) in str(info.value)
    assert "row 4" in str(info.value)


def test_json_strings_are_not_numbers_and_nulls_are_missing(loaded: inference.LoadedModel) -> None:
    # As MLflow's schema enforcement: a JSON string is not a number (CSV text is parsed).
    row = {NUMBER: "1.5", COLOUR: None, FLAG: True, COUNT: 3}
    with pytest.raises(ValueError, match="expects a number"):
        inference.input_fn(json.dumps({"dataframe_records": [row]}), "application/json")
    row = {NUMBER: float("nan"), COLOUR: None, FLAG: None, COUNT: 3}
    batch = inference.input_fn(json.dumps({"dataframe_records": [row]}), "application/json")
    assert math.isnan(batch.columns[NUMBER][0]) and math.isnan(batch.columns[FLAG][0])
    assert batch.columns[COLOUR] == [None] and batch.columns[COUNT] == [3.0]
    assert len(inference.predict_fn(batch, loaded)) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ('{"instances": [], "inputs": []}', "application/json", "exactly one"),
        ('{"data": []}', "application/json", "exactly one"),
        ("[1, 2]", "application/json", "object"),
        ("{not json", "application/json", "not valid JSON"),
        ('{"instances": []}', "application/json", "no rows"),
        ('{"instances": [[1, 2]]}', "application/json", "4 values"),
        ('{"instances": [{"x": 1}], "extra": 1}', "application/json", "unexpected"),
        ("a,b\n1,2", "application/x-npy", "not supported"),
        (b"\xff\xfe", "text/csv", "UTF-8"),
    ],
)
def test_malformed_requests_raise_value_error(
    loaded: inference.LoadedModel, body: str | bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        inference.input_fn(body, content_type, loaded)


def test_output_fn_rejects_non_json_accept() -> None:
    assert inference.output_fn([1], "*/*")[1] == "application/json"
    with pytest.raises(ValueError, match="Accept"):
        inference.output_fn([1], "text/csv")
