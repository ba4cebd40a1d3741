"""Pipeline and run routes: define pipelines, start, watch, list and cancel runs."""

from __future__ import annotations

from typing import Any

from chalice import Response
from pydantic import BaseModel, ConfigDict, Field

from chalicelib import pipelines, runs
from chalicelib.api import Api, to_response
from chalicelib.runtime import ports
from chalicelib.schemas import PipelineCreate, RunCreate

api = Api(__name__)


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=1000, description="Events per page.")
    next_token: str | None = Field(default=None, max_length=2048)


@api.operation("/pipelines", "POST", status=201, body=PipelineCreate, errors=(409,))
def create_pipeline(body: PipelineCreate) -> dict[str, Any]:
    """Define a pipeline."""
    return pipelines.create(ports(), body)


@api.operation("/pipelines", "GET")
def list_pipelines() -> dict[str, Any]:
    """List pipelines."""
    return {"pipelines": pipelines.list_all(ports())}


@api.operation("/pipelines/{name}", "GET")
def get_pipeline(name: str) -> dict[str, Any]:
    """A pipeline's spec."""
    return pipelines.get(ports(), name)


@api.operation("/pipelines/{name}", "DELETE", errors=(409,))
def delete_pipeline(name: str) -> dict[str, Any]:
    """Delete a pipeline (409 while one of its runs is in flight); its runs stay readable."""
    return pipelines.delete(ports(), name)


@api.operation("/pipelines/{name}/runs", "POST", status=202, body=RunCreate, errors=(409, 429, 503))
def start_run(name: str, body: RunCreate) -> Response:
    """Start a run (a Step Functions execution); 429 past MLPIPE_MAX_CONCURRENT_RUNS."""
    started = runs.start(ports(), name, body)
    return to_response(started, 202, {"Location": f"/runs/{started['run_id']}"})


@api.operation("/pipelines/{name}/runs", "GET")
def list_runs(name: str) -> dict[str, Any]:
    """A pipeline's runs, newest first."""
    return {"runs": runs.list_for_pipeline(ports(), name)}


@api.operation("/runs/{run_id}", "GET")
def get_run(run_id: str) -> dict[str, Any]:
    """A run: status, per-step status and timing, metrics, model, error."""
    return runs.get(ports(), run_id)


@api.operation("/runs/{run_id}/events", "GET", query=EventsQuery)
def get_run_events(run_id: str, query: EventsQuery) -> dict[str, Any]:
    """The run's execution history, a page at a time (pass next_token for the next)."""
    return runs.events(ports(), run_id, query.next_token, query.limit)


@api.operation("/runs/{run_id}/cancel", "POST", errors=(409, 503))
def cancel_run(run_id: str) -> dict[str, Any]:
    """Cancel a run: its execution and job are stopped and it ends ABORTED."""
    return runs.cancel(ports(), run_id)
