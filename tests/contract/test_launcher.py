"""Both launchers give a job script the same contract: its own process, environment, working
directory, argv, log file and exit code."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iac.local.launcher import ForkLauncher, Launcher, SpawnLauncher

SCRIPT = """
import json, os, sys
print("argv", json.dumps(sys.argv[1:]))
print("cwd", os.getcwd())
print("env", os.environ.get("SM_MODEL_DIR"), os.environ.get("LEAK"))
print("main", __name__)
sys.stdout.flush()
code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
if code == 99:
    raise RuntimeError("boom")
sys.exit(code)
"""


@pytest.fixture(params=["fork", "spawn"])
def launcher(request: pytest.FixtureRequest) -> Iterator[Launcher]:
    chosen: Launcher = ForkLauncher() if request.param == "fork" else SpawnLauncher()
    yield chosen
    chosen.close()


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    return str(path)


def test_job_gets_its_own_argv_cwd_env_and_log(
    launcher: Launcher, script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAK", "from-the-server")
    work = tmp_path / "work"
    work.mkdir()
    log = work / "job.log"
    code = launcher.run(
        "j", script, ["0", "a b", "/x"], {"SM_MODEL_DIR": "/m", "PATH": os.environ["PATH"]},
        work, log,
    )  # fmt: skip
    assert code == 0
    lines = log.read_text().splitlines()
    assert lines == [
        f"argv {json.dumps(['0', 'a b', '/x'])}",
        f"cwd {work}",
        "env /m None",
        "main __main__",
    ]


@pytest.mark.parametrize(("arg", "expected"), [("3", 3), ("99", 1)])
def test_exit_codes_and_tracebacks_reach_the_runner(
    launcher: Launcher, script: str, tmp_path: Path, arg: str, expected: int
) -> None:
    log = tmp_path / "job.log"
    assert launcher.run("j", script, [arg], {"PATH": os.environ["PATH"]}, tmp_path, log) == expected
    if arg == "99":
        assert "RuntimeError: boom" in log.read_text()


def test_concurrent_jobs_do_not_mix(launcher: Launcher, script: str, tmp_path: Path) -> None:
    codes: dict[int, int] = {}

    def one(i: int) -> None:
        d = tmp_path / f"j{i}"
        d.mkdir()
        codes[i] = launcher.run(
            f"j{i}", script, [str(i)], {"PATH": os.environ["PATH"]}, d, d / "log"
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == {i: i for i in range(5)}
    for i in range(5):
        assert f'argv ["{i}"]' in (tmp_path / f"j{i}" / "log").read_text()


def test_fork_launcher_recovers_when_its_warm_process_dies(script: str, tmp_path: Path) -> None:
    launcher = ForkLauncher()
    try:
        assert (
            launcher.run("a", script, ["0"], {"PATH": os.environ["PATH"]}, tmp_path, tmp_path / "a")
            == 0
        )
        assert launcher._proc is not None
        launcher._proc.kill()
        launcher._proc.wait()
        assert (
            launcher.run("b", script, ["4"], {"PATH": os.environ["PATH"]}, tmp_path, tmp_path / "b")
            == 4
        )
    finally:
        launcher.close()


SLEEPER = """
import os, subprocess, sys, time
# A grandchild in the job's process group, as sklearn's worker pools would be.
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_stops_the_job_and_its_children(launcher: Launcher, tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    log = tmp_path / "log"
    result: list[int] = []
    runner = threading.Thread(
        target=lambda: result.append(
            launcher.run("sleepy", str(script), [], {"PATH": os.environ["PATH"]}, tmp_path, log)
        )
    )
    runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(log.read_text().split() if log.exists() else []) < 2:
        time.sleep(0.05)
    job_pid, grandchild = map(int, log.read_text().split()[:2])
    launcher.kill("sleepy")
    runner.join(timeout=30)
    assert result and result[0] != 0  # ended by a signal
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(job_pid) or _alive(grandchild)):
        time.sleep(0.05)
    assert not _alive(job_pid) and not _alive(grandchild)
