"""The functions' IAM role grants exactly the AWS calls the code makes (iac/iam_check.py):
nothing missing, nothing unused, no wildcards; and the check itself can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac import iam_check


def test_the_role_grants_exactly_what_the_code_calls() -> None:
    assert iam_check.check() == []


def test_every_adapter_call_is_found_with_its_actions() -> None:
    found = {(c.service, c.method) for c in iam_check.calls()}
    # One per port and the ones that were missing from the role before this check existed.
    for expected in [("s3", "upload_file"), ("dynamodb", "transact_write_items"),
                     ("stepfunctions", "stop_execution"), ("sagemaker", "stop_training_job"),
                     ("sagemaker", "describe_model"), ("sagemaker", "list_tags"),
                     ("sagemaker-runtime", "invoke_endpoint")]:  # fmt: skip
        assert expected in found, expected
    assert not iam_check.unknown_methods(list(iam_check.calls()))


def test_a_missing_or_unused_permission_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = iam_check.TEMPLATE.read_text()
    broken = tmp_path / "template.yaml"
    broken.write_text(
        text.replace("                  - states:StopExecution\n", "", 1).replace(
            "                  - sagemaker:ListTags\n",
            "                  - sagemaker:ListTags\n                  - sagemaker:ListModels\n",
            1,
        )
    )
    monkeypatch.setattr(iam_check, "TEMPLATE", broken)
    problems = iam_check.check()
    assert any("missing" in p and "states:StopExecution" in p for p in problems), problems
    assert any("unused" in p and "sagemaker:ListModels" in p for p in problems), problems
