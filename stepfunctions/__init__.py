"""The pipeline state machine, built from the step registry (``chalicelib.workflow``).

``definition()`` is the ASL as data: Task states come from the registry with one shared Retry
and Catch policy; the Wait, Choice, Pass and end states that connect them are written here.
``pipeline.asl.json`` is that definition rendered (``python -m stepfunctions`` rewrites it; a
test keeps it equal), and is what CloudFormation deploys and the local stack provisions.
Task resources are ``${<Function>FunctionArn}`` placeholders, substituted with ARNs the way
CloudFormation's ``DefinitionSubstitutions`` does (``render``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chalicelib.workflow import BY_STATE, RETRIED_ERRORS, TASKS

DEFINITION_PATH = Path(__file__).with_name("pipeline.asl.json")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

# Placeholder -> the Chalice lambda_function it names.
FUNCTIONS: dict[str, str] = {t.placeholder: t.function for t in TASKS}

# A whole day: the longest run we allow (jobs are capped by MLPIPE_MAX_JOB_SECONDS).
TIMEOUT_SECONDS = 86400
RETRY: list[dict[str, Any]] = [
    {
        "ErrorEquals": list(RETRIED_ERRORS),
        "IntervalSeconds": 1,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
    }
]
CATCH: list[dict[str, Any]] = [
    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
]


def _task(state: str, next_state: str | None) -> dict[str, Any]:
    task = BY_STATE[state]
    body: dict[str, Any] = {
        "Type": "Task",
        "Resource": "${" + task.placeholder + "}",
        "Comment": task.comment,
        "ResultPath": task.result_path,
        "Retry": RETRY,
    }
    if task.catch:
        body["Catch"] = CATCH
    if next_state is None:
        body["End"] = True
    else:
        body["Next"] = next_state
    return body


def _wait(next_state: str) -> dict[str, Any]:
    return {"Type": "Wait", "SecondsPath": "$.poll_seconds", "Next": next_state}


def _job_done(variable: str, done: str, wait: str) -> dict[str, Any]:
    return {
        "Type": "Choice",
        "Choices": [{"Variable": variable, "StringEquals": "Completed", "Next": done}],
        "Default": wait,
    }


def _job_loop(job: str, result: str, *, then: str) -> dict[str, Any]:
    """Start<job> → WaitFor<job> → Check<job> → <job>Done? (loop until Completed) → then.
    The Wait/Check loop runs on AWS and on moto alike (moto has no `.sync` integrations);
    a failed or stopped job makes Check<job> raise, which the Catch records."""
    return {
        f"Start{job}": _task(f"Start{job}", f"WaitFor{job}"),
        f"WaitFor{job}": _wait(f"Check{job}"),
        f"Check{job}": _task(f"Check{job}", f"{job}Done?"),
        f"{job}Done?": _job_done(f"{result}.status", then, f"WaitFor{job}"),
    }


def _pipeline() -> dict[str, Any]:
    """A pipeline run: data → training → evaluation → gate → registry → deployment."""
    return {
        "LoadDataset": _task("LoadDataset", "CleanData"),
        "CleanData": _task("CleanData", "SplitTrainTest"),
        "SplitTrainTest": _task("SplitTrainTest", "StartTrainingJob"),
        **_job_loop("TrainingJob", "$.train_job", then="StartEvaluationJob"),
        **_job_loop("EvaluationJob", "$.eval_job", then="ApplyQualityGate"),
        "ApplyQualityGate": _task("ApplyQualityGate", "QualityGatePassed?"),
        "QualityGatePassed?": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.gate.passed", "BooleanEquals": True, "Next": "RegisterModelVersion"}
            ],
            "Default": "QualityGateFailed",
        },
        "QualityGateFailed": {
            "Type": "Pass",
            "Parameters": {
                "Error": "QualityGateFailed",
                "Cause.$": "States.JsonToString($.gate.failures)",
            },
            "ResultPath": "$.error",
            "Next": "RecordFailure",
        },
        "RegisterModelVersion": _task("RegisterModelVersion", "DeployRequested?"),
        "DeployRequested?": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.pipeline.deployment.endpoint",
                    "IsPresent": True,
                    "Next": "DeployModelVersion",
                }
            ],
            "Default": "RecordSuccess",
        },
        "DeployModelVersion": _task("DeployModelVersion", "RecordSuccess"),
    }


def _batch() -> dict[str, Any]:
    """A batch prediction: score a dataset version → register the output dataset version."""
    return {
        **_job_loop("TransformJob", "$.transform_job", then="RegisterOutputDataset"),
        "RegisterOutputDataset": _task("RegisterOutputDataset", "RecordSuccess"),
    }


# One state machine, several kinds of execution: the input's "kind" picks the flow. Each
# flow ends in RecordSuccess, or hands its errors to RecordFailure (both dispatch on kind).
FLOWS: dict[str, tuple[str, Any]] = {
    "pipeline": ("LoadDataset", _pipeline),
    "batch": ("StartTransformJob", _batch),
}


def definition() -> dict[str, Any]:
    states: dict[str, Any] = {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.kind", "StringEquals": kind, "Next": start}
                for kind, (start, _) in FLOWS.items()
            ],
            "Default": "UnknownKind",
        },
        "UnknownKind": {
            "Type": "Fail",
            "Error": "UnknownKind",
            "Cause": "the execution input's kind names no flow",
        },
    }
    for _, build in FLOWS.values():
        states.update(build())
    states.update(
        {
            "RecordSuccess": _task("RecordSuccess", "Succeeded"),
            "Succeeded": {"Type": "Succeed"},
            "RecordFailure": _task("RecordFailure", "Failed"),
            "Failed": {"Type": "Fail", "Error": "ExecutionFailed", "Cause": "see its record"},
        }
    )
    return {
        "Comment": "mlpipe: one generic state machine; the execution input is the work (its "
        "kind picks the flow). Generated from chalicelib/workflow.py by `python -m "
        "stepfunctions`; see README.md.",
        "StartAt": "Route",
        "TimeoutSeconds": TIMEOUT_SECONDS,
        "States": states,
    }


def text() -> str:
    return json.dumps(definition(), indent=2) + "\n"


def placeholders() -> set[str]:
    return set(_PLACEHOLDER.findall(DEFINITION_PATH.read_text()))


def render(substitutions: dict[str, str]) -> str:
    """The definition with ``${Name}`` replaced, as CloudFormation's DefinitionSubstitutions
    does on AWS. Unknown or missing names are errors, not silent blanks."""
    source = DEFINITION_PATH.read_text()
    missing = placeholders() - substitutions.keys()
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], source)


def load(substitutions: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(render(substitutions)))
