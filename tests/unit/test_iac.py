"""Offline checks of the AWS deployment: iac/template.yaml, iac/deploy.sh and the ASL.

Nothing here talks to AWS. The template is a fragment that ``chalice package
--merge-template`` merges into the SAM template Chalice generates, so the checks hold it
against the Chalice app itself (function names -> logical IDs the way Chalice derives them),
against stepfunctions/ (placeholders, states) and against chalicelib (settings names, job
names). One test runs the real ``chalice package`` on a copy of the project and checks the
merged result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chalice.utils import to_cfn_resource_name

import stepfunctions
from app import app as chalice_app
from chalicelib.settings import Settings
from chalicelib.steps import job_name

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "iac" / "template.yaml"
DEPLOY_SH = ROOT / "iac" / "deploy.sh"
CHALICE_CONFIG = ROOT / "functions" / ".chalice" / "config.json"
CHALICE_STAGE = "dev"

FUNCTIONS_ROLE = "MlpipeFunctionsRole"
SAGEMAKER_ROLE = "SageMakerExecutionRole"
STATE_MACHINE = "PipelineStateMachine"
STATE_MACHINE_ROLE = "StateMachineRole"
BUCKET = "ArtefactBucket"
TABLE = "MetadataTable"

# Actions that have no resource-level permissions, so "Resource": "*" is the only option.
# Anything else with "*" as a resource fails the test.
STAR_RESOURCE_ACTIONS = frozenset(
    {
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
        # Step Functions' CloudWatch Logs delivery (vended logs).
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

# Settings the aws profile cannot work without (chalicelib/settings.py field names).
REQUIRED_AWS_SETTINGS = frozenset(
    {
        "profile",
        "bucket",
        "table",
        "state_machine_arn",
        "sagemaker_role_arn",
        "sklearn_image_uri",
        "code_prefix",
        "code_version",
    }
)

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


# --- loading --------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags (!Ref, !GetAtt, !Sub, ...) as
    their long form, as Chalice's merge does. A subclass, so the global SafeLoader is untouched."""


def _construct_intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=CfnLoader)
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    res = template["Resources"]
    assert isinstance(res, dict)
    return res


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    definition = json.loads(stepfunctions.DEFINITION_PATH.read_text(encoding="utf-8"))
    assert isinstance(definition, dict)
    return definition


# --- helpers --------------------------------------------------------------------------------


def chalice_function_ids() -> dict[str, str]:
    """Logical ID -> Chalice name of every function ``chalice package`` generates.

    chalice/package.py (SAMTemplateGenerator) names a function's resource
    ``to_cfn_resource_name(resource_name)``; a pure lambda_function's resource_name is its
    name (chalice/deploy/appgraph.py), and the REST API handler is renamed ``APIHandler``.
    """
    ids = {to_cfn_resource_name(fn.name): fn.name for fn in chalice_app.pure_lambda_functions}
    assert len(ids) == len(chalice_app.pure_lambda_functions), "logical ID collision"
    if chalice_app.routes:
        ids["APIHandler"] = "api_handler"
    return ids


def chalice_generated_ids() -> set[str]:
    ids = set(chalice_function_ids())
    if chalice_app.routes:
        ids |= {"RestAPI", "APIHandlerInvokePermission"}
    return ids


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def references(node: Any) -> set[str]:
    """Names referenced by Ref, Fn::GetAtt and Fn::Sub anywhere under ``node``."""
    found: set[str] = set()
    for item in walk(node):
        if "Ref" in item and isinstance(item["Ref"], str):
            found.add(item["Ref"])
        if "Fn::GetAtt" in item:
            target = item["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
        if "Fn::Sub" in item:
            sub = item["Fn::Sub"]
            text, local = (sub[0], set(sub[1])) if isinstance(sub, list) else (sub, set())
            for name in _SUB_VARIABLE.findall(text):
                if name not in local:
                    found.add(name if name.startswith("AWS::") else name.split(".", 1)[0])
    return found


def get_att(logical_id: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def iam_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical ID, statement) of every identity policy defined in the template."""
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        documents: list[Any] = []
        if kind == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [props["PolicyDocument"]]
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield logical_id, statement


def role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for rid, s in iam_statements(resources) if rid == role]


def statements_with_action(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if action in as_list(s["Action"])]


def sub_text(value: Any) -> str:
    assert isinstance(value, dict) and "Fn::Sub" in value, f"expected !Sub, got {value!r}"
    sub = value["Fn::Sub"]
    return str(sub[0] if isinstance(sub, list) else sub)


def stage_environment() -> dict[str, str]:
    config = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][CHALICE_STAGE].get("environment_variables", {}))
    return env


def failure_recorder() -> str:
    """The ASL state that records a failed run: the Task running the ``fail_run`` function."""
    (placeholder,) = [p for p, fn in stepfunctions.FUNCTIONS.items() if fn == "fail_run"]
    return "${" + placeholder + "}"


def transitions(state: dict[str, Any]) -> set[str]:
    targets = {state[k] for k in ("Next", "Default") if k in state}
    targets |= {c["Next"] for c in state.get("Choices", [])}
    targets |= {c["Next"] for c in state.get("Catch", [])}
    return targets


# --- the template as a merge fragment -------------------------------------------------------


def test_template_is_sam_and_parses(template: dict[str, Any]) -> None:
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    kinds = {r.get("Type") for r in template["Resources"].values()}
    for kind in (
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::IAM::Role",
        "AWS::Serverless::StateMachine",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Dashboard",
    ):
        assert kind in kinds, f"no {kind} in the template"


def test_chalice_logical_ids_match_the_state_machine_functions() -> None:
    names = {fn.name for fn in chalice_app.pure_lambda_functions}
    assert set(stepfunctions.FUNCTIONS.values()) <= names
    ids = chalice_function_ids()
    assert ids["StartTraining"] == "start_training"  # the documented derivation
    assert ids["FailRun"] == "fail_run"


def test_partial_resources_only_extend_chalice_functions(resources: dict[str, Any]) -> None:
    """A resource without Type only makes sense merged into one Chalice generates; a typo
    here would become a resource with no Type in the deployed template."""
    chalice_ids = chalice_generated_ids()
    for logical_id, resource in resources.items():
        if "Type" in resource:
            assert logical_id not in chalice_ids, f"{logical_id} would replace Chalice's Type"
        else:
            assert logical_id in chalice_ids, f"{logical_id} has no Type and is not Chalice's"
            assert set(resource) == {"Properties"}, logical_id


def test_every_chalice_function_gets_the_functions_role(resources: dict[str, Any]) -> None:
    """config.json's iam_role_arn is a literal placeholder; each function must override it."""
    assert resources[FUNCTIONS_ROLE]["Type"] == "AWS::IAM::Role"
    for logical_id in chalice_function_ids():
        assert logical_id in resources, f"no override for Chalice function {logical_id}"
        props = resources[logical_id]["Properties"]
        assert props["Role"] == get_att(FUNCTIONS_ROLE), logical_id
        log_group = props["LoggingConfig"]["LogGroup"]
        assert resources[log_group["Ref"]]["Type"] == "AWS::Logs::LogGroup", logical_id


def test_function_log_groups_are_writable_by_the_functions_role(
    resources: dict[str, Any],
) -> None:
    (logs,) = statements_with_action(
        role_statements(resources, FUNCTIONS_ROLE), "logs:PutLogEvents"
    )
    allowed = sub_text(logs["Resource"])
    assert allowed.endswith(":log-group:/aws/lambda/${AWS::StackName}/*")
    prefix = "/aws/lambda/${AWS::StackName}/"
    for logical_id in chalice_function_ids():
        group = resources[logical_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert sub_text(resources[group]["Properties"]["LogGroupName"]).startswith(prefix)


def test_references_resolve(template: dict[str, Any]) -> None:
    known = (
        set(template["Resources"])
        | set(template.get("Parameters", {}))
        | chalice_generated_ids()
        | PSEUDO_PARAMETERS
    )
    missing = references(template) - known
    assert not missing, f"unresolved references: {sorted(missing)}"


# --- state machine --------------------------------------------------------------------------


def test_every_placeholder_has_a_substitution(resources: dict[str, Any]) -> None:
    props = resources[STATE_MACHINE]["Properties"]
    substitutions = props["DefinitionSubstitutions"]
    placeholders = stepfunctions.placeholders()
    assert placeholders, "the ASL has no placeholders"
    assert placeholders == set(substitutions), (
        f"missing {sorted(placeholders - set(substitutions))}, "
        f"extra {sorted(set(substitutions) - placeholders)}"
    )
    lambda_names = {fn.name for fn in chalice_app.pure_lambda_functions}
    for placeholder, value in substitutions.items():
        function = stepfunctions.FUNCTIONS[placeholder]
        assert function in lambda_names, f"{placeholder}: no lambda_function {function!r}"
        assert value == get_att(to_cfn_resource_name(function)), placeholder


def test_definition_uri_is_the_asl_file(resources: dict[str, Any]) -> None:
    uri = resources[STATE_MACHINE]["Properties"]["DefinitionUri"]
    assert (TEMPLATE_PATH.parent / uri).resolve() == stepfunctions.DEFINITION_PATH.resolve()


def test_state_machine_role_invokes_exactly_the_step_functions(
    resources: dict[str, Any],
) -> None:
    props = resources[STATE_MACHINE]["Properties"]
    assert props["Role"] == get_att(STATE_MACHINE_ROLE)
    assert "Policies" not in props
    statements = role_statements(resources, STATE_MACHINE_ROLE)
    lambda_statements = [
        s for s in statements if any(a.startswith("lambda:") for a in as_list(s["Action"]))
    ]
    assert len(lambda_statements) == 1
    (invoke,) = lambda_statements
    assert as_list(invoke["Action"]) == ["lambda:InvokeFunction"]
    expected = sorted(json.dumps(v) for v in props["DefinitionSubstitutions"].values())
    assert sorted(json.dumps(r) for r in as_list(invoke["Resource"])) == expected
    trust = resources[STATE_MACHINE_ROLE]["Properties"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "states.amazonaws.com"}]


def test_state_machine_logs_to_its_log_group(resources: dict[str, Any]) -> None:
    logging = resources[STATE_MACHINE]["Properties"]["Logging"]
    assert logging["Level"] in ("ALL", "ERROR", "FATAL")
    (destination,) = logging["Destinations"]
    target = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert resources[target]["Type"] == "AWS::Logs::LogGroup"


def test_functions_use_the_state_machine_arn_they_may_start(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """The ARN is built from the fixed name (a !Ref would be a dependency cycle)."""
    name = sub_text(resources[STATE_MACHINE]["Properties"]["Name"])
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    arn = sub_text(env["MLPIPE_STATE_MACHINE_ARN"])
    assert arn == (
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:" + name
    )
    statements = role_statements(resources, FUNCTIONS_ROLE)
    (start,) = statements_with_action(statements, "states:StartExecution")
    assert sub_text(start["Resource"]) == arn
    executions = arn.replace(":stateMachine:", ":execution:") + ":*"
    for action in ("states:DescribeExecution", "states:GetExecutionHistory"):
        (read,) = statements_with_action(statements, action)
        assert sub_text(read["Resource"]) == executions, action


# --- environment ----------------------------------------------------------------------------


def test_environment_matches_the_settings(template: dict[str, Any]) -> None:
    from_template = template["Globals"]["Function"]["Environment"]["Variables"]
    from_config = stage_environment()
    assert from_config.get("MLPIPE_PROFILE") == "aws"
    plain_fields = {
        name for name, field in Settings.model_fields.items() if field.validation_alias is None
    }
    provided: set[str] = set()
    for variable in {*from_template, *from_config}:
        assert variable.startswith("MLPIPE_"), variable
        field = variable.removeprefix("MLPIPE_").lower()
        assert field in plain_fields, f"{variable} is not a setting in chalicelib/settings.py"
        provided.add(field)
    assert provided >= REQUIRED_AWS_SETTINGS, sorted(REQUIRED_AWS_SETTINGS - provided)
    assert from_template["MLPIPE_BUCKET"] == {"Ref": BUCKET}
    assert from_template["MLPIPE_TABLE"] == {"Ref": TABLE}
    assert from_template["MLPIPE_SAGEMAKER_ROLE_ARN"] == get_att(SAGEMAKER_ROLE)


# --- IAM ------------------------------------------------------------------------------------


def test_no_wildcard_actions_and_no_star_resources_for_scoped_actions(
    resources: dict[str, Any],
) -> None:
    statements = list(iam_statements(resources))
    assert statements
    for logical_id, statement in statements:
        where = f"{logical_id} {statement.get('Sid', '')}"
        if statement["Effect"] != "Allow":
            continue
        assert "NotAction" not in statement and "NotResource" not in statement, where
        actions = as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{where}: wildcard action {action!r}"
        if "*" in as_list(statement["Resource"]):
            scoped = sorted(set(actions) - STAR_RESOURCE_ACTIONS)
            assert not scoped, f"{where}: Resource '*' for {scoped}"


def test_trust_policies_name_one_service(resources: dict[str, Any]) -> None:
    expected = {
        FUNCTIONS_ROLE: "lambda.amazonaws.com",
        SAGEMAKER_ROLE: "sagemaker.amazonaws.com",
        STATE_MACHINE_ROLE: "states.amazonaws.com",
    }
    roles = {k for k, v in resources.items() if v.get("Type") == "AWS::IAM::Role"}
    assert roles == set(expected)
    for role, service in expected.items():
        trust = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [(s["Effect"], s["Principal"], s["Action"]) for s in trust] == [
            ("Allow", {"Service": service}, "sts:AssumeRole")
        ], role


def test_pass_role_only_for_the_sagemaker_role_to_sagemaker(resources: dict[str, Any]) -> None:
    passing = [
        (rid, s) for rid, s in iam_statements(resources) if "iam:PassRole" in as_list(s["Action"])
    ]
    assert len(passing) == 1
    ((rid, statement),) = passing
    assert rid == FUNCTIONS_ROLE
    assert as_list(statement["Action"]) == ["iam:PassRole"]
    assert statement["Resource"] == get_att(SAGEMAKER_ROLE)
    condition = statement["Condition"]["StringEquals"]["iam:PassedToService"]
    assert condition == "sagemaker.amazonaws.com"


def test_sagemaker_access_is_scoped_to_the_mlp_prefix_and_our_tag(
    resources: dict[str, Any],
) -> None:
    """Every SageMaker resource the functions may touch is named mlp-*; creating needs our
    owner tag on the request, changing or deleting an endpoint needs it on the resource."""
    prefix = job_name("RUNID", "STATE", 1).split("RUNID", 1)[0]
    assert prefix == "mlp-", prefix  # SageMaker ARNs hold lower-cased names
    statements = role_statements(resources, FUNCTIONS_ROLE)
    for statement in statements:
        if not any(a.startswith("sagemaker:") for a in as_list(statement["Action"])):
            continue
        for resource in as_list(statement["Resource"]):
            assert re.search(r":[a-z-]+/mlp-\*$", sub_text(resource)), statement["Sid"]
    owner = {"Ref": "AWS::StackName"}
    for action, key in (
        ("sagemaker:CreateEndpoint", "aws:RequestTag/mlpipe:owner"),
        ("sagemaker:CreateModel", "aws:RequestTag/mlpipe:owner"),
        ("sagemaker:UpdateEndpoint", "aws:ResourceTag/mlpipe:owner"),
        ("sagemaker:DeleteEndpoint", "aws:ResourceTag/mlpipe:owner"),
    ):
        (statement,) = statements_with_action(statements, action)
        assert statement["Condition"]["StringEquals"][key] == owner, action
    for _, statement in iam_statements(resources):
        for resource in as_list(statement["Resource"]):
            if isinstance(resource, dict) and "Fn::Sub" in resource:
                assert ":sagemaker:*" not in sub_text(resource)


def test_functions_cannot_write_the_job_code(resources: dict[str, Any]) -> None:
    statements = role_statements(resources, FUNCTIONS_ROLE)
    for statement in statements_with_action(statements, "s3:PutObject"):
        paths = [sub_text(r).removeprefix("${" + BUCKET + ".Arn}") for r in as_list(
            statement["Resource"])]  # fmt: skip
        if statement["Effect"] == "Allow":
            assert all(p in ("/datasets/*", "/runs/*") for p in paths), paths
        else:
            assert paths == ["/code/*"]


def test_lambda_data_access_is_this_stacks_bucket_and_table(resources: dict[str, Any]) -> None:
    owners = {"s3": {BUCKET}, "dynamodb": {TABLE}}
    seen: set[str] = set()
    for statement in role_statements(resources, FUNCTIONS_ROLE):
        services = {a.split(":", 1)[0] for a in as_list(statement["Action"])}
        if statement.get("Sid") in ("ReadSourceBuckets", "ReadSourceObjects"):
            # "s3" dataset sources: read-only, on the operator's DataSourceBuckets only.
            assert set(as_list(statement["Action"])) <= {"s3:ListBucket", "s3:GetObject"}
            assert "DataSourceBuckets" in references(statement["Resource"])
            continue
        for service, owner in owners.items():
            if service in services:
                seen.add(service)
                assert services == {service}, statement.get("Sid")
                assert references(statement["Resource"]) == owner, statement.get("Sid")
    assert seen == set(owners)
    dynamo = [
        a
        for s in role_statements(resources, FUNCTIONS_ROLE)
        for a in as_list(s["Action"])
        if a.startswith("dynamodb:")
    ]
    assert sorted(dynamo) == sorted(
        ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"]
    )


def test_sagemaker_role_reads_code_and_runs_and_writes_runs_only(
    resources: dict[str, Any],
) -> None:
    readable = ("/code/*", "/runs/*", "/datasets/*")  # datasets: batch transform input
    for statement in role_statements(resources, SAGEMAKER_ROLE):
        actions = as_list(statement["Action"])
        if not any(a.startswith("s3:") for a in actions):
            continue
        assert references(statement["Resource"]) == {BUCKET}
        if actions == ["s3:ListBucket"]:
            assert statement["Resource"] == get_att(BUCKET)
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            assert sorted(prefixes) == ["code/*", "datasets/*", "runs/*"]
            continue
        for resource in as_list(statement["Resource"]):
            path = sub_text(resource).removeprefix("${" + BUCKET + ".Arn}")
            writes = {"s3:PutObject", "s3:DeleteObject"} & set(actions)
            assert path in (("/runs/*",) if writes else readable), (actions, path)


# --- storage --------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_versioned_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources[BUCKET]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = props["PublicAccessBlockConfiguration"]
    assert all(block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy"))
    assert all(block[k] is True for k in ("IgnorePublicAcls", "RestrictPublicBuckets"))
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    (policy,) = [
        r["Properties"]
        for r in resources.values()
        if r.get("Type") == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": BUCKET}
    ]
    statements = as_list(policy["PolicyDocument"]["Statement"])
    assert all(s["Effect"] == "Deny" for s in statements)
    (tls,) = [
        s for s in statements if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
    ]
    assert tls["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    assert tls["Action"] == "s3:*" and tls["Principal"] == "*"
    covered = [json.dumps(r) for r in as_list(tls["Resource"])]
    assert json.dumps(get_att(BUCKET)) in covered
    assert json.dumps({"Fn::Sub": "${" + BUCKET + ".Arn}/*"}) in covered


def test_table_matches_the_metadata_port(resources: dict[str, Any]) -> None:
    table = resources[TABLE]
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
    }
    assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


# --- dashboard and outputs ------------------------------------------------------------------


def dashboard_metrics(widgets: list[dict[str, Any]]) -> tuple[set[tuple[str, ...]], str]:
    """The (namespace, metric, dimension, value, ...) rows of the widgets, with CloudWatch's
    "." (same as the row above) and "..." (the rest of the row above) expanded, and the
    search expressions."""
    rows: set[tuple[str, ...]] = set()
    expressions: list[str] = []
    for widget in widgets:
        previous: list[str] = []
        for entry in widget["properties"]["metrics"]:
            if isinstance(entry[0], dict):
                expressions.append(entry[0]["expression"])
                continue
            parts = [p for p in entry if isinstance(p, str)]
            if parts and parts[0] == "...":
                parts = previous
            parts = [previous[i] if p == "." else p for i, p in enumerate(parts)]
            rows.add(tuple(parts))
            previous = parts
    return rows, "\n".join(expressions)


def test_dashboard_body_is_valid_json_with_the_metrics(resources: dict[str, Any]) -> None:
    (dashboard,) = [r for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    body = sub_text(dashboard["Properties"]["DashboardBody"])
    rendered = json.loads(_SUB_VARIABLE.sub(lambda m: m.group(1), body))
    rows, expressions = dashboard_metrics(rendered["widgets"])
    machine = ("StateMachineArn", STATE_MACHINE)
    for metric in ("ExecutionsSucceeded", "ExecutionsFailed"):
        assert ("AWS/States", metric, *machine) in rows, metric
    for logical_id in chalice_function_ids():
        for metric in ("Errors", "Duration"):
            assert ("AWS/Lambda", metric, "FunctionName", logical_id) in rows, (
                logical_id,
                metric,
            )
    for metric in ("Invocations", "ModelLatency"):
        assert f'{{AWS/SageMaker,EndpointName,VariantName}} MetricName="{metric}"' in expressions


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ArtefactBucketName"]["Value"] == {"Ref": BUCKET}
    assert outputs["MetadataTableName"]["Value"] == {"Ref": TABLE}
    assert outputs["StateMachineArn"]["Value"] == {"Ref": STATE_MACHINE}


# --- the ASL --------------------------------------------------------------------------------


def test_asl_renders_to_valid_json(asl: dict[str, Any]) -> None:
    assert asl["StartAt"] in asl["States"]
    assert stepfunctions.placeholders() == set(stepfunctions.FUNCTIONS)
    arns = {
        p: f"arn:aws:lambda:us-east-1:123456789012:function:{p}" for p in stepfunctions.FUNCTIONS
    }
    rendered = stepfunctions.load(arns)
    assert "${" not in json.dumps(rendered)


def test_asl_transitions_exist_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    states: dict[str, Any] = asl["States"]
    for name, state in states.items():
        for target in transitions(state):
            assert target in states, f"{name} -> {target}: no such state"
        if state["Type"] not in ("Choice", "Succeed", "Fail"):
            assert ("Next" in state) != bool(state.get("End")), f"{name}: Next xor End"
    seen: set[str] = set()
    todo = [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(transitions(states[name]))
    assert seen == set(states), f"unreachable: {sorted(set(states) - seen)}"


def test_every_task_is_caught_except_the_failure_recorder(asl: dict[str, Any]) -> None:
    states: dict[str, Any] = asl["States"]
    recorder_resource = failure_recorder()
    (recorder,) = [n for n, s in states.items() if s.get("Resource") == recorder_resource]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        placeholder = _SUB_VARIABLE.fullmatch(state["Resource"])
        assert placeholder and placeholder.group(1) in stepfunctions.FUNCTIONS, name
        if name == recorder:
            assert "Catch" not in state, "the failure recorder must not catch into itself"
            assert states[state["Next"]]["Type"] == "Fail"
            continue
        catches = state.get("Catch", [])
        assert any("States.ALL" in c["ErrorEquals"] and c["Next"] == recorder for c in catches), (
            f"{name} has no States.ALL Catch to {recorder}"
        )
        assert all(c.get("ResultPath") == "$.error" for c in catches), name


def test_wait_states_take_their_seconds_from_the_input(asl: dict[str, Any]) -> None:
    waits = [s for s in asl["States"].values() if s["Type"] == "Wait"]
    assert waits
    assert all(w.get("SecondsPath") == "$.poll_seconds" for w in waits)
    assert not any("sagemaker:" in json.dumps(s) for s in asl["States"].values())


# --- deploy.sh ------------------------------------------------------------------------------


def _deploy_script() -> str:
    return DEPLOY_SH.read_text(encoding="utf-8")


def test_deploy_script_passes_every_template_parameter(template: dict[str, Any]) -> None:
    script = _deploy_script()
    block = re.search(r"^params=\($(.*?)^\)$", script, re.MULTILINE | re.DOTALL)
    assert block, "no params=( ... ) block in deploy.sh"
    passed = set(re.findall(r'^\s*"(\w+)=', block.group(1), re.MULTILINE))
    parameters = template["Parameters"]
    assert passed <= set(parameters), sorted(passed - set(parameters))
    required = {k for k, v in parameters.items() if "Default" not in v}
    assert required <= passed, sorted(required - passed)
    assert "--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND" in script


def test_deploy_script_build_dir_keeps_definition_uri_valid(resources: dict[str, Any]) -> None:
    """deploy.sh writes the merged template to $ROOT/build; aws cloudformation package
    resolves DefinitionUri relative to that file."""
    script = _deploy_script()
    assert 'BUILD_DIR="$ROOT/build"' in script
    assert "--merge-template ../iac/template.yaml ../build" in script
    uri = resources[STATE_MACHINE]["Properties"]["DefinitionUri"]
    assert (ROOT / "build" / uri).resolve() == stepfunctions.DEFINITION_PATH.resolve()


# --- the real merge -------------------------------------------------------------------------
