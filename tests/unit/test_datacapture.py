"""Data capture: SageMaker's record format and folder layout, sampling, and the job reading
it back into drift."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import datacapture
import drift
from mlcontract import capture
from tests.monitoring_helpers import TYPES, baseline_of, traffic

T0 = dt.datetime(2026, 11, 28, 9, 59, 58, tzinfo=dt.UTC).timestamp()
SIGNATURE = [{"name": n, "type": t} for n, t in TYPES.items()]


def split_body(frame) -> bytes:
    data = [[None if v != v else v for v in row] for row in frame.itertuples(index=False)]
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": data}}).encode()


def test_records_land_in_sagemakers_layout_with_the_inference_id(tmp_path: Path) -> None:
    writer = datacapture.CaptureWriter(tmp_path, "flowers", interval=10)
    writer.capture(
        "id-1",
        "AllTraffic",
        b'{"instances": [[1, 2]]}',
        "application/json",
        b'{"predictions":[0]}',
        when=T0,
    )
    writer.capture(
        "id-2", "AllTraffic", b"a,b\n1,2\n", "text/csv", b'{"predictions":[1]}', when=T0 + 4
    )  # next hour
    writer.capture("id-3", "shadow", b"\xff\xfe", "application/octet-stream", b"{}", when=T0)
    files = writer.flush()
    keys = sorted(p.relative_to(tmp_path).as_posix() for p in files)
    assert [k.rsplit("/", 1)[0] for k in keys] == [
        "datacapture/flowers/AllTraffic/2026/11/28/09",
        "datacapture/flowers/AllTraffic/2026/11/28/10",
        "datacapture/flowers/shadow/2026/11/28/09",
    ]
    assert all(k.endswith(".jsonl") for k in keys)
    assert not list(tmp_path.rglob(".tmp-*"))
    first = json.loads((tmp_path / keys[0]).read_text())
    assert first["eventMetadata"] == {
        "eventId": "id-1",
        "inferenceId": "id-1",
        "inferenceTime": "2026-11-28T09:59:58.000Z",
    }
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"instances": [[1, 2]]}',
        "encoding": "JSON",
    }
    assert first["captureData"]["endpointOutput"]["data"] == '{"predictions":[0]}'
    binary = capture.parse_line((tmp_path / keys[2]).read_text())
    assert binary.input_body == b"\xff\xfe"  # BASE64 round trip
    csv = capture.parse_line((tmp_path / keys[1]).read_text())
    assert (csv.inference_id, csv.input_body, csv.input_content_type) == (
        "id-2",
        b"a,b\n1,2\n",
        "text/csv",
    )


@pytest.mark.parametrize("percent", [0, 10, 100])
def test_sampling_percentage(percent: float) -> None:
    writer = datacapture.CaptureWriter(Path("/nonexistent"), "e", sampling_percent=percent, seed=7)
    share = sum(writer.sampled() for _ in range(20_000)) / 20_000 * 100
    assert share == pytest.approx(percent, abs=1.0)


def test_a_full_queue_drops_records_not_requests(tmp_path: Path) -> None:
    writer = datacapture.CaptureWriter(tmp_path, "e", max_pending=2)
    for i in range(5):
        writer.capture(str(i), "v", b"{}", "application/json", b"{}")
    assert writer.dropped == 3
    writer.flush()
    assert writer.written == 2
    with pytest.raises(ValueError):
        datacapture.CaptureWriter(tmp_path, "e", sampling_percent=101)


def test_to_rows_joins_rows_with_their_predictions() -> None:
    when = dt.datetime.fromtimestamp(T0, dt.UTC)
    recs = [
        capture.parse_line(
            json.dumps(
                capture.record(
                    "r1", when, b"x0,colour\n1,red\n2,blue\n", "text/csv", b'{"predictions":[1,0]}'
                )
            )
        ),
        capture.parse_line(
            json.dumps(
                capture.record(
                    "r2", when, b"x0,colour\n1,red\n", "text/csv", b'{"predictions":[1,0]}'
                )
            )
        ),  # mismatch
    ]
    rows = capture.to_rows(
        recs, [{"name": "x0", "type": "number"}, {"name": "colour", "type": "string"}]
    )
    assert rows.columns == {"x0": [1.0, 2.0], "colour": ["red", "blue"]}
    assert (rows.predictions, rows.inference_ids, rows.row_in_request, rows.skipped) == (
        [1, 0],
        ["r1", "r1"],
        [0, 1],
        1,
    )


def test_drift_job_reads_captures_and_writes_report_and_metrics(tmp_path: Path) -> None:
    baseline_dir = tmp_path / "baseline"
    baseline_dir.mkdir()
    (baseline_dir / "baseline.json").write_text(
        json.dumps(baseline_of(traffic(5000, seed=50), TYPES))
    )
    (baseline_dir / "signature.json").write_text(json.dumps({"inputs": SIGNATURE}))
    writer = datacapture.CaptureWriter(tmp_path / "capture", "ep")
    shifted = traffic(2000, seed=51, shift=True)
    for i in range(0, 2000, 20):
        chunk = shifted.iloc[i : i + 20]
        writer.capture(
            f"id{i}",
            "AllTraffic",
            split_body(chunk),
            "application/json",
            json.dumps({"predictions": [0] * len(chunk)}).encode(),
            when=T0 + i,
        )
    writer.flush()
    out = tmp_path / "out"
    code = drift.main(
        [
            "--baseline-dir",
            str(baseline_dir),
            "--capture-dir",
            str(tmp_path / "capture"),
            "--output-dir",
            str(out),
            "--endpoint",
            "ep",
        ]
    )
    assert code == 0
    report = json.loads((out / "drift.json").read_text())
    assert report["rows"] == 2000 and report["endpoint"] == "ep"
    assert {"x3", "colour"} <= set(report["drifted_features"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {p["MetricName"] for p in metrics["MetricData"]} == {
        "FeatureDrift",
        "DriftedFeatures",
        "CapturedRows",
    }


def test_drift_job_failure_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = drift.main(
        [
            "--baseline-dir",
            str(tmp_path),
            "--capture-dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    assert "Baseline" in capsys.readouterr().err
