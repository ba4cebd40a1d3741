"""The fast path: every catalog algorithm's whole pipeline as ONNX, agreeing with
scikit-learn on held-out rows (missing values, unseen categories, every column type), served
from parsed requests without pandas; and the report when it cannot be used."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

import evaluate as evaluate_job
import fastpath
from mlcontract import catalog, scoring
from tests.contract import servekit

SMALL = {
    "random_forest": {"n_estimators": 12, "max_depth": 8},
    "hist_gradient_boosting": {"max_iter": 30},
}
CASES = [
    (algorithm, task) for algorithm, tasks in catalog.ESTIMATORS.items() for task in sorted(tasks)
]
# Catalog estimators skl2onnx 1.20 cannot convert with the options fastpath.py sets (LinearSVC
# refuses "zipmap"): their models are served by scikit-learn, and the report says why.
SKLEARN_ONLY = {("linear_svm", "classification")}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], servekit.Model]:
    """One small model per (algorithm, task) of the catalog, on the mixed-type data."""
    trained = {}
    for algorithm, task in CASES:
        root = tmp_path_factory.mktemp(f"{algorithm}-{task}")
        trained[(algorithm, task)] = servekit.train_model(
            root,
            servekit.mixed_frame(240, seed=1, task=task),
            servekit.mixed_frame(90, seed=2, task=task),
            algorithm,
            task,
            SMALL.get(algorithm),
        )
    return trained


@pytest.mark.parametrize(("algorithm", "task"), CASES)
def test_every_catalog_algorithm_agrees(
    models: dict[tuple[str, str], servekit.Model], algorithm: str, task: str, tmp_path: Path
) -> None:
    model = models[(algorithm, task)]
    report = servekit.build_fast_path(model, tmp_path)

    assert report == json.loads((tmp_path / "report.json").read_text())
    if (algorithm, task) in SKLEARN_ONLY:
        assert report["runtime"] == "sklearn" and "cannot convert" in report["reason"]
        assert not (tmp_path / "model.onnx").exists()
        return
    assert report["runtime"] == "onnx", report["reason"]
    assert report["agrees"] is True and report["reason"] == ""
    # Held-out rows plus probes (each column missing, all missing, unseen categories).
    assert report["checked_rows"] > len(model.test)
    assert (tmp_path / "model.onnx").is_file()

    # Served the way the model server serves it: a parsed request, no DataFrame.
    predictor = fastpath.OnnxPredictor(
        tmp_path / "model.onnx", model.signature, task, model.metadata["classes"]
    )
    rows = model.test.head(40)
    batch = scoring.parse(servekit.split_body(model, rows), scoring.JSON, model.signature)
    got = predictor.predict(batch)
    want = model.expected(rows)
    if task == "classification":
        assert got == want  # the original labels, exactly
        assert set(got) <= set(model.metadata["classes"])
    else:
        np.testing.assert_allclose(got, want, rtol=fastpath.RTOL, atol=fastpath.ATOL)
        assert all(type(v) is float for v in got)


def test_single_rows_with_missing_values(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    model = models[("random_forest", "classification")]
    servekit.build_fast_path(model, tmp_path)
    predictor = fastpath.OnnxPredictor(
        tmp_path / "model.onnx", model.signature, "classification", model.metadata["classes"]
    )
    for record in (
        {"x 1": None, "x/2": 3.0, "count": 2, "flag": True, "colour": None, "city": "Oslo"},
        {"x 1": None, "x/2": None, "count": None, "flag": None, "colour": None, "city": None},
        {"x 1": 0.5, "x/2": -20.0, "count": 9, "flag": False, "colour": "mauve", "city": "Rome"},
    ):
        body = json.dumps({"dataframe_records": [record]})
        batch = scoring.parse(body, scoring.JSON, model.signature)
        frame = pd.DataFrame([record]).astype(object)
        assert predictor.predict(batch) == model.expected(frame.fillna(np.nan))


def test_wine_forest(tmp_path: Path) -> None:
    train, test = servekit.wine_frames()
    model = servekit.train_model(
        tmp_path, train, test, "random_forest", "classification", {"n_estimators": 20}
    )
    report = servekit.build_fast_path(model, tmp_path / "fast")
    assert report["runtime"] == "onnx", report["reason"]
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] < 1e-5


class Centroids(ClassifierMixin, BaseEstimator):
    """An estimator skl2onnx has no converter for."""

    def fit(self, X: Any, y: Any) -> Centroids:  # noqa: N803
        self.classes_ = np.unique(y)
        self.means_ = np.array(
            [np.asarray(X)[np.asarray(y) == c].mean(axis=0) for c in self.classes_]
        )
        return self

    def predict(self, X: Any) -> Any:  # noqa: N803
        distances = ((np.asarray(X)[:, None, :] - self.means_[None]) ** 2).sum(axis=2)
        return self.classes_[distances.argmin(axis=1)]


def test_missing_converter_is_reported(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    import train as train_job

    model = models[("random_forest", "classification")]
    pipeline = train_job.build_pipeline(model.signature, Centroids(), dense=True)
    frame = servekit.mixed_frame(120, seed=3)
    pipeline.fit(model.features(frame), frame[servekit.TARGET].to_numpy())

    report = fastpath.build_fast_path(pipeline, model.signature, model.features(), tmp_path)
    assert report["runtime"] == "sklearn" and report["agrees"] is False
    assert "Centroids" in report["reason"]
    assert not (tmp_path / "model.onnx").exists()
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_disagreement_is_reported(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    model = models[("logistic_regression", "classification")]
    other = models[("random_forest", "classification")]

    def wrong_graph(pipeline: Any, signature: Any, task: str, dtype: str) -> Any:
        return fastpath.to_onnx(other.pipeline, signature, task, dtype)  # another model's graph

    report = fastpath.build_fast_path(
        model.pipeline, model.signature, model.features(), tmp_path, converter=wrong_graph
    )
    assert report["runtime"] == "sklearn" and report["agrees"] is False
    assert "rows get another class" in report["reason"]
    assert report["checked_rows"] > 0
    assert not (tmp_path / "model.onnx").exists()


def test_regression_tolerance_is_enforced(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    model = models[("linear_regression", "regression")]
    shifted = models[("random_forest", "regression")]

    def other_graph(pipeline: Any, signature: Any, task: str, dtype: str) -> Any:
        return fastpath.to_onnx(shifted.pipeline, signature, task, dtype)

    report = fastpath.build_fast_path(
        model.pipeline, model.signature, model.features(), tmp_path, converter=other_graph
    )
    assert report["runtime"] == "sklearn"
    assert f"rtol={fastpath.RTOL}" in report["reason"]
    assert report["max_abs_diff"] > 0


def test_marker_text_goes_to_sklearn(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    model = models[("random_forest", "classification")]
    servekit.build_fast_path(model, tmp_path)
    predictor = fastpath.OnnxPredictor(
        tmp_path / "model.onnx", model.signature, "classification", model.metadata["classes"]
    )
    record = {
        "x 1": 1.0,
        "x/2": 1.0,
        "count": 1,
        "flag": True,
        "colour": fastpath.MISSING_TEXT,
        "city": "Oslo",
    }
    batch = scoring.parse(json.dumps({"instances": [record]}), scoring.JSON, model.signature)
    with pytest.raises(fastpath.NeedsSklearnError):
        predictor.predict(batch)


def test_evaluate_job_writes_the_fast_path(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path
) -> None:
    model = models[("hist_gradient_boosting", "classification")]
    (tmp_path / "test").mkdir()
    model.test.to_parquet(tmp_path / "test" / "part.parquet", index=False)
    argv = ["--model-dir", str(model.archive.parent), "--test-dir", str(tmp_path / "test")]
    argv += ["--output-dir", str(tmp_path / "out")]

    assert evaluate_job.main([*argv, "--fast-path", "on"]) == 0
    report = json.loads((tmp_path / "out" / "fastpath" / "report.json").read_text())
    assert report["runtime"] == "onnx", report["reason"]
    assert (tmp_path / "out" / "fastpath" / "model.onnx").is_file()
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["rows"] == len(model.test)

    # Off by default: the evaluation's outputs are exactly what they were.
    assert evaluate_job.main([*argv[:-1], str(tmp_path / "plain")]) == 0
    # Without the fast path: the summary, the report and its plots (issue "Models").
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "evaluation.json", "plots", "report.json",
    ]  # fmt: skip


def test_evaluate_job_reports_instead_of_failing(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("no room")

    monkeypatch.setattr(fastpath, "build_fast_path", broken)
    model = models[("logistic_regression", "classification")]
    report = evaluate_job.build_fast_path(
        model.pipeline, model.metadata, model.features(), tmp_path / "fastpath"
    )
    assert report["runtime"] == "sklearn"
    assert "MemoryError: no room" in report["reason"]
    assert json.loads((tmp_path / "fastpath" / "report.json").read_text()) == report


def test_serving_builds_no_dataframe(
    models: dict[tuple[str, str], servekit.Model], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models[("hist_gradient_boosting", "classification")]
    servekit.build_fast_path(model, tmp_path)
    predictor = fastpath.OnnxPredictor(
        tmp_path / "model.onnx", model.signature, "classification", model.metadata["classes"]
    )
    body = json.dumps(
        {
            "dataframe_records": [
                {"x 1": 0.1, "x/2": 2.0, "count": 3, "flag": False, "colour": "red", "city": "Lima"}
            ]
        }
    )
    batch = scoring.parse(body, scoring.JSON, model.signature)
    expected = predictor.predict(batch)
    # With pandas impossible to import, the fast path still answers: no DataFrame on the way.
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert predictor.predict(batch) == expected
    with pytest.raises(ImportError):
        import pandas  # noqa: F401


def test_tied_votes_of_a_binary_forest(tmp_path: Path) -> None:
    # 50 trees on noisy labels: rows get 25 votes against 25 (0.02 is not exact in
    # float32, so float32 votes do not tie). scikit-learn takes the
    # first class; so must the graph (float64 votes, first highest probability).
    train = servekit.mixed_frame(300, seed=5)
    test = servekit.mixed_frame(150, seed=6)
    rng = np.random.default_rng(0)
    for frame in (train, test):
        frame[servekit.TARGET] = np.where(rng.random(len(frame)) < 0.5, "yes", "no")
    model = servekit.train_model(
        tmp_path, train, test, "random_forest", "classification", {"n_estimators": 50}
    )
    proba = model.pipeline.predict_proba(model.features())
    assert np.sum(proba[:, 0] == proba[:, 1]) > 0  # the ties are there
    report = servekit.build_fast_path(model, tmp_path / "fast")
    assert report["runtime"] == "onnx", report["reason"]
