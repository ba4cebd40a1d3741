"""Validate the state machine with the Amazon States Language validator (the asl-validator
npm package, pinned in iac/lint/package.json): the committed definition with its
``${...FunctionArn}`` placeholders, and the definition rendered with ARNs as CloudFormation
substitutes them.

    python -m iac.asl_lint        (make lint; exits 1 when either is invalid)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import stepfunctions

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "iac" / "lint" / "node_modules" / ".bin" / "asl-validator"
OUT = ROOT / "build" / "asl"


def rendered() -> Path:
    arns = {
        p: f"arn:aws:lambda:us-east-1:123456789012:function:mlpipe-dev-{f}"
        for p, f in stepfunctions.FUNCTIONS.items()
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "pipeline.rendered.asl.json"
    path.write_text(stepfunctions.render(arns))
    return path


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def main() -> int:
    if not VALIDATOR.exists():
        print("asl-validator is not installed: cd iac/lint && npm ci", file=sys.stderr)
        return 1
    failed = 0
    for path in (stepfunctions.DEFINITION_PATH, rendered()):
        result = validate(path)
        print((result.stdout + result.stderr).strip())
        failed |= result.returncode
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
