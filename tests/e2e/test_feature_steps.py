"""A preprocessing spec that uses every step kind, from a raw table to predictions served by a
fresh process that has nothing but the model's own ``code/`` directory.

Raw CSV-like table -> ingestion typing (datetimes) -> validation against the schema (as at
pipeline creation) -> the Lambda's row steps -> train.py as a SageMaker job (subprocess) ->
model.joblib + code/{inference,features}.py + code/mlcontract -> a new interpreter loads it
and answers raw rows parsed by mlcontract.scoring, exactly as this process does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from chalicelib import cleaning
from mlcontract import preprocessing as prep
from sagemaker_jobs import inference

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO / "sagemaker_jobs"
TARGET = "label"

EVERY_STEP = [
    {"op": "drop_duplicates"},
    {"op": "drop_columns", "columns": ["junk"]},
    {"op": "drop_missing", "columns": ["city"]},
    {"op": "filter_rows", "column": "age", "operator": ">=", "value": 18},
    {"op": "cast", "columns": ["price_text"], "to": "number"},
    {"op": "impute", "columns": ["age"], "strategy": "median", "add_indicator": True},
    {"op": "clip_outliers", "columns": ["income"], "method": "quantile"},
    {"op": "log_transform", "columns": ["income"]},
    {"op": "power_transform", "columns": ["score_b"]},
    {"op": "expression", "name": "ratio", "expression": "score_a / price_text"},
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
    {"op": "keep_columns", "columns": ["age"]},
    {"op": "variance_threshold"},
    {"op": "select_k_best", "k": 15},
]


def test_every_step_kind_is_in_the_spec():
    assert {s["op"] for s in EVERY_STEP} == set(prep.BY_OP)


def raw_table(n: int, seed: int) -> pd.DataFrame:
    """What a user uploads: text dates, numbers as text, an id, a constant, junk."""
    rng = np.random.default_rng(seed)
    signup = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, size=n), unit="D")
    last_seen = pd.Timestamp("2024-06-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), "h")
    channel = rng.choice(["web", "app", "store"], size=n)
    score_a = rng.normal(size=n)
    income = rng.lognormal(10, 1, size=n)
    signal = 1.5 * score_a + (channel == "app") + (signup.month.to_numpy() > 6) + np.log(income) / 5
    frame = pd.DataFrame(
        {
            "row_id": np.arange(1, n + 1),
            "source": ["export-7"] * n,
            "age": rng.integers(10, 80, size=n).astype(float),
            "income": income,
            "price_text": [f"{p:.2f}" for p in rng.uniform(5, 50, size=n)],
            "city": rng.choice(["Oslo", "Rome", "Lima", "Pune"], size=n),
            "plan": rng.choice(["S", "M", "L"], size=n),
            "channel": channel,
            "review": rng.choice(["great value", "slow delivery", "great app", "bad support"], n),
            "signup": signup.strftime("%Y-%m-%d"),
            "last_seen": last_seen.strftime("%Y-%m-%dT%H:%M:%S"),
            "score_a": score_a,
            "score_b": rng.exponential(size=n),
            "junk": rng.normal(size=n),
            TARGET: np.select([signal < 2.2, signal < 3.4], ["low", "mid"], "high"),
        }
    )
    frame.loc[frame.index % 17 == 0, "age"] = np.nan
    frame.loc[frame.index % 23 == 0, "city"] = None
    return frame


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def isolated_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no SM_*: only what the process is given finds our code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SM_")}
    env.update(extra)
    return env


SERVE = """
import importlib.util, json, sys
code, model_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, code)
# Nothing of the repository is importable: the model's code/ must be enough.
assert importlib.util.find_spec("jobkit") is None
assert importlib.util.find_spec("sagemaker_jobs") is None
import inference, features
assert features.__file__.startswith(code), features.__file__
model = inference.model_fn(model_dir)
out = {}
for path, content_type in zip(sys.argv[3::2], sys.argv[4::2]):
    body = open(path, "rb").read()
    batch = inference.input_fn(body, content_type)
    out[path] = json.loads(inference.output_fn(inference.predict_fn(batch, model))[0])
print(json.dumps(out))
"""


def serve_in_fresh_process(
    tmp: Path, model_dir: Path, bodies: list[tuple[bytes, str]]
) -> list[list[Any]]:
    served = tmp / "served"
    shutil.copytree(model_dir, served)  # model.joblib, metadata.json, code/
    args = [sys.executable, "-c", SERVE, str(served / "code"), str(served)]
    for i, (body, content_type) in enumerate(bodies):
        path = tmp / f"body-{i}"
        path.write_bytes(body)
        args += [str(path), content_type]
    result = run(args, isolated_env(), tmp)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    return [answers[str(tmp / f"body-{i}")]["predictions"] for i in range(len(bodies))]


def csv_body(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(frame.columns)
    for row in frame.itertuples(index=False):
        writer.writerow(["" if pd.isna(v) else v for v in row])
    return buffer.getvalue().encode()


def records_body(frame: pd.DataFrame) -> bytes:
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    return json.dumps({"dataframe_records": records}).encode()


def test_every_step_from_raw_rows_to_a_fresh_serving_process(tmp_path: Path):
    raw = raw_table(700, seed=0)
    raw = pd.concat([raw, raw.head(5)], ignore_index=True)  # duplicates to drop

    # Ingestion: ISO text columns are typed as datetimes (the schema the API validates with).
    ingested, converted = cleaning.type_datetime_columns(raw)
    assert converted == ["signup", "last_seen"]
    schema = {str(c): cleaning.column_type(ingested[c]) for c in ingested.columns}

    # Pipeline creation: the whole spec checked against the schema (what becomes a 400).
    steps = prep.validate_steps(EVERY_STEP, task="classification", target=TARGET, columns=schema)
    profile_column = cleaning.target_profile(ingested[TARGET])
    assert prep.check_target("classification", profile_column) == []

    # The validate-and-clean Lambda: row steps only.
    cleaned, report = cleaning.clean(ingested, TARGET, "classification", steps)
    assert report["duplicates_dropped"] == 5
    assert "junk" not in cleaned.columns
    assert cleaned["age"].dropna().min() >= 18
    assert str(cleaned["price_text"].dtype) == "float64"
    train, test = cleaned.iloc[:450], cleaned.iloc[450:]

    # The training job, as SageMaker runs it.
    (tmp_path / "train").mkdir()
    train.to_parquet(tmp_path / "train" / "part-000.parquet", index=False)
    result = run(
        [
            sys.executable,
            str(JOBS_DIR / "train.py"),
            *("--algorithm", "logistic_regression", "--task", "classification"),
            *("--target", TARGET, "--hyperparameters", '{"max_iter": 500}'),
            *("--preprocessing", json.dumps(steps)),
        ],
        isolated_env(
            SM_CHANNEL_TRAIN=str(tmp_path / "train"),
            SM_MODEL_DIR=str(tmp_path / "model"),
            SM_OUTPUT_DIR=str(tmp_path / "output"),
        ),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    model_dir = tmp_path / "model"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    inputs = {f["name"]: f["type"] for f in metadata["signature"]["inputs"]}
    # Id-like and constant columns are not features and not needed to predict.
    assert [e["name"] for e in metadata["excluded_columns"]] == ["row_id", "source"]
    assert "row_id" not in inputs and "source" not in inputs
    assert inputs["signup"] == inputs["last_seen"] == "datetime"
    assert inputs["price_text"] == "number"
    assert any("'last_seen' expanded" in note for note in metadata["notes"])
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == [
        "datacapture.py",
        "fastpath.py",
        "features.py",
        "inference.py",
        "mlcontract",
        "modelserver.py",
        "telemetry.py",
    ]

    # Raw held-out rows as a client sends them: dates as ISO text (another ISO form for one
    # column), numbers as text in CSV, no id and no constant column.
    held_out = raw.iloc[-150:].drop(columns=["row_id", "source", TARGET, "junk"])
    as_records = held_out.assign(
        price_text=held_out["price_text"].astype(float),
        last_seen=pd.to_datetime(held_out["last_seen"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    bodies = [(csv_body(held_out), "text/csv"), (records_body(as_records), "application/json")]
    served = serve_in_fresh_process(tmp_path, model_dir, bodies)

    # The same answers in this process, through the same hooks and straight from the pipeline.
    loaded = inference.model_fn(str(model_dir))
    here = [
        inference.predict_fn(inference.input_fn(body, content_type, loaded), loaded)
        for body, content_type in bodies
    ]
    assert served == here
    assert served[0] == served[1]  # CSV text and JSON values, two ISO forms: same predictions
    direct = loaded.pipeline.predict(cleaned_features(test, metadata)).tolist()
    # A DataFrame goes through the same checks; datetimes as ISO text, as clients send them.
    as_text = test.drop(columns=[TARGET]).assign(
        signup=test["signup"].dt.strftime("%Y-%m-%d"),
        last_seen=test["last_seen"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    test_rows = inference.predict_fn(as_text, loaded)
    assert test_rows == direct
    accuracy = np.mean(np.asarray(direct) == test[TARGET].to_numpy())
    assert accuracy > 0.6, accuracy


def cleaned_features(frame: pd.DataFrame, metadata: dict[str, Any]) -> pd.DataFrame:
    import jobkit

    return jobkit.coerce_features(frame, metadata["signature"]["inputs"])


def test_a_fitted_pipeline_unpickles_beside_only_features_and_mlcontract(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    import features

    raw = raw_table(300, seed=1)
    frame, _ = cleaning.type_datetime_columns(raw.drop(columns=["row_id", "source", "junk"]))
    frame = frame.assign(price_text=frame["price_text"].astype(float))
    y = frame.pop(TARGET).to_numpy()
    signature = [{"name": str(c), "type": features.signature_type(frame[c])} for c in frame.columns]
    learned = [s for s in prep.validate_steps(EVERY_STEP) if s["op"] in prep.LEARNED_OPS]
    preprocess, _ = features.build_preprocessing(
        signature, learned, task="classification", dense=False, classes=sorted(set(y))
    )
    model = Pipeline([("preprocess", preprocess), ("estimator", LogisticRegression(max_iter=500))])
    rows = cleaned_features(frame, {"signature": {"inputs": signature}})
    model.fit(rows, y)
    expected = model.predict(rows).tolist()

    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(JOBS_DIR / "features.py", code)
    shutil.copytree(JOBS_DIR / "mlcontract", code / "mlcontract")
    joblib.dump(model, tmp_path / "model.joblib")
    rows.to_pickle(tmp_path / "rows.pkl")
    script = (
        "import sys, json, joblib, pandas as pd\n"
        f"sys.path.insert(0, {str(code)!r})\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('sagemaker_jobs') is None\n"
        "model = joblib.load('model.joblib')\n"
        "print(json.dumps(model.predict(pd.read_pickle('rows.pkl')).tolist()))\n"
    )
    result = run([sys.executable, "-c", script], isolated_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
