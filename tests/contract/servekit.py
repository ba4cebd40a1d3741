"""Helpers for the serving tests: real models trained by train.py (in-process, small), packed
like the local job runner packs them, and model servers run as real processes on loopback."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import fastpath
import jobkit
import train as train_job

REPO = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO / "sagemaker_jobs"
SERVER = JOBS_DIR / "modelserver.py"
TARGET = "label"

# Every column type and missing values: "/" and a space in names, as users write them.
MIXED_SIGNATURE = [
    {"name": "x 1", "type": "number"},
    {"name": "x/2", "type": "number"},
    {"name": "count", "type": "integer"},
    {"name": "flag", "type": "boolean"},
    {"name": "colour", "type": "string"},
    {"name": "city", "type": "string"},
]


def mixed_frame(n: int, seed: int, task: str = "classification") -> pd.DataFrame:
    """A learnable problem over every column type, with missing values in numbers and text."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n) * 50.0
    count = rng.integers(0, 10, size=n)
    flag = rng.random(n) < 0.5
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    city = rng.choice(["Oslo", "Lyon", "Kyoto", "Lima"], size=n).astype(object)
    signal_ = 2.0 * x1 - 0.02 * x2 + 1.5 * (colour == "red") - flag + 0.1 * count
    x1[::9] = np.nan
    colour[4::11] = None
    if task == "classification":
        target: Any = np.select([signal_ < -0.5, signal_ < 1.0], ["low", "mid"], "high")
    else:
        target = 100.0 * signal_ + rng.normal(0, 5.0, n) + 1000.0
    return pd.DataFrame(
        {
            "x 1": x1,
            "x/2": x2,
            "count": count.astype(np.int64),
            "flag": flag,
            "colour": pd.Series(colour, dtype=object),
            "city": pd.Series(city, dtype=object),
            TARGET: target,
        }
    )


def wine_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """sklearn's wine data (13 numbers, 3 classes), split in two halves."""
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True).frame.rename(columns={"target": TARGET})
    data = data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    half = len(data) // 2
    return data.iloc[:half].reset_index(drop=True), data.iloc[half:].reset_index(drop=True)


@dataclass
class Model:
    directory: Path  # model.joblib, metadata.json, code/
    archive: Path  # model.tar.gz
    sha256: str
    metadata: dict[str, Any]
    pipeline: Any
    test: pd.DataFrame  # held-out rows with the target

    @property
    def signature(self) -> list[dict[str, str]]:
        return list(self.metadata["signature"]["inputs"])

    def features(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows as the pipeline is fitted on them (train.py's representation)."""
        return jobkit.coerce_features(self.test if frame is None else frame, self.signature)

    def expected(self, frame: pd.DataFrame | None = None) -> list[Any]:
        values = self.pipeline.predict(self.features(frame))
        return [jobkit.json_value(v) for v in values]


def train_model(
    root: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    algorithm: str,
    task: str,
    hyperparameters: dict[str, Any] | None = None,
) -> Model:
    """train.py's train() on ``train`` (in this process), packed as model.tar.gz."""
    import joblib

    (root / "train").mkdir(parents=True, exist_ok=True)
    train.to_parquet(root / "train" / "data.parquet", index=False)
    args = argparse.Namespace(
        algorithm=algorithm,
        task=task,
        target=TARGET,
        hyperparameters=json.dumps(hyperparameters or {}),
        seed=7,
        preprocessing="",
    )
    model_dir = root / "model"
    metadata = train_job.train(args, root / "train", model_dir)
    archive = pack(model_dir, root / "packed")
    from modelserver import sha256_file

    return Model(
        model_dir,
        archive,
        sha256_file(archive),
        metadata,
        joblib.load(model_dir / "model.joblib"),
        test,
    )


def pack(model_dir: Path, destination: Path) -> Path:
    """model.tar.gz as the local job runner writes it: top-level items in name order."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / "model.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return archive


def build_fast_path(model: Model, out_dir: Path) -> dict[str, Any]:
    return fastpath.build_fast_path(
        model.pipeline,
        model.signature,
        model.features(),
        out_dir,
        task=model.metadata["task"],
        classes=model.metadata["classes"],
    )


def split_body(model: Model, frame: pd.DataFrame) -> bytes:
    """A dataframe_split body of ``frame``'s feature columns (null for missing)."""
    names = [f["name"] for f in model.signature]
    rows = []
    for record in frame[names].astype(object).itertuples(index=False):
        rows.append([_json(v) for v in record])
    return json.dumps({"dataframe_split": {"columns": names, "data": rows}}).encode()


def _json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- model server processes -----------------------------------------------------------------


def isolated_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, SM_* or platform variables: only what the server ships with helps."""
    drop = ("PYTHONPATH", "SM_", "AIP_", "SAGEMAKER_", "MLPIPE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ready: dict[str, Any]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def invoke(
        self, body: bytes | str, content_type: str = "application/json", path: str = "/invocations"
    ) -> tuple[int, Any]:
        status, _, payload = self.request("POST", path, body, {"Content-Type": content_type})
        return status, json.loads(payload)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    args: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    script: Path = SERVER,
    timeout: float = 60.0,
) -> ServerProcess:
    """``python modelserver.py serve ARGS --ready-fd N``; returns once it says it serves."""
    read_fd, write_fd = os.pipe()
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(script), "serve", *args, "--ready-fd", str(write_fd)],
            pass_fds=[write_fd],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env if env is not None else isolated_env(),
            cwd=cwd,
        )
    os.close(write_fd)
    try:
        line = _read_line(read_fd, proc, timeout)
    finally:
        os.close(read_fd)
    if not line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the model server did not start:\n{log.read_text(errors='replace')}")
    ready = json.loads(line)
    return ServerProcess(proc, int(ready["port"]), log, ready)


def _read_line(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data and time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 0.5)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:  # the server closed it (exited) before saying it was ready
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data.decode().strip()
