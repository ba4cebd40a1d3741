"""The expression step's formula language: parsed with ``ast``, checked against a small
grammar, evaluated column-wise by numpy; never by Python's eval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import features
from mlcontract import preprocessing as prep

FRAME = pd.DataFrame(
    {
        "a": [1.0, 4.0, -2.0, np.nan, 0.0],
        "b": [2.0, 0.0, 8.0, 1.0, 3.0],
        "petal/length": [1.5, 2.5, 3.5, 4.5, 5.5],
        "flag": [1.0, 0.0, 1.0, 0.0, 1.0],
    }
)
COLUMNS = list(FRAME.columns)


def evaluate(text: str) -> list[float]:
    parsed = prep.parse_expression(text, COLUMNS)
    return features.evaluate_expression(parsed.tree, FRAME).tolist()


def same(left: list[float], right: list[float]) -> bool:
    return all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y)
        for x, y in zip(left, right, strict=True)
    )


NAN = math.nan


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b", [3.0, 4.0, 6.0, NAN, 3.0]),
        ("a - b * 2", [-3.0, 4.0, -18.0, NAN, -6.0]),
        ("-a", [-1.0, -4.0, 2.0, NAN, -0.0]),
        ("+a", [1.0, 4.0, -2.0, NAN, 0.0]),
        ("a ** 2", [1.0, 16.0, 4.0, NAN, 0.0]),
        ("b ** -1", [0.5, NAN, 0.125, 1.0, 1 / 3]),  # 0 ** -1 is inf: missing
        ("(a + 1) * (b - 1)", [2.0, -5.0, -7.0, NAN, 2.0]),
        ("a / b", [0.5, NAN, -0.25, NAN, 0.0]),  # division by zero is missing
        ("abs(a)", [1.0, 4.0, 2.0, NAN, 0.0]),
        ("log(b)", [math.log(2), NAN, math.log(8), 0.0, math.log(3)]),  # log(0): missing
        ("sqrt(a)", [1.0, 2.0, NAN, NAN, 0.0]),
        ("exp(b) / exp(b)", [1.0, 1.0, 1.0, 1.0, 1.0]),
        ("exp(a * 1000)", [NAN, NAN, 0.0, NAN, 1.0]),  # overflow is missing
        ("min(a, b)", [1.0, 0.0, -2.0, NAN, 0.0]),
        ("max(a, b, 3)", [3.0, 4.0, 8.0, NAN, 3.0]),
        ("clip(b, 1, 3)", [2.0, 1.0, 3.0, 1.0, 3.0]),
        ('col("petal/length") * 2', [3.0, 5.0, 7.0, 9.0, 11.0]),
        ("2.5", [2.5] * 5),
        ("1e3 * flag", [1000.0, 0.0, 1000.0, 0.0, 1000.0]),
    ],
)
def test_allowed_grammar(text, expected):
    assert same(evaluate(text), expected), evaluate(text)


def test_columns_are_recorded_in_order_once():
    parsed = prep.parse_expression('a * b + a / col("petal/length")')
    assert parsed.columns == ("a", "b", "petal/length")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a.__class__", "attribute access"),
        ("().__class__.__bases__[0]", "indexing"),
        ("a[0]", "indexing"),
        ("__import__('os').system('true')", "calls attribute access"),
        ("__import__('os')", "calls __import__()"),
        ("eval('1')", "calls eval()"),
        ("open('/etc/passwd')", "calls open()"),
        ("a.real()", "calls attribute access"),
        ("log(a, b)", "takes 1"),
        ("min(a)", "takes 2 to 8"),
        ("clip(a, 1)", "takes 3"),
        ("log(x=a)", "keyword"),
        ("max(*a)", "keyword or starred"),
        ("log", "without calling it"),
        ("col(a)", "one quoted column name"),
        ("col('a', 'b')", "one quoted column name"),
        ("a if b else 1", "if/else"),
        ("a > b", "a comparison"),
        ("a and b", "and/or"),
        ("lambda: 1", "lambda"),
        ("[a for a in b]", "ListComp"),
        ("a // b", "FloorDiv"),
        ("a % b", "Mod"),
        ("a @ b", "MatMult"),
        ("a << 2", "LShift"),
        ("~a", "Invert"),
        ("not a", "Not"),
        ("'text'", "only numbers"),
        ("True + 1", "only numbers"),
        ("None", "only numbers"),
        ("1j", "only numbers"),
        ("f'{a}'", "f-string"),
        ("(x := 1)", ":="),
        ("a ** 100", "exponent 100"),
        ("a ** -11", "exponent -11"),
        ("2 ** 2 ** 2 ** 2", "constant exponent"),
        ("a ** b", "constant exponent"),
        ("9" * 400, "too large"),
        ("1e999", "too large"),
        ("a +", "not a valid formula"),
        ("a; b", "not a valid formula"),
        ("import os", "not a valid formula"),
        ("a\0", "not a valid formula"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("a + " * 130 + "a", "longer than 500"),
        ("-" * 20 + "a", "nested more than 12"),
        ("(" * 30 + "a" + ")" * 30 + " + " + "abs(" * 12 + "a" + ")" * 12, "nested more than"),
        (" + ".join(["a"] * 120), "more than"),
        ("zz + 1", "unknown column 'zz'"),
        ("petal + 1", "unknown column 'petal'"),
    ],
)
def test_rejected_constructs(text, words):
    with pytest.raises(prep.ExpressionError) as caught:
        prep.parse_expression(text, COLUMNS)
    assert words in str(caught.value)


def test_unknown_names_are_only_caught_with_a_schema():
    assert prep.parse_expression("zz + 1").columns == ("zz",)
    with pytest.raises(prep.ExpressionError, match="did you mean 'a'"):
        prep.parse_expression("aa + 1", ["a", "b"])


def test_the_parser_never_evaluates(monkeypatch):
    import builtins

    def refuse(*args, **kwargs):
        raise AssertionError("eval or exec was called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert same(evaluate("max(a, b) ** 2 / 2"), [2.0, 8.0, 32.0, NAN, 4.5])


def test_the_transformer_adds_a_column_and_refuses_text_inputs():
    step = features.ExpressionFeature("ratio", "a / b").fit(FRAME)
    out = step.transform(FRAME).frame()
    assert list(out.columns) == [*COLUMNS, "ratio"]
    assert same(out["ratio"].tolist(), [0.5, NAN, -0.25, NAN, 0.0])
    text = FRAME.assign(city=["x", "y", "z", "x", "y"])
    with pytest.raises(features.FeatureSpecError, match="'city', which is not numeric"):
        features.ExpressionFeature("bad", "city * 2").fit(text)
    with pytest.raises(features.FeatureSpecError, match="already a column"):
        features.ExpressionFeature("a", "b * 2").fit(FRAME)
