"""SageMaker PROCESSING job: feature drift of captured traffic against a model's baseline.

Runs in the prebuilt SageMaker scikit-learn container (scipy, pandas, numpy are there) and
as a local subprocess; the computation is ``driftstats.check_drift``, which the local stack
may also call in-process.

CLI::

    --baseline-dir  default /opt/ml/processing/baseline: baseline.json (a dataset profile,
                    DESIGN.md format) and signature.json ({"inputs": [{"name", "type"}]})
    --capture-dir   default /opt/ml/processing/capture: *.jsonl data capture files in
                    SageMaker's format (searched recursively; the hour folders of the window)
    --output-dir    default /opt/ml/processing/drift: drift.json and metrics.json
    --endpoint      the endpoint name (for the FeatureDrift metric's dimensions)
    --start/--end   ISO 8601 window of inference times (optional)
    --psi-threshold default 0.2; --p-value-threshold default 0.05

Output: ``drift.json`` (``driftstats.check_drift``'s report plus ``endpoint``, ``start``,
``end``) and ``metrics.json`` (``{"Namespace", "MetricData"}``: ``FeatureDrift`` per feature,
``DriftedFeatures``, ``CapturedRows``), which the step that started the job puts into the
metrics store. Failure reporting as in evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import driftstats
import jobkit
from jobkit import JobError
from mlcontract import monitoring as mon


def _build_parser() -> argparse.ArgumentParser:
    parser = jobkit.JobArgumentParser(description=__doc__)
    parser.add_argument("--baseline-dir", default="/opt/ml/processing/baseline")
    parser.add_argument("--capture-dir", default="/opt/ml/processing/capture")
    parser.add_argument("--output-dir", default="/opt/ml/processing/drift")
    parser.add_argument("--endpoint", default="endpoint")
    parser.add_argument("--start", default=None)
    parser.add_argument("--end", default=None)
    parser.add_argument("--psi-threshold", type=float, default=driftstats.PSI_THRESHOLD)
    parser.add_argument("--p-value-threshold", type=float, default=driftstats.P_VALUE_THRESHOLD)
    return parser


def _lines(directory: Path) -> Iterator[str]:
    for path in sorted(directory.rglob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            yield from fh


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{what} {str(path)!r} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise JobError(f"{what} {str(path)!r} is not valid JSON: {exc}") from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    baseline_dir, capture_dir = Path(args.baseline_dir), Path(args.capture_dir)
    baseline = _read_json(baseline_dir / "baseline.json", "Baseline")
    signature = _read_json(baseline_dir / "signature.json", "Signature")["inputs"]
    if not capture_dir.is_dir():
        raise JobError(f"Capture directory {str(capture_dir)!r} does not exist.")
    start = mon.parse_time(args.start) if args.start else None
    end = mon.parse_time(args.end) if args.end else None
    frame = driftstats.frame_from_captures(_lines(capture_dir), signature, start=start, end=end)
    if frame.empty:
        raise JobError("No captured rows in the window: nothing to compare with the baseline.")
    report = driftstats.check_drift(
        baseline,
        frame,
        features=[f["name"] for f in signature],
        psi_threshold=args.psi_threshold,
        p_value_threshold=args.p_value_threshold,
    )
    report.update(endpoint=args.endpoint, start=args.start, end=args.end)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(report, allow_nan=False), encoding="utf-8")
    stamp = end.timestamp() if end is not None else time.time()
    points = driftstats.metric_points(report, args.endpoint, stamp)
    (out / "metrics.json").write_text(
        json.dumps({"Namespace": mon.NAMESPACE, "MetricData": points}), encoding="utf-8"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        report = run(args)
    except Exception as exc:
        return jobkit.report_failure(exc, "Drift check failed", "processing")
    print(json.dumps({"rows": report["rows"], "drifted_features": report["drifted_features"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
