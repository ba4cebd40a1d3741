"""The deployment artefacts through the tools that consume them: bash and shellcheck on
deploy.sh, the real ``chalice package --merge-template`` on a copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stepfunctions
from tests.unit.test_iac import (
    CHALICE_STAGE,
    DEPLOY_SH,
    FUNCTIONS_ROLE,
    PSEUDO_PARAMETERS,
    ROOT,
    STATE_MACHINE,
    TEMPLATE_PATH,
    _deploy_script,
    chalice_function_ids,
    get_att,
    load_yaml,
    references,
)


def test_deploy_script_parses() -> None:
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in _deploy_script()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_deploy_script_is_shellcheck_clean() -> None:
    result = subprocess.run(
        ["shellcheck", str(DEPLOY_SH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_chalice_package_merge(tmp_path: Path) -> None:
    """Run ``chalice package --merge-template`` (offline) on a copy of the project laid out
    as deploy.sh uses it, and check the template that would be deployed."""
    chalice = Path(sys.executable).with_name("chalice")
    if not chalice.exists():
        pytest.skip("the chalice CLI is not installed beside this Python")
    project = tmp_path / "functions"
    shutil.copytree(
        ROOT / "functions",
        project,
        # No requirements.txt: chalice would download wheels. No cached deployments.
        ignore=shutil.ignore_patterns("__pycache__", "deployments", "requirements.txt", "build"),
    )
    # deploy.sh vendors the contract package into the Lambda bundle the same way.
    shutil.copytree(
        ROOT / "sagemaker_jobs" / "mlcontract",
        project / "vendor" / "mlcontract",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (tmp_path / "iac").mkdir()
    shutil.copy(TEMPLATE_PATH, tmp_path / "iac" / "template.yaml")
    (tmp_path / "stepfunctions").mkdir()
    shutil.copy(stepfunctions.DEFINITION_PATH, tmp_path / "stepfunctions")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    result = subprocess.run(
        [
            str(chalice),
            *("package", "--stage", CHALICE_STAGE),
            *("--merge-template", "../iac/template.yaml", "../build"),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sam_path = tmp_path / "build" / "sam.yaml"
    text = sam_path.read_text(encoding="utf-8")
    assert "${MlpipeFunctionsRoleArn}" not in text, "the config.json placeholder leaked"
    merged = load_yaml(sam_path)
    res = merged["Resources"]
    assert all("Type" in r for r in res.values())

    functions = {k for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions == set(chalice_function_ids()), "logical IDs differ from Chalice's"
    for logical_id in functions:
        props = res[logical_id]["Properties"]
        assert props["Role"] == get_att(FUNCTIONS_ROLE), logical_id
        assert props["Environment"]["Variables"]["MLPIPE_PROFILE"] == "aws", logical_id
        assert "Policies" not in props, logical_id

    known = set(res) | set(merged.get("Parameters", {})) | PSEUDO_PARAMETERS
    missing = references(merged) - known
    assert not missing, f"unresolved references after the merge: {sorted(missing)}"

    uri = res[STATE_MACHINE]["Properties"]["DefinitionUri"]
    assert (sam_path.parent / uri).resolve() == (
        tmp_path / "stepfunctions" / "pipeline.asl.json"
    ).resolve()
    for output in ("EndpointURL", "StateMachineArn", "ArtefactBucketName", "MetadataTableName"):
        assert output in merged["Outputs"], output
