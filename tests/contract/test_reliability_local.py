"""Reliability of the local runtime's parts (issue 5): a job stopped before its process starts
never runs, a tampered model is never unpickled (not even after a restart, not even from an
unpacked copy planted where an older version kept one), and an endpoint that cannot load its
model says so."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.ports import Deployment, EndpointNotReadyError, JobSpec
from iac.local.endpoints import LocalEndpointRuntime
from iac.local.files import FileObjectStore
from iac.local.jobs import LocalJobRunner
from iac.local.launcher import KILLED_BEFORE_START, ForkLauncher, Launcher, SpawnLauncher
from mlcontract.archive import sha256_of
from tests.contract.conftest import TrainedModel

MARKER_SCRIPT = """
import pathlib, sys
pathlib.Path(sys.argv[1]).write_text("ran")
"""


@pytest.fixture(params=["fork", "spawn"])
def launcher(request: pytest.FixtureRequest) -> Any:
    chosen: Launcher = ForkLauncher() if request.param == "fork" else SpawnLauncher()
    yield chosen
    chosen.close()


def test_a_job_killed_before_it_starts_never_runs(launcher: Launcher, tmp_path: Path) -> None:
    script = tmp_path / "marker.py"
    script.write_text(MARKER_SCRIPT)
    marker = tmp_path / "ran"
    env = {"PATH": os.environ["PATH"]}
    launcher.kill("early")
    code = launcher.run("early", str(script), [str(marker)], env, tmp_path, tmp_path / "log")
    assert code == KILLED_BEFORE_START
    assert not marker.exists()
    # The kill was for that job only: the next one (and a rerun of the name) runs.
    launcher.forget("early")
    assert launcher.run("later", str(script), [str(marker)], env, tmp_path, tmp_path / "l2") == 0
    assert marker.read_text() == "ran"


def test_the_job_runner_stops_a_job_that_is_still_staging(tmp_path: Path) -> None:
    """stop() between start() and the process launch (inputs still being staged): the job
    ends Stopped and its script never runs."""
    store = FileObjectStore(tmp_path / "objects")
    store.put_bytes("in/data.txt", b"x")
    staging = threading.Event()
    release = threading.Event()

    class SlowStore(FileObjectStore):
        def get_file(self, key: str, dest: Path) -> Path:
            staging.set()
            release.wait(10)
            return super().get_file(key, dest)

    runner = LocalJobRunner(tmp_path / "jobs", SlowStore(tmp_path / "objects"), SpawnLauncher())
    try:
        spec = JobSpec(
            name="staged",
            kind="processing",
            entry_point="evaluate.py",
            arguments={},
            inputs={"test": "in/data.txt"},
            output_prefix="out",
            max_runtime_seconds=60,
        )
        runner.start(spec)
        assert staging.wait(10)
        runner.stop("staged", "processing")
        release.set()
        deadline = time.monotonic() + 30
        while runner.describe("staged", "processing").status == "InProgress":
            assert time.monotonic() < deadline
        status = runner.describe("staged", "processing")
        assert status.status == "Stopped" and status.failure_reason == "Stopped by request"
        log = tmp_path / "jobs" / "staged" / "job.log"
        assert not log.exists() or log.read_text() == ""
    finally:
        runner.close()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def _deployment(key: str, sha: str, endpoint: str = "ep") -> Deployment:
    return Deployment(endpoint=endpoint, model="iris", version=1, artefact_key=key, sha256=sha)


def test_a_tampered_model_is_refused_after_a_restart_and_the_endpoint_says_failed(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    key = trained_model.status.outputs["model"]
    store = FileObjectStore(tmp_path / "objects")
    store.put_file(key, trained_model.store.get_file(key, tmp_path / "orig.tar.gz"))
    sha = sha256_of(tmp_path / "orig.tar.gz")
    root = tmp_path / "endpoints"
    LocalEndpointRuntime(root, store).deploy(_deployment(key, sha))

    # While the service is down, the stored archive is replaced by one whose model.joblib
    # runs code when unpickled, and an "unpacked copy" is planted where older versions kept
    # one (endpoints/models/<sha>/model.joblib).
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        payload = pickle.dumps(_Evil(marker))
        info = tarfile.TarInfo("model.joblib")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    store.put_bytes(key, evil.getvalue())
    (root / "models" / f"{sha}.tar.gz").write_bytes(evil.getvalue())
    planted = root / "models" / sha
    planted.mkdir(parents=True)
    (planted / "model.joblib").write_bytes(pickle.dumps(_Evil(marker)))

    restarted = LocalEndpointRuntime(root, store)
    failed = restarted.warm()
    assert "sha256" in failed["ep"]
    assert restarted.status("ep") == "Failed"
    assert "sha256" in (restarted.failure_reason("ep") or "")
    with pytest.raises(EndpointNotReadyError, match="sha256"):
        restarted.invoke("ep", b'{"instances": [[1, 2, "red"]]}', "application/json")
    assert not marker.exists()

    # Putting the real archive back and deploying again heals it: the model server verifies
    # the bytes and serves.
    store.put_file(key, tmp_path / "orig.tar.gz")
    try:
        restarted.deploy(_deployment(key, sha))
        body = b'{"dataframe_split": {"columns": ["x1", "x2", "colour"], "data": [[1, 2, "red"]]}}'
        assert restarted.invoke("ep", body, "application/json")
        assert restarted.status("ep") == "InService"
    finally:
        restarted.close()
    assert not marker.exists()
