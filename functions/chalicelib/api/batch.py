"""Batch prediction routes: score a dataset version with a model, watch it, cancel it."""

from __future__ import annotations

from typing import Any

from chalice import Response

from chalicelib import batch
from chalicelib.api import Api, to_response
from chalicelib.runtime import ports
from chalicelib.schemas import BatchPredictionCreate

api = Api(__name__)


@api.operation(
    "/batch-predictions",
    "POST",
    status=202,
    body=BatchPredictionCreate,
    errors=(404, 409, 429, 503),
)
def start_batch_prediction(body: BatchPredictionCreate) -> Response:
    """Score a dataset version with a model version or alias; the output is a new dataset version.

    Runs as its own state machine execution (a SageMaker Batch Transform job on AWS, a local
    job reading the data in chunks of chunk_rows rows). The output dataset version holds every
    input column, then prediction, then proba_<class> per class for classifiers. Everything
    the request names is checked first: unknown model, version or alias, or dataset (404);
    columns the model reads missing from the dataset, or output dataset invalid (400).
    """
    started = batch.start(ports(), body)
    return to_response(started, 202, {"Location": f"/batch-predictions/{started['id']}"})


@api.operation("/batch-predictions", "GET")
def list_batch_predictions() -> dict[str, Any]:
    """Batch predictions, newest first."""
    return {"batch_predictions": batch.list_all(ports())}


@api.operation("/batch-predictions/{batch_id}", "GET")
def get_batch_prediction(batch_id: str) -> dict[str, Any]:
    """A batch prediction: status (RUNNING, SUCCEEDED, FAILED, ABORTED), steps, error, and the
    output dataset version with its row count once it has succeeded."""
    return batch.get(ports(), batch_id)


@api.operation("/batch-predictions/{batch_id}/cancel", "POST", errors=(409, 503))
def cancel_batch_prediction(batch_id: str) -> dict[str, Any]:
    """Cancel a batch prediction: its execution and job are stopped; it ends ABORTED."""
    return batch.cancel(ports(), batch_id)
