"""The job environment is the SageMaker image's: the same Python and library versions
(sagemaker_jobs/mlcontract/image.py), built by ``make jobs-venv`` (a dependency of ``make run``
and ``make test``). The local job runner trains there by default, and a pipeline gives the
same model offline and in that environment: the same predictions from the model served by the
local endpoint runtime (this process) and from the model's own inference hooks run inside the
image's versions, and the same predictions as a model trained by this interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chalicelib.ports import Deployment
from iac.local.endpoints import LocalEndpointRuntime
from iac.local.files import FileObjectStore
from iac.local.jobs import JOBS_VENV_PYTHON, LocalJobRunner, job_python, wait_until_done
from mlcontract import image
from mlcontract.archive import sha256_of
from tests.contract.conftest import (
    FEATURES,
    TEST_KEY,
    TRAIN_KEY,
    make_frame,
    to_parquet,
    train_spec,
)

pytestmark = pytest.mark.skipif(
    not JOBS_VENV_PYTHON.exists(), reason="no job environment: run `make jobs-venv`"
)

VERSIONS = (
    "import json, sys, importlib.metadata as m; print(json.dumps({'python': '%d.%d' % "
    "sys.version_info[:2], **{n: m.version(n) for n in sys.argv[1:]}}))"
)

# Runs inside the job environment, as the SageMaker scikit-learn container serves a model:
# model_fn on the extracted archive, then input_fn / predict_fn / output_fn on one request.
SERVE = """
import importlib.util, json, sys
model_dir, body = sys.argv[1], sys.stdin.read()
spec = importlib.util.spec_from_file_location("inference", model_dir + "/code/inference.py")
hooks = importlib.util.module_from_spec(spec)
sys.path.insert(0, model_dir + "/code")
spec.loader.exec_module(hooks)
model = hooks.model_fn(model_dir)
out = hooks.output_fn(hooks.predict_fn(hooks.input_fn(body, "application/json", model), model),
                      "application/json")
print(out[0] if isinstance(out, tuple) else out)
"""


def test_the_job_environment_has_the_images_versions() -> None:
    assert job_python() == str(JOBS_VENV_PYTHON)  # the default when it exists
    found = json.loads(
        subprocess.run(
            [str(JOBS_VENV_PYTHON), "-c", VERSIONS, *image.PINS],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout
    )  # fmt: skip
    assert {n: found[n] for n in image.PINS} == image.PINS
    if found["python"] != image.PYTHON_VERSION:  # make jobs-venv found no Python 3.10
        pytest.skip(f"job environment on Python {found['python']}, the image has 3.10")


def _train(root: Path, store: FileObjectStore, python: str, name: str) -> str:
    runner = LocalJobRunner(root / "jobs", store, python=python)
    try:
        spec = replace(
            train_spec(name, {"n_estimators": 12, "max_depth": 5}),
            output_prefix=f"runs/{name}/model",
        )
        runner.start(spec)
        status = wait_until_done(runner, spec.name, "training", timeout=180)
        log = (root / "jobs" / name / "job.log").read_text(errors="replace")
        assert status.status == "Completed", (status, log)
        return status.outputs["model"]
    finally:
        runner.close()


def _metadata(store: FileObjectStore, key: str, dest: Path) -> dict[str, Any]:
    archive = store.get_file(key, dest / "model.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest / "model", filter="data")
    return dict(json.loads((dest / "model" / "metadata.json").read_text()))


def test_a_pipeline_gives_the_same_model_offline_and_in_the_images_environment(
    tmp_path: Path,
) -> None:
    store = FileObjectStore(tmp_path / "objects")
    store.put_bytes(TRAIN_KEY, to_parquet(make_frame(240, seed=11)))
    test = make_frame(40, seed=12)
    store.put_bytes(TEST_KEY, to_parquet(test))
    rows = [[float(r.x1), float(r.x2), str(r.colour)] for r in test.itertuples()]
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": rows}})

    in_image = _train(tmp_path, store, str(JOBS_VENV_PYTHON), "job-env")
    meta = _metadata(store, in_image, tmp_path / "a")
    assert meta["sklearn_version"] == image.PINS["scikit-learn"]
    assert meta["pandas_version"] == image.PINS["pandas"]

    # Served in the image's versions, as SageMaker would.
    served_there = subprocess.run(
        [str(JOBS_VENV_PYTHON), "-c", SERVE, str(tmp_path / "a" / "model")],
        input=body, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    there = json.loads(served_there.stdout)["predictions"]

    # Served offline by the local endpoint runtime, in this process.
    runtime = LocalEndpointRuntime(tmp_path / "endpoints", store)
    sha = sha256_of(store.get_file(in_image, tmp_path / "copy.tar.gz"))
    runtime.deploy(Deployment("ep", "m", 1, in_image, sha))
    here = json.loads(runtime.invoke("ep", body.encode(), "application/json"))["predictions"]
    assert here == there
    assert len(set(here)) == 2  # a real model, not a constant

    # Trained by this interpreter (same scikit-learn, this venv's pandas/numpy): same model.
    in_venv = _train(tmp_path, store, sys.executable, "api-venv")
    assert _metadata(store, in_venv, tmp_path / "b")["sklearn_version"] == meta["sklearn_version"]
    runtime.deploy(
        Deployment("ep2", "m", 2, in_venv, sha256_of(store.get_file(in_venv, tmp_path / "b.tgz")))
    )
    assert (
        json.loads(runtime.invoke("ep2", body.encode(), "application/json"))["predictions"] == there
    )
