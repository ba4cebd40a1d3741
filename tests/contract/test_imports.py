"""What each layer may load. The domain and the API routes load no AWS SDK, no local runtime
(SQLite, the local stack) and no data libraries; the API Lambda starts without pandas, numpy or
scikit-learn. Each check runs in a fresh interpreter, so nothing loaded by other tests hides
an import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATH = f"{ROOT}:{ROOT / 'functions'}:{ROOT / 'sagemaker_jobs'}"


def loaded_after(code: str) -> set[str]:
    probe = (
        f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": PATH, "PATH": "/usr/bin:/bin", "MLPIPE_PROFILE": "local"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


DOMAIN = (
    "import chalicelib.datasets, chalicelib.pipelines, chalicelib.runs, chalicelib.registry, "
    "chalicelib.deployment, chalicelib.steps, chalicelib.workflow, chalicelib.ports, "
    "chalicelib.concurrency, chalicelib.runtime"
)


@pytest.mark.parametrize("code", [DOMAIN, "import app"], ids=["domain", "api"])
def test_no_aws_sdk_no_local_runtime_no_data_libraries(code: str) -> None:
    loaded = loaded_after(code)
    assert not loaded & {"boto3", "botocore", "moto"}, "the AWS SDK loads with the domain"
    assert not loaded & {"sqlite3", "iac"}, "a local runtime loads with it"
    assert not loaded & {"pandas", "numpy", "sklearn", "pyarrow", "scipy"}


def test_the_aws_wiring_loads_only_the_aws_adapters() -> None:
    loaded = loaded_after(
        "import os; os.environ['MLPIPE_PROFILE'] = 'aws'; os.environ['AWS_DEFAULT_REGION'] = "
        "'us-east-1'\nfrom chalicelib.runtime import build_aws_ports\n"
        "from chalicelib.settings import get_settings\nbuild_aws_ports(get_settings())"
    )
    assert "botocore" in loaded
    assert not loaded & {"iac", "sqlite3", "moto", "pandas", "sklearn"}


def test_the_catalog_validates_without_scikit_learn() -> None:
    loaded = loaded_after(
        "import mlcontract.catalog as c\n"
        "c.validate_hyperparameters('random_forest', 'classification', {'n_estimators': 5})\n"
        "c.describe()"
    )
    assert not loaded & {"sklearn", "numpy", "pandas", "scipy"}
