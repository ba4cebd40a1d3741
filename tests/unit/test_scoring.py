from __future__ import annotations

import json

import pytest

from chalicelib import scoring
from chalicelib.errors import BadRequestError, UnsupportedMediaTypeError

SIG = [
    {"name": "a/b", "type": "number"},
    {"name": "n", "type": "integer"},
    {"name": "c", "type": "string"},
    {"name": "f", "type": "boolean"},
]
CANONICAL = {
    "dataframe_split": {
        "columns": ["a/b", "n", "c", "f"],
        "data": [[1.5, 2, "x", True], [None, 3, None, False]],
    }
}


def parse(body: object, content_type: str = "application/json") -> dict:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return scoring.parse(raw, content_type, SIG)


ROWS = [{"a/b": 1.5, "n": 2, "c": "x", "f": True}, {"a/b": None, "n": 3, "c": None, "f": False}]


@pytest.mark.parametrize(
    "body",
    [
        CANONICAL,
        {"dataframe_split": {"columns": ["f", "c", "n", "a/b"], "data": [[True, "x", 2, 1.5], [False, None, 3, None]]}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"instances": [[1.5, 2, "x", True], [None, 3, None, False]]},
        {"inputs": {"a/b": [1.5, None], "n": [2, 3], "c": ["x", None], "f": [True, False]}},
        {"inputs": ROWS},
        {"dataframe_records": [{**ROWS[0], "extra": 1}, ROWS[1]]},
    ],
)  # fmt: skip
def test_every_json_format_becomes_the_same_canonical_body(body: object) -> None:
    assert parse(body) == CANONICAL


def test_csv_with_header_is_typed_by_the_signature() -> None:
    text = "n,a/b,c,f\n2,1.5,x,true\n3,,,0\n"
    assert parse(text, "text/csv; charset=utf-8") == CANONICAL


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "exactly one"),
        ({"dataframe_records": ROWS, "inputs": ROWS}, "exactly one"),
        ({"dataframe_records": [{"a/b": 1.0, "n": 1, "c": "x"}]}, "missing columns: ['f']"),
        ({"dataframe_records": [{**ROWS[0], "a/b": "1.5"}]}, "'a/b' expects number"),
        ({"dataframe_records": [{**ROWS[0], "n": True}]}, "'n' expects integer"),
        ({"dataframe_records": [{**ROWS[0], "f": 1}]}, "'f' expects boolean"),
        ({"dataframe_records": [{**ROWS[0], "c": 5}]}, "'c' expects string"),
        ({"dataframe_split": {"columns": ["a/b"], "data": [[1, 2]]}}, "row 0"),
        ({"dataframe_split": [1]}, "dataframe_split needs"),
        ({"inputs": {"a/b": [1], "n": [1, 2]}}, "equal length"),
        ({"instances": "x"}, "list of rows"),
        ({"dataframe_records": [1]}, "must be an object"),
        ([1, 2], "must be an object"),
        ({"instances": []}, "no rows"),
    ],
)
def test_bad_bodies_name_the_problem(body: object, needle: str) -> None:
    with pytest.raises(BadRequestError, match=None) as info:
        parse(body)
    assert needle in info.value.message


def test_non_finite_numbers_are_rejected() -> None:
    with pytest.raises(BadRequestError, match="finite"):
        scoring.parse(b'{"instances": [[NaN, 1, "x", true]]}', "application/json", SIG)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "header row is required"), ("n,a/b,c,f\n1,2\n", "has 2 fields"), ("n,a/b,c,f\nx,1,a,true\n", "expects integer"),
     ("n,a/b,c,f\n1,1,a,maybe\n", "expects boolean")],
)  # fmt: skip
def test_bad_csv(text: str, needle: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse(text, "text/csv")
    assert needle in info.value.message


def test_other_media_types_are_415_and_size_is_capped() -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        parse("<x/>", "application/xml")
    with pytest.raises(BadRequestError, match="at most"):
        parse({"instances": [[1.0, 1, "x", True]] * (scoring.MAX_ROWS + 1)})
