"""Both launchers give a job script the same contract: its own process, environment, working
directory, argv, log file and exit code."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.ports.job_launcher import ForkLauncher, Launcher, SpawnLauncher

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
        script, ["0", "a b", "/x"], {"SM_MODEL_DIR": "/m", "PATH": os.environ["PATH"]}, work, log
    )
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
    assert launcher.run(script, [arg], {"PATH": os.environ["PATH"]}, tmp_path, log) == expected
    if arg == "99":
        assert "RuntimeError: boom" in log.read_text()


def test_concurrent_jobs_do_not_mix(launcher: Launcher, script: str, tmp_path: Path) -> None:
    codes: dict[int, int] = {}

    def one(i: int) -> None:
        d = tmp_path / f"j{i}"
        d.mkdir()
        codes[i] = launcher.run(script, [str(i)], {"PATH": os.environ["PATH"]}, d, d / "log")

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
            launcher.run(script, ["0"], {"PATH": os.environ["PATH"]}, tmp_path, tmp_path / "a") == 0
        )
        assert launcher._proc is not None
        launcher._proc.kill()
        launcher._proc.wait()
        assert (
            launcher.run(script, ["4"], {"PATH": os.environ["PATH"]}, tmp_path, tmp_path / "b") == 4
        )
    finally:
        launcher.close()
