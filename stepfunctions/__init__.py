"""The pipeline state machine: one ASL file, rendered with function ARNs for each target."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DEFINITION_PATH = Path(__file__).with_name("pipeline.asl.json")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

# Placeholder -> the Chalice lambda_function name in functions/app.py.
FUNCTIONS = {
    "IngestFunctionArn": "ingest",
    "ValidateFunctionArn": "validate",
    "SplitFunctionArn": "split",
    "StartTrainingFunctionArn": "start_training",
    "CheckTrainingFunctionArn": "check_training",
    "StartEvaluationFunctionArn": "start_evaluation",
    "CheckEvaluationFunctionArn": "check_evaluation",
    "QualityGateFunctionArn": "quality_gate",
    "RegisterFunctionArn": "register",
    "DeployFunctionArn": "deploy",
    "FinishFunctionArn": "finish",
    "FailRunFunctionArn": "fail_run",
}


def placeholders() -> set[str]:
    return set(_PLACEHOLDER.findall(DEFINITION_PATH.read_text()))


def render(substitutions: dict[str, str]) -> str:
    """The definition with ``${Name}`` replaced, as CloudFormation's DefinitionSubstitutions
    does on AWS. Unknown or missing names are errors, not silent blanks."""
    text = DEFINITION_PATH.read_text()
    missing = placeholders() - substitutions.keys()
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text)


def load(substitutions: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(render(substitutions)))
