"""The template as AWS deploys it, built offline: ``chalice package --merge-template`` (as
iac/deploy.sh runs it, with the contract package vendored), then the SAM transform
(aws-sam-translator, the library CloudFormation's transform runs) into plain CloudFormation.

    python -m iac.package_template [--lint]

writes ``build/template/sam.yaml`` (merged) and ``build/template/cloudformation.json``
(transformed); ``--lint`` runs cfn-lint (pinned in pyproject.toml) on the transformed one and
exits 1 on any error. Used by ``make lint`` and by the test that deploys into moto.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import stepfunctions
from iac.iam_check import _CfnLoader

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "template"
STAGE = "dev"
# Placeholders for what deploy.sh resolves online (aws cloudformation package uploads the
# Lambda package to S3; the parameters come from the environment).
CODE_URI = "s3://mlpipe-deploy-123456789012-us-east-1/mlpipe/deployment.zip"
PARAMETERS = {
    "SklearnImageUri": (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    ),
    "CodePrefix": "code/lint",
    "CodeVersion": "lint",
    "PandasLayerArn": "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:20",
}


class _NoManagedPolicies:
    """The transform asks for AWS managed policy ARNs only when a function names one in
    ``Policies``; ours use one explicit role, so nothing is looked up (offline)."""

    def load(self) -> dict[str, str]:
        return {}


def chalice_package(out: Path = OUT, *, with_requirements: bool = False) -> Path:
    """``chalice package`` on a copy of the project laid out as deploy.sh uses it."""
    work = out / "project"
    shutil.rmtree(work, ignore_errors=True)
    ignore = ["__pycache__", "deployments", "build", "vendor"]
    if not with_requirements:  # no wheel downloads: the lint needs the template only
        ignore.append("requirements.txt")
    shutil.copytree(ROOT / "functions", work / "functions", ignore=shutil.ignore_patterns(*ignore))
    shutil.copytree(
        ROOT / "sagemaker_jobs" / "mlcontract",
        work / "functions" / "vendor" / "mlcontract",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # The API aggregates endpoint metrics with the model server's own module.
    shutil.copy(ROOT / "sagemaker_jobs" / "telemetry.py", work / "functions" / "vendor")
    (work / "iac").mkdir()
    shutil.copy(ROOT / "iac" / "template.yaml", work / "iac" / "template.yaml")
    (work / "stepfunctions").mkdir()
    shutil.copy(stepfunctions.DEFINITION_PATH, work / "stepfunctions")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    chalice = Path(sys.executable).with_name("chalice")
    subprocess.run(
        [str(chalice), "package", "--stage", STAGE, "--merge-template",
         "../iac/template.yaml", "../build"],
        cwd=work / "functions", env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    sam = work / "build" / "sam.yaml"
    shutil.copy(sam, out / "sam.yaml")
    if with_requirements:  # as deploy.sh ships it: extensions without debug symbols
        from iac.slim_bundle import slim

        slim(work / "build" / "deployment.zip")
    return work / "build"


def load_sam(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    return _long_form(data)


_FUNCTIONS = frozenset(
    {"Sub", "GetAtt", "Join", "Select", "Split", "If", "Equals", "Not", "And", "Or",
     "FindInMap", "GetAZs", "ImportValue", "Base64", "Cidr"}
)  # fmt: skip


def _long_form(node: Any) -> Any:
    """``{"Sub": x}`` from the tag loader -> CloudFormation's ``{"Fn::Sub": x}``."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key in ("Ref", "Condition"):
                return {key: _long_form(value)}
            if key in _FUNCTIONS:
                if key == "GetAtt" and isinstance(value, str):
                    value = value.split(".", 1)
                return {f"Fn::{key}": _long_form(value)}
        return {k: _long_form(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_long_form(v) for v in node]
    return node


def transform(sam: dict[str, Any]) -> dict[str, Any]:
    """SAM -> CloudFormation, offline, with the local paths deploy.sh uploads replaced."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(sam)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            props["CodeUri"] = CODE_URI
        if resource.get("Type") == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props.pop("DefinitionUri")
            props["Definition"] = json.loads(stepfunctions.DEFINITION_PATH.read_text())
    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1")
    )
    result: dict[str, Any] = translator.translate(
        sam_template=template,
        parameter_values=dict(PARAMETERS),
        get_managed_policy_map=_NoManagedPolicies().load,
    )
    return result


def lint(cfn: dict[str, Any]) -> list[str]:
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    matches = cfn_lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches]


def build(out: Path = OUT) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    chalice_package(out)
    cfn = transform(load_sam(out / "sam.yaml"))
    (out / "cloudformation.json").write_text(json.dumps(cfn, indent=1))
    return cfn


def main(argv: list[str]) -> int:
    cfn = build()
    print(f"wrote {OUT / 'sam.yaml'} and {OUT / 'cloudformation.json'} "
          f"({len(cfn['Resources'])} resources)")  # fmt: skip
    if "--lint" not in argv:
        return 0
    import cfnlint.version

    problems = lint(cfn)
    errors = [p for p in problems if p.startswith("E")]
    for problem in problems:
        print(f"cfn-lint: {problem}")
    print(f"cfn-lint {cfnlint.version.__version__}: {len(errors)} error(s), "
          f"{len(problems) - len(errors)} warning(s) on the transformed template")  # fmt: skip
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# What moto's CloudFormation cannot create from our template (moto 5.2.5), with why. The
# offline deploy leaves these out and says so; iac/README.md lists them.
MOTO_UNSUPPORTED = {
    "AWS::ApiGateway::RestApi": "moto ignores the OpenAPI Body Chalice generates (and needs a "
    "Name), so the Deployment fails with 'The REST API doesn't contain any methods'",
    "AWS::ApiGateway::Deployment": "depends on the RestApi above",
    "AWS::ApiGateway::Stage": "depends on the RestApi above",
    "AWS::S3::BucketPolicy": "no moto CloudFormation support (skipped with a warning)",
}


def for_moto(cfn: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The transformed template minus what moto's CloudFormation cannot create (and the
    Lambda permission and outputs that refer to it); returns it and the dropped IDs."""
    out = copy.deepcopy(cfn)
    drop = {k for k, v in out["Resources"].items() if v["Type"] in MOTO_UNSUPPORTED}

    def refers(value: Any) -> bool:  # a Ref, a GetAtt or a ${...} of a dropped resource
        text = json.dumps(value)
        return any(re.search(rf"\b{re.escape(d)}\b", text) for d in drop)

    drop |= {
        k for k, v in out["Resources"].items()
        if v["Type"] == "AWS::Lambda::Permission" and refers(v)
    }  # fmt: skip
    for key in drop:
        del out["Resources"][key]
    out["Outputs"] = {k: v for k, v in out.get("Outputs", {}).items() if not refers(v)}
    return out, sorted(drop)
