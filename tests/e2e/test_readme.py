"""The README's walkthrough, run verbatim (bash, curl) against a freshly started server, as a
new user would paste it: if the README and the product drift apart, this fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_http_and_restart import ROOT, Server

pytestmark = pytest.mark.e2e


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Walkthrough", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's walkthrough has no bash block"
    return block.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data")
    running.start()
    yield running
    running.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_walkthrough_runs_as_written(server: Server) -> None:
    script = walkthrough()
    assert "API=http://127.0.0.1:8000" in script
    script = script.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{server.port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert '"predictions":["setosa"]' in out
    assert '"rolled_back_from":2' in out
    assert '"status":"BAKING"' in out and '"traffic_percent":25.0' in out
    # Step 6's canary: nothing fails, so after its bakes version 2 serves everything.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        endpoint = server.ok("GET", "/endpoints/flowers")
        if endpoint["deployment"]["status"] != "BAKING":
            break
        time.sleep(0.5)
    assert endpoint["deployment"]["status"] == "COMPLETED", endpoint["deployment"]
    assert endpoint["model_version"] == 2 and endpoint["history"] == [1, 2]
    assert server.ok("GET", "/models/flowers-rf")["aliases"] == {"production": 2}
