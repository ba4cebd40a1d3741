"""Benchmark: our model server against ``mlflow models serve``, same data, same models, one run.

For each model (wine from sklearn.datasets: a 60-tree RandomForest, and a
HistGradientBoosting classifier), trained by ``train.py`` and saved both as our model archive
and as an MLflow model (``mlflow.sklearn.save_model`` of the same fitted Pipeline), it starts

- ``ours (onnx)``: ``modelserver.py serve model.tar.gz --sha256 .. --fastpath ..`` (the fast
  path built on the held-out half, as evaluate.py does);
- ``ours (sklearn)``: the same server with ``--runtime sklearn`` (what the HTTP layer alone
  buys);
- ``mlflow``: ``mlflow models serve -m <dir> --env-manager local`` (defaults: 1 worker);

and measures, with keep-alive clients (one persistent ``http.client.HTTPConnection`` each):

1. single-row latency (p50/p95/p99) of ``dataframe_split`` bodies, one client;
2. throughput with 4 concurrent clients (4 processes), single-row requests;
3. rows/s with 50-row bodies, one client, against calling the sklearn Pipeline in-process on
   the same 50-row DataFrames.

MLflow runs from its own virtualenv so the project's install stays lean:
``benchmarks/.venv-mlflow`` is created on first use with pip (mlflow pinned, and the same
scikit-learn/pandas/numpy as this environment so the pickle loads the same), or pass
``--mlflow-python``. It prints numbers and ratios; it asserts nothing.

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/serving_vs_mlflow.py
    ... --requests 1000 --seconds 5 --batches 200 --json /tmp/serving.json
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "functions"), str(REPO / "sagemaker_jobs")]

MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = REPO / "benchmarks" / ".venv-mlflow"
MODELS = {
    "random_forest (60 trees)": ("random_forest", {"n_estimators": 60}),
    "hist_gradient_boosting": ("hist_gradient_boosting", {}),
}
BATCH = 50


# --- environment ----------------------------------------------------------------------------


def mlflow_python(given: str | None) -> str:
    if given:
        return given
    python = MLFLOW_VENV / "bin" / "python"
    if python.exists():
        return str(python)
    pins = [f"mlflow=={MLFLOW_VERSION}"] + [
        f"{name}=={importlib.metadata.version(name)}"
        for name in ("scikit-learn", "pandas", "numpy", "joblib")
    ]
    print(f"creating {MLFLOW_VENV} with {' '.join(pins)} (once; a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True)
    return str(python)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not answer /ping")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- clients --------------------------------------------------------------------------------


def post(conn: http.client.HTTPConnection, body: bytes) -> bytes:
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {data[:300]!r}")
    return data


def latency_ms(port: int, bodies: list[bytes], n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(min(50, n)):
        post(conn, bodies[i % len(bodies)])
    samples = []
    for i in range(n):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        post(conn, body)
        samples.append((time.perf_counter() - t0) * 1e3)
    conn.close()
    return samples


def _client(port: int, bodies: list[bytes], seconds: float, start: Any, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    post(conn, bodies[0])
    start.wait()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        post(conn, bodies[count % len(bodies)])
        count += 1
    out.put(count)


def throughput(port: int, bodies: list[bytes], clients: int, seconds: float) -> float:
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    procs = [
        context.Process(target=_client, args=(port, bodies, seconds, start, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # every client connected and warmed
    start.set()
    total = sum(out.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def batch_rows_per_s(port: int, bodies: list[bytes], n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    post(conn, bodies[0])
    t0 = time.perf_counter()
    for i in range(n):
        post(conn, bodies[i % len(bodies)])
    elapsed = time.perf_counter() - t0
    conn.close()
    return BATCH * n / elapsed


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- models ---------------------------------------------------------------------------------


def prepare(name: str, algorithm: str, hps: dict[str, Any], root: Path, mlflow_py: str) -> Any:
    from tests.contract import servekit

    train, test = servekit.wine_frames()
    model = servekit.train_model(root, train, test, algorithm, "classification", hps)
    report = servekit.build_fast_path(model, root / "fastpath")
    if report["runtime"] != "onnx":
        print(f"  {name}: fast path not used: {report['reason']}")
    mlflow_dir = root / "mlflow-model"
    # cloudpickle: MLflow 3's default (skops) asks to trust sklearn's Tree type by hand;
    # the format only changes loading, not how the server predicts.
    script = (
        "import joblib, mlflow.sklearn, sys; "
        "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], "
        "serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)"
    )
    subprocess.run(
        [mlflow_py, "-c", script, str(model.directory / "model.joblib"), str(mlflow_dir)],
        check=True,
        capture_output=True,
    )
    features = model.features()
    single = [servekit.split_body(model, test.iloc[[i]]) for i in range(len(test))]
    batches = [
        servekit.split_body(model, test.iloc[(i * 7) % len(test) :].head(BATCH)) for i in range(8)
    ]
    batches = [b for b in batches if len(json.loads(b)["dataframe_split"]["data"]) == BATCH]
    frames = [features.iloc[(i * 7) % len(test) :].head(BATCH) for i in range(8)]
    frames = [f for f in frames if len(f) == BATCH]
    return model, report, mlflow_dir, single, batches, frames


def _in_process(
    model: Any, frames: list[Any], single_frames: list[Any], n: int
) -> dict[str, float]:
    pipeline = model.pipeline
    pipeline.predict(frames[0])
    t0 = time.perf_counter()
    for i in range(n):
        pipeline.predict(frames[i % len(frames)])
    rows_per_s = BATCH * n / (time.perf_counter() - t0)
    samples = []
    for i in range(min(n, 300)):
        t = time.perf_counter()
        pipeline.predict(single_frames[i % len(single_frames)])
        samples.append((time.perf_counter() - t) * 1e3)
    return {"batch_rows_per_s": rows_per_s, "single_p50_ms": statistics.median(samples)}


def in_process(model: Any, frames: list[Any], single_frames: list[Any], n: int) -> dict[str, float]:
    """The sklearn Pipeline called in this process, with its default native threads and with
    one thread (OpenMP spin-waits hurt HistGradientBoosting on a busy machine): the better of
    the two is the baseline, so the ratio is the conservative one."""
    from threadpoolctl import threadpool_limits

    default = _in_process(model, frames, single_frames, n)
    with threadpool_limits(1):
        single = _in_process(model, frames, single_frames, n)
    best = max(default, single, key=lambda r: r["batch_rows_per_s"])
    return {**best, "threads": "default" if best is default else "1"}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="single-row requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="4-client run length")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200, help="50-row requests")
    parser.add_argument("--mlflow-python", default=None)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--only", default=None, help="one model name (substring)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    mlflow_py = mlflow_python(args.mlflow_python)
    import numpy
    import onnxruntime
    import sklearn

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
        f"numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"mlflow {MLFLOW_VERSION} ({args.mlflow_workers} worker), "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SAGEMAKER_"))}
    try:
        for name, (algorithm, hps) in MODELS.items():
            if args.only and args.only not in name:
                continue
            print(f"\n== {name} on wine ==", flush=True)
            root = scratch / algorithm
            model, report, mlflow_dir, single, batches, frames = prepare(
                name, algorithm, hps, root, mlflow_py
            )
            single_frames = [model.features(model.test.iloc[[i]]) for i in range(20)]
            base = in_process(model, frames, single_frames, args.batches)
            rows: dict[str, dict[str, float]] = {}
            servers = {
                "ours (onnx)": [
                    sys.executable, str(REPO / "sagemaker_jobs" / "modelserver.py"), "serve",
                    str(model.archive), "--sha256", model.sha256,
                    "--fastpath", str(root / "fastpath"), "--runtime", "onnx",
                ],
                "ours (sklearn)": [
                    sys.executable, str(REPO / "sagemaker_jobs" / "modelserver.py"), "serve",
                    str(model.archive), "--sha256", model.sha256, "--runtime", "sklearn",
                ],
                "mlflow": [
                    mlflow_py, "-m", "mlflow", "models", "serve", "-m", str(mlflow_dir),
                    "--env-manager", "local", "-h", "127.0.0.1",
                    "-w", str(args.mlflow_workers),
                ],
            }  # fmt: skip
            if report["runtime"] != "onnx":
                servers.pop("ours (onnx)")
            for label, command in servers.items():
                port = free_port()
                command = [*command, "--port" if label != "mlflow" else "-p", str(port)]
                log = (root / f"{label.split()[0]}-{port}.log").open("wb")
                # MLflow starts `uvicorn` from PATH: its virtualenv's bin, as if activated.
                bin_dir = str(Path(command[0]).parent)
                proc = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT,
                    env={**env, "PATH": bin_dir + os.pathsep + env.get("PATH", "")},
                    start_new_session=True,
                )  # fmt: skip
                try:
                    wait_ping(port, proc)
                    # Same answers everywhere before timing anything.
                    check = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    answer = json.loads(post(check, batches[0]))["predictions"]
                    check.close()
                    if answer != model.expected(model.test.head(BATCH)):
                        print(f"  {label}: predictions differ from the in-process pipeline!")
                    n = args.requests
                    samples = latency_ms(port, single, n)
                    rps = throughput(port, single, args.clients, args.seconds)
                    batch = batch_rows_per_s(port, batches, args.batches)
                finally:
                    stop(proc)
                    log.close()
                rows[label] = {
                    "p50_ms": statistics.median(samples),
                    "p95_ms": pct(samples, 0.95),
                    "p99_ms": pct(samples, 0.99),
                    "rps_1": 1e3 / statistics.mean(samples),
                    f"rps_{args.clients}": rps,
                    "batch_rows_per_s": batch,
                }
                print(
                    f"  {label:<15} p50 {rows[label]['p50_ms']:7.3f} ms  "
                    f"p95 {rows[label]['p95_ms']:7.3f}  p99 {rows[label]['p99_ms']:7.3f}  "
                    f"{args.clients} clients {rps:8.0f} req/s  "
                    f"50-row batches {batch:9.0f} rows/s",
                    flush=True,
                )
            print(
                f"  {'in-process':<15} sklearn Pipeline.predict ({base['threads']} threads): "
                "single row p50 "
                f"{base['single_p50_ms']:.3f} ms, 50-row batches {base['batch_rows_per_s']:.0f} "
                "rows/s",
                flush=True,
            )
            ours = rows.get("ours (onnx)") or rows["ours (sklearn)"]
            ml = rows["mlflow"]
            ratios = {
                "single_p50_speedup_vs_mlflow": ml["p50_ms"] / ours["p50_ms"],
                "throughput_ratio_vs_mlflow": ours[f"rps_{args.clients}"]
                / ml[f"rps_{args.clients}"],
                "batch_ratio_vs_in_process": ours["batch_rows_per_s"] / base["batch_rows_per_s"],
                "batch_ratio_vs_mlflow": ours["batch_rows_per_s"] / ml["batch_rows_per_s"],
            }
            print(
                f"  ratios: single-row p50 {ratios['single_p50_speedup_vs_mlflow']:.1f}x faster "
                f"than MLflow (goal >= 10x, p50 <= 1.5 ms: {ours['p50_ms']:.3f} ms); "
                f"{args.clients}-client throughput {ratios['throughput_ratio_vs_mlflow']:.1f}x "
                f"(goal >= 10x); 50-row batches {ratios['batch_ratio_vs_in_process']:.1f}x "
                f"in-process sklearn (goal >= 1x), "
                f"{ratios['batch_ratio_vs_mlflow']:.1f}x MLflow",
                flush=True,
            )
            results[name] = {
                "servers": rows,
                "in_process": base,
                "ratios": ratios,
                "fast_path": report,
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
