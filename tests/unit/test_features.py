"""features.py: the learned steps compiled into the model's sklearn preprocessing, and the
defaults training applies where the spec is silent (in-process; the job-level story with
subprocesses is tests/e2e/test_feature_steps.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

import features
from jobkit import JobError
from mlcontract import preprocessing as prep
from sagemaker_jobs import inference
from sagemaker_jobs import train as train_job

N = 240


def raw_frame(seed: int = 0, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.exponential(scale=10.0, size=n),
            "c": rng.choice(["x", "y", "z"], size=n).astype(object),
            "size": rng.choice(["S", "M", "L"], size=n).astype(object),
            "text": rng.choice(["good product", "bad service", "great value", "awful"], size=n),
            "when": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 365 * 24, size=n), unit="h"),
        }
    )
    frame["text"] = frame["text"].astype(object)
    frame.loc[::9, "a"] = np.nan
    frame.loc[::13, "c"] = np.nan
    return frame


def signature_of(frame: pd.DataFrame) -> list[dict[str, str]]:
    return [{"name": str(c), "type": features.signature_type(frame[c])} for c in frame.columns]


def labels(frame: pd.DataFrame, classes: int = 2) -> np.ndarray:
    score = frame["a"].fillna(0).to_numpy() + (frame["c"] == "x").to_numpy()
    if classes == 2:
        return np.where(score > 0.3, "yes", "no")
    return np.select([score < -0.5, score < 0.8], ["lo", "mid"], "hi")


def build(
    steps: list[dict[str, Any]],
    frame: pd.DataFrame | None = None,
    task: str = "classification",
    y: np.ndarray | None = None,
    dense: bool = False,
) -> tuple[Any, pd.DataFrame, np.ndarray]:
    frame = raw_frame() if frame is None else frame
    y = labels(frame) if y is None else y
    signature = signature_of(frame)
    normalized = prep.validate_steps(
        steps, task=task, columns={f["name"]: f["type"] for f in signature}
    )
    classes = sorted(set(y.tolist())) if task == "classification" else None
    pre, _ = features.build_preprocessing(
        signature, normalized, task=task, dense=dense, seed=0, classes=classes
    )
    pre.fit(frame, y)
    return pre, frame, y


def stage_output(pre: Pipeline, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame right after the stage ``name`` (stages are fitted already)."""
    names = [n for n, _ in pre.steps]
    out = pre[: names.index(name) + 1].transform(frame)
    return out.frame() if isinstance(out, features.Columns) else out


def assembled(pre: Pipeline) -> ColumnTransformer:
    return pre.named_steps["assemble"]


def group_of(pre: Pipeline, column: str) -> str:
    for name, _, columns in assembled(pre).transformers_:
        if column in (columns if isinstance(columns, list) else [columns]):
            return name
    raise AssertionError(f"{column} is in no group")


# --- the defaults --------------------------------------------------------------------------


def test_no_steps_no_datetimes_is_the_platform_default():
    frame = raw_frame().drop(columns=["when"])
    pre, _ = features.build_preprocessing(
        signature_of(frame), [], task="classification", dense=False
    )
    # The same ColumnTransformer as before this feature: ONNX-convertible, nothing custom.
    assert isinstance(pre, ColumnTransformer)
    assert [(n, c) for n, _, c in pre.transformers] == [
        ("numeric", ["a", "b"]),
        ("categorical", ["c", "size", "text"]),
    ]
    numeric = pre.transformers[0][1]
    assert [type(s).__name__ for _, s in numeric.steps] == ["SimpleImputer", "StandardScaler"]
    onehot = pre.transformers[1][1].named_steps["onehot"]
    assert onehot.handle_unknown == "ignore"


def test_datetimes_are_expanded_into_parts_by_default():
    pre, frame, _ = build([])
    assert pre.steps[0][0] == "datetime_defaults"
    out = stage_output(pre, "datetime_defaults", frame)
    parts = [f"when_{p}" for p in prep.DEFAULT_DATETIME_PARTS]
    assert "when" not in out.columns
    assert set(parts) <= set(out.columns)
    first = frame["when"].iloc[0]
    assert out["when_year"].iloc[0] == first.year
    assert out["when_hour"].iloc[0] == first.hour
    assert out["when_weekday"].iloc[0] == first.day_of_week
    assert all(group_of(pre, p) == "numeric" for p in parts)


@pytest.mark.parametrize(
    "form",
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S+00:00"],
)
def test_iso_text_gives_the_same_features_as_timestamps(form):
    pre, frame, _ = build(
        [
            {
                "op": "datetime_parts",
                "columns": ["when"],
                "parts": list(prep.DATETIME_PARTS),
                "cyclical": True,
            }
        ]
    )
    as_text = frame.assign(when=frame["when"].dt.strftime(form).astype(object))
    left = pre.transform(frame)
    right = pre.transform(as_text)
    np.testing.assert_array_equal(
        np.asarray(left.todense() if hasattr(left, "todense") else left),
        np.asarray(right.todense() if hasattr(right, "todense") else right),
    )


def test_offsets_and_zones_are_read_as_utc():
    values = pd.Series(
        ["2024-03-05T12:30:00+02:00", "2024-03-05T10:30:00Z", "2024-03-05T10:30:00", None, "bad"],
        dtype=object,
    )
    as_utc = features.to_utc_naive(values)
    assert as_utc[0] == as_utc[1] == as_utc[2] == np.datetime64("2024-03-05T10:30:00")
    assert np.isnat(as_utc[3]) and np.isnat(as_utc[4])
    zoned = pd.Series(pd.to_datetime(["2024-03-05 11:30"]).tz_localize("Europe/Paris"))
    assert features.to_utc_naive(zoned)[0] == np.datetime64("2024-03-05T10:30:00")


def test_iso_text_columns_are_typed_datetime():
    assert (
        features.signature_type(pd.Series(["2024-01-02", None, "2023-12-31T10:00:00Z"]))
        == "datetime"
    )
    assert features.signature_type(pd.Series(["2024-01-02", "soon"])) == "string"
    assert features.signature_type(pd.Series(["20240102", "20240103"])) == "string"
    assert features.signature_type(pd.Series(pd.to_datetime(["2024-01-02"]))) == "datetime"
    assert features.signature_type(pd.Series([1.5, 2.5])) == "number"


def test_id_like_and_constant_columns_are_left_out():
    n = 100
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "row": np.arange(1, n + 1),
            "customer_id": rng.permutation(10**6)[:n] + 10**6,
            "email": [f"user{i}@example.com" for i in range(n)],
            "country": ["NO"] * n,
            "income": rng.integers(1_000, 10**7, size=n),  # all distinct, but a quantity
            "x": rng.normal(size=n),
            "gappy": np.where(np.arange(n) % 10 == 0, np.nan, np.arange(n, dtype=float)),
        }
    )
    signature = signature_of(frame)
    found = features.default_exclusions(frame, signature, [])
    assert [f["name"] for f in found] == ["row", "customer_id", "email", "country", "gappy"]
    assert "constant" in found[3]["reason"]
    spared = prep.validate_steps(
        [{"op": "keep_columns", "columns": ["row"]}, {"op": "standard_scale", "columns": ["gappy"]}]
    )
    assert [f["name"] for f in features.default_exclusions(frame, signature, spared)] == [
        "customer_id",
        "email",
        "country",
    ]


# --- each learned step fits and transforms -------------------------------------------------


def test_impute_fills_with_training_statistics_and_flags():
    pre, frame, _ = build(
        [
            {"op": "impute", "columns": ["a"], "strategy": "mean", "add_indicator": True},
            {"op": "impute", "columns": ["c"], "strategy": "constant", "fill_value": "none"},
        ]
    )
    out = stage_output(pre, "1_impute_text", frame)
    mean = frame["a"].mean()
    assert out["a"].isna().sum() == 0
    assert out.loc[frame["a"].isna(), "a"].eq(mean).all()
    assert out["missingindicator_a"].tolist() == frame["a"].isna().astype(float).tolist()
    assert set(out.loc[frame["c"].isna(), "c"]) == {"none"}
    # The flag is 0/1 already: not rescaled by the defaults.
    assert group_of(pre, "missingindicator_a") == "prepared"
    serving = frame.head(3).assign(a=[np.nan, 1.0, np.nan])
    assert stage_output(pre, "0_impute", serving)["a"].tolist() == [mean, 1.0, mean]


@pytest.mark.parametrize("method", ["quantile", "iqr"])
def test_clip_outliers_uses_bounds_learned_in_training(method):
    frame = raw_frame()
    frame.loc[5, "b"] = 10_000.0
    pre, frame, _ = build(
        [{"op": "clip_outliers", "columns": ["b"], "method": method, "lower": 0.05, "upper": 0.95}],
        frame=frame,
    )
    clipper = pre.named_steps["0_clip_outliers"].transformer_
    values = frame["b"].to_numpy()
    if method == "quantile":
        assert clipper.lower_[0] == pytest.approx(np.quantile(values, 0.05))
        assert clipper.upper_[0] == pytest.approx(np.quantile(values, 0.95))
    else:
        q1, q3 = np.quantile(values, [0.25, 0.75])
        assert clipper.upper_[0] == pytest.approx(q3 + 1.5 * (q3 - q1))
    extreme = frame.head(2).assign(b=[-1e9, 1e9])
    out = stage_output(pre, "0_clip_outliers", extreme)["b"].tolist()
    assert out == [clipper.lower_[0], clipper.upper_[0]]
    assert group_of(pre, "b") == "numeric"  # clipping is not scaling: the default still scales


def test_scalers_and_power_transform():
    pre, frame, _ = build(
        [
            {"op": "standard_scale", "columns": ["a"]},
            {"op": "minmax_scale", "columns": ["b"], "feature_range": [-1, 1]},
            {"op": "power_transform", "columns": ["when_hour"]},
        ]
    )
    out = stage_output(pre, "2_power_transform", frame)
    assert out["a"].mean() == pytest.approx(0.0, abs=1e-9)
    assert out["a"].std(ddof=0) == pytest.approx(1.0)
    assert out["b"].min() == pytest.approx(-1.0) and out["b"].max() == pytest.approx(1.0)
    assert out["when_hour"].mean() == pytest.approx(0.0, abs=1e-6)
    for column in ("a", "b", "when_hour"):
        assert group_of(pre, column) == "prepared"


def test_robust_scale_on_every_numeric_column_when_none_are_named():
    pre, frame, _ = build([{"op": "robust_scale"}])
    out = stage_output(pre, "0_robust_scale", frame)
    assert out["b"].median() == pytest.approx(0.0, abs=1e-9)
    assert group_of(pre, "when_day") == "prepared"  # the default datetime parts too
    assert group_of(pre, "c") == "categorical"


def test_log_transform():
    frame = raw_frame()
    frame.loc[0, "b"] = -3.0
    pre, frame, _ = build([{"op": "log_transform", "columns": ["b"]}], frame=frame)
    out = stage_output(pre, "0_log_transform", frame)["b"]
    assert np.isnan(out.iloc[0])
    assert out.iloc[1:].to_numpy() == pytest.approx(np.log1p(frame["b"].iloc[1:].to_numpy()))


@pytest.mark.parametrize("encode", ["ordinal", "onehot"])
def test_bin(encode):
    pre, frame, _ = build([{"op": "bin", "columns": ["a"], "n_bins": 4, "encode": encode}])
    out = stage_output(pre, "0_bin", frame)
    assert set(out["a"].unique()) == {0.0, 1.0, 2.0, 3.0}
    if encode == "onehot":
        encoder = assembled(pre).named_transformers_["0_bin"]
        assert len(encoder.categories_[0]) == 4
    else:
        assert group_of(pre, "a") == "prepared"


def test_one_hot_groups_rare_values_and_ignores_unknown():
    frame = raw_frame()
    frame.loc[:4, "size"] = "XL"
    pre, frame, _ = build(
        [{"op": "one_hot", "columns": ["size"], "min_frequency": 10}], frame=frame
    )
    names = list(assembled(pre).get_feature_names_out())
    size_names = [n for n in names if n.startswith("0_one_hot__")]
    assert size_names == [
        "0_one_hot__size_L",
        "0_one_hot__size_M",
        "0_one_hot__size_S",
        "0_one_hot__size_infrequent_sklearn",
    ]
    unknown = frame.head(1).assign(size="XXL")
    row = pd.DataFrame(
        pre.transform(unknown).toarray()
        if hasattr(pre.transform(unknown), "toarray")
        else pre.transform(unknown),
        columns=names,
    )
    assert row[size_names].to_numpy().tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_ordinal_encode_in_the_given_order():
    pre, frame, _ = build(
        [
            {
                "op": "ordinal_encode",
                "columns": ["size", "c"],
                "categories": {"size": ["S", "M", "L"]},
            }
        ]
    )
    sample = frame.head(4).assign(size=["S", "M", "L", "XXL"], c=["x", "y", None, "new"])
    out = stage_output(pre, "0_ordinal_encode", sample)
    assert out["size"].tolist() == [0.0, 1.0, 2.0, -1.0]
    assert out["c"].tolist() == [0.0, 1.0, -2.0, -1.0]
    assert group_of(pre, "size") == "prepared"


@pytest.mark.parametrize("classes", [2, 3])
def test_target_encode(classes):
    frame = raw_frame()
    y = labels(frame, classes)
    pre, frame, y = build([{"op": "target_encode", "columns": ["c"]}], frame=frame, y=y)
    out = stage_output(pre, "0_target_encode", frame)
    if classes == 2:
        assert "c" in out.columns
        encoded = pd.Series(stage_output(pre, "0_target_encode", frame.head(60))["c"].to_numpy())
        # x rows are mostly "yes": their encoding is the highest.
        x_value = encoded[frame["c"].head(60).eq("x").to_numpy()].iloc[0]
        assert x_value == encoded.max()
    else:
        assert [c for c in out.columns if c.startswith("c_")] == ["c_hi", "c_lo", "c_mid"]
        assert group_of(pre, "c_mid") == "prepared"


def test_target_encode_for_regression():
    frame = raw_frame()
    y = frame["b"].to_numpy() * 2.0
    pre, frame, _ = build(
        [{"op": "target_encode", "columns": ["size"]}],
        frame=frame.drop(columns=["b"]),
        task="regression",
        y=y,
    )
    assert "size" in stage_output(pre, "0_target_encode", frame).columns


def test_tfidf_learns_a_vocabulary():
    pre, frame, _ = build(
        [{"op": "tfidf", "column": "text", "ngram_range": [1, 2], "max_features": 5}]
    )
    vectorizer = assembled(pre).named_transformers_["0_tfidf"].named_steps["tfidf"]
    assert len(vectorizer.vocabulary_) == 5
    sample = frame.head(2).assign(text=[None, "unseen words only"])
    out = pre.transform(sample)
    dense = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    names = list(assembled(pre).get_feature_names_out())
    tfidf = [i for i, n in enumerate(names) if n.startswith("0_tfidf__")]
    assert dense[:, tfidf].sum() == 0.0


def test_polynomial_features():
    pre, frame, _ = build([{"op": "polynomial", "columns": ["a", "b"], "degree": 2}])
    out = stage_output(pre, "0_polynomial", frame)
    assert {"a", "b", "a^2", "a b", "b^2"} <= set(out.columns)
    a = stage_output(pre, "0_polynomial_impute", frame)["a"]
    assert out["a b"].to_numpy() == pytest.approx((a * frame["b"]).to_numpy())
    interactions, _, _ = build(
        [{"op": "polynomial", "columns": ["a", "b"], "interaction_only": True}]
    )
    assert "a^2" not in stage_output(interactions, "0_polynomial", frame).columns


def test_selection_on_the_final_features():
    frame = raw_frame().assign(flat=1.0)
    pre, frame, _ = build(
        [
            {"op": "keep_columns", "columns": ["flat"]},
            {"op": "variance_threshold"},
            {"op": "select_k_best", "k": 3},
        ],
        frame=frame,
    )
    assert pre.steps[-2][0] == "1_variance_threshold"
    names = assembled(pre).get_feature_names_out()
    kept_by_variance = pre.named_steps["1_variance_threshold"].get_support()
    assert not kept_by_variance[list(names).index("numeric__flat")]
    assert pre.transform(frame).shape[1] == 3
    chosen = names[kept_by_variance][pre.named_steps["2_select_k_best"].get_support()]
    assert "numeric__a" in chosen  # the signal


@pytest.mark.parametrize("score", ["auto", "mutual_info", "chi2"])
def test_k_best_score_functions(score):
    steps = [{"op": "minmax_scale"}, {"op": "select_k_best", "k": 2, "score": score}]
    frame = raw_frame()
    numeric = frame.drop(columns=["text", "c", "size", "when"])
    pre, frame, _ = build(steps, frame=numeric, y=labels(frame))
    assert pre.transform(frame).shape[1] == 2


def test_dense_output_for_estimators_that_need_it():
    pre, frame, _ = build(
        [{"op": "tfidf", "column": "text"}, {"op": "one_hot", "columns": ["c"]}], dense=True
    )
    assert isinstance(pre.transform(frame), np.ndarray)


def test_compile_errors_name_the_step():
    frame = raw_frame()
    signature = signature_of(frame)
    # Each step valid alone (the API's check of the whole list would refuse this already).
    steps = [
        *prep.validate_steps([{"op": "one_hot", "columns": ["c"]}]),
        *prep.validate_steps([{"op": "standard_scale", "columns": ["c"]}]),
    ]
    with pytest.raises(
        features.FeatureSpecError, match=r"1_standard_scale: column 'c' was replaced by 0_one_hot"
    ):
        features.build_preprocessing(signature, steps, task="classification", dense=False)
    steps = prep.validate_steps([{"op": "log_transform", "columns": ["gone"]}])
    with pytest.raises(features.FeatureSpecError, match="'gone' is not a feature"):
        features.build_preprocessing(signature, steps, task="classification", dense=False)
    steps = prep.validate_steps([{"op": "target_encode", "columns": ["c"]}])
    with pytest.raises(features.FeatureSpecError, match="classes are needed"):
        features.build_preprocessing(signature, steps, task="classification", dense=False)


# --- every step in one model: pickles, same predictions ----------------------------------------

EVERY_LEARNED_STEP = [
    {"op": "impute", "columns": ["a"], "strategy": "median", "add_indicator": True},
    {"op": "clip_outliers", "columns": ["b"], "method": "iqr"},
    {"op": "log_transform", "columns": ["b"]},
    {"op": "expression", "name": "ab", "expression": "a * b / clip(b - 2, 0, 1)"},
    {
        "op": "datetime_parts",
        "columns": ["when"],
        "parts": ["month", "hour", "is_weekend", "epoch_days"],
        "cyclical": True,
    },
    {"op": "power_transform", "columns": ["ab"]},
    {"op": "bin", "columns": ["when_epoch_days"], "n_bins": 4},
    {"op": "polynomial", "columns": ["a", "when_is_weekend"]},
    {"op": "robust_scale", "columns": ["a"]},
    {"op": "minmax_scale", "columns": ["when_hour_sin"]},
    {"op": "standard_scale"},
    {"op": "one_hot", "columns": ["c"], "max_categories": 3},
    {"op": "ordinal_encode", "columns": ["size"], "categories": {"size": ["S", "M", "L"]}},
    {"op": "tfidf", "column": "text"},
    {"op": "keep_columns", "columns": ["a"]},
    {"op": "variance_threshold"},
    {"op": "select_k_best", "k": 12},
]


def test_every_learned_step_in_one_model_pickles(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression

    pre, frame, y = build(EVERY_LEARNED_STEP)
    model = Pipeline([("preprocess", pre), ("estimator", LogisticRegression(max_iter=500))])
    model.fit(frame, y)
    assert model.score(frame, y) > 0.8
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(frame), model.predict(frame))
    # Only top-level "features" classes in the pickle: what code/features.py provides.
    modules = {type(step).__module__ for _, step in pre.steps}
    assert "features" in modules and not any(m.startswith("sagemaker_jobs") for m in modules)


# --- train.py with the steps and the defaults ------------------------------------------------


def write_training_data(directory: Path, frame: pd.DataFrame) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "part-000.parquet", index=False)
    return directory


def run_train(
    tmp: Path, frame: pd.DataFrame, *extra: str, algorithm: str = "random_forest"
) -> dict[str, Any]:
    args = train_job._build_parser().parse_args(
        ["--algorithm", algorithm, "--task", "classification", "--target", "label",
         "--hyperparameters", '{"n_estimators": 30}' if algorithm == "random_forest" else "{}", *extra]
    )  # fmt: skip
    return train_job.train(args, write_training_data(tmp / "train", frame), tmp / "model")


def defaults_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, size=n), unit="h")
    hour = when.hour.to_numpy()
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "constant": ["same"] * n,
            "when": when,
            "x": rng.normal(size=n),
            "label": np.where((hour >= 12) ^ (rng.random(n) < 0.05), "pm", "am"),
        }
    )


def test_train_applies_the_defaults(tmp_path: Path):
    frame = defaults_frame()
    metadata = run_train(tmp_path, frame)
    assert metadata["signature"]["inputs"] == [
        {"name": "when", "type": "datetime"},
        {"name": "x", "type": "number"},
    ]
    assert [e["name"] for e in metadata["excluded_columns"]] == ["id", "constant"]
    notes = " | ".join(metadata["notes"])
    assert "'id' left out: id-like" in notes
    assert "'constant' left out: constant" in notes
    assert "'when' expanded into year, month, day, weekday, hour" in notes
    assert (tmp_path / "model" / "code" / "features.py").read_bytes() == Path(
        features.__file__
    ).read_bytes()

    # Serving: ISO text for the date, no id, no constant; the same date in other ISO forms
    # gives the same predictions, equal to the fitted pipeline's on the training frame.
    loaded = inference.model_fn(str(tmp_path / "model"))
    expected = loaded.pipeline.predict(frame[["when", "x"]]).tolist()
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"):
        records = [
            {"when": w.strftime(form), "x": x}
            for w, x in zip(frame["when"], frame["x"], strict=True)
        ]
        body = json.dumps({"dataframe_records": records})
        got = inference.predict_fn(inference.input_fn(body, "application/json", loaded), loaded)
        assert got == expected, form
    # The hour is the signal: learned from the datetime's parts, not from 333 one-hot dates.
    assert np.mean(np.asarray(expected) == frame["label"].to_numpy()) > 0.9


def test_train_compiles_the_preprocessing_argument(tmp_path: Path):
    frame = defaults_frame()
    steps = prep.validate_steps(
        [
            {"op": "drop_duplicates"},  # a row step: ran in the Lambda, ignored here
            {"op": "keep_columns", "columns": ["id"]},
            {"op": "datetime_parts", "columns": ["when"], "parts": ["hour"], "cyclical": True},
            {"op": "expression", "name": "x2", "expression": "x * x"},
        ]
    )
    metadata = run_train(
        tmp_path, frame, "--preprocessing", json.dumps(steps), algorithm="logistic_regression"
    )
    assert [f["name"] for f in metadata["signature"]["inputs"]] == ["id", "when", "x"]
    assert [s["op"] for s in metadata["preprocessing"]] == [
        "keep_columns",
        "datetime_parts",
        "expression",
    ]
    pipeline = inference.model_fn(str(tmp_path / "model")).pipeline
    assert [n for n, _ in pipeline.named_steps["preprocess"].steps][:2] == [
        "2_datetime_parts",
        "3_expression",
    ]


def test_train_reads_a_long_spec_from_the_channel(tmp_path: Path):
    steps = [{"op": "datetime_parts", "columns": ["when"], "parts": ["hour"]}]
    write_training_data(tmp_path / "train", defaults_frame())
    (tmp_path / "train" / train_job.PREPROCESSING_FILE).write_text(json.dumps(steps))
    metadata = run_train(tmp_path, defaults_frame())
    assert metadata["preprocessing"][0]["parts"] == ["hour"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('[{"op": "scale"}]', "preprocessing[0]: unknown step 'scale'"),
        ('[{"op": "bin", "columns": ["x"], "n_bins": 0}]', "parameter 'n_bins' must be >= 2"),
        ("not json", "must be a JSON list"),
    ],
)
def test_train_refuses_a_bad_spec(tmp_path: Path, value: str, words: str):
    with pytest.raises(JobError, match="Invalid --preprocessing") as caught:
        run_train(tmp_path, defaults_frame(), "--preprocessing", value)
    assert words in str(caught.value)


def test_train_explains_when_every_feature_is_left_out(tmp_path: Path):
    frame = defaults_frame()[["id", "constant", "label"]]
    with pytest.raises(JobError, match="left out: constant, id; keep_columns uses them"):
        run_train(tmp_path, frame)


def test_sagemaker_toolkit_decoded_steps_are_accepted():
    steps = [{"op": "standard_scale"}]
    # The toolkit renders a decoded list lossily on the command line; SM_HPS keeps it.
    assert (
        features.steps_from_argument("[{op: standard_scale}]", steps)[0]["op"] == "standard_scale"
    )
    assert features.steps_from_argument("", None) == []
