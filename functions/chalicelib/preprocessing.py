"""Splitting in the step Lambdas: pandas and numpy only (no scikit-learn fits in a Lambda
beside pandas). Row-level cleaning is ``cleaning.py``; learned transforms live in the training
job's sklearn Pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MIN_ROWS = 10


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
