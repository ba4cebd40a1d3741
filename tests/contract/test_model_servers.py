"""The local stack's model server supervisor: start, crash -> restart at the same URL,
stop, failures reported, and no server outliving its supervisor (even after kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iac.local.model_servers import (
    ModelServerError,
    ModelServers,
    ServerEvent,
    ServerSpec,
)
from tests.contract import servekit


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> servekit.Model:
    train, test = servekit.wine_frames()
    return servekit.train_model(
        tmp_path_factory.mktemp("wine"),
        train,
        test,
        "random_forest",
        "classification",
        {"n_estimators": 10},
    )


@pytest.fixture
def events() -> list[ServerEvent]:
    return []


@pytest.fixture
def servers(tmp_path: Path, events: list[ServerEvent]) -> Iterator[ModelServers]:
    supervisor = ModelServers(
        tmp_path / "servers", backoff_initial=0.1, backoff_max=0.5, on_event=events.append
    )
    yield supervisor
    supervisor.close()


def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for something the supervisor does asynchronously (bounded, polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive either.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _predict(url: str, model: servekit.Model) -> list[object]:
    import urllib.request

    rows = model.test.head(5)
    request = urllib.request.Request(
        f"{url}/invocations", servekit.split_body(model, rows), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["predictions"])


def test_start_crash_restart_stop(
    servers: ModelServers, model: servekit.Model, events: list[ServerEvent]
) -> None:
    spec = ServerSpec("wine", "AllTraffic", model.archive, sha256=model.sha256)
    status = servers.start(spec)
    assert status.status == "ready" and status.pid is not None and status.restarts == 0
    assert status.url.startswith("http://127.0.0.1:")
    assert status.runtime == "sklearn"
    expected = model.expected(model.test.head(5))
    assert _predict(status.url, model) == expected

    os.kill(status.pid, signal.SIGKILL)  # a crash
    _until(lambda: (servers.status("wine", "AllTraffic") or status).restarts == 1, "the crash")
    _until(lambda: servers.status("wine", "AllTraffic").status == "ready", "the restart")  # type: ignore[union-attr]
    after = servers.status("wine", "AllTraffic")
    assert after is not None
    assert after.url == status.url and after.pid != status.pid
    assert after.last_exit_code == -signal.SIGKILL
    assert _predict(after.url, model) == expected
    assert [e.kind for e in events] == ["ready", "crashed", "restarted"]
    assert events[1].status.status == "restarting"

    servers.stop("wine")
    assert servers.status("wine", "AllTraffic") is None
    assert not _alive(after.pid)
    assert events[-1].kind == "stopped"


def test_variants_and_replacement(
    servers: ModelServers, model: servekit.Model, tmp_path: Path
) -> None:
    fast = tmp_path / "fast"
    assert servekit.build_fast_path(model, fast)["runtime"] == "onnx"
    blue = servers.start(ServerSpec("wine", "blue", model.archive, sha256=model.sha256))
    green = servers.start(ServerSpec("wine", "green", model.directory, fastpath=fast))
    assert blue.url != green.url and green.runtime == "onnx"
    assert _predict(blue.url, model) == _predict(green.url, model)

    # Starting a variant again replaces its process and keeps its address.
    again = servers.start(ServerSpec("wine", "blue", model.directory, fastpath=fast))
    assert again.url == blue.url and again.pid != blue.pid and again.runtime == "onnx"
    assert blue.pid is not None and not _alive(blue.pid)
    assert {s.variant for s in servers.statuses()} == {"blue", "green"}
    servers.close()
    assert green.pid is not None and again.pid is not None
    assert not _alive(green.pid) and not _alive(again.pid)


def test_a_model_that_cannot_load_fails_start(servers: ModelServers, model: servekit.Model) -> None:
    spec = ServerSpec("wine", "AllTraffic", model.archive, sha256="0" * 64)
    with pytest.raises(ModelServerError, match="refusing to load it"):
        servers.start(spec)
    assert servers.status("wine", "AllTraffic") is None


def test_repeated_crashes_give_up(tmp_path: Path, model: servekit.Model) -> None:
    # A server that comes up and then keeps dying: restarted with backoff, then left failed.
    events: list[ServerEvent] = []
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        textwrap.dedent(
            f"""
            import os, sys, threading
            sys.path.insert(0, {str(servekit.JOBS_DIR)!r})
            import modelserver

            serve_forever = modelserver.serve_forever

            def dying(app, config, *, ready=None, on_server=None):
                def announce(address):
                    ready(address)
                    threading.Timer(1.0, lambda: os._exit(7)).start()

                return serve_forever(app, config, ready=announce, on_server=on_server)

            modelserver.serve_forever = dying
            sys.exit(modelserver.main(sys.argv[1:]))
            """
        )
    )
    with ModelServers(
        tmp_path / "servers",
        script=flaky,
        backoff_initial=0.05,
        backoff_max=0.1,
        max_consecutive_failures=2,
        on_event=events.append,
    ) as servers:
        servers.start(ServerSpec("wine", "AllTraffic", model.directory))
        _until(
            lambda: servers.status("wine", "AllTraffic").status == "failed",  # type: ignore[union-attr]
            "the supervisor to give up",
        )
        status = servers.status("wine", "AllTraffic")
        assert status is not None and status.last_exit_code == 7
        assert "exited with code 7" in (status.last_error or "")
    assert events[-1].kind in ("gave_up", "stopped")
    assert "gave_up" in [e.kind for e in events]


SUPERVISOR = """
import sys, json, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from iac.local.model_servers import ModelServers, ServerSpec
servers = ModelServers(Path({root!r}))
status = servers.start(ServerSpec("wine", "AllTraffic", Path({model!r})))
print(json.dumps({{"pid": status.pid}}), flush=True)
time.sleep(600)
"""


def test_servers_die_with_a_killed_supervisor(tmp_path: Path, model: servekit.Model) -> None:
    script = SUPERVISOR.format(
        repo=str(servekit.REPO), root=str(tmp_path / "s"), model=str(model.directory)
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=servekit.isolated_env()
    )
    try:
        assert parent.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(parent.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        assert line and line[0], "the supervisor did not start its server"
        child = int(json.loads(line[0])["pid"])
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)  # no chance to clean up
        parent.wait(30)
        _until(lambda: not _alive(child), "the orphaned server to exit", timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
