"""Data contracts on the domain (fake ports): the inferred contract holds later versions to
the first one's shape; rule validation is a 400 at request time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib import datasets
from chalicelib.contracts import ContractViolationError
from chalicelib.schemas import DatasetCreate
from tests.fakes import make_ports


def test_inferred_contract_holds_later_versions(tmp_path: Path) -> None:
    ports = make_ports(tmp_path)
    first = "id,score,when,tag\n1,0.5,2024-01-01,a\n2,,2024-01-02,b\n"
    body = {"name": "locked", "source": {"type": "inline", "data": first}, "contract": "inferred"}
    assert datasets.create(ports, DatasetCreate.model_validate(body))["quarantined_rows"] == 0

    def upload(csv: str) -> dict:
        return datasets.upload(ports, "locked", csv.encode(), "text/csv")

    assert upload("id,score,when,tag\n3,1.5,2024-02-01,c\n")["version"] == 2
    cases = {
        "id,score,when,tag,extra\n3,1.5,2024-02-01,c,x\n": ("extra", "strict"),
        "score,when,tag\n1.5,2024-02-01,c\n": ("id", "required"),
        "id,score,when,tag\nthree,1.5,2024-02-01,c\n": ("id", "type"),
        "id,score,when,tag\n3,1.5,2024-02-01,\n": ("tag", "nullable"),
        "id,score,when,tag\n3,1.5,not a date,c\n": ("when", "type"),
    }
    for csv, (column, rule) in cases.items():
        with pytest.raises(ContractViolationError) as caught:
            upload(csv)
        found = {(v["column"], v["check"]) for v in caught.value.details["violations"]}
        assert (column, rule) in found, (csv, found)
    assert datasets.describe(ports, "locked")["latest_version"] == 2  # nothing half-written


@pytest.mark.parametrize(
    ("contract", "message"),
    [
        ({"columns": {}}, "at least 1 item"),
        ({"columns": {"a": {"type": "float", "min": 5, "max": 1}}}, "min is greater than max"),
        ({"columns": {"a": {"regex": "("}}}, "regex does not compile"),
        ({"columns": {"a": {"type": "integer", "regex": "x"}}}, "regex applies to string"),
        ({"columns": {"a": {"kind": "x"}}}, "Extra inputs"),
        ({"columns": {"a": {}}, "policy": "warn"}, "'reject' or 'quarantine'"),
        ("guess", "inferred"),
    ],
)
def test_bad_contracts_are_refused(contract: object, message: str) -> None:
    body = {"name": "x", "source": {"type": "inline", "data": "a\n1\n"}, "contract": contract}
    with pytest.raises(ValidationError, match=message):
        DatasetCreate.model_validate(body)
