"""The step registry is the one place a step is named: the ASL file, the Lambda functions,
the run's step list and the template's substitutions all follow it."""

from __future__ import annotations

import json
from typing import Any

import stepfunctions
from chalicelib import steps, workflow


def test_the_committed_asl_is_the_generated_one() -> None:
    hint = "stepfunctions/pipeline.asl.json is stale: run `python -m stepfunctions`"
    assert stepfunctions.DEFINITION_PATH.read_text() == stepfunctions.text(), hint


def _scopes(states: dict[str, Any], start: str) -> list[tuple[str, dict[str, Any]]]:
    """The top-level states and those of every Map's ItemProcessor, with their StartAt."""
    out = [(start, states)]
    for state in states.values():
        if state["Type"] == "Map":
            processor = state["ItemProcessor"]
            out += _scopes(processor["States"], processor["StartAt"])
    return out


def test_every_task_state_comes_from_the_registry_with_the_shared_policy() -> None:
    definition = stepfunctions.definition()
    scopes = _scopes(definition["States"], definition["StartAt"])
    flat: dict[str, Any] = {name: s for _, states in scopes for name, s in states.items()}
    assert len(flat) == sum(len(states) for _, states in scopes)  # names unique overall
    tasks = {name for name, s in flat.items() if s["Type"] == "Task"}
    assert tasks == set(workflow.BY_STATE)
    for task in workflow.TASKS:
        state = flat[task.state]
        assert state["Resource"] == "${" + task.placeholder + "}"
        assert state["ResultPath"] == task.result_path
        assert state["Retry"] == stepfunctions.RETRY
        assert ("Catch" in state) == task.catch
    # Everything a state points to exists in its scope, and every state is reachable.
    for start, states in scopes:
        targets = {start}
        for state in states.values():
            targets |= {state.get("Next"), state.get("Default")} - {None}
            targets |= {c["Next"] for c in state.get("Choices", [])}
            targets |= {c["Next"] for c in state.get("Catch", [])}
        assert targets == set(states)


def test_handlers_and_chalice_functions_match_the_registry() -> None:
    from app import app

    assert set(steps.HANDLERS) == set(workflow.FUNCTIONS)
    # The step functions, and the Lambdas outside the state machine (retraining, monitoring).
    assert {f.name for f in app.pure_lambda_functions} == {
        *workflow.FUNCTIONS,
        "retrain",
        "monitor",
        "alarm_action",
    }
    # Chalice deploys each as "app.<function>": the module attribute must be the handler.
    import app as app_module

    for name in workflow.FUNCTIONS:
        deployed = getattr(app_module, name)
        assert deployed.func._original_func is steps.HANDLERS[name]


def test_run_steps_are_reported_by_some_task() -> None:
    for kind, names in workflow.STEPS_BY_KIND.items():
        reported = {t.run_step for t in workflow.TASKS if t.run_step and t.kind == kind}
        optional = set(workflow.OPTIONAL_STEPS) if kind == "pipeline" else set()
        assert reported == set(names) | optional, kind


def test_placeholders_render() -> None:
    arns = {p: f"arn:aws:lambda:us-east-1:123456789012:function:{f}"
            for p, f in stepfunctions.FUNCTIONS.items()}  # fmt: skip
    rendered = json.loads(stepfunctions.render(arns))
    assert rendered["States"]["LoadDataset"]["Resource"].endswith(":function:ingest")
