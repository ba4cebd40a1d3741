"""The scoring contract (``mlcontract.scoring``): one parser for the API, the inference hooks
and the model server. Every entry point must answer a body the same way."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from chalicelib import scoring as api_scoring
from chalicelib.errors import BadRequestError, UnsupportedMediaTypeError
from mlcontract import scoring
from sagemaker_jobs import inference

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
ROWS = [{"a/b": 1.5, "n": 2, "c": "x", "f": True}, {"a/b": None, "n": 3, "c": None, "f": False}]


def encode(body: object) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def parse(body: object, content_type: str = "application/json") -> dict:
    try:
        return api_scoring.parse(encode(body), content_type, SIG)
    except (BadRequestError, UnsupportedMediaTypeError) as exc:  # the API's 400 and 415
        raise exc.__cause__ from None  # type: ignore[misc]


def hooks_answer(body: object, content_type: str = "application/json") -> tuple[str, Any]:
    """What the model's own input_fn says: ("ok", canonical) or ("error", message)."""
    model = inference.LoadedModel(None, {"task": "regression", "signature": {"inputs": SIG}})
    try:
        return "ok", inference.input_fn(encode(body), content_type, model).to_split()
    except ValueError as exc:
        return "error", str(exc)


def api_answer(body: object, content_type: str = "application/json") -> tuple[str, Any]:
    try:
        return "ok", parse(body, content_type)
    except scoring.RequestError as exc:
        return "error", str(exc)


@pytest.mark.parametrize(
    "body",
    [
        CANONICAL,
        {"dataframe_split": {"columns": ["f", "c", "n", "a/b"], "data": [[True, "x", 2, 1.5], [False, None, 3, None]]}},
        {"dataframe_split": {"index": [0, 1], "columns": ["a/b", "n", "c", "f"], "data": [[1.5, 2, "x", True], [None, 3, None, False]]}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"instances": [[1.5, 2, "x", True], [None, 3, None, False]]},
        {"inputs": {"a/b": [1.5, None], "n": [2, 3], "c": ["x", None], "f": [True, False]}},
        {"inputs": ROWS},
        {"dataframe_records": [{**ROWS[0], "extra": 1}, ROWS[1]]},
        {"instances": ROWS, "parameters": {"x": 1}},
        {"dataframe_records": ROWS, "params": {}},
    ],
)  # fmt: skip
def test_every_json_format_becomes_the_same_canonical_body(body: object) -> None:
    assert parse(body) == CANONICAL


def test_mlflow_writes_missing_values_as_nan() -> None:
    # mlflow's own client serialises a missing value as a bare NaN literal.
    body = '{"dataframe_split": {"columns": ["a/b", "n", "c", "f"], "data": [[NaN, 2, NaN, NaN]]}}'
    batch = scoring.parse(body, "application/json", SIG)
    assert math.isnan(batch.columns["a/b"][0]) and math.isnan(batch.columns["f"][0])
    assert batch.columns["c"] == [None]


def test_single_row_object_of_scalars() -> None:
    assert parse({"inputs": {"a/b": 1.0, "n": 2, "c": "x", "f": True}}) == {
        "dataframe_split": {"columns": ["a/b", "n", "c", "f"], "data": [[1.0, 2, "x", True]]}
    }


def test_the_canonical_body_parses_back_to_itself() -> None:
    batch = scoring.parse(json.dumps(CANONICAL), None, SIG)
    again = scoring.parse(json.dumps(batch.to_split()), None, SIG)
    assert again.to_split() == batch.to_split() == CANONICAL


def test_csv_with_header_is_typed_by_the_signature() -> None:
    text = "n,a/b,c,f\n2,1.5,x,true\n3,,,0\n"
    assert parse(text, "text/csv; charset=utf-8") == CANONICAL


BAD = [
    ({}, "exactly one"),
    ({"dataframe_records": ROWS, "inputs": ROWS}, "exactly one"),
    ({"dataframe_records": ROWS, "bogus": 1}, "unexpected key"),
    ({"dataframe_records": [{"a/b": 1.0, "n": 1, "c": "x"}]}, "missing column(s) 'f'"),
    ({"dataframe_records": [{**ROWS[0], "a/b": "1.5"}]}, "'a/b' expects a number"),
    ({"dataframe_records": [{**ROWS[0], "n": True}]}, "'n' expects an integer"),
    ({"dataframe_records": [{**ROWS[0], "n": 2.5}]}, "'n' expects an integer"),
    ({"dataframe_records": [{**ROWS[0], "f": 1}]}, "'f' expects a boolean"),
    ({"dataframe_records": [{**ROWS[0], "c": 5}]}, "'c' expects a string"),
    ({"dataframe_records": [{**ROWS[0], "c": {"x": 1}}]}, "'c' expects a string"),
    ({"dataframe_records": [{**ROWS[0], "a/b": 1e308}]}, "within ±3.4e38"),
    ({"dataframe_records": [{**ROWS[0], "n": 10**22 * 10**20}]}, "within ±3.4e38"),
    ('{"instances": [[Infinity, 1, "x", true]]}', "within ±3.4e38"),
    ({"dataframe_split": {"columns": ["a/b"], "data": [[1, 2]]}}, "row 0"),
    ({"dataframe_split": [1]}, "dataframe_split needs"),
    ({"inputs": {"a/b": [1], "n": [1, 2]}}, "same number of values"),
    ({"instances": "x"}, "list of rows"),
    ({"dataframe_records": [1]}, "must be an object"),
    ([1, 2], "must be an object"),
    ({"instances": []}, "no rows"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ('{"inputs": ' + "[" * 3000 + "]" * 3000 + "}", "nested too deeply"),
    ("{not json", "not valid JSON"),
]


@pytest.mark.parametrize(("body", "needle"), BAD)
def test_bad_bodies_name_the_problem(body: object, needle: str) -> None:
    with pytest.raises(scoring.RequestError) as info:
        parse(body)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [*[(b, "application/json") for b, _ in BAD],
     *[(g, "application/json") for g in (CANONICAL, {"dataframe_records": ROWS}, {"inputs": {"a/b": 1.0, "b": "x"}})],
     ("n,a/b,c,f\n2,1.5,x,true\n", "text/csv"), ("n,a/b,c,f\n1,2\n", "text/csv"), ("x", "application/xml")],
)  # fmt: skip
def test_api_and_model_hooks_answer_alike(body: object, content_type: str) -> None:
    assert api_answer(body, content_type) == hooks_answer(body, content_type)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "header row is required"), ("n,a/b,c,f\n1,2\n", "has 2 fields"), ("n,a/b,c,f\nx,1,a,true\n", "expects an integer"),
     ("n,a/b,c,f\n1,1,a,maybe\n", "expects a boolean"), ("n,n\n1,2\n", "duplicate")],
)  # fmt: skip
def test_bad_csv(text: str, needle: str) -> None:
    with pytest.raises(scoring.RequestError) as info:
        parse(text, "text/csv")
    assert needle in str(info.value)


def test_other_media_types_are_415_and_size_is_capped() -> None:
    with pytest.raises(scoring.UnsupportedMediaTypeRequestError) as info:
        parse("<x/>", "application/xml")
    assert info.value.status == 415
    with pytest.raises(scoring.RequestError, match="at most"):
        parse({"instances": [[1.0, 1, "x", True]] * (scoring.MAX_ROWS + 1)})
