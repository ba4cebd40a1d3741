"""Column typing: which signature type a column of data has.

Datasets (profile and schema), training (the model signature) and serving (input checks) all
type columns through ``infer``, so a column is the same type everywhere. The input is what any
dataframe library can give without this module importing it: the dtype's name and the
distinct Python types of the non-null values.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Iterable
from typing import Final, Literal

ColumnType = Literal["integer", "number", "boolean", "string", "datetime"]
TYPES: Final[tuple[ColumnType, ...]] = ("integer", "number", "boolean", "string", "datetime")
NUMERIC: Final = frozenset({"integer", "number"})

_INT_PREFIXES = ("int", "uint", "Int", "UInt")
_FLOAT_PREFIXES = ("float", "Float", "double", "halffloat")


def infer(dtype: str, value_types: Iterable[type] = ()) -> ColumnType:
    """The signature type of a column whose dtype is named ``dtype`` (``str(series.dtype)``
    in pandas, ``str(field.type)`` in pyarrow) and whose non-null values have the Python
    types ``value_types`` (only needed for ``object`` columns).

    Rules: booleans are ``boolean``; integer dtypes ``integer``; float dtypes ``number``;
    datetime dtypes (with or without a time zone) ``datetime``; an object column is typed by
    its values (all bool, all int, int and float, all datetime/date) and is ``string``
    otherwise — mixed types, text, categories, anything else.
    """
    name = dtype.lower() if dtype else ""
    if name in ("bool", "boolean", "bool_"):
        return "boolean"
    if dtype.startswith(_INT_PREFIXES):
        return "integer"
    if dtype.startswith(_FLOAT_PREFIXES):
        return "number"
    if name.startswith(("datetime64", "timestamp", "date32", "date64")):
        return "datetime"
    if name in ("object", "mixed"):
        return _by_values(set(value_types))
    return "string"


def _by_values(kinds: set[type]) -> ColumnType:
    if not kinds:
        return "string"
    if all(issubclass(k, bool) or k.__name__ == "bool_" for k in kinds):
        return "boolean"
    if any(issubclass(k, bool) or k.__name__ == "bool_" for k in kinds):
        return "string"  # True next to 3 or "x": only text holds both
    if all(_is_int(k) for k in kinds):
        return "integer"
    if all(_is_int(k) or _is_float(k) for k in kinds):
        return "number"
    if all(issubclass(k, _dt.date) or k.__name__ == "Timestamp" for k in kinds):
        return "datetime"
    return "string"


def _is_int(kind: type) -> bool:
    return issubclass(kind, int) or kind.__name__.startswith(("int", "uint"))


def _is_float(kind: type) -> bool:
    return issubclass(kind, float | decimal.Decimal) or kind.__name__.startswith("float")


# ISO 8601 as every entry point accepts it, on every Python version (datetime.fromisoformat
# accepts more on 3.11 than on the 3.10 of the SageMaker image, so it cannot be the rule):
# a calendar date with dashes, optionally a time and a UTC offset ("Z" or +HH[:MM]).
ISO_DATETIME_PATTERN: Final = (
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_ISO = re.compile(ISO_DATETIME_PATTERN)


def parse_iso_datetime(text: str) -> _dt.datetime | None:
    """An ISO 8601 date or time as a naive UTC datetime (an offset is applied), or None when
    the text is not one (or names an impossible date)."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        value = _dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0),
            int(second or 0), micro,
        )  # fmt: skip
    except ValueError:
        return None
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        delta = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if delta >= _dt.timedelta(hours=24):
            return None
        value -= sign * delta
    return value
