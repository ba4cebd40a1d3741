"""Benchmark: the batch transform job's memory and speed, chunked vs whole, vs a plain script.

Same model, same Parquet dataset (written as the service stores a dataset version), three
ways of scoring it, each in its own process of the job environment (.venv-jobs):

- ``chunked``: ``sagemaker_jobs/batch_transform.py`` with ``--chunk-rows`` (default 65,536);
- ``one chunk``: the same job with ``--chunk-rows`` = every row (what an unchunked job holds);
- ``plain``: pandas reads the whole file, the pipeline predicts, pandas writes the output
  (input columns + prediction + probabilities), as a user's notebook would.

It reports peak RSS (each process's own ``VmHWM``, read at exit: ``ru_maxrss`` of a child
also counts the parent's pages from before its exec) and rows/s side by side, and the ratios;
it never asserts. Memory of the chunked job is bounded by one Parquet row group plus one
chunk (pyarrow reads a row group at a time; the service writes up to 1Mi rows per group).

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/batch_memory.py
    ... --rows 2000000 --chunk-rows 65536
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "sagemaker_jobs"
PYTHON = REPO / ".venv-jobs" / "bin" / "python"

PLAIN = r"""
import sys, json
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
sys.path.insert(0, sys.argv[4])
import inference, jobkit
model = inference.model_fn(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
features = jobkit.coerce_features(frame, model.metadata["signature"]["inputs"])
out = frame.copy()
out["prediction"] = model.pipeline.predict(features)
proba = model.pipeline.predict_proba(features)
for i, c in enumerate(model.pipeline.classes_):
    out[f"proba_{c}"] = proba[:, i]
out.to_parquet(sys.argv[3], index=False)
"""


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"x{i}": rng.normal(size=rows) for i in range(8)}
    data["colour"] = rng.choice(["red", "green", "blue", "grey"], size=rows).astype(object)
    score = data["x0"] - 0.5 * data["x1"] + (data["colour"] == "red") + rng.normal(0, 0.3, rows)
    data["label"] = np.where(score > 0.4, "yes", "no").astype(object)
    return pd.DataFrame(data)


# Runs a script (or code) as __main__ and, at exit, writes the process's peak RSS (VmHWM,
# KiB: the high-water mark of this process's own memory since its exec) to a file.
PEAK = r"""
import atexit, runpy, sys
out, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(report)
if target == "-c":
    sys.argv = ["-c", *args[1:]]
    exec(compile(args[0], "<plain>", "exec"), {"__name__": "__main__"})
else:
    sys.path.insert(0, target.rsplit("/", 1)[0])
    sys.argv = [target, *args]
    runpy.run_path(target, run_name="__main__")
"""


def run_measured(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of ``python argv...`` in the job environment."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        started = time.perf_counter()
        done = subprocess.run(
            [str(PYTHON), "-c", PEAK, peak.name, *argv], capture_output=True, check=False
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{argv[0]} failed:\n{done.stderr.decode()[-3000:]}")
        return elapsed, int(Path(peak.name).read_text()) // 1024


def train(root: Path, seed: int) -> tuple[Path, str]:
    train_dir, model_dir, out_dir = root / "train", root / "model", root / "out"
    train_dir.mkdir()
    make_frame(20_000, seed).to_parquet(train_dir / "data.parquet", index=False)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(train_dir), "SM_MODEL_DIR": str(model_dir),
           "SM_OUTPUT_DIR": str(out_dir)}  # fmt: skip
    hyper = json.dumps({"n_estimators": 30, "max_depth": 10})
    subprocess.run(
        [str(PYTHON), str(JOBS / "train.py"), "--algorithm", "random_forest", "--task",
         "classification", "--target", "label", "--hyperparameters", hyper],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    packed = root / "archive" / "model.tar.gz"
    packed.parent.mkdir()
    with tarfile.open(packed, "w:gz", compresslevel=1) as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    sys.path.insert(0, str(JOBS))
    from mlcontract import archive

    return packed.parent, archive.sha256_of(packed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not PYTHON.exists():
        sys.exit("the job environment is missing: run `make jobs-venv`")
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-batch-") as tmp:
        root = Path(tmp)
        model_dir, sha = train(root, args.seed)
        data_dir = root / "data"
        data_dir.mkdir()
        frame = make_frame(args.rows, args.seed + 1).drop(columns="label")
        frame.to_parquet(data_dir / "data.parquet", index=False)  # as datasets.to_parquet
        size = (data_dir / "data.parquet").stat().st_size
        del frame
        results = {}
        for label, chunk in (("chunked", args.chunk_rows), ("one chunk", args.rows)):
            out = root / f"out-{chunk}"
            results[label] = run_measured(
                [str(JOBS / "batch_transform.py"), "--model-dir", str(model_dir),
                 "--data-dir", str(data_dir), "--output-dir", str(out), "--sha256", sha,
                 "--chunk-rows", str(chunk)],
            )  # fmt: skip
        extracted = root / "extracted"
        with tarfile.open(model_dir / "model.tar.gz") as tar:
            tar.extractall(extracted, filter="data")
        results["plain"] = run_measured(
            ["-c", PLAIN, str(extracted), str(data_dir / "data.parquet"),
             str(root / "plain.parquet"), str(JOBS)],
        )  # fmt: skip
    print(f"{args.rows:,} rows x 9 columns ({size / 2**20:.0f} MiB Parquet), "
          f"chunk_rows={args.chunk_rows:,}; 30-tree random forest")  # fmt: skip
    print(f"{'':12}{'seconds':>10}{'rows/s':>12}{'peak RSS MiB':>14}")
    for label, (seconds, rss) in results.items():
        print(f"{label:12}{seconds:10.2f}{args.rows / seconds:12,.0f}{rss:14,}")
    base_s, base_rss = results["plain"]
    for label in ("chunked", "one chunk"):
        seconds, rss = results[label]
        print(f"{label} / plain: time {seconds / base_s:.2f}x, peak memory {rss / base_rss:.2f}x")


if __name__ == "__main__":
    main()
