"""Model-quality routes (issue "Models"): a run's tuning trials, a version's evaluation
report, and a version exported in MLflow format."""

from __future__ import annotations

from typing import Any, Literal

from chalice import Response
from pydantic import BaseModel, ConfigDict

from chalicelib import model_report, tuning
from chalicelib.api import Api
from chalicelib.runtime import ports

api = Api(__name__)


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["mlflow"] = "mlflow"


@api.operation("/runs/{run_id}/trials", "GET")
def get_run_trials(run_id: str) -> dict[str, Any]:
    """A tuned run's trials: parameters, score, duration and status of each, and the best."""
    return tuning.trials_of(ports(), run_id)


@api.operation("/models/{name}/versions/{version}/report", "GET")
def get_model_version_report(name: str, version: int) -> dict[str, Any]:
    """A version's evaluation report on its held-out split: per-class metrics, confusion
    matrix, ROC and PR points, calibration (classification); residuals (regression); the
    champion it was compared with."""
    return model_report.report(ports(), name, version)


@api.operation("/models/{name}/versions/{version}/plots/{plot}", "GET")
def get_model_version_plot(name: str, version: int, plot: str) -> Response:
    """A plot of the version's report as PNG (send ``Accept: image/png``): confusion_matrix,
    roc, pr, calibration, importance (classification); residuals, importance (regression)."""
    return Response(
        body=model_report.plot(ports(), name, version, plot),
        status_code=200,
        headers={"Content-Type": "image/png"},
    )


@api.operation(
    "/models/{name}/versions/{version}/export",
    "GET",
    query=ExportQuery,
)
def export_model_version(name: str, version: int, query: ExportQuery) -> Response:
    """The version as an MLflow model directory (zip) that mlflow.pyfunc.load_model loads."""
    from chalicelib import mlflow_export

    data = mlflow_export.export(ports(), name, version)
    return Response(
        body=data,
        status_code=200,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{name}-v{version}-mlflow.zip"',
        },
    )
