"""Cleaning and splitting in the step Lambdas: pandas and numpy only (no scikit-learn fits
in a Lambda beside pandas). Learned transforms live in the training job's sklearn Pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.errors import StepError

if TYPE_CHECKING:
    import pandas as pd

MIN_ROWS = 10


def clean(
    frame: pd.DataFrame, target: str, task: str, steps: list[dict[str, Any]]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    report: dict[str, Any] = {"rows_in": len(frame)}
    if target not in frame.columns:
        raise StepError(f"target column {target!r} is not in the dataset")
    for step in steps:
        op = step["op"]
        if op == "drop_columns":
            frame = frame.drop(columns=[c for c in step["columns"] if c in frame.columns])
        elif op == "drop_duplicates":
            before = len(frame)
            frame = frame.drop_duplicates()
            report["duplicates_dropped"] = before - len(frame)
        elif op == "drop_missing":
            before = len(frame)
            frame = frame.dropna(subset=step.get("columns"))
            report["missing_rows_dropped"] = before - len(frame)
    before = len(frame)
    frame = frame[frame[target].notna()]
    report["missing_target_dropped"] = before - len(frame)
    empty = [c for c in frame.columns if c != target and frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    report["empty_columns_dropped"] = empty
    if len(frame) < MIN_ROWS:
        raise StepError(f"only {len(frame)} usable rows after cleaning; at least {MIN_ROWS} needed")
    if frame.shape[1] < 2:
        raise StepError("no feature columns are left after cleaning")
    if task == "classification":
        classes = frame[target].nunique()
        if classes < 2:
            raise StepError(f"the target {target!r} has a single class; classification needs two")
    report["rows_out"] = len(frame)
    report["columns_out"] = int(frame.shape[1])
    return frame.reset_index(drop=True), report


def split(
    frame: pd.DataFrame, target: str, task: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified by class where every class has two rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(frame)
    counts = frame[target].value_counts()
    if task == "classification" and counts.min() >= 2:
        test_idx: list[np.ndarray] = []
        labels = frame[target].to_numpy()
        for label in counts.index:
            idx = np.flatnonzero(labels == label)
            rng.shuffle(idx)
            take = min(max(1, round(len(idx) * test_size)), len(idx) - 1)
            test_idx.append(idx[:take])
        test = np.sort(np.concatenate(test_idx))
    else:
        perm = rng.permutation(n)
        take = min(max(1, round(n * test_size)), n - 1)
        test = np.sort(perm[:take])
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
