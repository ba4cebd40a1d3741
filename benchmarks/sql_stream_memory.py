"""Memory of a ``sql`` source ingest against reading the same table whole with pandas, side
by side (each in its own process, peak RSS from the kernel).

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/sql_stream_memory.py
    ... --rows 3000000 --chunk-rows 50000 [--url postgresql+psycopg://postgres@127.0.0.1:5432]

A fresh PostgreSQL database gets a table of ``--rows`` rows x 8 columns (generate_series,
server-side), then: (a) ``pandas.read_sql_table`` of the whole table in one process; (b)
``datasets.create`` with a ``sql`` source (server-side cursor, chunks to one Parquet file,
profile one column at a time) in another. The platform's peak should stay near a constant
(one chunk + one column) while pandas grows with the table. The database is dropped at the
end. Prints numbers, never fails on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid

CHILD_PANDAS = """
import json, resource, sys, time
import pandas as pd
from sqlalchemy import create_engine
t = time.perf_counter()
frame = pd.read_sql_table("wide", create_engine(sys.argv[1]))
print(json.dumps({"rows": len(frame), "seconds": time.perf_counter() - t,
                  "frame_mb": frame.memory_usage(deep=True).sum() / 1e6,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_PLATFORM = """
import json, resource, sys, time
from pathlib import Path
from chalicelib import datasets
from chalicelib.runtime import Ports
from chalicelib.schemas import DatasetCreate
from chalicelib.settings import Settings
from iac.local.files import FileObjectStore
from iac.local.sqlite import SqliteMetadata
root = Path(sys.argv[2])
s = Settings(profile="local", data_dir=root, poll_seconds=0)
ports = Ports(settings=s, store=FileObjectStore(s.objects_dir),
              metadata=SqliteMetadata(s.metadata_path), jobs=None, endpoints=None,
              orchestrator=None, metrics=None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
out = datasets.create(ports, DatasetCreate.model_validate({"name": "wide", "source": {
    "type": "sql", "url": sys.argv[1], "table": "wide", "chunk_rows": int(sys.argv[3])}}))
print(json.dumps({"rows": out["rows"], "seconds": time.perf_counter() - t,
                  "imports_mb": before,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    name = f"mlpipe_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{args.url}/postgres", poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = f"{args.url}/{name}"
    try:
        engine = create_engine(url, poolclass=NullPool)
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE TABLE wide AS SELECT g AS id, random() AS a, random() * 100 AS b, "
                "(random() * 1000)::int AS c, md5(g::text) AS d, "
                "'cat_' || (g % 17) AS e, now() - (g || ' seconds')::interval AS f, "
                "g % 2 = 0 AS h FROM generate_series(1, :n) AS g"), {"n": args.rows})  # fmt: skip
        engine.dispose()
        print(f"table: {args.rows:,} rows x 8 columns (built in {time.perf_counter() - t:.1f} s)")
        whole = run(CHILD_PANDAS, url)
        with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as tmp:
            ours = run(CHILD_PLATFORM, url, tmp, str(args.chunk_rows))
        pandas_line = f"peak RSS {whole['peak_mb']:7.0f} MB, {whole['seconds']:6.1f} s"
        ours_line = f"peak RSS {ours['peak_mb']:7.0f} MB, {ours['seconds']:6.1f} s"
        print(f"pandas read_sql_table (whole)  : {pandas_line} (frame: {whole['frame_mb']:.0f} MB)")
        print(f"sql source, chunk_rows={args.chunk_rows:<7,}: {ours_line}")
        print(f"ratio of peaks platform / pandas: {ours['peak_mb'] / whole['peak_mb']:.2f}x")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
