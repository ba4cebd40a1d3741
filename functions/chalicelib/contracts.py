"""Data contracts: column rules declared per dataset, checked with pandera at ingestion.

``{"columns": {"age": {"type": "float", "nullable": false, "min": 0, "max": 120}},
"policy": "quarantine"}``. A contract given to ``POST /datasets`` is kept on the dataset and
checked on every later version (uploads too). Policy ``reject``: the version is refused with
a report per column (counts and examples). ``quarantine``: rows that break a row-level rule
are stored apart (``quarantine.parquet`` beside the data, counted as ``quarantined_rows``);
rules about the table itself (a missing column, an unexpected one under ``strict``) reject.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.errors import BadRequestError

if TYPE_CHECKING:
    import pandas as pd

EXAMPLES = 5

ColumnType = Literal["integer", "float", "number", "string", "boolean", "datetime"]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ColumnContract(_Strict):
    type: ColumnType | None = Field(
        default=None, description="Values are coerced to it; one that will not coerce fails."
    )
    nullable: bool = True
    required: bool = True
    unique: bool = False
    min: float | None = Field(default=None, description="Inclusive lower bound.")
    max: float | None = Field(default=None, description="Inclusive upper bound.")
    allowed: list[Scalar] | None = Field(default=None, min_length=1, max_length=10_000)
    regex: str | None = Field(
        default=None, max_length=500, description="Each text value must match it in full."
    )

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if (self.min is not None or self.max is not None) and self.type in (
            "string",
            "boolean",
        ):
            raise ValueError(f"min/max apply to numbers, not to type {self.type!r}")
        if self.regex is not None and self.type not in (None, "string"):
            raise ValueError("regex applies to string columns")
        return self


class Contract(_Strict):
    columns: dict[str, ColumnContract] = Field(min_length=1, max_length=2000)
    policy: Literal["reject", "quarantine"] = "reject"
    strict: bool = Field(default=False, description="Refuse columns the contract does not name.")


class ContractViolationError(BadRequestError):
    code = "ContractViolation"

    def __init__(self, message: str, report: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = {"violations": report}


_DTYPES = {
    "integer": "Int64",
    "float": "float64",
    "number": "float64",
    "string": "string",
    "boolean": "boolean",
    "datetime": "datetime64[ns]",
}


def _schema(contract: Contract, *, types_only: bool = False) -> Any:
    """The pandera schema; ``types_only``: the coercions (and the table's shape) alone."""
    import pandera.pandas as pa

    columns = {}
    for name, rule in contract.columns.items():
        checks = []
        if not types_only:
            if rule.min is not None:
                checks.append(pa.Check.ge(rule.min))
            if rule.max is not None:
                checks.append(pa.Check.le(rule.max))
            if rule.allowed is not None:
                checks.append(pa.Check.isin(rule.allowed))
            if rule.regex is not None:
                checks.append(pa.Check.str_matches(rf"(?:{rule.regex})\Z"))
        columns[name] = pa.Column(
            _DTYPES[rule.type] if rule.type else None,
            checks=checks,
            nullable=True if types_only else rule.nullable,
            unique=False if types_only else rule.unique,
            required=rule.required,
            coerce=rule.type is not None,
        )
    return pa.DataFrameSchema(columns, strict=contract.strict)


def _failures(schema: Any, frame: pd.DataFrame) -> tuple[Any, Any]:
    """(validated frame or None, failure cases or None)."""
    import pandera.errors as pe

    try:
        return schema.validate(frame, lazy=True), None
    except pe.SchemaErrors as exc:
        return None, exc.failure_cases


def check(frame: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(rows that pass, coerced to the declared types; rows quarantined or None). Raises
    ContractViolationError with the report when the policy rejects.

    Two passes: the type coercions first (a value that does not coerce fails ``type``),
    then every rule on the rows whose values did coerce, so one bad cell does not hide the
    range, null, uniqueness and pattern failures of the others."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    _, type_cases = _failures(_schema(contract, types_only=True), frame)
    cases = [type_cases] if type_cases is not None else []
    if type_cases is not None and type_cases["index"].isna().any():
        report = _report(type_cases)
        raise ContractViolationError(_message(report, "the table breaks its contract"), report)
    type_bad = set() if type_cases is None else {int(i) for i in type_cases["index"].dropna()}
    rest = frame[~frame.index.isin(type_bad)]
    validated, rule_cases = _failures(_schema(contract), rest)
    if rule_cases is not None:
        cases.append(rule_cases)
    if not cases:
        return validated.reset_index(drop=True), None
    all_cases = pd.concat(cases, ignore_index=True)
    report = _report(all_cases)
    if contract.policy == "reject" or all_cases["index"].isna().any():
        raise ContractViolationError(_message(report, "the data breaks its contract"), report)
    bad = {int(i) for i in all_cases["index"].dropna()}
    positions = frame.index.isin(bad)
    kept = frame[~positions]
    if kept.empty:
        raise ContractViolationError(_message(report, "every row breaks the contract"), report)
    validated, again = _failures(_schema(contract), kept)
    if again is not None:  # uniqueness among the kept rows holds: the duplicates all left
        report = _report(again)
        raise ContractViolationError(_message(report, "rows kept still break it"), report)
    # Quarantined rows keep their values as sent, as text (a column may mix types there).
    quarantined = frame[positions].reset_index(drop=True)
    quarantined = quarantined.astype(object).where(quarantined.notna(), None).astype("string")
    return validated.reset_index(drop=True), quarantined


def _message(report: list[dict[str, Any]], what: str) -> str:
    total = sum(r["failures"] for r in report)
    rules = ", ".join(f"{r['column']}: {r['check']}" for r in report[:10])
    return f"{what}: {total} failure(s) ({rules}); nothing was stored"


def _report(cases: pd.DataFrame) -> list[dict[str, Any]]:
    cases = cases.copy()
    cases["rule"] = cases["check"].astype(str).map(_check_label)
    # A missing or unexpected column is named by the failure case itself.
    named = cases["rule"].isin(["required", "strict"]) & cases["column"].isna()
    cases["column"] = cases["column"].where(~named, cases["failure_case"])
    cases["column"] = cases["column"].fillna("").astype(str)
    cases = cases.drop_duplicates(subset=["column", "rule", "index"])
    out = []
    for (column, rule), group in cases.groupby(["column", "rule"], sort=True):
        examples = []
        for _, row in group.head(EXAMPLES).iterrows():
            value = row["failure_case"]
            examples.append(
                {
                    "row": None if _missing(row["index"]) else int(row["index"]),
                    "value": None if _missing(value) else str(value)[:100],
                }
            )
        out.append(
            {
                "column": column or None,
                "check": rule,
                "failures": len(group),
                "examples": examples,
            }
        )
    return out


def _missing(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_label(name: str) -> str:
    """pandera's check names, in the contract's words."""
    if name.startswith("coerce_dtype") or name.startswith("dtype"):
        return "type"
    if name == "not_nullable":
        return "nullable"
    if name == "field_uniqueness":
        return "unique"
    if name == "column_in_dataframe":
        return "required"
    if name == "column_in_schema":
        return "strict"
    for prefix, label in (("greater_than_or_equal_to", "min"), ("less_than_or_equal_to", "max"),
                          ("isin", "allowed"), ("str_matches", "regex")):  # fmt: skip
        if name.startswith(prefix):
            return label
    return name


# Schema column type -> contract type.
_FROM_SCHEMA = {"integer": "integer", "number": "float", "string": "string",
                "boolean": "boolean", "datetime": "datetime"}  # fmt: skip


def inferred(frame: pd.DataFrame) -> Contract:
    """The table's own schema as a contract (``"contract": "inferred"``): every column
    required with its type, no other column (strict), nulls only where there are some
    now; policy reject. Kept on the dataset, it holds later versions to this shape."""
    from chalicelib.datasets import column_type

    columns = {}
    for name in frame.columns:
        kind = column_type(frame[name])
        columns[str(name)] = ColumnContract(
            type=_FROM_SCHEMA.get(kind),  # type: ignore[arg-type]
            nullable=bool(frame[name].isna().any()),
        )
    return Contract(columns=columns, policy="reject", strict=True)
