"""``make package``: build every artefact and check it against the AWS limits.

- the Lambda bundle (``chalice package`` with functions/requirements.txt, the contract package
  vendored as deploy.sh does): zipped <= 50 MB; unzipped plus the AWS SDK for pandas layer
  <= 250 MB; no scikit-learn/scipy/pandas/numpy/pyarrow inside it (the layer brings the
  last three; scikit-learn only ever runs in the SageMaker image);
- the job source (``sourcedir.tar.gz``: the job scripts and mlcontract, as deploy.sh packs it);
- the API Lambda's cold start: ``import app`` plus a first request in a fresh interpreter,
  best of 5, goal <= 300 ms, and none of pandas, numpy, pyarrow, sklearn imported.

Exits 1 when a limit is crossed. Writes build/package/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from iac.package_template import chalice_package

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "package"
MB = 1_000_000
ZIPPED_LIMIT = 50 * MB
UNZIPPED_LIMIT = 250 * MB
# The AWS SDK for pandas layer (python3.11, x86_64) unzipped, as its documentation states
# (167-204 MB across versions): the upper bound, since it cannot be downloaded here.
PANDAS_LAYER_BYTES = 204 * MB
COLD_START_GOAL_MS = 300.0
HEAVY = ("pandas", "numpy", "pyarrow", "sklearn", "scipy")

# What Lambda does on a cold start: import the handler module, then call it with the first
# event (an API Gateway REST proxy event for GET /health).
COLD_START = """
import json, os, sys, time
t0 = time.perf_counter()
import app
event = {"resource": "/health", "path": "/health", "httpMethod": "GET",
         "headers": {"Accept": "application/json"}, "multiValueHeaders": {},
         "queryStringParameters": None, "multiValueQueryStringParameters": None,
         "pathParameters": None, "stageVariables": None, "body": None,
         "isBase64Encoded": False,
         "requestContext": {"resourcePath": "/health", "httpMethod": "GET",
                            "path": "/api/health", "stage": "api",
                            "identity": {"sourceIp": "127.0.0.1"}}}
status = app.app(event, None)["statusCode"]
ms = (time.perf_counter() - t0) * 1000
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"ms": ms, "status": status, "heavy": heavy}))
"""


def job_source(out: Path) -> Path:
    archive = out / "sourcedir.tar.gz"
    jobs = ROOT / "sagemaker_jobs"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted([*jobs.glob("*.py"), jobs / "requirements.txt"]):
            tar.add(path, arcname=path.name)
        for path in sorted((jobs / "mlcontract").glob("*")):
            if path.suffix in (".py", ".json"):
                tar.add(path, arcname=f"mlcontract/{path.name}")
    return archive


def cold_start() -> dict[str, object]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT / 'sagemaker_jobs'}",
        "MLPIPE_PROFILE": "aws",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "none",
        "AWS_SECRET_ACCESS_KEY": "none",
    }
    best: dict[str, object] | None = None
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", COLD_START, json.dumps(HEAVY)],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        result = json.loads(out.stdout)
        if best is None or result["ms"] < best["ms"]:
            best = result
    assert best is not None
    return best


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    build = chalice_package(OUT, with_requirements=True)
    bundle = build / "deployment.zip"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        unzipped = sum(i.file_size for i in zf.infolist())
    zipped = bundle.stat().st_size
    inside = sorted({n.split("/")[0] for n in names if n.split("/")[0] in (*HEAVY, "iac", "moto")})
    source = job_source(OUT)
    start = cold_start()
    failures = []
    print(f"Lambda bundle  {bundle.relative_to(ROOT)}: {zipped / MB:.1f} MB zipped "
          f"(limit 50), {unzipped / MB:.1f} MB unzipped")  # fmt: skip
    total = unzipped + PANDAS_LAYER_BYTES
    print(f"  + AWS SDK for pandas layer <= {PANDAS_LAYER_BYTES / MB:.0f} MB unzipped: "
          f"{total / MB:.1f} MB of 250")  # fmt: skip
    print(f"Job source     {source.relative_to(ROOT)}: {source.stat().st_size / 1000:.1f} kB")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"API cold start import app + GET /health: {start['ms']:.0f} ms, best of 5 (goal "
          f"{COLD_START_GOAL_MS:.0f}; load average {load}), heavy modules imported: "
          f"{start['heavy'] or 'none'}")  # fmt: skip
    if zipped > ZIPPED_LIMIT:
        failures.append("the zipped bundle is over 50 MB")
    if total > UNZIPPED_LIMIT:
        failures.append("bundle + layer is over 250 MB unzipped")
    if inside:
        failures.append(
            f"the bundle carries {inside}: data libraries belong in the layer or the image, "
            "the local stack (iac/, moto) never in a Lambda"
        )
    if start["heavy"]:
        failures.append(f"the API imports {start['heavy']} on a cold start")
    if start["status"] != 200:
        failures.append(f"GET /health answered {start['status']}")
    if float(start["ms"]) > COLD_START_GOAL_MS:  # type: ignore[arg-type]
        message = f"cold start {start['ms']:.0f} ms is over {COLD_START_GOAL_MS:.0f} ms"
        # A wall-clock time means something only on a machine that is not busy with others.
        if load != "?" and float(load) < (os.cpu_count() or 1):
            failures.append(message)
        else:
            print(f"package: warning: {message} with load average {load} (not judged)")
    for failure in failures:
        print(f"package: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
