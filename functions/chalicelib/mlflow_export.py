"""A model version as an MLflow model directory (zip), and optional run logging to an MLflow
tracking server.

The export needs nothing from MLflow: it writes the ``MLmodel`` file itself. The directory
holds the version's archive unpacked (``model/``: model.joblib + metadata.json; ``code/``:
inference.py, features.py, mlcontract/) and a ``python_function`` flavor whose loader
(``code/mlpipe_pyfunc.py``) predicts through inference.py's ``predict_fn``, the code path our
endpoints serve, so ``mlflow.pyfunc.load_model(...).predict(frame)`` answers as they do. The
signature lists the training columns.

Tracking (``MLFLOW_TRACKING_URI`` set, mlflow-skinny installed): the register step logs the
run's parameters, metrics, evaluation report and this model directory to the tracking server
(``log_run``); trouble there is a note on the run, never a failure.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

from chalicelib import registry
from chalicelib.errors import ConflictError
from chalicelib.runtime import Ports
from chalicelib.timeutil import now_iso
from mlcontract import archive
from mlcontract.image import PINS, PYTHON_VERSION

log = logging.getLogger("mlpipe.mlflow")

LOADER = '''"""MLflow python_function loader for an mlpipe model (written by the export)."""

import inference


class _MlpipeModel:
    def __init__(self, model):
        self._model = model

    def predict(self, model_input, params=None):
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.Series(inference.predict_fn(frame, self._model), name="prediction")


def _load_pyfunc(path):
    return _MlpipeModel(inference.model_fn(path))
'''

# Signature types -> MLflow column types (MLflow converts int64 to double only with a loss
# warning, so integers are longs).
_MLFLOW_TYPES = {
    "number": "double",
    "integer": "long",
    "boolean": "boolean",
    "string": "string",
    "datetime": "string",  # ISO 8601 text, as the endpoints take it
}


def _mlmodel(signature: list[dict[str, str]]) -> str:
    inputs = [
        {"type": _MLFLOW_TYPES.get(c["type"], "string"), "name": c["name"], "required": True}
        for c in signature
    ]
    # JSON strings are YAML scalars: no YAML library needed.
    lines = [
        "artifact_path: model",
        "flavors:",
        "  python_function:",
        "    code: code",
        "    data: model",
        "    env:",
        "      virtualenv: python_env.yaml",
        "    loader_module: mlpipe_pyfunc",
        f"    python_version: {json.dumps(PYTHON_VERSION)}",
        f"model_uuid: {uuid.uuid4().hex}",
        "signature:",
        f"  inputs: {json.dumps(json.dumps(inputs))}",
        "  outputs: null",
        "  params: null",
        f"utc_time_created: {json.dumps(now_iso())}",
    ]
    return "\n".join(lines) + "\n"


def write_model_dir(archive_path: Path, dest: Path) -> Path:
    """Unpack a model archive into an MLflow model directory at ``dest``."""
    unpacked = dest / "model"
    unpacked.mkdir(parents=True)
    archive.safe_extract(archive_path, unpacked)
    code = unpacked / "code"
    if code.is_dir():
        code.rename(dest / "code")
    code = dest / "code"
    code.mkdir(exist_ok=True)
    (code / "mlpipe_pyfunc.py").write_text(LOADER, encoding="utf-8")
    metadata = json.loads((unpacked / archive.METADATA_FILE).read_text(encoding="utf-8"))
    (dest / "MLmodel").write_text(_mlmodel(metadata["signature"]["inputs"]), encoding="utf-8")
    requirements = "".join(f"{n}=={v}\n" for n, v in PINS.items())
    (dest / "requirements.txt").write_text(requirements, encoding="utf-8")
    (dest / "python_env.yaml").write_text(
        f"python: {json.dumps(PYTHON_VERSION)}\nbuild_dependencies:\n  - pip\n"
        "dependencies:\n  - -r requirements.txt\n",
        encoding="utf-8",
    )
    return dest


def _zip(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def _archive_of(ports: Ports, record: dict[str, Any], scratch: Path) -> Path:
    key = record.get("artefact_key")
    if not isinstance(key, str) or not ports.store.exists(key):
        raise ConflictError(
            f"model {record['name']!r} v{record['version']} has no model archive to export"
        )
    return ports.store.get_file(key, scratch / "model.tar.gz")


def export(ports: Ports, name: str, version: int) -> bytes:
    record = registry.get_version(ports, name, version)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        directory = write_model_dir(_archive_of(ports, record, base), base / "mlflow-model")
        return _zip(directory)


def log_run(ports: Ports, record: dict[str, Any], run: dict[str, Any]) -> str | None:
    """Log a registered version's run to the MLflow tracking server; returns a note when
    that failed (None when it worked or no server is configured)."""
    uri = ports.settings.mlflow_tracking_uri
    if not uri:
        return None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return "MLFLOW_TRACKING_URI is set but mlflow is not installed (pip install mlflow-skinny)"
    try:
        client = MlflowClient(tracking_uri=uri)
        name = str(record.get("pipeline"))
        experiment = client.get_experiment_by_name(name)
        root = ports.settings.mlflow_artifact_root
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                name, artifact_location=f"{root.rstrip('/')}/{name}" if root else None
            )
        )
        tags = {"mlpipe.run_id": record["run_id"], "mlpipe.model": record["name"],
                "mlpipe.version": str(record["version"]),
                "mlpipe.status": str(record.get("status"))}  # fmt: skip
        mlflow_run = client.create_run(experiment_id, tags=tags, run_name=record["run_id"])
        run_id = mlflow_run.info.run_id
        params = {"algorithm": record.get("algorithm"), "task": record.get("task"),
                  "seed": record.get("seed"),
                  "dataset": (record.get("data") or {}).get("dataset"),
                  "dataset_version": (record.get("data") or {}).get("version")}  # fmt: skip
        params.update({f"hp.{k}": v for k, v in (record.get("hyperparameters") or {}).items()})
        for key, value in params.items():
            client.log_param(
                run_id, key, json.dumps(value) if not isinstance(value, str) else value
            )
        for key, value in (record.get("metrics") or {}).items():
            if isinstance(value, int | float):
                client.log_metric(run_id, key, float(value))
        cv = record.get("cross_validation") or {}
        for step, value in enumerate(cv.get("folds") or []):
            if isinstance(value, int | float):
                client.log_metric(run_id, f"cv_{cv.get('metric')}", float(value), step=step)
        with tempfile.TemporaryDirectory() as scratch:
            base = Path(scratch)
            report_key = record.get("report_key")
            if isinstance(report_key, str) and ports.store.exists(report_key):
                report = base / "report" / "report.json"
                report.parent.mkdir()
                report.write_bytes(ports.store.get_bytes(report_key))
                client.log_artifacts(run_id, str(report.parent), "report")
            model_dir = write_model_dir(_archive_of(ports, record, base), base / "model")
            client.log_artifacts(run_id, str(model_dir), "model")
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        log.warning("MLflow logging failed for run %s", record.get("run_id"), exc_info=True)
        return f"MLflow logging failed: {type(exc).__name__}: {str(exc)[:200]}"
    return None
