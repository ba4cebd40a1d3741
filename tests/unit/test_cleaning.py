"""Row steps in the validate-and-clean Lambda (chalicelib.cleaning): pandas only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from chalicelib import cleaning
from chalicelib.errors import StepError
from mlcontract import preprocessing as prep


def table(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20 + i % 7 for i in range(n)],
            "income": [float(i) * 1000 if i % 5 else None for i in range(n)],
            "city": [["Oslo", "Rome", None, "Lima"][i % 4] for i in range(n)],
            "joined": pd.to_datetime([f"2024-01-{1 + i:02d}" for i in range(n)]),
            "price": [["1.5", " 2 ", "n/a", None, "4e2"][i % 5] for i in range(n)],
            "member": [["yes", "No", "1", "0", "maybe"][i % 5] for i in range(n)],
            "label": [["a", "b"][i % 2] for i in range(n)],
        }
    )


def run(frame: pd.DataFrame, *steps: dict[str, Any]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    return cleaning.apply_row_steps(frame, list(steps))


def test_drop_duplicates_whole_rows_or_by_columns():
    frame = pd.concat([table(), table().head(3)], ignore_index=True)
    out, (report,) = run(frame, {"op": "drop_duplicates"})
    assert len(out) == 20
    assert report == {"step": 0, "op": "drop_duplicates", "rows_in": 23, "rows_out": 20}
    out, _ = run(frame, {"op": "drop_duplicates", "columns": ["age"], "keep": "last"})
    assert sorted(out["age"]) == list(range(20, 27))
    assert out.index.max() == 22  # the last copy kept
    out, _ = run(frame, {"op": "drop_duplicates", "keep": "none"})
    assert len(out) == 17


def test_drop_columns_and_missing():
    out, reports = run(
        table(),
        {"op": "drop_columns", "columns": ["price", "not_there"]},
        {"op": "drop_missing", "columns": ["income"]},
        {"op": "drop_missing", "columns": ["city", "income"], "how": "all"},
    )
    assert "price" not in out.columns
    assert reports[0]["columns_dropped"] == ["price"]
    assert out["income"].notna().all()
    assert [r["rows_out"] for r in reports] == [20, 16, 16]


@pytest.mark.parametrize(
    ("operator", "value", "ages"),
    [
        ("==", 21, [21]),
        ("!=", 21, [20, 22, 23, 24, 25, 26]),
        ("<", 22, [20, 21]),
        ("<=", 22, [20, 21, 22]),
        (">", 25, [26]),
        (">=", 25, [25, 26]),
        ("in", [20, 26], [20, 26]),
        ("not_in", [20, 26], [21, 22, 23, 24, 25]),
    ],
)
def test_filter_rows_numbers(operator, value, ages):
    out, _ = run(
        table(), {"op": "filter_rows", "column": "age", "operator": operator, "value": value}
    )
    assert sorted(set(out["age"])) == ages


def test_filter_rows_missing_values_never_match_a_comparison():
    frame = table()
    out, _ = run(frame, {"op": "filter_rows", "column": "city", "operator": "!=", "value": "Oslo"})
    assert set(out["city"]) == {"Rome", "Lima"}
    out, _ = run(
        frame, {"op": "filter_rows", "column": "city", "operator": "not_in", "value": ["Oslo"]}
    )
    assert set(out["city"]) == {"Rome", "Lima"}
    out, _ = run(frame, {"op": "filter_rows", "column": "city", "operator": "is_null"})
    assert len(out) == 5 and out["city"].isna().all()
    out, _ = run(frame, {"op": "filter_rows", "column": "income", "operator": "not_null"})
    assert len(out) == 16


def test_filter_rows_datetimes_compare_with_iso_text():
    frame = table()
    out, _ = run(
        frame, {"op": "filter_rows", "column": "joined", "operator": ">=", "value": "2024-01-15"}
    )
    assert len(out) == 6
    zoned = frame.assign(joined=frame["joined"].dt.tz_localize("UTC"))
    out, _ = run(
        zoned,
        {"op": "filter_rows", "column": "joined", "operator": "<", "value": "2024-01-03T00:00:00Z"},
    )
    assert len(out) == 2


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ({"op": "filter_rows", "column": "age", "operator": ">", "value": "20"}, "is integer"),
        ({"op": "filter_rows", "column": "city", "operator": "==", "value": 3}, "is text"),
        ({"op": "filter_rows", "column": "joined", "operator": "<", "value": "soon"}, "ISO 8601"),
        ({"op": "filter_rows", "column": "ghost", "operator": "is_null"}, "'ghost' are not in"),
        ({"op": "cast", "columns": ["ghost"], "to": "number"}, "'ghost' are not in"),
        ({"op": "drop_missing", "columns": ["ghost"]}, "'ghost' are not in"),
        (
            {"op": "cast", "columns": ["price"], "to": "number", "errors": "fail"},
            "1 value(s) of column 'price' are not number (e.g. 'n/a')",
        ),
        ({"op": "scale"}, "unknown step 'scale'"),
    ],
)
def test_row_step_errors_name_the_step(step, words):
    with pytest.raises(StepError) as caught:
        run(table(4 if step["op"] == "cast" else 20), {"op": "drop_duplicates"}, step)
    assert str(caught.value).startswith("preprocessing[1]")
    assert words in str(caught.value)


def test_cast_to_each_type():
    frame = table(5)
    out, (report,) = run(frame, {"op": "cast", "columns": ["price"], "to": "number"})
    assert out["price"].tolist()[:3] == [1.5, 2.0, pytest.approx(float("nan"), nan_ok=True)]
    assert out["price"].tolist()[4] == 400.0
    assert report["nulled"] == {"price": 1}
    out, _ = run(frame, {"op": "cast", "columns": ["price"], "to": "integer"})
    assert str(out["price"].dtype) == "Int64"
    assert out["price"].isna().tolist() == [True, False, True, True, False]  # 1.5 is not whole
    out, _ = run(frame, {"op": "cast", "columns": ["member"], "to": "boolean"})
    assert out["member"].tolist()[:4] == [True, False, True, False]
    assert out["member"].isna().tolist()[4]
    out, _ = run(frame, {"op": "cast", "columns": ["age", "income"], "to": "string"})
    assert out["age"].tolist() == ["20", "21", "22", "23", "24"]
    assert out["income"].tolist()[1] == "1000"  # a whole float is written as an integer
    assert out["income"].isna().tolist()[0]
    out, _ = run(frame.assign(s=["2024-03-05T10:00:00Z", "2024-03-05", None, "x", "2024-03-05 12:00+02:00"]),
                 {"op": "cast", "columns": ["s"], "to": "datetime"})  # fmt: skip
    assert out["s"].tolist()[0] == pd.Timestamp("2024-03-05 10:00")
    assert out["s"].tolist()[4] == pd.Timestamp("2024-03-05 10:00")  # UTC
    assert out["s"].isna().tolist() == [False, False, True, True, False]


def test_ingestion_types_iso_text_as_datetime():
    frame = pd.DataFrame(
        {
            "day": ["2024-03-05", "2024-03-06", None],
            "stamp": ["2024-03-05T10:00:00Z", "2024-03-05T11:00:00+01:00", "2024-03-05 09:00"],
            "impossible": ["2024-02-30", "2024-03-01", "2024-03-02"],
            "code": ["20240305", "20240306", "20240307"],
            "text": ["2024-03-05", "later", "2024-03-07"],
            "n": [1, 2, 3],
        }
    )
    out, converted = cleaning.type_datetime_columns(frame)
    assert converted == ["day", "stamp"]
    assert cleaning.column_type(out["day"]) == "datetime"
    assert out["stamp"].nunique() == 2  # 10:00Z and 11:00+01:00 are the same instant
    assert out["impossible"].tolist() == frame["impossible"].tolist()
    assert frame["day"].tolist()[0] == "2024-03-05"  # the input is not changed


def clean_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "empty": [None] * n,
            "label": [["a", "b"][i % 2] for i in range(n)],
            "price": rng.uniform(1, 100, size=n),
        }
    )


def test_clean_reports_like_before_and_more():
    frame = clean_frame()
    frame.loc[0, "label"] = None
    frame = pd.concat([frame, frame.head(2)], ignore_index=True)
    out, report = cleaning.clean(
        frame,
        "label",
        "classification",
        [
            {"op": "drop_duplicates"},
            {"op": "standard_scale"},
            {"op": "drop_missing", "columns": ["x"]},
        ],
    )
    assert report["rows_in"] == 42
    assert report["duplicates_dropped"] == 2
    assert report["missing_rows_dropped"] == 0
    assert report["missing_target_dropped"] == 1
    assert report["empty_columns_dropped"] == ["empty"]
    assert report["rows_out"] == len(out) == 39
    assert report["columns_out"] == 3
    assert [s["op"] for s in report["steps"]] == ["drop_duplicates", "drop_missing"]
    assert report["warnings"] == []
    assert list(out.index) == list(range(39))


def test_clean_refuses_a_continuous_target_for_classification():
    with pytest.raises(StepError, match="target 'price' looks continuous"):
        cleaning.clean(clean_frame(), "price", "classification", [])


def test_clean_refuses_a_target_removed_by_a_step():
    with pytest.raises(StepError, match="removed by the preprocessing steps"):
        cleaning.clean(
            clean_frame(),
            "label",
            "classification",
            # Only possible through a spec validated without a target: clean still checks.
            prep.validate_steps([{"op": "drop_columns", "columns": ["label"]}]),
        )


@pytest.mark.parametrize(
    ("rows", "words"),
    [(5, "only 5 usable rows"), (40, None)],
)
def test_clean_needs_enough_rows(rows, words):
    frame = clean_frame(rows)
    if words is None:
        cleaning.clean(frame, "label", "classification", [])
    else:
        with pytest.raises(StepError, match=words):
            cleaning.clean(frame, "label", "classification", [])


def test_target_profile_feeds_check_target():
    profile = cleaning.target_profile(pd.Series([1.0, 2.0, 2.5, None], name="y"))
    assert profile == {
        "name": "y",
        "type": "number",
        "count": 3,
        "distinct": 3,
        "min": 1.0,
        "max": 2.5,
        "sample": [2.5],
    }
    whole = cleaning.target_profile(pd.Series([1.0, 2.0, None], name="y"))
    assert whole["sample"] == []
    assert prep.check_target("classification", whole) == []
