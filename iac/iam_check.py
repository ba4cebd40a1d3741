"""Does the functions' IAM role grant exactly the AWS calls the code makes?

    python -m iac.iam_check          (make lint; exits 1 on a missing or unused permission)

1. Every boto3 call in ``functions/chalicelib`` is found by reading the code (AST): a method
   called on one of the adapters' client attributes (``self.s3``, ``self.db``, ``self.sfn``,
   ``self.sm``, ``self.runtime``), paginators by their operation. Each must be an operation of
   the service's botocore model (no typo survives), and no module outside ``adapters/`` may
   call a client.
2. Each call maps to the IAM actions it needs: the operation's name by default, and the
   documented exceptions below (transfers, batch and transactional calls, tags on create).
3. The functions role in ``iac/template.yaml`` must allow every such action and no other,
   with no wildcard in an action and ``Resource: "*"`` only where AWS offers nothing finer.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import yaml
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[1]
CHALICELIB = ROOT / "functions" / "chalicelib"
TEMPLATE = ROOT / "iac" / "template.yaml"
ROLE = "MlpipeFunctionsRole"

# Client attribute in the adapters -> botocore service name.
RECEIVERS = {"s3": "s3", "db": "dynamodb", "sfn": "stepfunctions", "sm": "sagemaker",
             "runtime": "sagemaker-runtime", "glue": "glue",
             "secrets": "secretsmanager"}  # fmt: skip
# awswrangler functions the adapters call -> the Glue actions they make (awswrangler 3.17.1,
# catalog/_create.py and _delete.py: overwrite = get, then update or create, or delete and
# create on a race).
LIBRARY_CALLS = {
    "create_parquet_table": ["glue:GetTable", "glue:CreateTable", "glue:UpdateTable",
                             "glue:DeleteTable"],
    "delete_table_if_exists": ["glue:DeleteTable"],
    # adapters/s3_source.py (s3 dataset sources): list_objects_v2, head_object, get_object.
    "list_objects": ["s3:ListBucket"],
    "size_objects": ["s3:GetObject"],
    "download": ["s3:GetObject"],
    "read_parquet": ["s3:ListBucket", "s3:GetObject"],
}  # fmt: skip
# botocore service -> IAM service prefix.
PREFIX = {"s3": "s3", "dynamodb": "dynamodb", "stepfunctions": "states",
          "sagemaker": "sagemaker", "sagemaker-runtime": "sagemaker", "glue": "glue",
          "secretsmanager": "secretsmanager"}  # fmt: skip
# Client methods that are not service operations (boto3's managed transfers).
TRANSFERS = {("s3", "upload_file"): ["s3:PutObject", "s3:AbortMultipartUpload"],
             ("s3", "download_file"): ["s3:GetObject"],
             # A presigned URL carries the signer's permission (chalicelib/uploads.py).
             ("s3", "generate_presigned_url"): ["s3:PutObject"]}  # fmt: skip
# Operations authorised as other actions (service authorization references).
ACTIONS = {
    ("s3", "head_object"): ["s3:GetObject"],
    ("s3", "list_objects_v2"): ["s3:ListBucket"],
    ("s3", "delete_objects"): ["s3:DeleteObject"],
    # chalicelib/adapters/dynamodb.py puts Put and Delete items in its transactions.
    ("dynamodb", "transact_write_items"): ["dynamodb:PutItem", "dynamodb:DeleteItem"],
    # Tags= on a SageMaker Create* call also needs sagemaker:AddTags; a RoleArn, iam:PassRole.
    ("sagemaker", "create_training_job"): ["sagemaker:CreateTrainingJob", "sagemaker:AddTags",
                                           "iam:PassRole"],
    ("sagemaker", "create_processing_job"): ["sagemaker:CreateProcessingJob",
                                             "sagemaker:AddTags", "iam:PassRole"],
    ("sagemaker", "create_model"): ["sagemaker:CreateModel", "sagemaker:AddTags", "iam:PassRole"],
    ("sagemaker", "create_endpoint_config"): ["sagemaker:CreateEndpointConfig",
                                              "sagemaker:AddTags"],
    ("sagemaker", "create_endpoint"): ["sagemaker:CreateEndpoint", "sagemaker:AddTags"],
}  # fmt: skip
# Logs written by the Lambda runtime itself (not by our code).
RUNTIME_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})
# Actions without resource-level permissions: "Resource": "*" is allowed only for these.
STAR_RESOURCE_ACTIONS = frozenset(
    {"cloudwatch:PutMetricData", "ecr:GetAuthorizationToken", "logs:CreateLogDelivery",
     "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
     "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
     "logs:DescribeLogGroups"}
)  # fmt: skip
NOT_CALLS = frozenset({"exceptions", "meta", "get_paginator", "can_paginate", "close"})


@dataclass(frozen=True)
class Call:
    module: str
    line: int
    service: str
    method: str

    @property
    def actions(self) -> list[str]:
        key = (self.service, self.method)
        if self.service == "awswrangler":
            return LIBRARY_CALLS[self.method]
        if key in TRANSFERS:
            return TRANSFERS[key]
        if key in ACTIONS:
            return ACTIONS[key]
        operations = _operations(self.service)
        return [f"{PREFIX[self.service]}:{operations[self.method]}"]


_OPS: dict[str, dict[str, str]] = {}


def _operations(service: str) -> dict[str, str]:
    """snake_case client method -> operation name, from botocore's service model."""
    if service not in _OPS:
        model = botocore.session.get_session().get_service_model(service)
        _OPS[service] = {xform_name(op): op for op in model.operation_names}
    return _OPS[service]


def calls(root: Path = CHALICELIB) -> Iterator[Call]:
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # A bound method passed along (``describe=self.sm.describe_model``) is a call too.
            if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
                if _on_client(node, path) and node.attr not in NOT_CALLS:
                    service = RECEIVERS[node.value.attr]  # type: ignore[attr-defined]
                    yield Call(module, node.lineno, service, node.attr)
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            if (  # wr.catalog.<function>(...)
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "wr"
                and "adapters" in path.parts
            ):
                if node.func.attr in LIBRARY_CALLS:
                    yield Call(module, node.lineno, "awswrangler", node.func.attr)
                elif not node.func.attr.startswith("sanitize_"):
                    raise SystemExit(
                        f"{module}:{node.lineno}: map wr.{target.attr}."
                        f"{node.func.attr} to its IAM actions in LIBRARY_CALLS"
                    )
                continue
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and target.attr in RECEIVERS
                and "adapters" in path.parts
            ):
                if _is_client_call(node):
                    raise SystemExit(f"{module}:{node.lineno}: AWS calls belong in adapters/")
                continue
            if node.func.attr == "get_paginator":
                arg = node.args[0]
                assert isinstance(arg, ast.Constant), f"{module}:{node.lineno}"
                yield Call(module, node.lineno, RECEIVERS[target.attr], str(arg.value))


def _on_client(node: ast.Attribute, path: Path) -> bool:
    """``self.<client attribute>.<something>`` inside an adapter."""
    target = node.value
    return (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and target.attr in RECEIVERS
        and "adapters" in path.parts
    )


def _is_client_call(node: ast.Call) -> bool:
    """``aws.client("x").op(...)`` or ``boto3...client(...)`` outside the adapters."""
    inner = node.func.value if isinstance(node.func, ast.Attribute) else None
    return (
        isinstance(inner, ast.Call)
        and isinstance(inner.func, ast.Attribute)
        and inner.func.attr == "client"
        and isinstance(node.func, ast.Attribute)
        and node.func.attr not in NOT_CALLS
    )


def unknown_methods(found: list[Call]) -> list[Call]:
    return [
        c for c in found
        if c.service != "awswrangler" and (c.service, c.method) not in TRANSFERS
        and c.method not in _operations(c.service)
    ]  # fmt: skip


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode)
    return {suffix: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def role_statements(template: Path | None = None, role: str = ROLE) -> list[dict[str, Any]]:
    path = template or TEMPLATE
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    props = doc["Resources"][role]["Properties"]
    out: list[dict[str, Any]] = []
    for policy in props.get("Policies", []):
        statements = policy["PolicyDocument"]["Statement"]
        out.extend(statements if isinstance(statements, list) else [statements])
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check() -> list[str]:
    problems: list[str] = []
    found = list(calls())
    for call in unknown_methods(found):
        problems.append(f"{call.module}:{call.line}: {call.service} has no operation {call.method}")
    needed = {a for c in found if c not in unknown_methods(found) for a in c.actions}
    allowed: set[str] = set()
    for statement in role_statements():
        actions = _as_list(statement["Action"])
        where = statement.get("Sid", "?")
        for action in actions:
            if "*" in action:
                problems.append(f"{where}: wildcard action {action}")
        if statement["Effect"] != "Allow":
            continue
        if "*" in _as_list(statement["Resource"]):
            scoped = sorted(set(actions) - STAR_RESOURCE_ACTIONS)
            if scoped:
                problems.append(f"{where}: Resource '*' for {scoped}")
        allowed |= set(actions)
    for action in sorted(needed - allowed):
        problems.append(f"missing: the code calls for {action}, the role does not allow it")
    for action in sorted(allowed - needed - RUNTIME_ACTIONS):
        problems.append(f"unused: the role allows {action}, no code calls for it")
    return problems


def report() -> str:
    lines = []
    by_module: dict[str, list[Call]] = {}
    for call in calls():
        by_module.setdefault(call.module, []).append(call)
    for module, module_calls in by_module.items():
        lines.append(module)
        for call in sorted(set(module_calls), key=lambda c: c.method):
            lines.append(f"  {call.service}.{call.method:<28} -> {', '.join(call.actions)}")
    return "\n".join(lines)


def main() -> int:
    problems = check()
    print(report())
    for problem in problems:
        print(f"IAM: {problem}", file=sys.stderr)
    print(f"iam_check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
