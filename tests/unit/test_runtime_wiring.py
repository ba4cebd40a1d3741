"""The Lambda bundle (functions/) never imports the local implementations (iac/), so
MLPIPE_JOBS=local / MLPIPE_ENDPOINTS=local can only be wired by the local stack and its tests;
inside a Lambda they fail loudly instead of running anything locally."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chalicelib import runtime
from chalicelib.errors import ServiceUnavailableError
from chalicelib.settings import Settings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_nothing_in_the_lambda_bundle_imports_iac_or_moto() -> None:
    for path in FUNCTIONS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("iac", "moto", "tests"), (path, name)


@pytest.mark.parametrize("port", ["jobs", "endpoints"])
def test_local_jobs_or_endpoints_without_the_local_wiring_fail_loudly(port: str) -> None:
    settings = Settings(profile="aws", **{port: "local"})
    with pytest.raises(ServiceUnavailableError, match=r"iac/local/hybrid\.py"):
        runtime.build_aws_ports(settings)
