"""Accuracy feedback: ground truth posted by inference id, joined with the captured
predictions, scored per time window.

``POST /endpoints/{name}/feedback`` takes ``{"inference_id": ID, "actuals": [one per row of
that request]}`` or a list of them. They are stored as JSONL under
``feedback/<endpoint>/yyyy/mm/dd/hh/`` (hour of arrival). ``performance(...)`` joins them
with the captures of a window on (inference id, row) — windows are by *inference* time, the
time the prediction was made — and reports per period: ``accuracy`` and ``f1_macro``
(classification) or ``rmse`` and ``mae`` (regression), with how many rows were labelled.
Only sampled requests are captured, so feedback for an uncaptured id cannot be joined; it
is counted in ``unmatched``.

Plain numpy arithmetic (no scikit-learn on Lambda); a test checks it equals sklearn.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

from mlcontract import capture

if TYPE_CHECKING:  # the domain loads no AWS SDK at run time
    from chalicelib.ports import ObjectStore
from mlcontract import monitoring as mon

from . import capture as capture_reader

FEEDBACK_PREFIX = "feedback"
MAX_ITEMS = 1000
Scalar = str | int | float | bool | None
InferenceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inference_id: InferenceId
    actuals: list[Scalar] = Field(min_length=1, max_length=10_000)


class FeedbackBody(RootModel[FeedbackItem | list[FeedbackItem]]):
    def items(self) -> list[FeedbackItem]:
        value = self.root
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("no feedback items")
        if len(items) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} feedback items per request")
        return items


def record(
    store: ObjectStore, endpoint: str, items: Sequence[FeedbackItem], now: dt.datetime | None = None
) -> dict[str, Any]:
    """Store feedback (one object per request, written whole)."""
    when = now or dt.datetime.now(dt.UTC)
    stamp = mon.iso(when)
    lines = [
        json.dumps({"inference_id": i.inference_id, "actuals": i.actuals, "received_at": stamp})
        for i in items
    ]
    name = f"{int(when.timestamp() * 1000)}-{os.urandom(6).hex()}"
    key = f"{FEEDBACK_PREFIX}/{endpoint}/{when.astimezone(dt.UTC):%Y/%m/%d/%H}/{name}.jsonl"
    store.put_bytes(key, ("\n".join(lines) + "\n").encode())
    return {"accepted": len(items), "rows": sum(len(i.actuals) for i in items)}


def load_feedback(
    store: ObjectStore, endpoint: str, since: dt.datetime, until: dt.datetime
) -> dict[str, list[Any]]:
    """inference id -> actuals (the latest posted wins), for feedback received in the range."""
    out: dict[str, tuple[str, list[Any]]] = {}
    for hour in capture.hours(since, until):
        folder = f"{FEEDBACK_PREFIX}/{endpoint}/{hour:%Y/%m/%d/%H}"
        for key in store.list(folder):
            for line in store.get_bytes(key).decode().splitlines():
                if not line.strip():
                    continue
                doc = json.loads(line)
                seen = out.get(doc["inference_id"])
                if seen is None or doc["received_at"] >= seen[0]:
                    out[doc["inference_id"]] = (doc["received_at"], doc["actuals"])
    return {k: v for k, (_, v) in out.items()}


# --- metrics -----------------------------------------------------------------------------


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Accuracy and macro F1 over the union of labels seen (sklearn's defaults)."""
    n = len(y_true)
    labels = sorted({*map(_label, y_true), *map(_label, y_pred)}, key=repr)
    t = [_label(v) for v in y_true]
    p = [_label(v) for v in y_pred]
    correct = sum(1 for a, b in zip(t, p, strict=True) if a == b)
    f1s = []
    for label in labels:
        tp = sum(1 for a, b in zip(t, p, strict=True) if a == label and b == label)
        fp = sum(1 for a, b in zip(t, p, strict=True) if a != label and b == label)
        fn = sum(1 for a, b in zip(t, p, strict=True) if a == label and b != label)
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": correct / n, "f1_macro": sum(f1s) / len(f1s)}


def _label(value: Any) -> Any:
    # JSON gives 1 and 1.0 for the same class; keep text as text.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    import numpy as np  # not at import time: the API Lambda starts without it

    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    err = p - t
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def joined_rows(
    records: Iterable[capture.Captured], actuals: dict[str, list[Any]]
) -> tuple[list[tuple[dt.datetime, Any, Any]], int, set[str]]:
    """(inference time, prediction, actual) per labelled row; rows whose request and
    feedback disagree in length are skipped and counted."""
    rows: list[tuple[dt.datetime, Any, Any]] = []
    mismatched = 0
    matched: set[str] = set()
    for rec in records:
        truth = actuals.get(rec.inference_id)
        if truth is None:
            continue
        try:
            predictions = json.loads(rec.output_body).get("predictions")
        except (ValueError, AttributeError):
            continue
        if not isinstance(predictions, list) or len(predictions) != len(truth):
            mismatched += 1
            continue
        matched.add(rec.inference_id)
        rows.extend(
            (rec.time, pred, act)
            for pred, act in zip(predictions, truth, strict=True)
            if act is not None and pred is not None
        )
    return rows, mismatched, matched


def performance(
    store: ObjectStore,
    endpoint: str,
    task: str,
    start: dt.datetime,
    end: dt.datetime,
    period: int = 3600,
    variants: Sequence[str] = ("AllTraffic",),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Model quality per ``period`` seconds of inference time in ``[start, end)``."""
    if task not in ("classification", "regression"):
        raise ValueError(f"unknown task {task!r}")
    until = now or dt.datetime.now(dt.UTC)
    actuals = load_feedback(store, endpoint, start, max(until, end))
    recs = capture_reader.records(store, endpoint, variants, start, end)
    rows, mismatched, matched = joined_rows(recs, actuals)
    windows: dict[int, list[tuple[Any, Any]]] = {}
    for when, pred, act in rows:
        bucket = int(math.floor(when.timestamp() / period) * period)
        windows.setdefault(bucket, []).append((pred, act))
    score = classification_metrics if task == "classification" else regression_metrics

    def scored(pairs: list[tuple[Any, Any]]) -> dict[str, float]:
        preds, acts = [p for p, _ in pairs], [a for _, a in pairs]
        return score(acts, preds)

    out_windows = [
        {
            "start": mon.iso(float(b)),
            "end": mon.iso(float(b + period)),
            "labelled_rows": len(pairs),
            **scored(pairs),
        }
        for b, pairs in sorted(windows.items())
    ]
    all_pairs = [(p, a) for _, p, a in rows]
    return {
        "endpoint": endpoint,
        "task": task,
        "start": mon.iso(start),
        "end": mon.iso(end),
        "period": period,
        "windows": out_windows,
        "overall": ({"labelled_rows": len(all_pairs), **scored(all_pairs)} if all_pairs else None),
        "feedback_ids": len(actuals),
        "unmatched": len(set(actuals) - matched),
        "length_mismatches": mismatched,
    }


def metric_points(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy/F1 or RMSE/MAE and LabelledRows per window, stamped at the window start."""
    names = {
        "accuracy": mon.ACCURACY,
        "f1_macro": mon.F1,
        "rmse": mon.RMSE,
        "mae": mon.MAE,
        "labelled_rows": mon.LABELLED_ROWS,
    }
    dims = {mon.ENDPOINT: report["endpoint"]}
    points = []
    for window in report["windows"]:
        when = mon.parse_time(window["start"])
        for key, metric in names.items():
            if key in window and window[key] is not None:
                points.append(mon.datum(metric, dims, when, value=window[key]))
    return points
