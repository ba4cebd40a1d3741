"""End-to-end fixtures: the embedded local stack over a fresh data dir, and a Chalice test
client for the real app. The stack runs the real ASL in moto's interpreter; nothing below the
REST API is mocked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chalice.test import Client

from iac.local import stack


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.LocalStack]:
    running = stack.start(tmp_path_factory.mktemp("mlpipe-data"), port=0)
    yield running
    running.stop()


class UserSide:
    """The user's side of the REST contract; subclasses say how a request travels."""

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = self.call(method, path, body, **kw)
        assert status < 300, (status, data)
        return data

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The whole execution history, page by page."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            query = f"?limit=1000&next_token={token}" if token else "?limit=1000"
            page = self.ok("GET", f"/runs/{run_id}/events{query}")
            out.extend(page["events"])
            token = page["next_token"]
            if not token:
                return out

    def wait_run(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.ok("GET", f"/runs/{run_id}")
            if run["status"] != "RUNNING":
                return dict(run)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} still RUNNING after {timeout}s: {run}")


class Api(UserSide):
    """In-process, through chalice.test.Client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = getattr(self.client.http, method.lower())(
            path, body=payload, headers={"Content-Type": content_type}
        )
        return resp.status_code, json.loads(resp.body) if resp.body else None


@pytest.fixture(scope="module")
def api(local_stack: stack.LocalStack) -> Iterator[Api]:
    from app import app

    with Client(app) as client:
        yield Api(client)


def classification_csv(rows: int = 400, seed: int = 0) -> str:
    """A learnable binary problem; column names with '/', spaces and a categorical."""
    rng = np.random.default_rng(seed)
    lines = ["petal/len,sepal width,colour,count,label"]
    for _ in range(rows):
        a, b = rng.normal(), rng.normal()
        colour = rng.choice(["red", "green", "blue"])
        count = int(rng.integers(0, 5))
        score = 1.5 * a - b + (0.8 if colour == "red" else 0.0)
        label = "yes" if score > 0 else "no"
        a_txt = "" if rng.random() < 0.03 else f"{a:.4f}"  # some missing values
        lines.append(f"{a_txt},{b:.4f},{colour},{count},{label}")
    return "\n".join(lines) + "\n"


def regression_csv(rows: int = 300, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,zone,y"]
    for _ in range(rows):
        x1, x2 = rng.normal(), rng.normal()
        zone = rng.choice(["n", "s"])
        y = 3 * x1 - 2 * x2 + (5 if zone == "n" else 0) + rng.normal(scale=0.1)
        lines.append(f"{x1:.4f},{x2:.4f},{zone},{y:.4f}")
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
