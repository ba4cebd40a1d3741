"""Dataset versioning on the local ports: concurrent writers each get their own version and
no writer's bytes are lost."""

from __future__ import annotations

import threading
from pathlib import Path

from chalicelib import datasets
from chalicelib.schemas import DatasetCreate
from tests.fakes import make_ports


def test_concurrent_ingests_get_distinct_versions(tmp_path: Path) -> None:
    ports = make_ports(tmp_path)
    results: list[dict] = []

    def ingest(i: int) -> None:
        body = "a,b\n" + "".join(f"{i},{j}\n" for j in range(5))
        req = DatasetCreate.model_validate(
            {"name": "shared", "source": {"type": "inline", "data": body}}
        )
        results.append(datasets.create(ports, req))

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["version"] for r in results) == [1, 2, 3, 4, 5, 6]
    writers = set()
    for version in range(1, 7):
        record = datasets.get_version(ports, "shared", version)
        frame = datasets.load_frame(ports, record["key"])
        assert len(frame) == 5
        writers.add(int(frame["a"].iloc[0]))
    assert writers == set(range(6))  # every writer's data survived under its own version
    assert datasets.describe(ports, "shared")["latest_version"] == 6


def test_a_written_parquet_version_never_reuses_a_deleted_number(tmp_path: Path) -> None:
    """Batch outputs (store_parquet_version) number versions as ingestion does."""
    import pandas as pd

    ports = make_ports(tmp_path)
    for _ in range(2):
        datasets.upload(ports, "out", b"a,b\n1,2\n3,4\n", "text/csv")
    datasets.delete(ports, "out", 2)
    path = tmp_path / "scored.parquet"
    pd.DataFrame({"a": [1, 3], "b": [2, 4]}).to_parquet(path, index=False)
    record = datasets.store_parquet_version(ports, "out", path, {"type": "batch"}, "run-1")
    assert record["version"] == 3
    datasets.delete(ports, "out", 3)
    again = datasets.store_parquet_version(ports, "out", path, {"type": "batch"}, "run-2")
    assert again["version"] == 4
