"""The CSV width check over 1 MiB takes pyarrow's parser; its answers are the line-by-line
check's: the same 400s naming the line, the same acceptances."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import datasets
from chalicelib.errors import BadRequestError

BIG = ("a,b,c\n" + "1,2,3\n" * 200_000).encode()  # 1.2 MB: over FAST_CHECK_BYTES


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (BIG + b"1,2\n", "CSV line 200002 has 2 fields, the header has 3"),
        (BIG + b"1,2,3,4\n", "CSV line 200002 has 4 fields, the header has 3"),
        (b"a,a,c\n" + BIG[6:], "column names must be unique; repeated: ['a']"),
        (BIG.replace(b"1,2,3\n", b"1,2\n", 1), "CSV line 2 has 2 fields"),
        (BIG + b'1,"x\ny",3\n', None),  # a quoted newline is one value
        (BIG + b"\n\n1,2,3\n", None),  # blank lines are skipped
        (BIG[:-1], None),  # no final newline
    ],
)
def test_fast_check_agrees_with_the_line_by_line_one(raw: bytes, error: str | None) -> None:
    assert len(raw) > datasets.FAST_CHECK_BYTES
    for check in (datasets._check_csv_rows, datasets._check_csv_rows_slowly):
        if error is None:
            check(raw)
        else:
            with pytest.raises(BadRequestError, match=error.replace("[", r"\[")):
                check(raw)


def test_compressed_file_sources(tmp_path: Path) -> None:
    import gzip

    import pyarrow as pa

    from chalicelib.schemas import DatasetCreate
    from tests.fakes import make_ports

    root = tmp_path / "files"
    root.mkdir()
    (root / "a.csv.gz").write_bytes(gzip.compress(b"x,y\n1,2\n3,4\n"))
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(b'{"x": 1}\n{"x": 2}\n{"x": 3}\n')
    (root / "b.jsonl.zst").write_bytes(sink.getvalue().to_pybytes())
    (root / "c.csv.gz").write_bytes(b"not gzip")
    ports = make_ports(tmp_path, file_roots=str(root))

    def ingest(path: str, fmt: str) -> dict:
        body = {"name": "z", "format": fmt, "source": {"type": "file", "path": path}}
        return datasets.create(ports, DatasetCreate.model_validate(body))

    assert ingest("a.csv.gz", "csv")["rows"] == 2
    assert ingest("b.jsonl.zst", "jsonl")["rows"] == 3
    with pytest.raises(BadRequestError, match=r"c\.csv\.gz is not valid gzip data"):
        ingest("c.csv.gz", "csv")
