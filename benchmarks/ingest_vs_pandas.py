"""Ingestion speed: a CSV through the ``file`` source into a READY version, against plain
``pandas.read_csv`` + ``DataFrame.to_parquet`` of the same file, side by side in one run.

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/ingest_vs_pandas.py
    ... --rows 1100000 --repeat 3 [--contract]

The data: ``--rows`` rows x 20 columns (12 floats, 4 integers, 3 low-cardinality strings,
1 ISO date), seeded; 1.1M rows is ~220 MB like the issue's file. The platform side is
``datasets.create`` on the local stack's own ports (files + SQLite): CSV checks, parse,
datetime typing, optional contract (``--contract``: pandera, a type and a range per
column), profile, Parquet, metadata. It prints medians and the ratio (goal in issue 9:
<= 1.25x); it never fails on a number. Where the time goes is printed per stage.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(12):
        data[f"f{i}"] = np.round(rng.normal(100, 25, rows), 4)
    for i in range(4):
        data[f"i{i}"] = rng.integers(0, 10_000, rows)
    for i in range(3):
        data[f"s{i}"] = rng.choice(np.array([f"cat_{k}" for k in range(8 + i * 5)]), rows)
    days = pd.to_timedelta(rng.integers(0, 700, rows), unit="D")
    data["day"] = (pd.Timestamp("2024-01-01") + days).strftime("%Y-%m-%d")
    pd.DataFrame(data).to_csv(path, index=False)


def pandas_side(path: Path, out: Path) -> float:
    start = time.perf_counter()
    pd.read_csv(path).to_parquet(out, index=False)
    return time.perf_counter() - start


def platform_side(ports: Any, name: str, path: Path, contract: bool) -> float:
    from chalicelib import datasets
    from chalicelib.schemas import DatasetCreate

    body: dict[str, Any] = {"name": name, "source": {"type": "file", "path": str(path)}}
    if contract:
        body["contract"] = {
            "columns": {
                **{f"f{i}": {"type": "float", "min": -1e6, "max": 1e6} for i in range(12)},
                **{f"i{i}": {"type": "integer", "min": 0} for i in range(4)},
                "s0": {"allowed": [f"cat_{k}" for k in range(8)]},
            },
        }
    start = time.perf_counter()
    datasets.create(ports, DatasetCreate.model_validate(body))
    return time.perf_counter() - start


def stages(path: Path) -> dict[str, float]:
    """The platform's stages, one by one (same functions datasets.create calls)."""
    from chalicelib import cleaning, datasets

    out: dict[str, float] = {}
    t = time.perf_counter()
    raw = path.read_bytes()
    out["read bytes"] = time.perf_counter() - t
    t = time.perf_counter()
    datasets._check_csv_rows(raw)
    out["csv row check"] = time.perf_counter() - t
    t = time.perf_counter()
    frame = datasets.parse_table(raw, "csv")
    out["parse_table (incl. row check)"] = time.perf_counter() - t
    t = time.perf_counter()
    frame, _ = cleaning.type_datetime_columns(frame)
    out["datetime typing"] = time.perf_counter() - t
    t = time.perf_counter()
    datasets.profile(frame)
    out["profile"] = time.perf_counter() - t
    t = time.perf_counter()
    datasets.to_parquet(frame)
    out["to_parquet"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contract", action="store_true", help="also check a data contract")
    args = parser.parse_args()

    from chalicelib.runtime import Ports
    from chalicelib.settings import Settings
    from iac.local.files import FileObjectStore
    from iac.local.sqlite import SqliteMetadata

    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        csv = root / "files" / "big.csv"
        make_csv(csv, args.rows)
        size = csv.stat().st_size
        settings = Settings(profile="local", data_dir=root, poll_seconds=0)
        ports = Ports(
            settings=settings,
            store=FileObjectStore(settings.objects_dir),
            metadata=SqliteMetadata(settings.metadata_path),
            jobs=None,  # type: ignore[arg-type]
            endpoints=None,  # type: ignore[arg-type]
            orchestrator=None,  # type: ignore[arg-type]
            metrics=None,  # type: ignore[arg-type]
        )
        print(f"data: {args.rows:,} rows x 20 columns, {size / 1e6:.0f} MB CSV")
        plain, ours = [], []
        for i in range(args.repeat):  # interleaved, so drift in machine load hits both
            plain.append(pandas_side(csv, root / "plain.parquet"))
            ours.append(platform_side(ports, f"bench{i}", csv, args.contract))
            print(f"  repeat {i + 1}: pandas {plain[-1]:.2f} s, platform {ours[-1]:.2f} s")
        a, b = statistics.median(plain), statistics.median(ours)
        print(f"pandas read_csv + to_parquet : {a:6.2f} s (median of {args.repeat})")
        label = "platform file source" + (" + contract" if args.contract else "")
        print(f"{label:29s}: {b:6.2f} s")
        print(f"ratio platform / pandas      : {b / a:6.2f}x   (issue 9 goal: <= 1.25x)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"peak RSS of this process     : {peak / 1e6:.0f} MB = {peak / size:.1f}x the file")
        print("stages of the platform side:")
        for stage, seconds in stages(csv).items():
            print(f"  {stage:30s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
