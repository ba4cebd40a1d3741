"""Process lifecycle of the served API (issue 5): every process the service starts dies with
it — on SIGTERM (runs in flight end Interrupted, their jobs are stopped) and on kill -9 (the
children notice their parent is gone) — and a run's history survives either."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import classification_csv
from tests.e2e.test_http_and_restart import Server


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children of children, process groups ignored)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {p for p in left if alive(p)}
    return left


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop(signal.SIGKILL)


PIPELINE = {
    "name": "slow",
    "dataset": {"name": "big"},
    "target": "label",
    "task": "classification",
    # Slow enough to be caught training (tens of seconds on a small machine).
    "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 500}},
}


def _training(server: Server) -> tuple[str, set[int]]:
    """Start a run and wait until its training job runs; returns the run and the
    processes below the server at that moment (the warm launcher and the job)."""
    run_id = server.ok("POST", "/pipelines/slow/runs")["run_id"]
    assert server.proc is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = server.ok("GET", f"/runs/{run_id}")
        train = next(s for s in run["steps"] if s["name"] == "train")
        assert run["status"] == "RUNNING", run
        if train["status"] == "RUNNING" and train.get("job"):
            children = descendants(server.proc.pid)
            if len(children) >= 2:  # the warm interpreter and the job it forked
                return run_id, children
        time.sleep(0.1)
    raise AssertionError("the training job never started")


def _setup(server: Server) -> None:
    server.start()
    server.ok("POST", "/datasets", {"name": "big", "source": {"type": "inline",
                                                             "data": classification_csv(6000)}})  # fmt: skip
    server.ok("POST", "/pipelines", PIPELINE)


def _interrupted(server: Server, run_id: str) -> None:
    run = server.ok("GET", f"/runs/{run_id}")
    assert run["status"] == "FAILED", run
    assert run["error"]["type"] == "Interrupted" and run["error"]["step"] == "train", run
    assert all(s["status"] != "RUNNING" for s in run["steps"])
    events = server.events(run_id)
    assert events[0]["type"] == "ExecutionStarted"
    assert any(e["type"] == "TaskStateEntered" for e in events)


def test_sigterm_interrupts_runs_and_stops_their_jobs(server: Server) -> None:
    _setup(server)
    run_id, children = _training(server)
    assert server.stop(signal.SIGTERM) == 0  # Server.stop waits for the exit
    assert wait_gone(children, 10) == set()
    server.start()
    _interrupted(server, run_id)


def test_kill_9_leaves_no_process_behind_and_the_run_keeps_its_history(server: Server) -> None:
    _setup(server)
    cancelled = server.ok("POST", "/pipelines/slow/runs")["run_id"]
    assert server.ok("POST", f"/runs/{cancelled}/cancel")["status"] == "ABORTED"
    run_id, children = _training(server)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert wait_gone(children, 15) == set()  # PR_SET_PDEATHSIG and the watchdog
    server.start()
    _interrupted(server, run_id)
    # The cancelled run's history was kept with its end, although the process was killed.
    assert server.ok("GET", f"/runs/{cancelled}")["status"] == "ABORTED"
    events = server.events(cancelled)
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionAborted"


def test_a_second_server_on_the_same_data_dir_refuses_to_start(
    server: Server, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.e2e.test_http_and_restart import ROOT, free_port

    server.start()
    assert server.proc is not None
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}:{ROOT / 'sagemaker_jobs'}"}
    second = subprocess.run(
        [sys.executable, "-m", "iac.local.serve", "--port", str(free_port()),
         "--data-dir", str(server.data_dir), "--aws-port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert "in use by a running mlpipe" in second.stderr
    assert f"pid {server.proc.pid}" in second.stderr
    assert server.ok("GET", "/health")["status"] == "ok"  # the first one is untouched
