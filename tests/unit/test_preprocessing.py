from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chalicelib.cleaning import clean
from chalicelib.errors import StepError
from chalicelib.preprocessing import split


def frame(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "empty": [None] * n,
            "cat": rng.choice(["a", "b"], size=n),
            "y": rng.choice(["p", "q", "r"], size=n, p=[0.6, 0.3, 0.1]),
        }
    )


def test_clean_drops_missing_targets_empty_columns_and_duplicates() -> None:
    df = frame()
    df.loc[3, "y"] = None
    df = pd.concat([df, df.iloc[[0, 1]]], ignore_index=True)
    out, report = clean(df, "y", "classification", [{"op": "drop_duplicates"}])
    assert report["rows_in"] == 102 and report["duplicates_dropped"] == 2
    assert report["missing_target_dropped"] == 1 and report["rows_out"] == 99
    assert report["empty_columns_dropped"] == ["empty"] and "empty" not in out
    assert out["y"].notna().all()


def test_clean_applies_drop_columns_and_drop_missing() -> None:
    df = frame()
    df.loc[0, "x"] = None
    out, report = clean(df, "y", "classification", [
        {"op": "drop_columns", "columns": ["cat"]}, {"op": "drop_missing", "columns": ["x"]},
    ])  # fmt: skip
    assert "cat" not in out and report["missing_rows_dropped"] == 1 and len(out) == 99


@pytest.mark.parametrize(
    ("df", "needle"),
    [
        (frame(5), "usable rows"),
        (frame().assign(y="p"), "has 1 class"),
        (frame()[["y"]], "no feature columns"),
    ],
)
def test_clean_refuses_data_that_cannot_train(df: pd.DataFrame, needle: str) -> None:
    with pytest.raises(StepError, match=needle):
        clean(df, "y", "classification", [])


def test_split_is_seeded_stratified_and_disjoint() -> None:
    df = frame(1000).reset_index(drop=True)
    df["row"] = range(len(df))
    train, test = split(df, "y", "classification", 0.2, seed=7)
    again_train, again_test = split(df, "y", "classification", 0.2, seed=7)
    assert train.equals(again_train) and test.equals(again_test)
    assert set(train["row"]).isdisjoint(test["row"]) and len(train) + len(test) == 1000
    full = df["y"].value_counts(normalize=True)
    held = test["y"].value_counts(normalize=True)
    for label in full.index:
        assert held[label] == pytest.approx(full[label], abs=0.01)
    other_train, _ = split(df, "y", "classification", 0.2, seed=8)
    assert not other_train["row"].equals(train["row"])


def test_split_regression_and_tiny_classes() -> None:
    df = pd.DataFrame({"x": range(50), "y": [float(i) for i in range(50)]})
    train, test = split(df, "y", "regression", 0.3, seed=1)
    assert len(test) == 15 and len(train) == 35
    rare = pd.DataFrame({"x": range(20), "y": ["a"] * 19 + ["b"]})  # one 'b': not stratifiable
    train, test = split(rare, "y", "classification", 0.25, seed=1)
    assert len(train) + len(test) == 20 and len(test) == 5
