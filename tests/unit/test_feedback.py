"""Ground truth by inference id -> accuracy / F1 / RMSE / MAE per window, equal to sklearn's."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

import datacapture
from chalicelib.monitoring import capture as capture_reader
from chalicelib.monitoring import feedback
from iac.local.files import FileObjectStore
from mlcontract import monitoring as mon

T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)


def serve(store: FileObjectStore, task: str, seed: int, n_requests: int = 300):
    """Capture n requests of 1-3 rows over three hours; return the truth per id."""
    rng = np.random.default_rng(seed)
    writer = datacapture.CaptureWriter(store.root, "ep")
    truth = {}
    for i in range(n_requests):
        rows = int(rng.integers(1, 4))
        x = rng.normal(size=rows).round(3).tolist()
        if task == "classification":
            actual = rng.choice(["a", "b", "c"], size=rows).tolist()
            pred = [a if rng.random() < 0.7 else str(rng.choice(["a", "b", "c"])) for a in actual]
        else:
            actual = rng.normal(10, 2, size=rows).round(3).tolist()
            pred = (np.array(actual) + rng.normal(0, 1, size=rows)).round(3).tolist()
        body = json.dumps(
            {"dataframe_split": {"columns": ["x"], "data": [[v] for v in x]}}
        ).encode()
        when = (T0 + dt.timedelta(seconds=36 * i)).timestamp()
        writer.capture(
            f"id{i}",
            "AllTraffic",
            body,
            "application/json",
            json.dumps({"predictions": pred}).encode(),
            when=when,
        )
        truth[f"id{i}"] = (when, pred, actual)
    writer.flush()
    return truth


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_performance_per_window_matches_sklearn(tmp_path: Path, task: str) -> None:
    store = FileObjectStore(tmp_path / "objects")
    truth = serve(store, task, seed=1 if task == "classification" else 2)
    labelled = {k: v for i, (k, v) in enumerate(truth.items()) if i % 3 != 0}  # 2/3 get labels
    items = [feedback.FeedbackItem(inference_id=k, actuals=v[2]) for k, v in labelled.items()]
    items.append(feedback.FeedbackItem(inference_id="never-captured", actuals=[1]))
    assert (
        feedback.record(store, "ep", items[:50], now=T0 + dt.timedelta(hours=3))["accepted"] == 50
    )
    feedback.record(store, "ep", items[50:], now=T0 + dt.timedelta(hours=3, minutes=5))
    report = feedback.performance(
        store,
        "ep",
        task,
        T0,
        T0 + dt.timedelta(hours=3),
        period=3600,
        now=T0 + dt.timedelta(hours=4),
    )
    assert [w["start"] for w in report["windows"]] == [
        mon.iso(T0 + dt.timedelta(hours=h)) for h in range(3)
    ]
    assert report["unmatched"] == 1 and report["feedback_ids"] == len(labelled) + 1
    for h, window in enumerate(report["windows"]):
        lo, hi = (
            (T0 + dt.timedelta(hours=h)).timestamp(),
            (T0 + dt.timedelta(hours=h + 1)).timestamp(),
        )
        preds, acts = [], []
        for when, pred, actual in labelled.values():
            if lo <= when < hi:
                preds += pred
                acts += actual
        assert window["labelled_rows"] == len(acts)
        if task == "classification":
            assert window["accuracy"] == pytest.approx(accuracy_score(acts, preds))
            assert window["f1_macro"] == pytest.approx(f1_score(acts, preds, average="macro"))
        else:
            assert window["rmse"] == pytest.approx(mean_squared_error(acts, preds) ** 0.5)
            assert window["mae"] == pytest.approx(mean_absolute_error(acts, preds))
    points = feedback.metric_points(report)
    names = {p["MetricName"] for p in points}
    assert names == (
        {mon.ACCURACY, mon.F1, mon.LABELLED_ROWS}
        if task == "classification"
        else {mon.RMSE, mon.MAE, mon.LABELLED_ROWS}
    )
    assert len([p for p in points if p["MetricName"] == mon.LABELLED_ROWS]) == 3


def test_later_feedback_for_the_same_id_wins(tmp_path: Path) -> None:
    store = FileObjectStore(tmp_path / "objects")
    serve(store, "classification", seed=3, n_requests=2)
    feedback.record(
        store,
        "ep",
        [feedback.FeedbackItem(inference_id="id0", actuals=["zzz"] * 5)],
        now=T0 + dt.timedelta(minutes=1),
    )
    got = feedback.load_feedback(store, "ep", T0, T0 + dt.timedelta(hours=1))
    assert got["id0"] == ["zzz"] * 5
    feedback.record(
        store,
        "ep",
        [feedback.FeedbackItem(inference_id="id0", actuals=["a"])],
        now=T0 + dt.timedelta(minutes=2),
    )
    assert feedback.load_feedback(store, "ep", T0, T0 + dt.timedelta(hours=1))["id0"] == ["a"]


def test_feedback_body_accepts_one_or_a_list_and_refuses_bad_shapes() -> None:
    one = feedback.FeedbackBody.model_validate({"inference_id": "abc", "actuals": [1, 0]})
    assert [i.inference_id for i in one.items()] == ["abc"]
    many = feedback.FeedbackBody.model_validate(
        [{"inference_id": "a", "actuals": ["x"]}, {"inference_id": "b", "actuals": [2.5]}]
    )
    assert len(many.items()) == 2
    for bad in (
        {"inference_id": "abc", "actuals": []},
        {"inference_id": "abc", "actuals": [1], "extra": 1},
        {"inference_id": "../x", "actuals": [1]},
        {"inference_id": "abc", "actuals": [[1, 2]]},
        {"actuals": [1]},
    ):
        with pytest.raises(ValidationError):
            feedback.FeedbackBody.model_validate(bad)
    with pytest.raises(ValueError):
        feedback.FeedbackBody.model_validate([]).items()


def test_load_frame_reads_a_window_of_captures(tmp_path: Path) -> None:
    store = FileObjectStore(tmp_path / "objects")
    serve(store, "regression", seed=4, n_requests=200)
    frame = capture_reader.load_frame(
        store,
        "ep",
        [{"name": "x", "type": "number"}],
        T0 + dt.timedelta(hours=1),
        T0 + dt.timedelta(hours=2),
    )
    assert frame["inference_time"].min() >= T0 + dt.timedelta(hours=1)
    assert frame["inference_time"].max() < T0 + dt.timedelta(hours=2)
    assert set(frame.columns) == {"x", "prediction", "inference_id", "row", "inference_time"}
    assert frame["inference_id"].nunique() == 100
