"""The orchestrator on Step Functions (on AWS, or the embedded moto server locally)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.ports import (
    ExecutionNotFoundError,
    ExecutionStatus,
    HistoryPage,
    OrchestratorUnavailableError,
)

_STATUSES: frozenset[str] = frozenset({"RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class StepFunctionsOrchestrator:
    def __init__(self, state_machine_arn: str, sfn: Any) -> None:
        self.state_machine_arn = state_machine_arn
        self.sfn = sfn

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        try:
            resp = self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(execution_input, allow_nan=False),
            )
        except self.sfn.exceptions.ExecutionAlreadyExists:
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            return arn
        except (ClientError, BotoCoreError) as exc:
            raise OrchestratorUnavailableError(str(exc)) from exc
        return str(resp["executionArn"])

    def status(self, ref: str) -> ExecutionStatus:
        try:
            desc = self.sfn.describe_execution(executionArn=ref)
        except self.sfn.exceptions.ExecutionDoesNotExist:
            return "LOST"
        except (ClientError, BotoCoreError) as exc:  # throttled, or unreachable
            raise OrchestratorUnavailableError(str(exc)) from exc
        status = str(desc["status"])
        return status if status in _STATUSES else "RUNNING"  # type: ignore[return-value]

    def stop(self, ref: str, cause: str) -> None:
        try:
            self.sfn.stop_execution(executionArn=ref, error="Cancelled", cause=cause[:32768])
        except self.sfn.exceptions.ExecutionDoesNotExist:
            raise ExecutionNotFoundError(ref) from None
        except (ClientError, BotoCoreError) as exc:
            raise OrchestratorUnavailableError(str(exc)) from exc

    def history(self, ref: str, token: str | None = None, limit: int = 100) -> HistoryPage:
        kwargs: dict[str, Any] = {"executionArn": ref, "maxResults": limit}
        if token:
            kwargs["nextToken"] = token
        try:
            resp = self.sfn.get_execution_history(**kwargs)
        except self.sfn.exceptions.ExecutionDoesNotExist:
            raise ExecutionNotFoundError(ref) from None
        except self.sfn.exceptions.InvalidToken:
            raise ValueError("invalid page token") from None
        except (ClientError, BotoCoreError) as exc:
            raise OrchestratorUnavailableError(str(exc)) from exc
        events = [{k: _jsonable(v) for k, v in e.items()} for e in resp["events"]]
        return HistoryPage(events, resp.get("nextToken"))
